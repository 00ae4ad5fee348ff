//! Carrying out one host's part of a plan, step by step, and undoing it if a
//! step fails or the operator interrupts: old containers that were stopped
//! are started again, the proxy is switched back to what served before,
//! the new container is removed (its last log lines kept for the error),
//! and a container moved aside gets its name back, so the host keeps
//! serving what it served before.
//!
//! The executor decides nothing: the plan says what to create, how health
//! is judged and how the proxy switches. An interrupt is honoured between
//! steps and during a health wait; a proxy switch in progress is let finish
//! (the proxy completes it anyway), then undone.

use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use tokio_util::sync::CancellationToken;

use crate::container::{create, remove, rename, start, stop};
use crate::error::{Error, ErrorKind, Result};
use crate::faults::{self, Fault};
use crate::health::await_healthy;
use crate::host::Host;
use crate::plan::{HostPlan, Step};
use crate::spec::ReleaseStamp;

/// What carrying out a host plan needs besides the plan.
pub struct Rollout<'a> {
    pub service: &'a str,
    /// Secret values, looked up only when a container is created.
    pub secret: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// `user@machine` and the time, recorded on the new container.
    pub deployed_by: &'a str,
    pub deployed_at: &'a str,
    /// Where the image can be pulled again, recorded on the new container.
    pub image_source: Option<&'a str>,
    /// Set when the operator interrupts.
    pub cancel: &'a CancellationToken,
}

/// Progress of one host's rollout.
#[derive(Debug, Clone)]
pub enum RolloutEvent {
    /// A step finished, and how long it took.
    Done(Step, Duration),
    /// A cleanup step failed after the switch; the rollout still succeeded.
    Warning(String),
    /// Undoing after a failure or an interrupt.
    Undo(String),
}

type OnEvent<'e> = &'e mut (dyn FnMut(RolloutEvent) + Send);

/// Runs `plan` on `host`. On failure or interrupt, undoes what it did and
/// returns the error (with the new container's last log lines).
pub async fn run(
    host: &Host,
    plan: &HostPlan,
    r: &Rollout<'_>,
    on_event: OnEvent<'_>,
) -> Result<()> {
    let mut run = HostRun::new(plan, r.service);
    run.until(host, r, plan.steps.len(), on_event).await
}

/// One host's rollout carried out in parts (see `HostPlan::ahead`): what
/// the steps run so far did, so a later part, or [`HostRun::abandon`],
/// can undo it.
pub struct HostRun<'p> {
    plan: &'p HostPlan,
    /// The next step to run.
    next: usize,
    proven: bool,
    undo: Undo,
}

impl<'p> HostRun<'p> {
    pub fn new(plan: &'p HostPlan, service: &str) -> HostRun<'p> {
        HostRun {
            plan,
            next: 0,
            // A plan without a gate found the target proven already.
            proven: !plan
                .steps
                .iter()
                .any(|s| matches!(s, Step::AwaitHealthy { .. } | Step::Route { .. })),
            undo: Undo {
                service: service.to_string(),
                ..Undo::default()
            },
        }
    }

    /// Whether steps remain to run.
    pub fn unfinished(&self) -> bool {
        self.next < self.plan.steps.len()
    }

    /// Runs the steps up to `end` (exclusive). On failure or interrupt,
    /// undoes everything this run did, in every part so far, and returns
    /// the error; nothing remains to run then.
    pub async fn until(
        &mut self,
        host: &Host,
        r: &Rollout<'_>,
        end: usize,
        on_event: OnEvent<'_>,
    ) -> Result<()> {
        let plan = self.plan;
        while self.next < end.min(plan.steps.len()) {
            let step = &plan.steps[self.next];
            self.next += 1;
            let retiring =
                matches!(step, Step::Remove { .. }) || self.next > plan.steps.len() - plan.behind;
            let started = Instant::now();
            let before = checkpoint(r.cancel, "before", step).await;
            // Interrupted with only retiring left (pruning, or the steps
            // the plan lets run beside later batches: stopping the drained
            // old): the host is done, and serves the target.
            if self.proven && retiring && r.cancel.is_cancelled() {
                self.next = plan.steps.len();
                break;
            }
            let result = match before {
                Err(e) => Err(e),
                Ok(()) => do_step(host, plan, r, step, self.proven, &mut self.undo, on_event).await,
            };
            let result = match result {
                Ok(now_proven) => {
                    self.proven |= now_proven;
                    on_event(RolloutEvent::Done(step.clone(), started.elapsed()));
                    checkpoint(r.cancel, "after", step).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                self.next = plan.steps.len();
                let logs = self.undo_all(host, on_event).await;
                return Err(with_logs(e.on(host.name()), &plan.target, &logs));
            }
        }
        Ok(())
    }

    /// Puts the host back as it was when the rest of the plan will not run
    /// (an earlier batch failed, or the operator interrupted). A target an
    /// earlier, interrupted run left unproven is stopped too when the plan
    /// says so (`HostPlan::stop_unproven`): it will not be proven now.
    pub async fn abandon(mut self, host: &Host, on_event: OnEvent<'_>) {
        if self.proven {
            return;
        }
        if self.next == 0 {
            if !self.plan.stop_unproven {
                return;
            }
            self.undo.gate_failed(self.plan);
        }
        self.undo_all(host, on_event).await;
    }

    /// Undoes what the run did; returns the new container's last log
    /// lines, read before it is removed.
    async fn undo_all(&mut self, host: &Host, on_event: OnEvent<'_>) -> String {
        let plan = self.plan;
        let logs = if self.undo.created || self.undo.started {
            host.engine()
                .log_tail(&plan.target, 15)
                .await
                .unwrap_or_default()
        } else {
            String::new()
        };
        std::mem::take(&mut self.undo)
            .apply(host, plan, on_event)
            .await;
        logs
    }
}

/// Carries out one step; returns whether the target is now proven.
async fn do_step(
    host: &Host,
    plan: &HostPlan,
    r: &Rollout<'_>,
    step: &Step,
    proven: bool,
    undo: &mut Undo,
    on_event: OnEvent<'_>,
) -> Result<bool> {
    let stop_timeout = plan.spec.stop_timeout;
    match step {
        // Pruning after the switch: a failure is only worth a warning.
        Step::Remove { name } if proven => {
            if let Err(e) = remove_with_secrets(host, r.service, name).await {
                on_event(RolloutEvent::Warning(format!(
                    "could not prune {name}: {}",
                    e.cause
                )));
            }
        }
        Step::Remove { name } => remove_with_secrets(host, r.service, name).await?,
        Step::Rename { from, to } => {
            rename(host, from, to).await?;
            undo.renamed = Some((from.clone(), to.clone()));
        }
        Step::WriteSecrets { name } => {
            let dir = crate::spec::secrets_dir(r.service, name, &plan.digest);
            undo.secrets = Some(dir.clone());
            write_secrets(host, &dir, &plan.spec.env_secret, r.secret).await?;
        }
        Step::Create { name } => {
            create(host, name, &body(plan, r)).await?;
            undo.created = true;
        }
        Step::Start { name } => {
            start(host, name).await?;
            undo.started |= *name == plan.target;
        }
        Step::AwaitHealthy { name } => {
            let wait = await_healthy(host, name, &plan.health, plan.health_timeout);
            let result = tokio::select! {
                result = wait => result,
                () = r.cancel.cancelled() => Err(interrupted(step)),
            };
            if result.is_err() && *name == plan.target {
                undo.gate_failed(plan);
            }
            result?;
            return Ok(true);
        }
        Step::Route { name } => {
            let Some(route) = plan.switch.route() else {
                return Err(Error::failed(
                    step.describe(),
                    "the plan has no proxy route for this role",
                ));
            };
            // A target caught between restarts has no address: that too
            // is a failed gate.
            let ip = match address(host, r.service, name).await {
                Ok(ip) => ip,
                Err(e) => {
                    if *name == plan.target {
                        undo.gate_failed(plan);
                    }
                    return Err(e);
                }
            };
            let target = route.target(&ip);
            match crate::proxy::switch(host, route, &target).await {
                Ok(()) => undo.routed = true,
                Err(e) => {
                    // A lost answer leaves it unknown whether the proxy
                    // switched (it finishes a switch it received): ask it.
                    let observed = match answer_lost(e.kind) {
                        true => crate::proxy::admin::try_routes(host).await.ok(),
                        false => None,
                    };
                    undo.routed = routed_after_failed_switch(
                        e.kind,
                        observed.as_ref().map(|r| r.get(&route.service)),
                        &target,
                    );
                    if *name == plan.target {
                        undo.gate_failed(plan);
                    }
                    return Err(e);
                }
            }
            return Ok(true);
        }
        Step::Stop { name } => {
            stop(host, name, stop_timeout).await?;
            undo.stopped.push(name.clone());
        }
    }
    Ok(proven)
}

/// Whether a failed switch got no answer (rather than the proxy's own
/// refusal): the proxy may have switched all the same.
fn answer_lost(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Timeout | ErrorKind::Unreachable)
}

/// Whether the proxy may route to `target` after a switch to it failed
/// with `kind`, given where the proxy said the route points afterwards
/// (`observed`: `None` when it was not asked or did not answer; `Some(None)`
/// when it has no such route).
///
/// The proxy's refusal (an unhealthy target, a bad request) means it did
/// not switch. After a lost answer, what the proxy says decides: routed
/// when the route points at `target`, not routed otherwise; when it cannot
/// be asked either, routed, so the undo switches back rather than remove a
/// container the proxy may route to (it keeps it when switching back
/// fails).
fn routed_after_failed_switch(
    kind: ErrorKind,
    observed: Option<Option<&Vec<String>>>,
    target: &str,
) -> bool {
    if !answer_lost(kind) {
        return false;
    }
    match observed {
        Some(targets) => targets.is_some_and(|t| t.iter().any(|a| a == target)),
        None => true,
    }
}

/// The create body of the plan's target; secrets are filled in here only.
fn body(plan: &HostPlan, r: &Rollout<'_>) -> ContainerCreateBody {
    let stamp = ReleaseStamp {
        service: r.service.to_string(),
        version: plan.version.clone(),
        image_id: plan.image_id.clone(),
        digest: plan.digest.clone(),
        source: r.image_source.map(str::to_string),
        deployed_by: r.deployed_by.to_string(),
        deployed_at: r.deployed_at.to_string(),
    };
    plan.spec.container(&stamp, r.secret)
}

/// Honours an interrupt and the faults injected for tests at `when`
/// (`before`/`after`) `step`.
async fn checkpoint(cancel: &CancellationToken, when: &str, step: &Step) -> Result<()> {
    let kind = serde_json::to_value(step.kind())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match faults::at(&format!("{when}-{kind}")) {
        Some(Fault::Fail) => {
            return Err(Error::failed(
                step.describe(),
                format_args!("failed on purpose ({} {when}-{kind})", faults::VARIABLE),
            ))
        }
        Some(Fault::Hold) => {
            tokio::select! {
                () = tokio::time::sleep(faults::HOLD) => {}
                () = cancel.cancelled() => {}
            }
        }
        None => {}
    }
    // Between steps, an interrupt is honoured before the next one starts,
    // so a step that completed is never undone for nothing.
    if when == "before" && cancel.is_cancelled() {
        return Err(interrupted(step));
    }
    Ok(())
}

fn interrupted(step: &Step) -> Error {
    Error::new(
        ErrorKind::Interrupted,
        step.describe(),
        "interrupted by the operator",
    )
    .hint("the host was put back as it was; deploy again to finish")
}

/// What a host's rollout did so far, to be undone in reverse.
#[derive(Default)]
struct Undo {
    /// Whose network the proxy routes on.
    service: String,
    created: bool,
    started: bool,
    routed: bool,
    /// The old container to serve again in place of an unproven target
    /// an earlier, interrupted run left (see `HostPlan::fallback`).
    fallback: Option<String>,
    /// The target failed its gate and is stopped though this run did not
    /// start it (see `HostPlan::stop_unproven`).
    stop_unproven: bool,
    /// The secret files directory this run wrote.
    secrets: Option<String>,
    renamed: Option<(String, String)>,
    stopped: Vec<String>,
}

impl Undo {
    fn gate_failed(&mut self, plan: &HostPlan) {
        self.fallback = plan.fallback.clone();
        self.stop_unproven = plan.stop_unproven;
    }

    /// Best effort: every step is tried even if one fails, and each failure
    /// is reported, so the operator knows what to check by hand. When the
    /// proxy had switched, the old container serves again before the new
    /// one stops; otherwise the new one stops first (it may hold the ports
    /// the old one needs).
    async fn apply(self, host: &Host, plan: &HostPlan, on_event: OnEvent<'_>) {
        if self.routed {
            self.start_stopped(host, false, on_event).await;
            if self.route_back(host, plan, on_event).await {
                self.remove_new(host, plan, on_event).await;
                self.rename_back(host, on_event).await;
            } else {
                // The proxy may still route to the new container: it stays.
                on_event(RolloutEvent::Warning(format!(
                    "{} is kept running: the proxy could not be switched back to the old container",
                    plan.target
                )));
            }
        } else {
            self.remove_new(host, plan, on_event).await;
            self.rename_back(host, on_event).await;
            self.start_stopped(host, true, on_event).await;
            self.fall_back(host, on_event).await;
        }
    }

    /// Starts the old container an earlier, interrupted run had stopped
    /// (the unproven target it left was stopped by `remove_new`).
    async fn fall_back(&self, host: &Host, on_event: OnEvent<'_>) {
        let Some(old) = &self.fallback else {
            return;
        };
        on_event(RolloutEvent::Undo(format!("start {old} again")));
        if let Err(e) = start(host, old).await {
            on_event(RolloutEvent::Warning(e.to_string()));
        }
    }

    /// Starts the old containers this rollout stopped; `renamed_back` says
    /// whether one moved aside has its name again.
    async fn start_stopped(&self, host: &Host, renamed_back: bool, on_event: OnEvent<'_>) {
        for name in &self.stopped {
            let name = match &self.renamed {
                Some((from, to)) if renamed_back && to == name => from,
                _ => name,
            };
            on_event(RolloutEvent::Undo(format!("start {name} again")));
            if let Err(e) = start(host, name).await {
                on_event(RolloutEvent::Warning(e.to_string()));
            }
        }
    }

    /// Switches the proxy back to what served before this rollout; returns
    /// whether it did (nothing served before counts as done).
    async fn route_back(&self, host: &Host, plan: &HostPlan, on_event: OnEvent<'_>) -> bool {
        let (Some(route), Some(previous)) = (plan.switch.route(), &plan.previous) else {
            return true;
        };
        let name = previous.name.clone();
        on_event(RolloutEvent::Undo(format!(
            "switch the proxy back to {name}"
        )));
        let back = async {
            let ip = address(host, &self.service, &name).await?;
            crate::proxy::switch(host, route, &route.target(&ip)).await
        };
        match back.await {
            Ok(()) => true,
            Err(e) => {
                on_event(RolloutEvent::Warning(e.to_string()));
                false
            }
        }
    }

    /// Stops and removes the new container (a reused one is only stopped,
    /// and one left by an earlier run only when the plan says so).
    async fn remove_new(&self, host: &Host, plan: &HostPlan, on_event: OnEvent<'_>) {
        let target = &plan.target;
        if self.started || self.stop_unproven {
            on_event(RolloutEvent::Undo(format!("stop {target}")));
            if let Err(e) = stop(host, target, plan.spec.stop_timeout).await {
                on_event(RolloutEvent::Warning(e.to_string()));
            }
        }
        if self.created {
            on_event(RolloutEvent::Undo(format!("remove {target}")));
            if let Err(e) = remove(host, target).await {
                on_event(RolloutEvent::Warning(e.to_string()));
            }
        }
        if let Some(dir) = &self.secrets {
            on_event(RolloutEvent::Undo(format!(
                "remove the secret files of {target}"
            )));
            if let Err(e) = remove_dir(host, dir).await {
                on_event(RolloutEvent::Warning(e.to_string()));
            }
        }
    }

    async fn rename_back(&self, host: &Host, on_event: OnEvent<'_>) {
        if let Some((from, to)) = &self.renamed {
            on_event(RolloutEvent::Undo(format!("rename {to} back to {from}")));
            if let Err(e) = rename(host, to, from).await {
                on_event(RolloutEvent::Warning(e.to_string()));
            }
        }
    }
}

fn with_logs(mut e: Error, container: &str, logs: &str) -> Error {
    let logs = logs.trim();
    if !logs.is_empty() {
        e.cause = format!(
            "{}\n  last log lines of {container}:\n    {}",
            e.cause,
            logs.replace('\n', "\n    ")
        );
    }
    e
}

/// A container's address on its service's network, where the proxy
/// reaches it (see `proxy::network`).
async fn address(host: &Host, service: &str, name: &str) -> Result<String> {
    crate::proxy::routable_address(host, service, name).await
}

/// Writes each secret as a file of mode 0400 in `dir` (made 0700); values
/// travel over the command's stdin, never in its arguments.
async fn write_secrets(
    host: &Host,
    dir: &str,
    names: &[String],
    secret: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<()> {
    let step = "write the secret files";
    let deadline = Duration::from_secs(15);
    host.run_checked(step, "install", &["-d", "-m", "0700", dir], None, deadline)
        .await?;
    for name in names {
        let value = secret(name).unwrap_or_default();
        let path = format!("{dir}/{name}");
        let args = ["-m", "0400", "/dev/stdin", path.as_str()];
        host.run_checked(step, "install", &args, Some(value.as_bytes()), deadline)
            .await?;
    }
    Ok(())
}

pub(crate) async fn remove_dir(host: &Host, dir: &str) -> Result<()> {
    host.run_checked(
        &format!("remove {dir}"),
        "rm",
        &["-rf", "--", dir],
        None,
        Duration::from_secs(15),
    )
    .await
}

/// Removes a container and the secret files ballast wrote for it.
async fn remove_with_secrets(host: &Host, service: &str, name: &str) -> Result<()> {
    let dirs = secret_dirs_of(host, service, name).await;
    remove(host, name).await?;
    for dir in dirs {
        remove_dir(host, &dir).await?;
    }
    Ok(())
}

/// The secret files directories a container mounts (found from its own
/// mounts, under the service's secrets directory only).
pub(crate) async fn secret_dirs_of(host: &Host, service: &str, name: &str) -> Vec<String> {
    let root = format!("{}/{service}/secrets/", crate::state::STATE_ROOT);
    host.engine()
        .docker()
        .inspect_container(name, None)
        .await
        .ok()
        .and_then(|c| c.host_config)
        .and_then(|h| h.binds)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|b| b.split(':').next().map(str::to_string))
        .filter(|src| src.starts_with(&root) && !src.contains(".."))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "172.20.0.3:3000";
    const OLD: &str = "172.20.0.2:3000";

    #[test]
    fn a_refused_switch_is_not_routed_whatever_the_proxy_says() {
        let points_new = vec![NEW.to_string()];
        assert!(!routed_after_failed_switch(
            ErrorKind::Failed,
            Some(Some(&points_new)),
            NEW
        ));
        assert!(!routed_after_failed_switch(ErrorKind::Failed, None, NEW));
    }

    #[test]
    fn after_a_lost_answer_the_proxys_routes_decide() {
        let points_new = vec![NEW.to_string()];
        let points_old = vec![OLD.to_string()];
        for kind in [ErrorKind::Timeout, ErrorKind::Unreachable] {
            // It switched before the answer was lost: switch back.
            assert!(routed_after_failed_switch(
                kind,
                Some(Some(&points_new)),
                NEW
            ));
            // It still routes to the old container, or has no route.
            assert!(!routed_after_failed_switch(
                kind,
                Some(Some(&points_old)),
                NEW
            ));
            assert!(!routed_after_failed_switch(kind, Some(None), NEW));
            // It cannot be asked either: assume it switched.
            assert!(routed_after_failed_switch(kind, None, NEW));
        }
    }
}
