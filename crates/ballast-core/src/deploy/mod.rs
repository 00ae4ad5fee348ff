//! A whole deploy or rollback: connect to every host, take the lock, choose
//! the release, deliver its image where it is missing, plan, roll batch by
//! batch (a failed host halts the rollout), record the outcome in the audit
//! log, and release the lock whatever happened.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::{stream, StreamExt};
use serde::Serialize;

use crate::config::{Batch as BatchSetting, Loaded};
use crate::delivery::{self, DeliveryReport};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host::Reach;
use crate::plan::{self, BatchSize, HostPlan, Plan, RoleTarget};
use crate::release::{self, AppContainer};
use crate::rollout::{self, Rollout, RolloutEvent};
use crate::spec::{health_mode, ReleaseStamp, RoleSpec};
use crate::state::{self, LockInfo};

mod audit;
mod gate;
mod proxies;
mod rollback;

use audit::audit;
use gate::doctor_gate;
use proxies::proxy_route;
pub use proxies::{ensure_proxies, ensure_proxies_with, proxied_hosts, setup};
use rollback::choose_rollback;

/// What to roll out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// This image (a local reference or ID) as this version.
    Deploy { image: String, version: String },
    /// A release the hosts retain; `None` means the one before the current.
    Rollback(Option<String>),
}

/// Progress of a deploy, for the printer.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub host: Option<String>,
    pub message: String,
}

/// How each host ended.
#[derive(Debug, Clone, Serialize)]
pub struct HostOutcome {
    pub host: String,
    pub role: String,
    /// `updated`, `current`, `failed` or `not run` (a later batch after a failure).
    pub outcome: String,
    pub error: Option<String>,
}

/// The result of a deploy or rollback.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: String,
    pub image_id: String,
    pub hosts: Vec<HostOutcome>,
    pub delivered: Vec<DeliveryReport>,
    /// Seconds spent in each phase, in order.
    pub phases: Vec<(String, f64)>,
    /// Seconds of rolling spent starting, waiting for health and switching:
    /// per batch the slowest host's, summed over batches.
    pub steps: std::collections::BTreeMap<String, f64>,
}

/// Seconds per kind of step.
type Timing = std::collections::BTreeMap<&'static str, f64>;

impl Report {
    pub fn failed(&self) -> bool {
        self.hosts.iter().any(|h| h.outcome == "failed")
    }
}

/// Everything a deploy needs besides the goal.
pub struct Context<'a> {
    pub loaded: &'a Loaded,
    pub reach: &'a Reach,
    /// The command line, for the lock and the audit log.
    pub command: String,
    pub message: Option<String>,
    pub dry_run: bool,
    /// Hosts to deploy to even though doctor blocks them.
    pub force_unsafe: Vec<String>,
}

type OnEvent<'e> = &'e (dyn Fn(Event) + Send + Sync);

/// Runs a deploy or rollback. The lock is released and the audit line written
/// on success and on failure alike. With `dry_run`, stops after planning.
pub async fn run(ctx: &Context<'_>, goal: &Goal, on_event: OnEvent<'_>) -> Result<(Plan, Report)> {
    let config = &ctx.loaded.config;
    let names = config.hosts();
    let concurrency = config
        .ssh
        .concurrency
        .unwrap_or_else(crate::config::defaults::concurrency);
    let mut phases = Vec::new();
    let started = Instant::now();
    say(
        on_event,
        None,
        format!("connecting to {} hosts", names.len()),
    );
    let fleet = Fleet::connect(&names, ctx.reach, concurrency).await;
    phases.push(("connect".to_string(), started.elapsed().as_secs_f64()));
    let result = async {
        fleet.require_all("connect to the hosts")?;
        if ctx.dry_run {
            let (plan, report) = prepare(ctx, &fleet, goal, on_event, &mut phases).await?;
            return Ok((plan, report));
        }
        locked(ctx, &fleet, goal, on_event, &mut phases).await
    }
    .await;
    fleet.close().await;
    result
}

async fn locked(
    ctx: &Context<'_>,
    fleet: &Fleet,
    goal: &Goal,
    on_event: OnEvent<'_>,
    phases: &mut Vec<(String, f64)>,
) -> Result<(Plan, Report)> {
    let service = &ctx.loaded.config.service;
    let forced = doctor_gate(ctx, fleet, on_event).await?;
    let primary = fleet.primary().expect("require_all passed, so hosts exist");
    state::acquire_lock(
        primary,
        service,
        &LockInfo::new(&ctx.command, ctx.message.clone()),
    )
    .await?;
    say(on_event, Some(primary.name()), "lock taken".into());
    let outcome = async {
        let (plan, mut report) = prepare(ctx, fleet, goal, on_event, phases).await?;
        execute(ctx, fleet, &plan, &mut report, on_event, phases).await;
        Ok::<_, Error>((plan, report))
    }
    .await;
    audit(ctx, fleet, &outcome, forced, on_event).await;
    let released = state::release_lock(primary, service).await;
    say(on_event, Some(primary.name()), "lock released".into());
    let (plan, report) = outcome?;
    released?;
    Ok((plan, report))
}

/// Chooses the release, plans, and delivers the image where needed.
async fn prepare(
    ctx: &Context<'_>,
    fleet: &Fleet,
    goal: &Goal,
    on_event: OnEvent<'_>,
    phases: &mut Vec<(String, f64)>,
) -> Result<(Plan, Report)> {
    let config = &ctx.loaded.config;
    let started = Instant::now();
    let observed = observe(fleet, &config.service).await?;
    let (version, image_id, image_ref, digests) = match goal {
        Goal::Deploy { image, version } => {
            let local = Engine::local().await?;
            let id = match local.image_id(image).await? {
                Some(id) => id,
                // `plan` before a build: every host will need the new image.
                None if ctx.dry_run => "(not built yet)".to_string(),
                None => {
                    return Err(Error::input("find the image", format_args!("{image} is not on this machine"))
                        .hint("build it first (ballast builds it when the config has `build`), or give an image that exists locally"))
                }
            };
            (version.clone(), id, Some(image.clone()), None)
        }
        Goal::Rollback(wanted) => {
            let (version, id, digests) = choose_rollback(&observed, wanted.as_deref())?;
            say(on_event, None, format!("rolling back to {version}"));
            (version, id, None, Some(digests))
        }
    };
    let targets = role_targets(ctx, &version, &image_id, digests.as_ref(), &observed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let plan = plan::plan(
        &config.service,
        &targets,
        batch_size(&config.deploy.batch),
        config.deploy.retain,
        &observed,
        now,
    );
    phases.push(("plan".to_string(), started.elapsed().as_secs_f64()));
    let mut report = Report {
        version,
        image_id: image_id.clone(),
        hosts: Vec::new(),
        delivered: Vec::new(),
        phases: Vec::new(),
        steps: Default::default(),
    };
    if ctx.dry_run {
        return Ok((plan, report));
    }
    let started = Instant::now();
    report.delivered =
        deliver(ctx, fleet, &plan, image_ref.as_deref(), &image_id, on_event).await?;
    ensure_proxies(ctx, fleet, on_event).await?;
    phases.push(("deliver".to_string(), started.elapsed().as_secs_f64()));
    Ok((plan, report))
}

async fn observe(fleet: &Fleet, service: &str) -> Result<HashMap<String, Vec<AppContainer>>> {
    let mut observed = HashMap::new();
    for (name, found) in release::observe_fleet(fleet, service).await {
        observed.insert(name, found?);
    }
    Ok(observed)
}

fn role_targets(
    ctx: &Context<'_>,
    version: &str,
    image_id: &str,
    rollback_digests: Option<&HashMap<String, String>>,
    _observed: &HashMap<String, Vec<AppContainer>>,
) -> Vec<RoleTarget> {
    let config = &ctx.loaded.config;
    let secret = |n: &str| ctx.loaded.secrets.get(n).map(str::to_string);
    config
        .roles
        .iter()
        .map(|(name, role)| {
            let hosts: Vec<String> = role.hosts.iter().map(|h| h.address().to_string()).collect();
            let first = hosts.first().cloned().unwrap_or_default();
            let spec = RoleSpec::new(config, name, role, &first);
            let digest = rollback_digests
                .and_then(|d| d.get(name).cloned())
                .unwrap_or_else(|| spec.digest(&secret));
            RoleTarget {
                role: name.to_string(),
                hosts,
                version: version.to_string(),
                image_id: image_id.to_string(),
                digest,
                publishes: !spec.publish.is_empty(),
                proxied: role.proxy.is_some(),
            }
        })
        .collect()
}

fn batch_size(setting: &BatchSetting) -> BatchSize {
    match setting {
        BatchSetting::Count(n) => BatchSize::Count(*n),
        BatchSetting::Percent(p) => {
            BatchSize::Percent(p.trim_end_matches('%').trim().parse().unwrap_or(100))
        }
    }
}

/// Sends the image to every host that will create a container from it and
/// lacks it. Rollbacks never deliver: their images are on the hosts already.
async fn deliver(
    ctx: &Context<'_>,
    fleet: &Fleet,
    plan: &Plan,
    image_ref: Option<&str>,
    image_id: &str,
    on_event: OnEvent<'_>,
) -> Result<Vec<DeliveryReport>> {
    let mut needy: Vec<&str> = plan
        .host_plans()
        .filter(|p| {
            p.steps
                .iter()
                .any(|s| matches!(s, plan::Step::Create { .. }))
        })
        .map(|p| p.host.as_str())
        .collect();
    needy.sort();
    needy.dedup();
    let Some(reference) = image_ref else {
        return Ok(Vec::new());
    };
    if needy.is_empty() {
        return Ok(Vec::new());
    }
    let local = Engine::local().await?;
    say(
        on_event,
        None,
        format!("delivering {reference} to {} hosts", needy.len()),
    );
    let prepared = delivery::prepare(&local, reference).await?;
    debug_assert_eq!(prepared.image_id(), image_id);
    let concurrency = ctx
        .loaded
        .config
        .ssh
        .concurrency
        .unwrap_or_else(crate::config::defaults::concurrency);
    let results: Vec<Result<DeliveryReport>> = stream::iter(needy)
        .map(|name| {
            let prepared = &prepared;
            async move {
                let host = fleet.get(name).expect("connected");
                let report = prepared.send(host.engine(), &mut |_| {}).await?;
                say(
                    on_event,
                    Some(name),
                    if report.skipped {
                        "image already present".to_string()
                    } else {
                        format!(
                            "image delivered: {} of {} layers, {} bytes",
                            report.layers_sent, report.layers_total, report.bytes_sent
                        )
                    },
                );
                Ok(report)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Rolls batch by batch; the first batch with a failed host is the last.
async fn execute(
    ctx: &Context<'_>,
    fleet: &Fleet,
    plan: &Plan,
    report: &mut Report,
    on_event: OnEvent<'_>,
    phases: &mut Vec<(String, f64)>,
) {
    let started = Instant::now();
    let mut halted = false;
    let mut step_times = Timing::new();
    for batch in &plan.batches {
        if halted {
            report
                .hosts
                .extend(batch.hosts.iter().map(|p| outcome(p, "not run", None)));
            continue;
        }
        let (version, image_id) = (report.version.as_str(), report.image_id.as_str());
        let results: Vec<(&HostPlan, (Result<()>, Timing))> = stream::iter(batch.hosts.iter())
            .map(|p| async move {
                (
                    p,
                    roll_host(ctx, fleet, p, version, image_id, on_event).await,
                )
            })
            .buffer_unordered(batch.hosts.len().max(1))
            .collect()
            .await;
        // Hosts of a batch roll together: the slowest one sets the pace.
        let mut slowest = Timing::new();
        for (_, (_, timing)) in &results {
            for (phase, secs) in timing {
                let e = slowest.entry(phase).or_default();
                *e = e.max(*secs);
            }
        }
        for (phase, secs) in slowest {
            *step_times.entry(phase).or_default() += secs;
        }
        for (p, (r, _)) in results {
            match r {
                Ok(()) if p.is_current() => report.hosts.push(outcome(p, "current", None)),
                Ok(()) => report.hosts.push(outcome(p, "updated", None)),
                Err(e) => {
                    halted = true;
                    report.hosts.push(outcome(p, "failed", Some(e.to_string())));
                }
            }
        }
    }
    report
        .hosts
        .sort_by(|a, b| (&a.role, &a.host).cmp(&(&b.role, &b.host)));
    phases.push(("roll".to_string(), started.elapsed().as_secs_f64()));
    report.phases = phases.clone();
    report.steps = step_times
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
}

fn outcome(p: &HostPlan, outcome: &str, error: Option<String>) -> HostOutcome {
    HostOutcome {
        host: p.host.clone(),
        role: p.role.clone(),
        outcome: outcome.to_string(),
        error,
    }
}

async fn roll_host(
    ctx: &Context<'_>,
    fleet: &Fleet,
    p: &HostPlan,
    version: &str,
    image_id: &str,
    on_event: OnEvent<'_>,
) -> (Result<()>, Timing) {
    let mut timing = Timing::new();
    if p.is_current() {
        say(
            on_event,
            Some(&p.host),
            format!("{} already runs {}", p.role, p.target),
        );
        return (Ok(()), timing);
    }
    let config = &ctx.loaded.config;
    let host = fleet.get(&p.host).expect("connected");
    let role = &config.roles[&p.role];
    let spec = RoleSpec::new(config, &p.role, role, &p.host);
    let secret = |n: &str| ctx.loaded.secrets.get(n).map(str::to_string);
    let digest = spec.digest(&secret);
    let has_healthcheck = image_has_healthcheck(host.engine(), image_id).await;
    let rollout = Rollout {
        body: spec.container(
            &ReleaseStamp {
                service: config.service.clone(),
                version: version.to_string(),
                image_id: image_id.to_string(),
                digest,
                deployed_by: state::whoami(),
                deployed_at: state::now_rfc3339(),
            },
            &secret,
        ),
        health: health_mode(role, has_healthcheck),
        health_timeout: config.deploy.health_timeout,
        stop_timeout: spec.stop_timeout,
        route: proxy_route(ctx, &p.role),
    };
    let name = p.host.clone();
    let result = rollout::run(host, p, &rollout, &mut |e| match e {
        RolloutEvent::Done(step, took) => {
            *timing.entry(step.phase()).or_default() += took.as_secs_f64();
            say(on_event, Some(&name), step.describe())
        }
        RolloutEvent::Warning(w) => say(on_event, Some(&name), format!("warning: {w}")),
        RolloutEvent::Undo(u) => say(on_event, Some(&name), format!("undo: {u}")),
    })
    .await;
    (result, timing)
}

async fn image_has_healthcheck(engine: &Engine, image_id: &str) -> bool {
    engine
        .call("inspect the image", engine.docker().inspect_image(image_id))
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.healthcheck)
        .and_then(|h| h.test)
        .is_some_and(|t| !t.is_empty() && t[0] != "NONE")
}

fn say(on_event: OnEvent<'_>, host: Option<&str>, message: String) {
    on_event(Event {
        host: host.map(str::to_string),
        message,
    });
}
