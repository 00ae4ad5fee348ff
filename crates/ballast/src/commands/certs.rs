//! `ballast proxy certs`: each host's certificates, and `--renew` /
//! `--force-renew` under the deploy lock (the work is in
//! `ballast_core::deploy::certs`). A renewal that could not happen fails
//! the command after the list, even while the served certificates are
//! still valid (a deploy only warns then), so a scheduled run notices.

use std::path::Path;

use ballast_core::certificate::unix_date;
use ballast_core::change::{self, Change};
use ballast_core::deploy::certs::{self as core_certs, Renewal};
use ballast_core::deploy::{Context, Event};
use ballast_core::fleet::Fleet;
use ballast_core::Result;

use crate::cli::ScopeArgs;
use crate::commands::service;
use crate::output::Printer;
use crate::signals;

/// Renews (when asked) under the lock, then lists what each proxy serves.
pub async fn run(
    config: &Path,
    accept_new: bool,
    args: ScopeArgs,
    renew: bool,
    force_renew: bool,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args)?;
    let renewal = match (renew, force_renew) {
        (_, true) => Some(Renewal::Force),
        (true, false) => Some(Renewal::WhenDue),
        (false, false) => None,
    };
    let reach = service::reach(&loaded, accept_new);
    let hosts: Vec<String> = ballast_core::deploy::proxied_hosts(&loaded.config)
        .into_keys()
        .filter(|h| scope.hosts_of(&loaded.config).contains(h))
        .collect();
    if hosts.is_empty() {
        return Err(change::nothing_to_do("choose the proxies"));
    }
    let scope =
        ballast_core::scope::Scope::new(&loaded.config, hosts.clone(), args.roles.clone(), false)?;
    let list = async |fleet: &Fleet| Ok::<_, ballast_core::Error>(core_certs::survey(fleet).await);
    let mut not_renewed = Vec::new();
    let surveyed = match renewal {
        None => {
            let fleet = service::fleet_in(&loaded, accept_new, &scope).await;
            let surveyed = list(&fleet).await;
            for e in &fleet.unreachable {
                out.progress(e.host.as_deref(), &format!("did not answer: {}", e.cause));
            }
            fleet.close().await;
            surveyed?
        }
        Some(renewal) => {
            let command = if renewal == Renewal::Force {
                "proxy certs --force-renew"
            } else {
                "proxy certs --renew"
            };
            let ctx = Context {
                loaded: &loaded,
                reach: &reach,
                command: command.into(),
                message: None,
                dry_run: false,
                force_unsafe: Vec::new(),
                scope: scope.clone(),
                cancel: signals::cancel_on_signals(),
            };
            let change = Change {
                loaded: &loaded,
                reach: &reach,
                command: command.into(),
                scope,
            };
            let on_event = |e: Event| out.progress(e.host.as_deref(), &e.message);
            let (deferred, surveyed) = change::run(&change, async |fleet: &Fleet| {
                let deferred =
                    core_certs::install_with(&ctx, fleet, &hosts, renewal, &on_event).await?;
                Ok((deferred, list(fleet).await?))
            })
            .await?;
            not_renewed = deferred;
            surveyed
        }
    };
    let mut text = String::new();
    let mut json = Vec::new();
    for (host, answer) in surveyed {
        match answer {
            Ok(certs) => {
                if certs.is_empty() {
                    text.push_str(&format!("{host}: no certificate\n"));
                }
                for c in &certs {
                    text.push_str(&format!(
                        "{host}: {} [{}] expires {} sha256 {}\n",
                        c.service,
                        c.names.join(", "),
                        unix_date(c.not_after_unix),
                        c.fingerprint.get(..16).unwrap_or(&c.fingerprint),
                    ));
                }
                json.push(serde_json::json!({"host": host, "certificates": certs}));
            }
            Err(e) => {
                text.push_str(&format!("{host}: no proxy answers: {}\n", e.cause));
                json.push(serde_json::json!({"host": host, "error": e.cause}));
            }
        }
    }
    out.result(&serde_json::json!({"proxies": json}), text.trim_end());
    // A renewal that could not happen fails the command, so a cron job or
    // CI schedule notices, although the proxies still serve valid
    // certificates (a deploy only warns).
    match not_renewed.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(first),
    }
}
