//! ballast-proxy in a deploy: where each host's proxy listens, starting or
//! upgrading the proxies, how a proxied role is routed, and `setup`.

use futures_util::{stream, StreamExt};

use super::gate::doctor_gate;
use super::{say, Context, OnEvent};
use crate::delivery;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::proxy;

/// Prepares the hosts in scope, under the lock: checks them with doctor
/// (refusing blocked ones unless forced) and starts ballast-proxy where a
/// role needs it.
pub async fn setup(ctx: &Context<'_>, on_event: OnEvent<'_>) -> Result<()> {
    let change = crate::change::Change {
        loaded: ctx.loaded,
        reach: ctx.reach,
        command: ctx.command.clone(),
        scope: ctx.scope.clone(),
    };
    say(
        on_event,
        None,
        format!(
            "connecting to {} hosts",
            ctx.scope.hosts_of(&ctx.loaded.config).len()
        ),
    );
    crate::change::run(&change, async |fleet: &Fleet| {
        doctor_gate(ctx, fleet, on_event).await?;
        ensure_proxies_with(ctx, fleet, false, on_event).await
    })
    .await
}

/// How the proxy routes to `role`, if the role is proxied.
pub fn proxy_route(config: &crate::config::Config, role_name: &str) -> Option<proxy::Route> {
    let role = &config.roles[role_name];
    let settings = role.proxy.as_ref()?;
    let (path, interval, timeout) = match &role.healthcheck {
        Some(hc) => (hc.path.clone(), hc.interval, hc.timeout),
        None => (
            crate::config::defaults::health_path(),
            crate::config::defaults::interval(),
            crate::config::defaults::check_timeout(),
        ),
    };
    Some(proxy::Route {
        service: proxy::route_name(&config.service, role_name),
        hosts: settings.hosts.clone(),
        path_prefix: settings.path_prefix.clone(),
        port: role
            .healthcheck
            .as_ref()
            .and_then(|h| h.port)
            .or(role.port)
            .unwrap_or(80),
        health: ballast_proxy_wire::HealthSpec {
            path,
            // The proxy checks more often than the operator-facing interval:
            // a quicker switch, and the check is cheap.
            interval_ms: (interval.as_millis() as u64).min(250),
            timeout_ms: timeout.as_millis() as u64,
        },
        deploy_timeout: config.deploy.health_timeout,
        drain_timeout: settings.drain_timeout,
        max_request_body_bytes: settings
            .max_request_body
            .as_deref()
            .and_then(crate::config::body_bytes),
        max_response_body_bytes: settings
            .max_response_body
            .as_deref()
            .and_then(crate::config::body_bytes),
    })
}

/// The hosts of proxied roles, with what their proxy listens on.
pub fn proxied_hosts(config: &crate::config::Config) -> std::collections::BTreeMap<String, u16> {
    let mut ports = std::collections::BTreeMap::new();
    for role in config.roles.values() {
        if let Some(settings) = &role.proxy {
            for h in &role.hosts {
                ports.insert(h.address().to_string(), settings.http_port);
            }
        }
    }
    ports
}

/// What each proxied host's proxy listens on, reading TLS files from the
/// operator's machine (paths relative to the config file).
fn proxy_listens(ctx: &Context<'_>) -> Result<std::collections::BTreeMap<String, proxy::Listen>> {
    let config = &ctx.loaded.config;
    let mut listens = std::collections::BTreeMap::new();
    for role in config.roles.values() {
        let Some(settings) = &role.proxy else {
            continue;
        };
        let tls = match &settings.tls {
            None => None,
            Some(t) => {
                let read = |p: &std::path::PathBuf| {
                    let path = ctx.loaded.dir.join(p);
                    std::fs::read(&path).map_err(|e| {
                        Error::input(
                            "read the proxy's TLS files",
                            format_args!("{}: {e}", path.display()),
                        )
                        .hint("fix proxy.tls.cert / proxy.tls.key in the config")
                    })
                };
                Some(proxy::Tls {
                    https_port: t.https_port,
                    cert_pem: read(&t.cert)?,
                    key_pem: read(&t.key)?,
                })
            }
        };
        for h in &role.hosts {
            let entry = listens
                .entry(h.address().to_string())
                .or_insert(proxy::Listen {
                    http_port: settings.http_port,
                    tls: None,
                    trusted_proxies: Vec::new(),
                });
            if entry.tls.is_none() {
                entry.tls = tls.clone();
            }
            // One proxy per host: the ranges of every role there.
            entry
                .trusted_proxies
                .extend(settings.trusted_proxies.iter().cloned());
            entry.trusted_proxies.sort();
            entry.trusted_proxies.dedup();
        }
    }
    Ok(listens)
}

/// The image-and-settings digest each proxied host of `plan` should run,
/// or why it cannot be told (no static binary; for `plan`, an image not
/// built yet: planning builds nothing).
pub(super) async fn wanted_settings(
    ctx: &Context<'_>,
    plan: &crate::plan::Plan,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    if !plan.host_plans().any(|p| p.switch.route().is_some()) {
        return Ok(Default::default());
    }
    let listens = proxy_listens(ctx).map_err(|e| e.to_string())?;
    let local = Engine::local().await.map_err(|e| e.to_string())?;
    let image_id = if ctx.dry_run {
        match proxy::built_image_id(&local).await.map_err(|e| e.cause)? {
            Some(id) => id,
            None => return Err("the proxy image is built at the first deploy".into()),
        }
    } else {
        let tag = proxy::image(&local).await.map_err(|e| e.cause)?;
        local
            .image_id(&tag)
            .await
            .map_err(|e| e.cause)?
            .unwrap_or_default()
    };
    Ok(listens
        .into_iter()
        .map(|(host, listen)| (host, listen.digest(&image_id)))
        .collect())
}

/// Starts or replaces ballast-proxy on the hosts where `plan` says so.
pub(super) async fn ensure_proxies_on(
    ctx: &Context<'_>,
    fleet: &Fleet,
    plan: &crate::plan::Plan,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let wanted: std::collections::BTreeSet<&str> = plan
        .proxies
        .iter()
        .filter(|p| p.change != crate::plan::ProxyChange::Current)
        .map(|p| p.host.as_str())
        .collect();
    // One host at a time: a replaced proxy restarts, and never on every
    // host of a role at once.
    ensure_proxies_where(ctx, fleet, true, &|h| wanted.contains(h), on_event).await
}

/// Starts (or upgrades) ballast-proxy on every connected host of a proxied
/// role, delivering its image where missing; `one_at_a_time` rolls host by
/// host, so at most one proxy is restarting at any moment.
pub async fn ensure_proxies_with(
    ctx: &Context<'_>,
    fleet: &Fleet,
    one_at_a_time: bool,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let in_scope = |h: &str| ctx.scope.has_host(h);
    ensure_proxies_where(ctx, fleet, one_at_a_time, &in_scope, on_event).await
}

async fn ensure_proxies_where(
    ctx: &Context<'_>,
    fleet: &Fleet,
    one_at_a_time: bool,
    wanted: &(dyn Fn(&str) -> bool + Sync),
    on_event: OnEvent<'_>,
) -> Result<()> {
    let mut listens = proxy_listens(ctx)?;
    listens.retain(|h, _| wanted(h) && fleet.get(h).is_some());
    if listens.is_empty() {
        return Ok(());
    }
    let local = Engine::local().await?;
    let tag = proxy::image(&local).await?;
    let prepared = delivery::prepare(&local, &tag).await?;
    let image_id = prepared.image_id().to_string();
    let results: Vec<Result<()>> = stream::iter(listens.iter())
        .map(|(name, listen)| {
            let (prepared, image_id, tag) = (&prepared, &image_id, &tag);
            async move {
                if ctx.cancel.is_cancelled() {
                    return Err(crate::Error::new(
                        crate::ErrorKind::Interrupted,
                        "start the proxy",
                        "interrupted by the operator",
                    )
                    .on(name.as_str())
                    .hint("the proxies of the hosts before it were started; run the command again to finish"));
                }
                let host = fleet.get(name).expect("connected");
                prepared.send(host.engine(), &mut |_| {}).await?;
                if proxy::ensure(host, image_id, listen).await? {
                    let https = listen
                        .tls
                        .as_ref()
                        .map(|t| format!(", HTTPS on {}", t.https_port))
                        .unwrap_or_default();
                    let http = listen.http_port;
                    say(
                        on_event,
                        Some(name),
                        format!("ballast-proxy {tag} running on port {http}{https}"),
                    );
                }
                Ok(())
            }
        })
        .buffer_unordered(if one_at_a_time { 1 } else { fleet.concurrency })
        .collect()
        .await;
    results.into_iter().collect()
}

/// [`ensure_proxies_with`], all hosts at once.
pub async fn ensure_proxies(ctx: &Context<'_>, fleet: &Fleet, on_event: OnEvent<'_>) -> Result<()> {
    ensure_proxies_with(ctx, fleet, false, on_event).await
}
