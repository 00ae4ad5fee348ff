//! Carrying out a plan: batch after batch, the hosts of a batch together.
//! The first batch with a failed host is the last; with
//! `deploy.on_failure: revert`, the hosts this rollout already switched go
//! back to what they served before, through the same gate and switch. An
//! interrupt stops the rollout between steps; the hosts it reached are put
//! back as they were, the rest are not touched.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::{stream, StreamExt};

use super::{say, Deploy, HostOutcome, Outcome, Report};
use crate::config::OnFailure;
use crate::error::{ErrorKind, Result};
use crate::plan::{self, HostPlan, Plan, StepKind};
use crate::rollout::{self, Rollout, RolloutEvent};
use crate::state;

/// Seconds per kind of step.
pub(super) type Timing = BTreeMap<&'static str, f64>;

/// Rolls `plan` out and fills `report` with each host's outcome.
pub(super) async fn execute(d: &Deploy<'_>, plan: &Plan, report: &mut Report) {
    let started = Instant::now();
    let mut halted = false;
    let mut step_times = Timing::new();
    let mut done: Vec<&HostPlan> = Vec::new();
    for batch in &plan.batches {
        if halted || d.ctx.cancel.is_cancelled() {
            let outcome = if halted {
                Outcome::NotRun
            } else {
                Outcome::Interrupted
            };
            report.hosts.extend(
                batch
                    .hosts
                    .iter()
                    .map(|p| HostOutcome::of(p, outcome, None)),
            );
            continue;
        }
        let results = roll_batch(d, &batch.hosts).await;
        // Hosts of a batch roll together: the slowest one sets the pace.
        let mut slowest = Timing::new();
        for (_, (_, timing)) in &results {
            for (phase, secs) in timing {
                let e = slowest.entry(*phase).or_default();
                *e = e.max(*secs);
            }
        }
        for (phase, secs) in slowest {
            *step_times.entry(phase).or_default() += secs;
        }
        for (p, (r, _)) in results {
            let outcome = match &r {
                Ok(()) if p.is_current() => Outcome::Current,
                Ok(()) => Outcome::Updated,
                Err(e) if e.kind == ErrorKind::Interrupted => Outcome::Interrupted,
                Err(_) => Outcome::Failed,
            };
            if outcome == Outcome::Failed {
                halted = true;
            }
            if outcome == Outcome::Updated && p.switches() {
                done.push(p);
            }
            report
                .hosts
                .push(HostOutcome::of(p, outcome, r.err().map(|e| e.to_string())));
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
    report.steps = ["start", "healthy", "switch"]
        .into_iter()
        .filter_map(|phase| Some((phase.to_string(), *step_times.get(phase)?)))
        .collect();
}

/// Rolls the hosts of one batch at once.
async fn roll_batch<'p>(
    d: &Deploy<'_>,
    hosts: &'p [HostPlan],
) -> Vec<(&'p HostPlan, (Result<()>, Timing))> {
    stream::iter(hosts.iter())
        .map(|p| async move { (p, roll_host(d, p).await) })
        .buffer_unordered(d.fleet.concurrency)
        .collect()
        .await
}

/// Carries out one host's plan.
async fn roll_host(d: &Deploy<'_>, p: &HostPlan) -> (Result<()>, Timing) {
    let mut timing = Timing::new();
    if p.is_current() {
        say(
            d.on_event,
            Some(&p.host),
            format!("{} already runs {}", p.role, p.target),
        );
        return (Ok(()), timing);
    }
    let host = d.fleet.get(&p.host).expect("planned hosts are connected");
    let secret = |n: &str| d.ctx.loaded.secrets.get(n).map(str::to_string);
    let (by, at) = (state::whoami(), state::now_rfc3339());
    let rollout = Rollout {
        service: &d.ctx.loaded.config.service,
        secret: &secret,
        deployed_by: &by,
        deployed_at: &at,
        cancel: &d.ctx.cancel,
    };
    let name = p.host.clone();
    let result = rollout::run(host, p, &rollout, &mut |e| match e {
        RolloutEvent::Done(step, took) => {
            *timing.entry(step.phase()).or_default() += took.as_secs_f64();
            say(d.on_event, Some(&name), step.describe())
        }
        RolloutEvent::Warning(w) => say(d.on_event, Some(&name), format!("warning: {w}")),
        RolloutEvent::Undo(u) => say(d.on_event, Some(&name), format!("undo: {u}")),
    })
    .await;
    (result, timing)
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
        for (p, (r, _)) in roll_batch(d, chunk).await {
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
