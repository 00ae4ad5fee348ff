//! Certificates from an ACME CA (Let's Encrypt, a private CA, Pebble) for
//! a role's host names, by the HTTP-01 challenge.
//!
//! # Several hosts per role
//! The CA validates a name by fetching
//! `http://<name>/.well-known/acme-challenge/<token>` from whichever
//! address the name resolves to, and a role's names usually resolve to
//! several of its hosts (round-robin DNS, a load balancer in front). So the
//! key authorization is put on *every* host's proxy of the role before the
//! challenge is marked ready, and each proxy answers it for any host name:
//! validation succeeds whichever host the CA reaches. The tokens are
//! cleared from every proxy afterwards, on failure too. So an order needs
//! every host of the role connected: the caller
//! ([`crate::deploy::certs`]) orders nothing while one is out of scope or
//! unreachable.
//!
//! # The account
//! One ACME account per (directory, email), its credentials (the account's
//! private key) kept on the role's first host in config order (whatever
//! the command's scope) under [`ACCOUNT_DIR`]
//! (a 0700 directory, 0600 files) and written through the command's stdin,
//! never its arguments; created on first use. The operator's machine keeps
//! nothing, so any laptop or CI job renews with the same account.
//!
//! Every call to the CA has a deadline (instant-acme's client sets none):
//! each exchange gets 20 s, through [`call`], including each read of the
//! order's authorizations; waiting for validation and issuance gets 90 s
//! more. A directory that does not answer is an error naming it, and the
//! running proxies keep their certificates. An account file that does not
//! parse is reported by its position only: it holds the account's key.

use std::path::Path;
use std::time::Duration;

use ballast_proxy_wire::{AdminRequest, ChallengeRequest};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::certificate::{self, Certificate};
use crate::config::Acme;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;

/// Where account credentials live on the role's first host.
pub const ACCOUNT_DIR: &str = "/var/lib/ballast/acme";
/// How long one call to the CA may take.
const CALL_DEADLINE: Duration = Duration::from_secs(20);
/// How long the CA gets to validate the challenges, then to issue.
const VALIDATION_DEADLINE: Duration = Duration::from_secs(90);
const STEP: &str = "obtain a certificate by ACME";

/// One certificate to obtain.
pub struct Order<'a> {
    pub acme: &'a Acme,
    /// `acme.ca` resolved against the config's directory.
    pub ca: Option<&'a Path>,
    /// The host names the certificate is for (the role's `proxy.hosts`).
    pub names: &'a [String],
    /// Keeps the account's credentials: the role's first host in config
    /// order, never the first host of a narrower scope.
    pub account_host: &'a Host,
    /// Every host of the role (all connected): each proxy answers the
    /// challenges.
    pub proxies: &'a [&'a Host],
}

/// Obtains a certificate for `order.names`, answering the CA's HTTP-01
/// challenges on every proxy of `order.proxies`.
pub async fn obtain(order: &Order<'_>, say: &(dyn Fn(String) + Sync)) -> Result<Certificate> {
    let directory = &order.acme.directory;
    let account = account(order, say).await?;
    let ids: Vec<Identifier> = order
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let names = order.names.join(", ");
    let mut acme_order = call(directory, "place an order", account.new_order(&NewOrder::new(&ids)))
        .await
        .map_err(|e| e.hint(format!("the CA refused an order for {names}; check that these names are yours and allowed by the CA")))?;
    say(format!(
        "ACME: ordered a certificate for {names} from {directory}"
    ));
    let mut tokens = Vec::new();
    let issued = async {
        let mut authorizations = acme_order.authorizations();
        while let Some(mut authorization) = call(directory, "read an authorization", async {
            authorizations.next().await.transpose()
        })
        .await?
        {
            let name = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(Error::failed(
                        STEP,
                        format_args!("{directory}: the authorization for {name} is {other:?}"),
                    ))
                }
            }
            let mut challenge =
                authorization
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| {
                        Error::failed(
                            STEP,
                            format_args!("{directory} offers no HTTP-01 challenge for {name}"),
                        )
                        .hint("ballast answers HTTP-01 only; use a CA that offers it")
                    })?;
            let key_authorization = challenge.key_authorization().as_str().to_string();
            tokens.push(challenge.token.clone());
            answer(order.proxies, &challenge.token, Some(key_authorization)).await?;
            call(directory, "mark the challenge ready", challenge.set_ready()).await?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(VALIDATION_DEADLINE);
        let status = call_for(
            directory,
            "wait for the CA to validate",
            VALIDATION_DEADLINE + CALL_DEADLINE,
            acme_order.poll_ready(&retries),
        )
        .await?;
        if status != OrderStatus::Ready {
            return Err(invalid(&mut acme_order, directory, &names).await);
        }
        let key_pem = call(directory, "finalize the order", acme_order.finalize()).await?;
        certificate::register_secret(&key_pem);
        let chain = call_for(
            directory,
            "download the certificate",
            VALIDATION_DEADLINE + CALL_DEADLINE,
            acme_order.poll_certificate(&retries),
        )
        .await?;
        Ok((chain, key_pem))
    }
    .await;
    for token in &tokens {
        // Best effort: a token left behind answers nothing useful and is
        // replaced by the next order's.
        let _ = answer(order.proxies, token, None).await;
    }
    let (chain, key_pem) = issued?;
    certificate::check(&chain, &key_pem, order.names, certificate::now_unix())
        .map_err(|p| Error::failed(STEP, format_args!("the certificate {directory} issued {p}")))
}

/// The account for (directory, email): read from the first host, or
/// created there.
async fn account(order: &Order<'_>, say: &(dyn Fn(String) + Sync)) -> Result<Account> {
    let acme = order.acme;
    let directory = &acme.directory;
    let host = order.account_host;
    let path = format!("{ACCOUNT_DIR}/{}.json", account_id(directory, &acme.email));
    let deadline = Duration::from_secs(15);
    let stored = host.run("cat", &["--", &path], None, deadline).await?;
    let builder = || {
        match order.ca {
        Some(ca) => Account::builder_with_root(ca).map_err(|e| {
            Error::input(STEP, format_args!("{}: {e}", ca.display()))
                .hint("proxy.tls.acme.ca must be a PEM file of the CA certificate that signed the directory's HTTPS certificate")
        }),
        None => Account::builder().map_err(|e| Error::failed(STEP, e)),
    }
    };
    if stored.success() {
        crate::redact::register([stored.stdout.trim()]);
        let credentials: AccountCredentials = serde_json::from_str(&stored.stdout)
            .map_err(|e| malformed_account(&path, &e).on(host.name()))?;
        return call(
            directory,
            "reach the directory",
            builder()?.from_credentials(credentials),
        )
        .await;
    }
    let contact = format!("mailto:{}", acme.email.trim());
    let new = NewAccount {
        contact: &[&contact],
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = call(
        directory,
        "create an account",
        builder()?.create(&new, directory.clone(), None),
    )
    .await?;
    let json = serde_json::to_string(&credentials).map_err(|e| Error::failed(STEP, e))?;
    crate::redact::register([json.as_str()]);
    let step = "store the ACME account";
    host.run_checked(
        step,
        "install",
        &["-d", "-m", "0700", ACCOUNT_DIR],
        None,
        deadline,
    )
    .await?;
    let args = ["-m", "0600", "/dev/stdin", path.as_str()];
    host.run_checked(step, "install", &args, Some(json.as_bytes()), deadline)
        .await?;
    say(format!(
        "ACME: created an account for {} at {directory}",
        acme.email
    ));
    Ok(account)
}

/// A stored account file that does not parse. serde's message can quote
/// the file (the account's private key): only the position is told.
fn malformed_account(path: &str, e: &serde_json::Error) -> Error {
    Error::failed(
        STEP,
        format_args!(
            "{path} is not ACME account credentials (line {}, column {})",
            e.line(),
            e.column()
        ),
    )
    .hint("remove the file to have ballast create a new account (the CA keeps the old one; certificates it issued stay valid)")
}

/// The file name of (directory, email)'s account.
fn account_id(directory: &str, email: &str) -> String {
    let digest = certificate::fingerprint(format!("{directory}\n{}", email.trim()).as_bytes());
    digest[..16].to_string()
}

/// Puts (or with `None` clears) a challenge's answer on every proxy.
async fn answer(proxies: &[&Host], token: &str, key_authorization: Option<String>) -> Result<()> {
    let request = AdminRequest::Challenge(ChallengeRequest {
        token: token.to_string(),
        key_authorization,
    });
    let results = futures_util::future::join_all(
        proxies
            .iter()
            .map(|h| crate::proxy::admin(h, &request, Duration::from_secs(10))),
    )
    .await;
    for (host, result) in proxies.iter().zip(results) {
        let response = result?;
        if !response.ok {
            return Err(Error::failed(
                "answer the ACME challenge",
                response.error.unwrap_or_default(),
            )
            .on(host.name()));
        }
    }
    Ok(())
}

/// Why an order became invalid: the CA's reason for each failed name.
async fn invalid(order: &mut instant_acme::Order, directory: &str, names: &str) -> Error {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    // Each read has the per-call deadline: a CA that stops answering here
    // ends the list of reasons, not the command.
    while let Ok(Some(mut a)) = call(directory, "read an authorization", async {
        authorizations.next().await.transpose()
    })
    .await
    {
        let name = a.identifier().to_string();
        let state = match tokio::time::timeout(CALL_DEADLINE, a.refresh()).await {
            Ok(Ok(state)) => state,
            _ => continue,
        };
        for c in &state.challenges {
            if let Some(problem) = &c.error {
                let detail = problem
                    .detail
                    .clone()
                    .unwrap_or_else(|| format!("{problem}"));
                reasons.push(format!("{name}: {detail}"));
            }
        }
    }
    let reasons = if reasons.is_empty() {
        "the CA gave no reason".to_string()
    } else {
        reasons.join("; ")
    };
    Error::failed(
        STEP,
        format_args!("{directory} could not validate {names}: {reasons}"),
    )
    .hint(
        "each name must resolve (for the CA) to a host of the role, whose proxy answers on port 80",
    )
}

async fn call<T>(
    directory: &str,
    what: &str,
    work: impl std::future::Future<Output = std::result::Result<T, instant_acme::Error>>,
) -> Result<T> {
    call_for(directory, what, CALL_DEADLINE, work).await
}

/// Runs one exchange with the CA within `deadline`.
async fn call_for<T>(
    directory: &str,
    what: &str,
    deadline: Duration,
    work: impl std::future::Future<Output = std::result::Result<T, instant_acme::Error>>,
) -> Result<T> {
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result.map_err(|e| ca_error(directory, what, e)),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            STEP,
            format_args!(
                "{directory} did not answer within {} ({what})",
                crate::error::humanize(deadline)
            ),
        )
        .hint("check the directory URL and that this machine reaches it; the proxies keep serving their current certificates")),
    }
}

fn ca_error(directory: &str, what: &str, e: instant_acme::Error) -> Error {
    let cause = match &e {
        instant_acme::Error::Api(p) => p.detail.clone().unwrap_or_else(|| p.to_string()),
        other => format!("{other}"),
    };
    Error::failed(STEP, format_args!("{directory}: could not {what}: {cause}"))
        .hint("check the directory URL and the CA's reason; the proxies keep serving their current certificates")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_file_per_directory_and_email() {
        let a = account_id("https://ca.test/dir", "ops@example.com");
        assert_eq!(a.len(), 16);
        assert_eq!(a, account_id("https://ca.test/dir", " ops@example.com"));
        assert_ne!(a, account_id("https://ca.test/dir", "dev@example.com"));
        assert_ne!(a, account_id("https://other.test/dir", "ops@example.com"));
    }

    #[test]
    fn a_malformed_account_file_is_reported_without_its_content() {
        let secret = r#"{"id":"https://ca.test/acct/1","key_pkcs8":"TOPSECRETKEYMATERIAL" "#;
        let e = serde_json::from_str::<AccountCredentials>(secret)
            .err()
            .unwrap();
        let reported = malformed_account("/var/lib/ballast/acme/x.json", &e);
        let all = format!("{reported} {reported:?} {}", reported.hint.clone().unwrap());
        assert!(!all.contains("TOPSECRET"), "{all}");
        assert!(all.contains("line 1, column"), "{all}");
        let wrong = r#"{"id": 1, "key_pkcs8": "TOPSECRETKEYMATERIAL"}"#;
        let e = serde_json::from_str::<AccountCredentials>(wrong)
            .err()
            .unwrap();
        assert!(!malformed_account("p", &e).to_string().contains("TOPSECRET"));
    }
}
