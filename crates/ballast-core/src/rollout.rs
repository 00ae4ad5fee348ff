//! Carrying out one host's part of a plan, step by step, and undoing it if a
//! step fails: the new container is removed (its last log lines kept for the
//! error), a container moved aside gets its name back, and old containers
//! that were stopped are started again, so the host keeps serving what it
//! served before.

use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};

use crate::error::{Error, Result};
use crate::health::await_healthy;
use crate::host::Host;
use crate::plan::{HostPlan, Step};
use crate::spec::HealthMode;

/// What the steps of one host need beyond the plan.
pub struct Rollout {
    /// Create body of the new container (used by `Create` steps).
    pub body: ContainerCreateBody,
    pub health: HealthMode,
    pub health_timeout: Duration,
    pub stop_timeout: Duration,
    /// How the host's proxy routes to the role, for proxied roles.
    pub route: Option<crate::proxy::Route>,
}

/// Progress of one host's rollout.
#[derive(Debug, Clone)]
pub enum RolloutEvent {
    /// A step finished, and how long it took.
    Done(Step, Duration),
    /// A cleanup step failed after the switch; the rollout still succeeded.
    Warning(String),
    /// Undoing after a failure.
    Undo(String),
}

/// Runs `plan` on `host`. On failure, undoes what it did and returns the
/// error with the new container's last log lines.
pub async fn run(
    host: &Host,
    plan: &HostPlan,
    rollout: &Rollout,
    on_event: &mut (dyn FnMut(RolloutEvent) + Send),
) -> Result<()> {
    let mut undo = Undo::default();
    let mut healthy = false;
    for step in &plan.steps {
        let started = std::time::Instant::now();
        let result = match step {
            Step::Remove { name } if healthy => {
                if let Err(e) = remove(host, name).await {
                    on_event(RolloutEvent::Warning(format!(
                        "could not prune {name}: {}",
                        e.cause
                    )));
                }
                on_event(RolloutEvent::Done(step.clone(), started.elapsed()));
                continue;
            }
            Step::Rename { from, to } => rename(host, from, to)
                .await
                .map(|()| undo.renamed = Some((from.clone(), to.clone()))),
            Step::Remove { name } => remove(host, name).await,
            Step::Create { name } => create(host, name, &rollout.body)
                .await
                .map(|()| undo.created = true),
            Step::Start { name } => start(host, name).await.map(|()| {
                if *name == plan.target {
                    undo.started = true;
                }
            }),
            Step::AwaitHealthy { name } => {
                await_healthy(host, name, &rollout.health, rollout.health_timeout)
                    .await
                    .map(|()| healthy = true)
            }
            Step::Route { name } => route(host, name, rollout).await.map(|()| healthy = true),
            Step::Stop { name } => stop(host, name, rollout.stop_timeout)
                .await
                .map(|()| undo.stopped.push(name.clone())),
        };
        match result {
            Ok(()) => on_event(RolloutEvent::Done(step.clone(), started.elapsed())),
            Err(e) => {
                let logs = if undo.created || undo.started {
                    host.engine()
                        .log_tail(&plan.target, 15)
                        .await
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                undo.apply(host, plan, rollout.stop_timeout, on_event).await;
                return Err(with_logs(e.on(host.name()), &plan.target, &logs));
            }
        }
    }
    Ok(())
}

#[derive(Default)]
struct Undo {
    created: bool,
    started: bool,
    renamed: Option<(String, String)>,
    stopped: Vec<String>,
}

impl Undo {
    /// Best effort: every step is tried even if one fails, and each failure
    /// is reported, so the operator knows what to check by hand.
    async fn apply(
        self,
        host: &Host,
        plan: &HostPlan,
        stop_timeout: Duration,
        on_event: &mut (dyn FnMut(RolloutEvent) + Send),
    ) {
        let target = &plan.target;
        if self.started {
            on_event(RolloutEvent::Undo(format!("stop {target}")));
            if let Err(e) = stop(host, target, stop_timeout).await {
                on_event(RolloutEvent::Warning(e.to_string()));
            }
        }
        if self.created {
            on_event(RolloutEvent::Undo(format!("remove {target}")));
            if let Err(e) = remove(host, target).await {
                on_event(RolloutEvent::Warning(e.to_string()));
            }
        }
        if let Some((from, to)) = &self.renamed {
            on_event(RolloutEvent::Undo(format!("rename {to} back to {from}")));
            if let Err(e) = rename(host, to, from).await {
                on_event(RolloutEvent::Warning(e.to_string()));
            }
        }
        for name in &self.stopped {
            let name = match &self.renamed {
                Some((from, to)) if to == name => from,
                _ => name,
            };
            on_event(RolloutEvent::Undo(format!("start {name} again")));
            if let Err(e) = start(host, name).await {
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

/// Points the host's proxy at the new container; the proxy checks it first.
async fn route(host: &Host, name: &str, rollout: &Rollout) -> Result<()> {
    let Some(route) = &rollout.route else {
        return Err(
            Error::failed(format!("route to {name}"), "the role has no proxy settings")
                .on(host.name()),
        );
    };
    let ip = crate::health::container_ip(host, name).await?;
    if ip.is_empty() {
        return Err(Error::failed(
            format!("route to {name}"),
            "the container has no address on the ballast network",
        )
        .on(host.name()));
    }
    crate::proxy::switch(host, route, &format!("{ip}:{}", route.port)).await
}

async fn create(host: &Host, name: &str, body: &ContainerCreateBody) -> Result<()> {
    let engine = host.engine();
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    engine
        .call(
            &format!("create {name}"),
            engine
                .docker()
                .create_container(Some(options), body.clone()),
        )
        .await
        .map(|_| ())
}

async fn start(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    engine
        .call(
            &format!("start {name}"),
            engine.docker().start_container(name, None),
        )
        .await
}

async fn stop(host: &Host, name: &str, timeout: Duration) -> Result<()> {
    let engine = host.engine();
    let options = StopContainerOptionsBuilder::default()
        .t(timeout.as_secs() as i32)
        .build();
    // The engine waits up to `timeout` before killing; allow for that.
    let work = engine.docker().stop_container(name, Some(options));
    match tokio::time::timeout(timeout + Duration::from_secs(15), work).await {
        Err(_) => Err(
            Error::timeout(format!("stop {name}"), timeout + Duration::from_secs(15))
                .on(host.name()),
        ),
        Ok(Err(e)) => Err(engine.error(&format!("stop {name}"), e)),
        Ok(Ok(())) => Ok(()),
    }
}

async fn remove(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    engine
        .call(
            &format!("remove {name}"),
            engine.docker().remove_container(name, Some(options)),
        )
        .await
}

async fn rename(host: &Host, from: &str, to: &str) -> Result<()> {
    let engine = host.engine();
    let options = RenameContainerOptionsBuilder::default().name(to).build();
    engine
        .call(
            &format!("rename {from} to {to}"),
            engine.docker().rename_container(from, options),
        )
        .await
}
