//! `ballast proxy run|status` and `ballast setup`: the on-host proxy.

use std::path::Path;
use std::time::Duration;

use ballast_core::change::{self, Change};
use ballast_core::config::Loaded;
use ballast_core::deploy::{self, Context, Event};
use ballast_core::fleet::Fleet;
use ballast_core::scope::Scope;
use ballast_core::{proxy, Error, ErrorKind, Result};
use ballast_proxy::wire::{AdminRequest, MaintenanceRequest, PauseRequest, ResumeRequest};
use ballast_proxy::{ProxyConfig, TlsFiles};
use tokio_util::sync::CancellationToken;

use crate::cli::{ProxyCommand, ProxyRunArgs, ScopeArgs};
use crate::commands::service;
use crate::output::Printer;
use crate::signals;

/// Runs one `ballast proxy` subcommand.
pub async fn dispatch(
    command: ProxyCommand,
    config: &Path,
    accept: bool,
    out: &Printer,
) -> Result<()> {
    let only = |role: &Option<String>| role.clone();
    match command {
        ProxyCommand::Run(args) => run(args).await,
        ProxyCommand::Status(scope) => status(config, accept, scope, out).await,
        ProxyCommand::Logs {
            scope,
            follow,
            tail,
        } => logs(config, accept, scope, follow, tail, out).await,
        ProxyCommand::Restart(scope) => restart(config, accept, scope, out).await,
        ProxyCommand::Upgrade(scope) => upgrade(config, accept, scope, out).await,
        ProxyCommand::Certs {
            scope,
            renew,
            force_renew,
        } => crate::commands::certs::run(config, accept, scope, renew, force_renew, out).await,
        ProxyCommand::Maintenance { state, role } => {
            let on = state == "on";
            let make = move |service| AdminRequest::Maintenance(MaintenanceRequest { service, on });
            let said = if on {
                "in maintenance (503)"
            } else {
                "routed again"
            };
            command_each(config, accept, only(&role).as_deref(), make, said, out).await
        }
        ProxyCommand::Pause { role, max } => {
            let max_ms = max.as_millis() as u64;
            let make = move |service| AdminRequest::Pause(PauseRequest { service, max_ms });
            command_each(config, accept, only(&role).as_deref(), make, "paused", out).await
        }
        ProxyCommand::Resume { role } => {
            let make = |service| AdminRequest::Resume(ResumeRequest { service });
            command_each(config, accept, only(&role).as_deref(), make, "resumed", out).await
        }
    }
}

/// Runs the proxy until SIGTERM or SIGINT.
async fn run(args: ProxyRunArgs) -> Result<()> {
    let mut config = ProxyConfig::new(
        args.http
            .first()
            .copied()
            .unwrap_or(([0, 0, 0, 0], 80).into()),
        &args.admin_socket,
        &args.state_dir,
    );
    config.http = args.http;
    config.https = args.https;
    config.workers = args.workers;
    config.trusted_proxies = args.trusted_proxies;
    config.timeouts.shutdown_grace = args.drain_timeout;
    if let Some(socket) = args.takeover_socket {
        config.takeover_socket = socket;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { cert, key });
    }
    ballast_proxy::run(config, stop_signal())
        .await
        .map_err(|e| Error::failed("run the proxy", e))
}

/// Resolves at SIGTERM or Ctrl-C. SIGTERM is caught from the call on, not
/// from the first poll: one that arrives while the proxy starts (or takes
/// over) then stops it gracefully once started, instead of killing it
/// mid-takeover.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    async move {
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

async fn status(config: &Path, accept_new: bool, args: ScopeArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args)?;
    let fleet = service::fleet_in(&loaded, accept_new, &scope).await;
    let answers =
        fleet
            .each(|h| async move {
                proxy::admin(h, &AdminRequest::Status, Duration::from_secs(10)).await
            })
            .await;
    let mut text = String::new();
    let mut json = Vec::new();
    for e in &fleet.unreachable {
        text.push_str(&format!("{}\n", e));
    }
    for (host, answer) in answers {
        match answer {
            Ok(response) => {
                let status = response.status.unwrap_or_default();
                text.push_str(&format!(
                    "{host}: proxy {} (process {}) on {}\n",
                    status.version,
                    status.instance,
                    status.listeners.join(", ")
                ));
                for s in &status.services {
                    let targets: Vec<String> = s
                        .targets
                        .iter()
                        .map(|t| format!("{} ({} in flight)", t.addr, t.in_flight))
                        .collect();
                    text.push_str(&format!(
                        "  {} hosts={:?} prefix={} -> {}{}{}\n",
                        s.name,
                        s.hosts,
                        s.path_prefix,
                        targets.join(", "),
                        if s.maintenance { " [maintenance]" } else { "" },
                        if s.paused { " [paused]" } else { "" }
                    ));
                }
                json.push(serde_json::json!({"host": host, "status": status}));
            }
            Err(e) => {
                text.push_str(&format!("{host}: no proxy answers: {}\n", e.cause));
                json.push(serde_json::json!({"host": host, "error": e.cause}));
            }
        }
    }
    fleet.close().await;
    out.result(&serde_json::json!({"proxies": json}), &text);
    Ok(())
}

pub async fn setup(
    config: &Path,
    accept_new: bool,
    force_unsafe: Vec<String>,
    mut machines: ballast_core::setup::Options,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    machines.registry_ca = ballast_core::setup::registry_ca(&loaded)?;
    let reach = service::reach(&loaded, accept_new);
    let on_event = |e: Event| out.progress(e.host.as_deref(), &e.message);
    let hosts = loaded.config.all_hosts();
    // This machine's own engine (`local`) is not set up over SSH.
    let machines_in: Vec<String> = loaded
        .config
        .all_hosts()
        .into_iter()
        .filter(|h| h != ballast_core::host::LOCAL)
        .collect();
    let plans =
        ballast_core::setup::prepare(&loaded.config, &reach, &machines_in, &machines, &on_event)
            .await?;
    let ctx = Context {
        loaded: &loaded,
        reach: &reach,
        command: setup_command(&machines),
        message: None,
        dry_run: false,
        force_unsafe,
        scope: Scope::all(),
        cancel: signals::cancel_on_signals(),
    };
    deploy::setup(&ctx, &on_event).await?;
    let changed: Vec<&str> = plans
        .iter()
        .filter(|p| !p.steps.is_empty())
        .map(|p| p.host.as_str())
        .collect();
    let notices: Vec<serde_json::Value> = plans
        .iter()
        .flat_map(|p| {
            p.notices.iter().map(|n| {
                serde_json::json!({"host": p.host, "notice": ballast_core::setup::notice_text(n)})
            })
        })
        .collect();
    let summary = match (changed.len(), notices.len()) {
        (0, 0) => "every host is ready; no machine needed a change".to_string(),
        (0, n) => format!("every host is ready; no machine changed; {n} notice(s) above"),
        (c, 0) => format!("every host is ready; {c} machine(s) changed"),
        (c, n) => format!("every host is ready; {c} machine(s) changed; {n} notice(s) above"),
    };
    out.result(
        &serde_json::json!({"ready": hosts, "machines_changed": changed, "notices": notices}),
        &summary,
    );
    Ok(())
}

/// The command line of a setup, for the lock and the audit log.
fn setup_command(machines: &ballast_core::setup::Options) -> String {
    let mut command = "setup".to_string();
    if machines.upgrade_docker {
        command.push_str(" --upgrade-docker");
    }
    if machines.restart_docker {
        command.push_str(" --restart-docker");
    }
    command
}

async fn logs(
    config: &Path,
    accept_new: bool,
    args: ScopeArgs,
    follow: bool,
    tail: usize,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args)?;
    let fleet = service::fleet_in(&loaded, accept_new, &scope).await;
    for e in &fleet.unreachable {
        out.progress(e.host.as_deref(), &format!("did not answer: {}", e.cause));
    }
    let sources = ballast_core::logs::proxy_sources(&fleet, &loaded.config);
    let window = ballast_core::logs::Window {
        follow,
        tail,
        since: None,
    };
    crate::commands::logs::print(sources, &window, None, out).await;
    fleet.close().await;
    Ok(())
}

/// Between hosts, an interrupt stops the command (the lock is released and
/// the audit line written by the caller).
fn stop_if_interrupted(cancel: &CancellationToken, next: &str) -> Result<()> {
    if cancel.is_cancelled() {
        return Err(Error::new(
            ErrorKind::Interrupted,
            format!("go on to {next}"),
            "interrupted by the operator",
        )
        .hint("the hosts before it were done; run the command again to finish"));
    }
    Ok(())
}

/// The proxied hosts in scope, in order.
fn proxied_in(loaded: &Loaded, scope: &Scope) -> Result<Vec<String>> {
    let hosts: Vec<String> = deploy::proxied_hosts(&loaded.config)
        .into_keys()
        .filter(|h| scope.hosts_of(&loaded.config).contains(h))
        .collect();
    if hosts.is_empty() {
        return Err(change::nothing_to_do("choose the proxies"));
    }
    Ok(hosts)
}

/// A fresh proxy process on each host in scope, one host at a time, each
/// by takeover (no connection refused), under the deploy lock.
async fn restart(config: &Path, accept_new: bool, args: ScopeArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args)?;
    let hosts = proxied_in(&loaded, &scope)?;
    let reach = service::reach(&loaded, accept_new);
    let change = Change {
        loaded: &loaded,
        reach: &reach,
        command: "proxy restart".into(),
        scope: Scope::new(&loaded.config, hosts.clone(), Vec::new(), false)?,
    };
    let cancel = signals::cancel_on_signals();
    change::run(&change, async |fleet: &Fleet| {
        for name in &hosts {
            stop_if_interrupted(&cancel, name)?;
            let host = fleet.get(name).expect("connected");
            let said = match proxy::restart(host).await? {
                proxy::Replaced::StoppedFirst => {
                    "proxy restarted in place (from before host networking: `ballast proxy upgrade` makes the next restart lose nothing)"
                }
                _ => "a fresh proxy process took over; the old one drained and exited",
            };
            out.progress(Some(name), said);
        }
        Ok(())
    })
    .await?;
    out.result(
        &serde_json::json!({"restarted": hosts}),
        "every proxy restarted",
    );
    Ok(())
}

/// Moves the proxies in scope to the image built from this ballast, one
/// host at a time, each by takeover, under the deploy lock.
async fn upgrade(config: &Path, accept_new: bool, args: ScopeArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args)?;
    let hosts = proxied_in(&loaded, &scope)?;
    let reach = service::reach(&loaded, accept_new);
    let scope = Scope::new(&loaded.config, hosts.clone(), Vec::new(), false)?;
    let ctx = Context {
        loaded: &loaded,
        reach: &reach,
        command: "proxy upgrade".into(),
        message: None,
        dry_run: false,
        force_unsafe: Vec::new(),
        scope: scope.clone(),
        cancel: signals::cancel_on_signals(),
    };
    let change = Change {
        loaded: &loaded,
        reach: &reach,
        command: ctx.command.clone(),
        scope,
    };
    let on_event = |e: Event| out.progress(e.host.as_deref(), &e.message);
    let done = change::run(&change, async |fleet: &Fleet| {
        deploy::upgrade_proxies(&ctx, fleet, &on_event).await
    })
    .await?;
    let json: Vec<serde_json::Value> = done
        .iter()
        .map(|(host, replaced)| serde_json::json!({"host": host, "replaced": replaced}))
        .collect();
    out.result(
        &serde_json::json!({"upgraded": json}),
        "every proxy runs this ballast's build",
    );
    Ok(())
}

/// Sends one admin command per proxied role (or `only`) to each of its hosts.
async fn command_each(
    config: &Path,
    accept_new: bool,
    only: Option<&str>,
    make: impl Fn(String) -> AdminRequest,
    done: &str,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    let roles: Vec<(&String, &ballast_core::config::Role)> = loaded
        .config
        .roles
        .iter()
        .filter(|(name, role)| role.proxy.is_some() && only.is_none_or(|o| o == name.as_str()))
        .collect();
    if roles.is_empty() {
        let proxied: Vec<&str> = loaded
            .config
            .roles
            .iter()
            .filter(|(_, r)| r.proxy.is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(Error::input(
            "choose the role",
            format_args!("no proxied role matches {only:?}"),
        )
        .hint(format!("proxied roles: {}", proxied.join(", "))));
    }
    let hosts: Vec<String> = roles
        .iter()
        .flat_map(|(_, role)| role.hosts.iter().map(|h| h.address().to_string()))
        .collect();
    let reach = service::reach(&loaded, accept_new);
    let change = Change {
        loaded: &loaded,
        reach: &reach,
        command: format!("proxy {done}"),
        scope: Scope::new(&loaded.config, hosts, Vec::new(), false)?,
    };
    let cancel = signals::cancel_on_signals();
    change::run(&change, async |fleet: &Fleet| {
        for (name, role) in &roles {
            let route = proxy::route_name(&loaded.config.service, name);
            for entry in &role.hosts {
                stop_if_interrupted(&cancel, entry.address())?;
                let host = fleet.get(entry.address()).expect("connected");
                proxy::admin(host, &make(route.clone()), Duration::from_secs(15)).await?;
                out.progress(Some(host.name()), &format!("{name}: {done}"));
            }
        }
        Ok::<_, Error>(())
    })
    .await?;
    out.result(&serde_json::json!({"done": done}), done);
    Ok(())
}
