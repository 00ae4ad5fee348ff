//! Carrying out a plan: the steps that run ahead of the batches on every
//! host at once, then batch after batch, the hosts of a batch together;
//! each switched host stops its drained old containers beside the later
//! batches, and the deploy ends once all have.
//! The first batch with a failed host is the last; with
//! `deploy.on_failure: revert`, the hosts this rollout already switched go
//! back to what they served before, through the same gate and switch. An
//! interrupt stops the rollout between steps: a host it caught before its
//! switch is put back as it was, a switched host stays on the new release
//! (an old container it had not stopped yet runs on without traffic
//! until the next deploy), and the rest are not touched.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use futures_util::stream::{self, FuturesUnordered};
use futures_util::StreamExt;

use super::{say, Deploy, HostOutcome, Outcome, Report};
use crate::config::OnFailure;
use crate::error::{ErrorKind, Result};
use crate::plan::{self, HostPlan, Plan, StepKind};
use crate::rollout::{HostRun, Rollout, RolloutEvent};

/// Seconds per kind of step.
pub(super) type Timing = BTreeMap<&'static str, f64>;

/// One host's rollout under way, by host and role.
type Runs<'p> = BTreeMap<(String, String), HostRun<'p>>;

/// Rolls `plan` out and fills `report` with each host's outcome.
pub(super) async fn execute(d: &Deploy<'_>, plan: &Plan, report: &mut Report) {
    let started = Instant::now();
    let mut step_times = Timing::new();
    let mut done: Vec<&HostPlan> = Vec::new();
    let source = plan.image_source.as_deref();
    // Switched hosts retiring their old containers beside later batches
    // (`HostPlan::behind`), and those that finished.
    let mut retiring = FuturesUnordered::new();
    let mut retired: Vec<(&HostPlan, Result<()>)> = Vec::new();
    let (mut runs, ended, ahead_timing) = start_ahead(d, plan).await;
    add_slowest(&mut step_times, ahead_timing.iter());
    // A host that failed to start ahead halts the deploy before anything
    // switched: the fleet stays on what it served.
    let mut halted = ended.iter().any(|(_, (r, _))| is_failure(r));
    for (p, (r, _)) in &ended {
        record(report, p, r.as_ref().err());
    }
    for batch in &plan.batches {
        let hosts: Vec<&HostPlan> = batch
            .hosts
            .iter()
            .filter(|p| !ended.iter().any(|(e, _)| std::ptr::eq(*e, *p)))
            .collect();
        // A host that failed to stop its old container was put back: that
        // is a failed host too.
        halted |= retired.iter().any(|(_, r)| is_failure(r));
        if halted || d.ctx.cancel.is_cancelled() {
            let outcome = if halted {
                Outcome::NotRun
            } else {
                Outcome::Interrupted
            };
            report
                .hosts
                .extend(hosts.iter().map(|p| HostOutcome::of(p, outcome, None)));
            // After a failure, a target an earlier deploy left unproven
            // goes too; an interrupt leaves untouched hosts as they are.
            if halted {
                for p in hosts.iter().filter(|p| p.stop_unproven) {
                    let key = (p.host.clone(), p.role.clone());
                    let run = HostRun::new(p, &d.ctx.loaded.config.service);
                    runs.entry(key).or_insert(run);
                }
            }
            continue;
        }
        let rolling = roll_batch(d, source, &hosts, &mut runs);
        let results = beside(rolling, &mut retiring, &mut retired).await;
        // Hosts of a batch roll together: the slowest one sets the pace.
        add_slowest(&mut step_times, results.iter().map(|(_, (_, t), _)| t));
        for (p, (r, _), rest) in results {
            if is_failure(&r) {
                halted = true;
            }
            if r.is_ok() && !p.is_current() && p.switches() {
                done.push(p);
            }
            match rest {
                Some(run) => retiring.push(retire(d, source, p, run)),
                None => record(report, p, r.as_ref().err()),
            }
        }
    }
    // What the last batches still retire is all that is left to wait for.
    let waited = Instant::now();
    if !retiring.is_empty() {
        say(
            d.on_event,
            None,
            format!(
                "waiting for {} host(s) to stop their old containers",
                retiring.len()
            ),
        );
    }
    while let Some(r) = retiring.next().await {
        retired.push(r);
    }
    if !retired.is_empty() {
        step_times.insert("stop", waited.elapsed().as_secs_f64());
    }
    // An interrupt leaves a switched host on the target (see
    // `HostRun::until`), whatever it had not stopped yet still running.
    if !retired.is_empty() && d.ctx.cancel.is_cancelled() {
        say(
            d.on_event,
            None,
            "interrupted: old containers not stopped yet keep running without traffic; the next deploy stops them".into(),
        );
    }
    for (p, r) in retired {
        if is_failure(&r) {
            halted = true;
            done.retain(|q| !std::ptr::eq(*q, p));
        }
        record(report, p, r.as_ref().err());
    }
    // Started ahead (or left unproven by an earlier deploy), never
    // switched: their new containers go.
    for (key, run) in std::mem::take(&mut runs) {
        if let Some(host) = d.fleet.get(&key.0) {
            let name = key.0.clone();
            run.abandon(host, &mut |e| say_rollout(d, &name, e)).await;
        }
    }
    if halted && d.ctx.loaded.config.deploy.on_failure == OnFailure::Revert {
        revert(d, &done, report).await;
    }
    report
        .hosts
        .sort_by(|a, b| (&a.role, &a.host).cmp(&(&b.role, &b.host)));
    report
        .phases
        .push(("roll".to_string(), started.elapsed().as_secs_f64()));
    // In the order a host goes through them.
    report.steps = ["start", "healthy", "stop"]
        .into_iter()
        .filter_map(|phase| Some((phase.to_string(), *step_times.get(phase)?)))
        .collect();
}

/// Awaits `work` (a batch) while the hosts switched before it retire their
/// old containers, collecting those that finish.
async fn beside<T, R>(
    work: impl Future<Output = T>,
    retiring: &mut FuturesUnordered<impl Future<Output = R>>,
    retired: &mut Vec<R>,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            Some(r) = retiring.next(), if !retiring.is_empty() => retired.push(r),
        }
    }
}

/// Runs what a switched host left to do beside the later batches:
/// stopping the old containers the proxy drained, pruning. A failure
/// undoes the host's rollout (the proxy goes back to the old container).
async fn retire<'p>(
    d: &Deploy<'_>,
    source: Option<&str>,
    p: &'p HostPlan,
    run: HostRun<'p>,
) -> (&'p HostPlan, Result<()>) {
    let (result, _, _) = roll_host(d, source, p, Some(run), p.steps.len()).await;
    (p, result)
}

fn is_failure(r: &Result<()>) -> bool {
    matches!(r, Err(e) if e.kind != ErrorKind::Interrupted)
}

/// Records how `p` ended.
fn record(report: &mut Report, p: &HostPlan, error: Option<&crate::error::Error>) {
    let outcome = match error {
        None if p.is_current() => Outcome::Current,
        None => Outcome::Updated,
        Some(e) if e.kind == ErrorKind::Interrupted => Outcome::Interrupted,
        Some(_) => Outcome::Failed,
    };
    report
        .hosts
        .push(HostOutcome::of(p, outcome, error.map(|e| e.to_string())));
}

/// Adds the slowest of `timings` to `total`, phase by phase.
fn add_slowest<'t>(total: &mut Timing, timings: impl Iterator<Item = &'t Timing>) {
    let mut slowest = Timing::new();
    for timing in timings {
        for (phase, secs) in timing {
            let e = slowest.entry(*phase).or_default();
            *e = e.max(*secs);
        }
    }
    for (phase, secs) in slowest {
        *total.entry(phase).or_default() += secs;
    }
}

/// Runs every host plan's steps that go ahead of the batches
/// (`HostPlan::ahead`) on all those hosts at once. Returns the runs to
/// finish in their batches, the hosts that already ended (failed or
/// interrupted, and put back), and each host's timing.
async fn start_ahead<'p>(
    d: &Deploy<'_>,
    plan: &'p Plan,
) -> (
    Runs<'p>,
    Vec<(&'p HostPlan, (Result<()>, Timing))>,
    Vec<Timing>,
) {
    let ahead: Vec<&HostPlan> = plan.host_plans().filter(|p| p.ahead > 0).collect();
    if !ahead.is_empty() {
        say(
            d.on_event,
            None,
            format!(
                "starting the new containers on {} host(s) ahead of the batches",
                ahead.len()
            ),
        );
    }
    let results: Vec<_> = stream::iter(ahead)
        .map(|p| async move {
            let host = d.fleet.get(&p.host).expect("planned hosts are connected");
            let mut run = HostRun::new(p, &d.ctx.loaded.config.service);
            let mut timing = Timing::new();
            let result = run
                .until(
                    host,
                    &rollout(d, plan.image_source.as_deref()),
                    p.ahead,
                    &mut |e| {
                        timed(&mut timing, &e);
                        say_rollout(d, &p.host, e)
                    },
                )
                .await;
            (p, run, result, timing)
        })
        .buffer_unordered(d.fleet.concurrency)
        .collect()
        .await;
    let mut runs = Runs::new();
    let mut ended = Vec::new();
    let mut timings = Vec::new();
    for (p, run, result, timing) in results {
        match result {
            Ok(()) => {
                runs.insert((p.host.clone(), p.role.clone()), run);
            }
            Err(e) => ended.push((p, (Err(e), Timing::new()))),
        }
        timings.push(timing);
    }
    (runs, ended, timings)
}

/// One host's part of a batch: how it ended, its timing, and its run when
/// steps remain to retire beside the later batches (`HostPlan::behind`).
type Rolled<'p> = (&'p HostPlan, (Result<()>, Timing), Option<HostRun<'p>>);

/// Rolls the hosts of one batch at once, finishing runs started ahead.
async fn roll_batch<'p>(
    d: &Deploy<'_>,
    source: Option<&str>,
    hosts: &[&'p HostPlan],
    runs: &mut Runs<'p>,
) -> Vec<Rolled<'p>> {
    let batch: Vec<_> = hosts
        .iter()
        .map(|p| (*p, runs.remove(&(p.host.clone(), p.role.clone()))))
        .collect();
    stream::iter(batch)
        .map(|(p, run)| async move {
            let end = p.steps.len() - p.behind;
            let (result, timing, run) = roll_host(d, source, p, run, end).await;
            (p, (result, timing), run)
        })
        .buffer_unordered(d.fleet.concurrency)
        .collect()
        .await
}

/// What carrying out a host plan needs besides the plan; `source` is the
/// plan's [`Plan::image_source`].
fn rollout<'d>(d: &'d Deploy<'_>, source: Option<&'d str>) -> Rollout<'d> {
    Rollout {
        service: &d.ctx.loaded.config.service,
        secret: &d.stamp.secret,
        deployed_by: &d.stamp.by,
        deployed_at: &d.stamp.at,
        image_source: source,
        cancel: &d.ctx.cancel,
    }
}

/// Adds a finished step's time to its phase.
fn timed(timing: &mut Timing, e: &RolloutEvent) {
    if let RolloutEvent::Done(step, took) = e {
        *timing.entry(step.phase()).or_default() += took.as_secs_f64();
    }
}

fn say_rollout(d: &Deploy<'_>, host: &str, e: RolloutEvent) {
    match e {
        RolloutEvent::Done(step, _) => say(d.on_event, Some(host), step.describe()),
        RolloutEvent::Warning(w) => say(d.on_event, Some(host), format!("warning: {w}")),
        RolloutEvent::Undo(u) => say(d.on_event, Some(host), format!("undo: {u}")),
    }
}

/// Carries out one host's plan, or what remains of it, up to step `end`
/// (exclusive); returns the run when steps remain, to finish later.
async fn roll_host<'p>(
    d: &Deploy<'_>,
    source: Option<&str>,
    p: &'p HostPlan,
    run: Option<HostRun<'p>>,
    end: usize,
) -> (Result<()>, Timing, Option<HostRun<'p>>) {
    let mut timing = Timing::new();
    if p.is_current() {
        say(
            d.on_event,
            Some(&p.host),
            format!("{} already runs {}", p.role, p.target),
        );
        return (Ok(()), timing, None);
    }
    let host = d.fleet.get(&p.host).expect("planned hosts are connected");
    let mut run = run.unwrap_or_else(|| HostRun::new(p, &d.ctx.loaded.config.service));
    let result = run
        .until(host, &rollout(d, source), end, &mut |e| {
            timed(&mut timing, &e);
            say_rollout(d, &p.host, e)
        })
        .await;
    let rest = (result.is_ok() && run.unfinished()).then_some(run);
    (result, timing, rest)
}

/// Puts the hosts this rollout switched back on what they served before,
/// one batch's worth at a time, and records how each ended.
async fn revert(d: &Deploy<'_>, done: &[&HostPlan], report: &mut Report) {
    if done.is_empty() {
        return;
    }
    say(
        d.on_event,
        None,
        format!(
            "reverting {} host(s) this deploy switched (deploy.on_failure: revert)",
            done.len()
        ),
    );
    let service = &d.ctx.loaded.config.service;
    let now = super::unix_now();
    let mut plans = Vec::new();
    for p in done {
        let host = d.fleet.get(&p.host).expect("connected");
        let back = match crate::release::observe(host.engine(), service).await {
            Ok(containers) => {
                let routes = match p.switch.route() {
                    Some(_) => crate::proxy::routes(host).await,
                    None => BTreeMap::new(),
                };
                let state = plan::HostState {
                    containers,
                    routes,
                    ..Default::default()
                };
                Ok(plan::revert(p, &state, now))
            }
            Err(e) => Err(e.to_string()),
        };
        let problem = match back {
            // Nothing served before: the host stays on the new release.
            Ok(None) => continue,
            Ok(Some(back)) if !back.steps.iter().any(|s| s.kind() == StepKind::Create) => {
                plans.push(back);
                continue;
            }
            Ok(Some(_)) => "the container of the previous release is gone".to_string(),
            Err(e) => e,
        };
        set_outcome(report, p, Outcome::RevertFailed, Some(problem));
    }
    let size = super::targets::batch_size(&d.ctx.loaded.config.deploy.batch);
    for chunk in plans.chunks(size.of(plans.len())) {
        let chunk: Vec<&HostPlan> = chunk.iter().collect();
        // A revert never creates a container (see above): no source to
        // record; its plans leave nothing to retire beside later batches.
        for (p, (r, _), _) in roll_batch(d, None, &chunk, &mut Runs::new()).await {
            match r {
                Ok(()) => set_outcome(report, p, Outcome::Reverted, None),
                Err(e) => set_outcome(report, p, Outcome::RevertFailed, Some(e.to_string())),
            }
        }
    }
}

fn set_outcome(report: &mut Report, p: &HostPlan, outcome: Outcome, error: Option<String>) {
    if let Some(h) = report
        .hosts
        .iter_mut()
        .find(|h| h.host == p.host && h.role == p.role)
    {
        h.outcome = outcome;
        h.error = error;
    }
}
