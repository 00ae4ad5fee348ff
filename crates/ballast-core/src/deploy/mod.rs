//! A whole deploy or rollback, by phase: connect to the hosts in scope,
//! check them with doctor, take the lock, observe and choose the release,
//! plan, deliver the image and start the proxies where the plan says,
//! roll batch by batch, record the outcome in the audit log, and release
//! the lock whatever happened (an interrupt included).
//!
//! # Layout
//! - `targets`: what each role should run on each host, from the config.
//! - `observe`: what the hosts run now, as planning needs it.
//! - `release`: the release a deploy goes to, from this machine's image.
//! - `rollback`: which retained release a rollback returns to.
//! - `prepare`: planning under the lock, then the image and the proxies.
//! - `deliver`: the image to the hosts that lack it.
//! - `execute`: batches, hosts, and the failure policy (stop or revert).
//! - `gate`, `proxies`, `audit`: doctor's gate, the proxies, the audit line.
//! - `setup`: `ballast setup`'s part under the lock.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Loaded;
use crate::delivery::DeliveryReport;
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::hooks::{Hook, HookEnv};
use crate::host::Reach;
use crate::lock::{FleetLock, LockInfo};
use crate::plan::{HostPlan, Plan};
use crate::scope::Scope;

mod audit;
pub mod certs;
mod deliver;
mod execute;
mod gate;
mod observe;
mod prepare;
mod proxies;
mod release;
mod rollback;
mod setup;
mod targets;

use audit::audit;
use gate::doctor_gate;
use prepare::{carry_out, plan_deploy, Planned};
pub use proxies::{proxied_hosts, proxy_route, upgrade_proxies};
pub use setup::setup;
pub use targets::{role_targets, Release};

/// What to roll out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// This image (a local reference or ID) as this version.
    Deploy { image: String, version: String },
    /// A release the hosts retain; `None` means the one before the current.
    Rollback(Option<String>),
}

impl Goal {
    /// The version asked for, if known before looking at the hosts.
    pub fn version(&self) -> Option<&str> {
        match self {
            Goal::Deploy { version, .. } => Some(version),
            Goal::Rollback(wanted) => wanted.as_deref(),
        }
    }

    /// The hook run once it is over.
    fn post_hook(&self) -> Hook {
        match self {
            Goal::Deploy { .. } => Hook::PostDeploy,
            Goal::Rollback(_) => Hook::PostRollback,
        }
    }
}

/// Progress of a deploy, for the printer.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub host: Option<String>,
    pub message: String,
}

/// How one host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Switched to the release.
    Updated,
    /// Already ran the release.
    Current,
    /// A step failed; the host serves what it served before.
    Failed,
    /// Not reached: an earlier batch failed.
    NotRun,
    /// Out of reach (`--skip-unreachable`); the next full deploy brings it in line.
    Skipped,
    /// Switched, then put back on its previous release (`on_failure: revert`).
    Reverted,
    /// Switched, and putting it back failed: it may run either release.
    RevertFailed,
    /// The operator interrupted; what was half done was undone.
    Interrupted,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Updated => "updated",
            Outcome::Current => "current",
            Outcome::Failed => "failed",
            Outcome::NotRun => "not run",
            Outcome::Skipped => "skipped (did not answer)",
            Outcome::Reverted => "reverted",
            Outcome::RevertFailed => "revert failed",
            Outcome::Interrupted => "interrupted",
        }
    }

    /// Whether the rollout did not do what was asked on this host.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Failed | Outcome::Reverted | Outcome::RevertFailed
        )
    }
}

/// How each host ended.
#[derive(Debug, Clone, Serialize)]
pub struct HostOutcome {
    pub host: String,
    pub role: String,
    pub outcome: Outcome,
    pub error: Option<String>,
}

impl HostOutcome {
    fn of(p: &HostPlan, outcome: Outcome, error: Option<String>) -> HostOutcome {
        HostOutcome {
            host: p.host.clone(),
            role: p.role.clone(),
            outcome,
            error,
        }
    }
}

/// The result of a deploy or rollback.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: String,
    pub image_id: String,
    pub hosts: Vec<HostOutcome>,
    /// Hosts left out because they did not answer (`--skip-unreachable`).
    pub skipped: Vec<String>,
    pub delivered: Vec<DeliveryReport>,
    /// Seconds spent in each phase, in order: `connect`, `lock` (taking
    /// it), `plan`, `check` (what doctor's gate, run beside those two,
    /// added), `deliver` (the image, and the proxies beside it), `roll`,
    /// `finish` (the audit record and giving the lock back); a deploy that
    /// builds starts with `build`.
    pub phases: Vec<(String, f64)>,
    /// Seconds of rolling spent starting, proving and switching, and
    /// stopping the old (in that order): per batch the slowest host's,
    /// summed over batches; stopping, what was left after the last switch.
    pub steps: Vec<(String, f64)>,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.hosts.iter().any(|h| h.outcome.is_failure())
    }

    pub fn interrupted(&self) -> bool {
        self.hosts.iter().any(|h| h.outcome == Outcome::Interrupted)
    }

    fn of(plan: &Plan) -> Report {
        Report {
            version: plan.version.clone(),
            image_id: plan.image_id.clone(),
            hosts: Vec::new(),
            skipped: Vec::new(),
            delivered: Vec::new(),
            phases: Vec::new(),
            steps: Default::default(),
        }
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
    /// The hosts and roles to work on.
    pub scope: Scope,
    /// Cancelled when the operator interrupts (Ctrl-C, SIGTERM, SIGHUP).
    pub cancel: CancellationToken,
}

impl Context<'_> {
    /// Runs `hook` with what this command knows so far.
    pub async fn hook(
        &self,
        hook: Hook,
        version: Option<&str>,
        outcome: Option<&str>,
        on_event: OnEvent<'_>,
    ) -> Result<()> {
        let about = HookAbout {
            loaded: self.loaded,
            scope: &self.scope,
            command: &self.command,
        };
        run_hook(&about, hook, version, outcome, on_event).await
    }
}

/// What a hook is run about.
pub struct HookAbout<'a> {
    pub loaded: &'a Loaded,
    pub scope: &'a Scope,
    pub command: &'a str,
}

/// Runs `hook` (if the operator has one) for `about`; its output is shown
/// line by line.
pub async fn run_hook(
    about: &HookAbout<'_>,
    hook: Hook,
    version: Option<&str>,
    outcome: Option<&str>,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let config = &about.loaded.config;
    let env = HookEnv {
        service: config.service.clone(),
        command: about.command.to_string(),
        version: version.map(str::to_string),
        hosts: about.scope.hosts_of(config),
        roles: config
            .roles
            .keys()
            .filter(|r| about.scope.has_role(r))
            .cloned()
            .collect(),
        performer: crate::state::whoami(),
        destination: about.loaded.destination.clone(),
        outcome: outcome.map(str::to_string),
    };
    let dir = crate::hooks::dir(&about.loaded.dir);
    let name = hook.name();
    crate::hooks::run(&dir, hook, &env, config.hooks.timeout, &|line| {
        say(on_event, None, format!("{name} | {line}"))
    })
    .await
}

pub(crate) type OnEvent<'e> = &'e (dyn Fn(Event) + Send + Sync);

/// One deploy under way: its context, its connected hosts and its printer.
pub(crate) struct Deploy<'a> {
    pub ctx: &'a Context<'a>,
    pub fleet: &'a Fleet,
    pub on_event: OnEvent<'a>,
    pub stamp: Stamp<'a>,
}

/// Who deploys and when, recorded on every new container, and the secret
/// values its definition may need.
pub(crate) struct Stamp<'a> {
    pub by: String,
    pub at: String,
    pub secret: SecretLookup<'a>,
}

/// A secret's value by name.
pub(crate) type SecretLookup<'a> = Box<dyn Fn(&str) -> Option<String> + Send + Sync + 'a>;

impl<'a> Stamp<'a> {
    fn of(loaded: &'a Loaded) -> Stamp<'a> {
        Stamp {
            by: crate::state::whoami(),
            at: crate::state::now_rfc3339(),
            secret: Box::new(|n: &str| loaded.secrets.get(n).map(str::to_string)),
        }
    }
}

/// Runs a deploy or rollback. The lock is released and the audit line
/// written on success, failure and interrupt alike. With `dry_run`, stops
/// after planning and changes nothing.
pub async fn run(ctx: &Context<'_>, goal: &Goal, on_event: OnEvent<'_>) -> Result<(Plan, Report)> {
    let names = ctx.scope.hosts_of(&ctx.loaded.config);
    if !ctx.dry_run {
        ctx.hook(Hook::PreConnect, goal.version(), None, on_event)
            .await?;
    }
    let started = Instant::now();
    say(
        on_event,
        None,
        format!("connecting to {} hosts", names.len()),
    );
    let connecting = Fleet::connect(&names, ctx.reach, ctx.loaded.config.concurrency());
    let fleet = tokio::select! {
        fleet = connecting => std::sync::Arc::new(fleet),
        () = ctx.cancel.cancelled() => return Err(interrupted("connect to the hosts")),
    };
    let connect_secs = started.elapsed().as_secs_f64();
    let d = Deploy {
        ctx,
        fleet: &fleet,
        on_event,
        stamp: Stamp::of(ctx.loaded),
    };
    let result = async {
        let skipped = reachable_or_skipped(&d)?;
        if ctx.dry_run {
            let Planned {
                plan, mut report, ..
            } = plan_deploy(&d, goal).await?;
            report.skipped = skipped;
            return Ok((plan, report));
        }
        let mut result = locked(&d, &fleet, goal, &skipped).await;
        if let Ok((_, report)) = &mut result {
            report
                .phases
                .insert(0, ("connect".to_string(), connect_secs));
            report.skipped = skipped;
        }
        result
    }
    .await;
    drop(d);
    // The lock's renewal shares the fleet until the lock is released.
    if let Ok(fleet) = std::sync::Arc::try_unwrap(fleet) {
        fleet.close().await;
    }
    result
}

/// Fails unless every host in scope answered, or names the ones skipped.
fn reachable_or_skipped(d: &Deploy<'_>) -> Result<Vec<String>> {
    let fleet = d.fleet;
    if !d.ctx.scope.skip_unreachable {
        return fleet
            .require_all("connect to the hosts")
            .map(|()| Vec::new())
            .map_err(|e| {
                let hint = e.hint.clone().unwrap_or_default();
                e.hint(format!("{hint}; or pass --skip-unreachable to go on without them (the next full deploy brings them in line)"))
            });
    }
    let skipped: Vec<String> = fleet
        .unreachable
        .iter()
        .filter_map(|e| e.host.clone())
        .collect();
    if fleet.hosts.is_empty() {
        return fleet.require_all("connect to the hosts").map(|()| skipped);
    }
    for e in &fleet.unreachable {
        say(
            d.on_event,
            e.host.as_deref(),
            format!("skipped: did not answer ({})", e.cause),
        );
    }
    Ok(skipped)
}

fn interrupted(step: &str) -> Error {
    Error::new(ErrorKind::Interrupted, step, "interrupted by the operator")
        .hint("nothing was changed on the hosts")
}

/// Takes the lock on every host in reach, rolls, audits, releases.
async fn locked(
    d: &Deploy<'_>,
    fleet: &std::sync::Arc<Fleet>,
    goal: &Goal,
    skipped: &[String],
) -> Result<(Plan, Report)> {
    let ctx = d.ctx;
    let started = Instant::now();
    let service = &ctx.loaded.config.service;
    let info = LockInfo::new(&ctx.command, ctx.message.clone())?;
    let hosts: Vec<String> = fleet.hosts.keys().cloned().collect();
    // Doctor's gate only reads; taking the lock changes nothing but the
    // lock, and planning under it only reads: they go side by side, and
    // nothing is changed until the gate has passed. A refused host gives
    // the lock back.
    let gate = async {
        tokio::select! {
            forced = doctor_gate(ctx, d.fleet, d.on_event) => forced,
            () = ctx.cancel.cancelled() => Err(interrupted("check the hosts (doctor)")),
        }
    };
    let lock_and_plan = async {
        let lock = FleetLock::acquire(fleet, &hosts, service, info, fleet.concurrency).await?;
        let lock_secs = started.elapsed().as_secs_f64();
        Ok::<_, Error>((lock, lock_secs, plan_deploy(d, goal).await))
    };
    let (forced, locked) = tokio::join!(gate, lock_and_plan);
    // A refusal by the gate says more than a lock that could not be taken
    // (on a host whose disk is full, say).
    let (forced, (lock, lock_secs, planned)) = match (forced, locked) {
        (Ok(forced), Ok(locked)) => (forced, locked),
        (Ok(_), Err(e)) | (Err(e), Err(_)) => return Err(e),
        (Err(e), Ok((lock, ..))) => {
            if let Err(r) = lock.release().await {
                say(
                    d.on_event,
                    r.host.as_deref(),
                    format!(
                        "warning: the lock was not released: {r}; `ballast lock status` shows it"
                    ),
                );
            }
            return Err(e);
        }
    };
    // What the gate added beyond locking and planning, which it ran beside.
    let gated_secs = started.elapsed().as_secs_f64();
    for t in lock.takeovers() {
        say(d.on_event, None, format!("warning: {}", t.describe()));
    }
    say(
        d.on_event,
        None,
        format!("lock taken on {} hosts", hosts.len()),
    );
    let work = async {
        let (plan, mut report) = carry_out(d, planned?).await?;
        execute::execute(d, &plan, &mut report).await;
        Ok::<_, Error>((plan, report))
    };
    // Someone removed the lock (`lock release --force`): stop as if
    // interrupted rather than roll on beside another deploy.
    let watch = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            if let Some(e) = lock.lost().first() {
                say(
                    d.on_event,
                    e.host.as_deref(),
                    format!("the lock was lost ({}): stopping", e.cause),
                );
                ctx.cancel.cancel();
                return;
            }
        }
    };
    let mut outcome = {
        tokio::pin!(work);
        tokio::select! {
            outcome = &mut work => outcome,
            () = watch => work.await,
        }
    };
    let started = Instant::now();
    let took_over = lock.takeovers().iter().map(|t| t.describe()).collect();
    audit(
        ctx, d.fleet, &outcome, forced, skipped, took_over, d.on_event,
    )
    .await;
    for e in lock.lost() {
        say(
            d.on_event,
            e.host.as_deref(),
            format!("warning: {}", e.cause),
        );
    }
    match lock.release().await {
        Ok(()) => say(d.on_event, None, "lock released".into()),
        Err(e) => say(
            d.on_event,
            e.host.as_deref(),
            format!("warning: the lock was not released: {e}; `ballast lock status` shows it"),
        ),
    }
    if let Ok((_, report)) = &mut outcome {
        let finish_secs = started.elapsed().as_secs_f64();
        add_lock_phases(report, lock_secs, gated_secs, finish_secs);
    }
    let (version, word) = match &outcome {
        Ok((plan, report)) if report.failed() => (Some(plan.version.as_str()), "failed"),
        Ok((plan, report)) if report.interrupted() => (Some(plan.version.as_str()), "interrupted"),
        Ok((plan, _)) => (Some(plan.version.as_str()), "ok"),
        Err(e) if e.kind == ErrorKind::Interrupted => (goal.version(), "interrupted"),
        Err(_) => (goal.version(), "failed"),
    };
    if let Err(e) = ctx
        .hook(goal.post_hook(), version, Some(word), d.on_event)
        .await
    {
        say(d.on_event, None, format!("warning: {e}"));
    }
    outcome
}

/// Adds to `report`'s phases those of the lock: taking it (`lock`, first),
/// what doctor's gate added beyond locking and planning (`check`, after
/// `plan`; `gated_secs` is when both it and they were done) and the audit
/// record with the lock's release (`finish`, last).
fn add_lock_phases(report: &mut Report, lock_secs: f64, gated_secs: f64, finish_secs: f64) {
    let phases = &mut report.phases;
    let plan_at = phases.iter().position(|(phase, _)| phase == "plan");
    let planning = plan_at.map_or(0.0, |i| phases[i].1);
    let check_secs = (gated_secs - lock_secs - planning).max(0.0);
    let check_at = plan_at.map_or(phases.len(), |i| i + 1);
    phases.insert(check_at, ("check".to_string(), check_secs));
    phases.insert(0, ("lock".to_string(), lock_secs));
    phases.push(("finish".to_string(), finish_secs));
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn say(on_event: OnEvent<'_>, host: Option<&str>, message: String) {
    on_event(Event {
        host: host.map(str::to_string),
        message,
    });
}
