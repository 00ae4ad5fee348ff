//! Certificates from the config to every host's proxy: each proxied role
//! with `proxy.tls` gets its certificate (files checked on the operator's
//! machine first, or obtained by ACME when due) sent through the admin API
//! over SSH to the proxies of its hosts, where new TLS handshakes use it.
//! A proxy that already serves the same certificate is left alone; one
//! that refuses it keeps serving its previous one.

use std::path::Path;
use std::time::Duration;

use ballast_proxy_wire::{AdminRequest, CertificateRequest, CertificateStatus};
use futures_util::future::join_all;

use super::{say, Context, OnEvent};
use crate::certificate::{self, Certificate, Problem};
use crate::config::{Acme, TlsSource};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host::Host;
use crate::proxy;

const ADMIN_DEADLINE: Duration = Duration::from_secs(15);

/// When an ACME certificate is obtained again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// When a host lacks it or it expires within `renew_before`.
    WhenDue,
    /// Now, whatever its expiry (`ballast proxy certs --force-renew`).
    Force,
}

/// Puts each proxied role's certificate on the proxies of `hosts`,
/// obtaining ACME certificates that are due.
pub(super) async fn install(
    ctx: &Context<'_>,
    fleet: &Fleet,
    hosts: &[String],
    on_event: OnEvent<'_>,
) -> Result<()> {
    install_with(ctx, fleet, hosts, Renewal::WhenDue, on_event).await
}

/// [`install`], renewing ACME certificates as `renewal` says.
pub async fn install_with(
    ctx: &Context<'_>,
    fleet: &Fleet,
    hosts: &[String],
    renewal: Renewal,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let config = &ctx.loaded.config;
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
        let proxies: Vec<&Host> = role
            .hosts
            .iter()
            .map(|h| h.address())
            .filter(|h| hosts.iter().any(|w| w == h))
            .filter_map(|h| fleet.get(h))
            .collect();
        if proxies.is_empty() {
            continue;
        }
        let service = proxy::route_name(&config.service, role_name);
        let names = &settings.hosts;
        let served = served_for(&proxies, &service).await?;
        let wanted = match source {
            TlsSource::Files { cert, key } => {
                read_files(ctx.loaded.dir.as_path(), cert, key, names)?
            }
            TlsSource::Acme(acme) => {
                let due = renewal == Renewal::Force
                    || served.iter().any(|s| is_due(s.as_ref(), names, acme));
                if !due {
                    continue;
                }
                let ca = acme.ca.as_ref().map(|p| ctx.loaded.dir.join(p));
                let order = crate::acme::Order {
                    acme,
                    ca: ca.as_deref(),
                    names,
                    account_host: proxies[0],
                    proxies: &proxies,
                };
                let speak = |m: String| say(on_event, None, m);
                crate::acme::obtain(&order, &speak).await?
            }
        };
        let stale: Vec<&Host> = proxies
            .iter()
            .zip(&served)
            .filter(|(_, s)| {
                renewal == Renewal::Force
                    || s.as_ref().map(|s| &s.fingerprint) != Some(&wanted.fingerprint)
            })
            .map(|(h, _)| *h)
            .collect();
        send(&stale, &service, names, &wanted, on_event).await?;
    }
    Ok(())
}

/// Whether the certificate a proxy serves for the role must be obtained
/// again: missing, for other names, or expiring within `renew_before`.
fn is_due(served: Option<&CertificateStatus>, names: &[String], acme: &Acme) -> bool {
    let Some(s) = served else { return true };
    let mut have = s.names.clone();
    let mut want = names.to_vec();
    have.sort();
    want.sort();
    have != want
        || s.not_after_unix < certificate::now_unix().saturating_add(acme.renew_before.as_secs())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn acme(renew_days: u64) -> Acme {
        Acme {
            email: "ops@example.com".into(),
            directory: "https://ca.test/dir".into(),
            ca: None,
            renew_before: Duration::from_secs(renew_days * 86_400),
        }
    }

    fn served(names: &[&str], days_left: u64) -> CertificateStatus {
        CertificateStatus {
            service: "shop-web".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            not_after_unix: certificate::now_unix() + days_left * 86_400,
            fingerprint: "ab".repeat(32),
        }
    }

    #[test]
    fn an_acme_certificate_is_due_when_missing_expiring_or_for_other_names() {
        let names = vec!["b.test".to_string(), "a.test".to_string()];
        assert!(is_due(None, &names, &acme(30)));
        assert!(!is_due(
            Some(&served(&["a.test", "b.test"], 60)),
            &names,
            &acme(30)
        ));
        assert!(is_due(
            Some(&served(&["a.test", "b.test"], 20)),
            &names,
            &acme(30)
        ));
        assert!(is_due(Some(&served(&["a.test"], 60)), &names, &acme(30)));
    }
}
