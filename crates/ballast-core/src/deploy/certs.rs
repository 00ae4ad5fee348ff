//! Certificates from the config to every host's proxy: each proxied role
//! with `proxy.tls` gets its certificate (files checked on the operator's
//! machine first, or obtained by ACME when due) sent through the admin API
//! over SSH to the proxies of its hosts, where new TLS handshakes use it.
//! A proxy that already serves the same certificate is left alone; one
//! that refuses it keeps serving its previous one.
//!
//! # ACME and the role's hosts
//! The CA may validate a name through any host of the role, so a
//! certificate is only ordered when every host of the role is connected
//! and its proxy answers (see [`crate::acme`]); the account lives on the
//! role's first host in config order. With a host out of scope
//! (`--hosts`) or unreachable, nothing is ordered: the output names the
//! missing hosts, and a certificate already valid is still installed where
//! a host lacks it.
//!
//! A host that lacks the certificate while another host of the role serves
//! one that is not due gets a copy of that one, read over SSH from the
//! serving proxy's state directory (the admin API never returns keys): no
//! new order, so no duplicate certificate at the CA. Only when that copy
//! fails is a new certificate ordered.
//!
//! A renewal that fails (the CA down or refusing, a host missing) while
//! every host of the role still serves an unexpired certificate for the
//! names is a warning, not an error: the deploy goes on, and
//! `ballast proxy certs --renew` retries later. `--force-renew` fails
//! instead.
//!
//! Those decisions are pure functions in `renewal` (with their tests);
//! this file talks to the proxies, the CA and the operator.

use std::path::Path;
use std::time::Duration;

use ballast_proxy_wire::{AdminRequest, CertificateRequest, CertificateStatus};
use futures_util::future::join_all;

use super::{say, Context, OnEvent};
use crate::certificate::{self, Certificate, Problem};
use crate::config::TlsSource;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host::Host;
use crate::proxy;

mod renewal;

pub use renewal::Renewal;
use renewal::{
    decide, donor, is_due, is_valid, missing, refusal, still_served, Decision, Seen, State,
};

const ADMIN_DEADLINE: Duration = Duration::from_secs(15);
/// Puts each proxied role's certificate on the proxies of `hosts`,
/// obtaining ACME certificates that are due. A renewal that could not
/// happen while the served certificates are still valid is reported as a
/// warning event.
pub(super) async fn install(
    ctx: &Context<'_>,
    fleet: &Fleet,
    hosts: &[String],
    on_event: OnEvent<'_>,
) -> Result<()> {
    install_with(ctx, fleet, hosts, Renewal::WhenDue, on_event)
        .await
        .map(|_| ())
}

/// [`install`], renewing ACME certificates as `renewal` says. Returns the
/// renewals that could not happen but left valid certificates served
/// (already told as warning events), for a caller that must fail on them.
pub async fn install_with(
    ctx: &Context<'_>,
    fleet: &Fleet,
    hosts: &[String],
    renewal: Renewal,
    on_event: OnEvent<'_>,
) -> Result<Vec<Error>> {
    let config = &ctx.loaded.config;
    let mut deferred = Vec::new();
    for (role_name, role) in &config.roles {
        if !ctx.scope.has_role(role_name) {
            continue;
        }
        let Some(settings) = &role.proxy else {
            continue;
        };
        let Some(source) = settings.tls.as_ref().and_then(|t| t.source()) else {
            continue;
        };
        let role_hosts: Vec<&str> = role.hosts.iter().map(|h| h.address()).collect();
        let proxies: Vec<&Host> = role_hosts
            .iter()
            .filter(|h| hosts.iter().any(|w| w == *h))
            .filter_map(|h| fleet.get(h))
            .collect();
        if proxies.is_empty() {
            continue;
        }
        let service = proxy::route_name(&config.service, role_name);
        let names = &settings.hosts;
        let acme = match source {
            TlsSource::Files { cert, key } => {
                let served = served_for(&proxies, &service).await?;
                let wanted = read_files(ctx.loaded.dir.as_path(), cert, key, names)?;
                let stale = stale(&proxies, &served, &wanted, renewal == Renewal::Force);
                send(&stale, &service, names, &wanted, on_event).await?;
                continue;
            }
            TlsSource::Acme(acme) => acme,
        };
        // Every host of the role, as far as it can be seen from here.
        let (scope, service_name) = (&ctx.scope, service.as_str());
        let answers = join_all(role_hosts.iter().map(|h| async move {
            let Some(host) = fleet.get(h) else {
                return if scope.has_host(h) {
                    State::Unreachable("it did not answer".into())
                } else {
                    State::OutOfScope
                };
            };
            match served(host).await {
                Ok(certs) => State::Serves(certs.into_iter().find(|c| c.service == service_name)),
                Err(e) => State::Unreachable(format!("its proxy did not answer ({})", e.cause)),
            }
        }))
        .await;
        let seen: Vec<Seen> = role_hosts
            .iter()
            .zip(answers)
            .map(|(h, state)| Seen {
                host: h.to_string(),
                target: proxies.iter().any(|p| p.name() == *h),
                state,
            })
            .collect();
        // A proxy the certificate must go to has to answer, as before.
        if let Some(s) = seen.iter().find(|s| s.target && !s.answered()) {
            let why = match &s.state {
                State::Unreachable(why) => why.as_str(),
                _ => "it did not answer",
            };
            return Err(Error::failed("read the served certificates", why)
                .on(s.host.as_str())
                .hint("check that the proxy runs there: `ballast proxy status`"));
        }
        let now = certificate::now_unix();
        let renew_before = acme.renew_before.as_secs();
        let lacks_valid = |s: &Seen| !s.served().is_some_and(|c| is_valid(c, names, now));
        let mut decision = decide(&seen, renewal, names, renew_before, now);
        if let Decision::Copy { from } = decision.clone() {
            // The same certificate to the hosts whose own one is due: no
            // new order (and no duplicate certificate at the CA).
            match read_served(fleet, &seen, &from, &service, names).await {
                Ok(wanted) => {
                    let to = hosts_where(fleet, &seen, |s| {
                        s.served()
                            .is_none_or(|c| is_due(c, names, renew_before, now))
                    });
                    send(&to, &service, names, &wanted, on_event).await?;
                    continue;
                }
                Err(e) => {
                    say(
                        on_event,
                        Some(&from),
                        format!(
                            "warning: its certificate for {} could not be copied to the hosts that lack it ({}): ordering a new one",
                            names.join(", "),
                            e.cause
                        ),
                    );
                    decision = Decision::Obtain;
                }
            }
        }
        if decision == Decision::Keep {
            continue;
        }
        let missing = missing(&seen);
        let failure = if missing.is_empty() {
            let ca = acme.ca.as_ref().map(|p| ctx.loaded.dir.join(p));
            // Nothing is missing: every host of the role is connected, in
            // config order, and the first keeps the account.
            let all: Vec<&Host> = role_hosts.iter().filter_map(|h| fleet.get(h)).collect();
            let order = crate::acme::Order {
                acme,
                ca: ca.as_deref(),
                names,
                account_host: all[0],
                proxies: &all,
            };
            let speak = |m: String| say(on_event, None, m);
            match crate::acme::obtain(&order, &speak).await {
                Ok(wanted) => {
                    // Every proxy of the role gets it, so no host is left
                    // due to order again on the next deploy.
                    let served: Vec<Option<CertificateStatus>> =
                        seen.iter().map(|s| s.served().cloned()).collect();
                    let stale = stale(&all, &served, &wanted, renewal == Renewal::Force);
                    send(&stale, &service, names, &wanted, on_event).await?;
                    continue;
                }
                Err(e) => e,
            }
        } else {
            refusal(role_name, &role_hosts, &missing)
        };
        // Not renewed: a certificate still valid goes where one is lacking.
        let mut seen = seen;
        if seen.iter().any(|s| s.answered() && lacks_valid(s)) {
            if let Some(from) = donor(&seen, |c| is_valid(c, names, now)) {
                let from = from.to_string();
                match read_served(fleet, &seen, &from, &service, names).await {
                    Ok(valid) => {
                        let to = hosts_where(fleet, &seen, lacks_valid);
                        send(&to, &service, names, &valid, on_event).await?;
                        let copied = seen
                            .iter()
                            .find(|s| s.host == from)
                            .and_then(|s| s.served().cloned());
                        for s in seen.iter_mut().filter(|s| s.answered() && lacks_valid(s)) {
                            s.state = State::Serves(copied.clone());
                        }
                    }
                    Err(e) => say(
                        on_event,
                        Some(&from),
                        format!(
                            "warning: its certificate could not be copied to the hosts that lack one: {}",
                            e.cause
                        ),
                    ),
                }
            }
        }
        if still_served(&seen, renewal, names, now).is_none() {
            return Err(failure);
        }
        let then = if missing.is_empty() {
            "run `ballast proxy certs --renew` later".to_string()
        } else {
            failure.hint.clone().unwrap_or_default()
        };
        for s in &seen {
            if let Some(c) = s.served() {
                say(
                    on_event,
                    Some(&s.host),
                    format!(
                        "warning: the certificate for {} was not renewed: {}; it stays valid until {}: {then}",
                        names.join(", "),
                        failure.cause,
                        certificate::unix_date(c.not_after_unix)
                    ),
                );
            }
        }
        deferred.push(failure);
    }
    Ok(deferred)
}

/// The connected hosts of `seen` whose proxy answered and `needs` says so.
fn hosts_where<'f>(
    fleet: &'f Fleet,
    seen: &[Seen],
    needs: impl Fn(&Seen) -> bool,
) -> Vec<&'f Host> {
    seen.iter()
        .filter(|s| s.answered() && needs(s))
        .filter_map(|s| fleet.get(&s.host))
        .collect()
}

/// The proxies of `proxies` not serving `wanted` (all of them with `force`).
fn stale<'h>(
    proxies: &[&'h Host],
    served: &[Option<CertificateStatus>],
    wanted: &Certificate,
    force: bool,
) -> Vec<&'h Host> {
    proxies
        .iter()
        .zip(served)
        .filter(|(_, s)| force || s.as_ref().map(|s| &s.fingerprint) != Some(&wanted.fingerprint))
        .map(|(h, _)| *h)
        .collect()
}

/// The certificate and key `from`'s proxy serves for `service`, read over
/// SSH from its state directory (the admin API never returns keys), and
/// checked to be the one it reports.
async fn read_served(
    fleet: &Fleet,
    seen: &[Seen],
    from: &str,
    service: &str,
    names: &[String],
) -> Result<Certificate> {
    let step = "copy the served certificate";
    let (Some(host), Some(reported)) = (
        fleet.get(from),
        seen.iter().find(|s| s.host == from).and_then(Seen::served),
    ) else {
        return Err(Error::failed(step, "it serves no certificate").on(from));
    };
    let path = format!("{}/certificate.{service}.json", proxy::STATE_DIR);
    let out = host
        .run("cat", &["--", &path], None, ADMIN_DEADLINE)
        .await?;
    if !out.success() {
        return Err(Error::failed(
            step,
            format_args!("cannot read {path}: {}", out.stderr.trim()),
        )
        .on(from));
    }
    crate::redact::register([out.stdout.trim()]);
    #[derive(serde::Deserialize)]
    struct Saved {
        cert_pem: String,
        key_pem: String,
    }
    // serde's message could quote the key: only the position.
    let saved: Saved = serde_json::from_str(&out.stdout).map_err(|e| {
        Error::failed(
            step,
            format_args!(
                "{path} is not a certificate file (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
        .on(from)
    })?;
    certificate::register_secret(&saved.key_pem);
    let cert = certificate::check(
        &saved.cert_pem,
        &saved.key_pem,
        names,
        certificate::now_unix(),
    )
    .map_err(|p| Error::failed(step, format_args!("the certificate in {path} {p}")).on(from))?;
    if cert.fingerprint != reported.fingerprint {
        return Err(Error::failed(
            step,
            format_args!("{path} holds another certificate than the one the proxy serves"),
        )
        .on(from));
    }
    Ok(cert)
}

/// The certificate each proxy serves for `service`, in `proxies`' order.
async fn served_for(proxies: &[&Host], service: &str) -> Result<Vec<Option<CertificateStatus>>> {
    let answers = join_all(proxies.iter().map(|h| served(h))).await;
    answers
        .into_iter()
        .map(|a| a.map(|certs| certs.into_iter().find(|c| c.service == service)))
        .collect()
}

/// Every certificate `host`'s proxy serves.
pub async fn served(host: &Host) -> Result<Vec<CertificateStatus>> {
    let response = proxy::admin(host, &AdminRequest::Status, ADMIN_DEADLINE)
        .await
        .map_err(|e| e.hint("check that the proxy runs there: `ballast proxy status`"))?;
    Ok(response.status.unwrap_or_default().certificates)
}

/// Every certificate each host's proxy serves, by host.
pub async fn survey(fleet: &Fleet) -> Vec<(String, Result<Vec<CertificateStatus>>)> {
    fleet.each(|h| async move { served(h).await }).await
}

/// Reads and checks a role's certificate files (relative to the config).
fn read_files(dir: &Path, cert: &Path, key: &Path, names: &[String]) -> Result<Certificate> {
    let step = "check the certificate files";
    let read = |p: &Path| {
        std::fs::read_to_string(dir.join(p)).map_err(|e| {
            Error::input(step, format_args!("cannot read {}: {e}", p.display()))
                .hint("fix proxy.tls.cert / proxy.tls.key in the config (paths are relative to it)")
        })
    };
    let key_pem = read(key)?;
    certificate::register_secret(&key_pem);
    let chain_pem = read(cert)?;
    let (c, k) = (cert.display(), key.display());
    certificate::check(&chain_pem, &key_pem, names, certificate::now_unix()).map_err(|p| {
        let (message, hint) = match &p {
            Problem::KeyMismatch => (
                format!("the certificate in {c} does not match the key in {k}"),
                "give the key the certificate was issued for".to_string(),
            ),
            Problem::NoKey => (
                format!("{k} holds no PEM private key"),
                "proxy.tls.key must be the PEM private key of the certificate".to_string(),
            ),
            Problem::Expired(_) => (
                format!("the certificate in {c} {p}"),
                "renew it with your CA, or use `tls: { acme: ... }` to have ballast renew it".to_string(),
            ),
            Problem::NameNotCovered(name) => (
                format!("the certificate in {c} does not name `{name}`, one of the role's proxy.hosts"),
                "use a certificate whose names (subject alternative names) cover every host name of the role".to_string(),
            ),
            Problem::NoCertificate | Problem::Unreadable(_) => (
                format!("{c} {p}"),
                "proxy.tls.cert must be a PEM certificate chain, leaf first".to_string(),
            ),
        };
        Error::input(step, message).hint(hint)
    })
}

/// Sends the certificate to each proxy of `hosts`.
async fn send(
    hosts: &[&Host],
    service: &str,
    names: &[String],
    cert: &Certificate,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let request = AdminRequest::Certificate(CertificateRequest {
        service: service.to_string(),
        names: names.to_vec(),
        cert_pem: cert.chain_pem.clone(),
        key_pem: cert.key_pem.clone(),
    });
    let answers = join_all(
        hosts
            .iter()
            .map(|h| proxy::admin(h, &request, ADMIN_DEADLINE)),
    )
    .await;
    let mut first_error = None;
    for (host, answer) in hosts.iter().zip(answers) {
        let refused = match answer {
            Ok(r) if r.ok => {
                say(
                    on_event,
                    Some(host.name()),
                    format!(
                        "certificate for {} installed ({}…, expires {})",
                        names.join(", "),
                        &cert.fingerprint[..12],
                        certificate::unix_date(cert.not_after_unix)
                    ),
                );
                continue;
            }
            Ok(r) => Error::failed(
                "install the certificate",
                format_args!(
                    "the proxy refused the certificate of {service}: {}",
                    r.error.unwrap_or_default()
                ),
            )
            .on(host.name())
            .hint("the proxy keeps serving its previous certificate; fix what it names and deploy again"),
            Err(e) => e,
        };
        first_error.get_or_insert(refused);
    }
    first_error.map_or(Ok(()), Err)
}
