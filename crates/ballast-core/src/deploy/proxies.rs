//! ballast-proxy in a deploy, `setup` and `proxy upgrade`: what each
//! host's proxy listens on, how a proxied role is routed, and carrying out
//! the proxy plans. Every replacement of a running proxy is a takeover
//! (see `proxy::lifecycle`), done one host at a time; a deploy never moves
//! a proxy to another build, it says `ballast proxy upgrade` is due.

use std::collections::BTreeMap;

use futures_util::{stream, StreamExt};

use super::{say, Context, OnEvent};
use crate::delivery;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::plan::{ProxyChange, ProxyPlan, WantedProxy};
use crate::proxy::{self, Listen, Replaced};

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

/// What the config needs each proxied host's proxy to listen on: the
/// ports and trusted ranges of every role there, the longest drain time.
pub fn listens(config: &crate::config::Config) -> BTreeMap<String, Listen> {
    let mut listens: BTreeMap<String, Listen> = BTreeMap::new();
    for role in config.roles.values() {
        let Some(settings) = &role.proxy else {
            continue;
        };
        let needs = Listen {
            http_ports: [settings.http_port].into(),
            https_ports: settings.tls.iter().map(|t| t.https_port).collect(),
            trusted_proxies: settings.trusted_proxies.iter().cloned().collect(),
            drain_timeout: settings.drain_timeout,
        };
        for h in &role.hosts {
            listens
                .entry(h.address().to_string())
                .and_modify(|l| *l = l.union(&needs))
                .or_insert_with(|| needs.clone());
        }
    }
    listens
}

/// What each proxied host of the deploy should run, or why that cannot be
/// told (no static ballast binary). Planning builds nothing.
pub(super) fn wanted_proxies(
    ctx: &Context<'_>,
    plan: &crate::plan::Plan,
) -> std::result::Result<BTreeMap<String, WantedProxy>, String> {
    if !plan.host_plans().any(|p| p.switch.route().is_some()) {
        return Ok(Default::default());
    }
    let build = proxy::image::available().map_err(|e| e.cause)?;
    Ok(listens(&ctx.loaded.config)
        .into_iter()
        .map(|(host, listen)| {
            let build = build.clone();
            (host, WantedProxy { listen, build })
        })
        .collect())
}

/// Carries out the plan's proxy changes, then installs the certificates
/// on the proxies of the plan's proxied hosts.
pub(super) async fn ensure_proxies_on(
    ctx: &Context<'_>,
    fleet: &Fleet,
    plan: &crate::plan::Plan,
    on_event: OnEvent<'_>,
) -> Result<()> {
    apply(ctx, fleet, &plan.proxies, on_event).await?;
    let mut hosts: Vec<String> = plan
        .host_plans()
        .filter(|p| p.switch.route().is_some() && fleet.get(&p.host).is_some())
        .map(|p| p.host.clone())
        .collect();
    hosts.sort();
    hosts.dedup();
    if hosts.is_empty() {
        return Ok(());
    }
    super::certs::install(ctx, fleet, &hosts, on_event).await
}

/// The proxy image of this build, built and prepared for delivery once.
struct ThisBuild {
    prepared: delivery::Prepared,
    image: proxy::Image,
    tag: String,
}

async fn this_build() -> Result<ThisBuild> {
    let local = Engine::local().await?;
    let (tag, build) = proxy::image::image(&local).await?;
    let prepared = delivery::prepare(&local, &tag).await?;
    let image = proxy::Image {
        id: prepared.image_id().to_string(),
        build,
    };
    Ok(ThisBuild {
        prepared,
        image,
        tag,
    })
}

/// Carries out proxy plans: fresh starts on many hosts at once, every
/// replacement of a running proxy one host at a time.
pub(super) async fn apply(
    ctx: &Context<'_>,
    fleet: &Fleet,
    plans: &[ProxyPlan],
    on_event: OnEvent<'_>,
) -> Result<()> {
    if let Some(why) = plans.iter().find_map(|p| match &p.change {
        ProxyChange::Unknown { why } => Some(why),
        _ => None,
    }) {
        return Err(Error::input("choose the proxy's image", why)
            .hint("run ballast built as the README says (static on x86_64 Linux), or point BALLAST_PROXY_BINARY at a static ballast"));
    }
    let needs_image = plans
        .iter()
        .any(|p| matches!(p.change, ProxyChange::Start | ProxyChange::Legacy));
    let built = match needs_image {
        true => Some(this_build().await?),
        false => None,
    };
    let built = built.as_ref();
    let (starts, others): (Vec<&ProxyPlan>, Vec<&ProxyPlan>) = plans
        .iter()
        .filter(|p| fleet.get(&p.host).is_some())
        .partition(|p| p.change == ProxyChange::Start);
    let started: Vec<Result<()>> = stream::iter(starts)
        .map(|p| apply_one(ctx, fleet, p, built, on_event))
        .buffer_unordered(fleet.concurrency)
        .collect()
        .await;
    started.into_iter().collect::<Result<()>>()?;
    for p in others {
        apply_one(ctx, fleet, p, built, on_event).await?;
    }
    Ok(())
}

async fn apply_one(
    ctx: &Context<'_>,
    fleet: &Fleet,
    p: &ProxyPlan,
    built: Option<&ThisBuild>,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let name = p.host.as_str();
    let host = fleet.get(name).expect("connected");
    let listen = p.listen.clone().unwrap_or_default();
    if p.change.acts() && ctx.cancel.is_cancelled() {
        return Err(Error::new(
            ErrorKind::Interrupted,
            "replace the proxy",
            "interrupted by the operator",
        )
        .on(name)
        .hint("the proxies of the hosts before it were done; run the command again to finish"));
    }
    let image = match &p.change {
        ProxyChange::Unknown { .. } => return Ok(()),
        // Nothing to replace; what an interrupted takeover left is finished
        // and a restart policy left at `no` restored all the same.
        ProxyChange::Current => return proxy::lifecycle::finish_leftover(host).await,
        ProxyChange::UpgradeDue { running, available } => {
            proxy::lifecycle::finish_leftover(host).await?;
            say(on_event, Some(name), format!("ballast-proxy runs {running}, this ballast has {available}: it keeps running; `ballast proxy upgrade` is due (it hands over without losing a request, one host at a time)"));
            return Ok(());
        }
        ProxyChange::Reconfigure { .. } => proxy::running_image(host).await?,
        ProxyChange::Start | ProxyChange::Legacy => {
            let built = built.expect("built when a plan starts a proxy");
            built.prepared.send(host.engine(), &mut |_| {}).await?;
            built.image.clone()
        }
    };
    if p.change == ProxyChange::Legacy {
        say(on_event, Some(name), "ballast-proxy is from before host networking and cannot hand its sockets over: replacing it stop-then-start, once (connections to this host are refused for a moment)".into());
    }
    let replaced = proxy::ensure(host, &image, &listen).await?;
    say(
        on_event,
        Some(name),
        describe(replaced, &image.build, &listen),
    );
    if let ProxyChange::Reconfigure { upgrade_due: true } = p.change {
        let ours = built
            .map(|b| b.tag.clone())
            .unwrap_or_else(|| "this ballast's".into());
        say(
            on_event,
            Some(name),
            format!("ballast-proxy runs another build than {ours}: `ballast proxy upgrade` is due"),
        );
    }
    Ok(())
}

/// What happened to a proxy, in the operator's words.
pub fn describe(replaced: Replaced, build: &proxy::Build, listen: &Listen) -> String {
    let what = listen.describe();
    match replaced {
        Replaced::Unchanged => format!("ballast-proxy {build} already runs ({what})"),
        Replaced::Started => format!("ballast-proxy {build} started ({what})"),
        Replaced::TookOver => format!("ballast-proxy {build} took over ({what}); the old process drained and exited, no connection refused"),
        Replaced::StoppedFirst => format!("ballast-proxy {build} replaced stop-then-start ({what})"),
    }
}

/// Moves the proxies of the hosts in scope to this build, one host at a
/// time, each by takeover (a legacy one stop-then-start), keeping every
/// port the running one has; then installs the certificates.
pub async fn upgrade_proxies(
    ctx: &Context<'_>,
    fleet: &Fleet,
    on_event: OnEvent<'_>,
) -> Result<Vec<(String, Replaced)>> {
    let built = this_build().await?;
    let mut done = Vec::new();
    for (name, needs) in listens(&ctx.loaded.config) {
        let Some(host) = fleet.get(&name).filter(|_| ctx.scope.has_host(&name)) else {
            continue;
        };
        if ctx.cancel.is_cancelled() {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "upgrade the proxy",
                "interrupted by the operator",
            )
            .on(name.as_str())
            .hint(
                "the proxies of the hosts before it were upgraded; run the command again to finish",
            ));
        }
        let found = proxy::lifecycle::try_observe(host).await?;
        // What the proxy there listens on stays, running or stopped:
        // another service's ports are in it.
        let listen = match &found.listen {
            Some(there) => there.union(&needs),
            None => needs,
        };
        if found.running && found.legacy {
            say(on_event, Some(&name), "ballast-proxy is from before host networking and cannot hand its sockets over: replacing it stop-then-start, once".into());
        }
        built.prepared.send(host.engine(), &mut |_| {}).await?;
        let replaced = proxy::ensure(host, &built.image, &listen).await?;
        say(
            on_event,
            Some(&name),
            describe(replaced, &built.image.build, &listen),
        );
        done.push((name, replaced));
    }
    let hosts: Vec<String> = done.iter().map(|(h, _)| h.clone()).collect();
    if !hosts.is_empty() {
        super::certs::install(ctx, fleet, &hosts, on_event).await?;
    }
    Ok(done)
}
