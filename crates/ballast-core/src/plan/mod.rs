//! Planning a rollout: from what each role should run on each host and what
//! each host runs now, the ordered steps per host, grouped in batches. Pure
//! data, no I/O: `ballast plan` prints it, the deploy executor carries it out
//! and decides nothing of its own. A host plan holds everything the executor
//! needs: the container's definition and digest, how health is judged, how
//! the old container gives way (through the proxy or not), whether the image
//! must be delivered, and what is pruned.
//!
//! Planning converges: a host left half done by an interrupted deploy (the
//! new container created, started but never proven, or crash-looping) is
//! planned from what is there, so a plain rerun finishes the job.

mod host;
mod proxy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::proxy::Route;
use crate::release::AppContainer;
use crate::spec::{HealthMode, RoleSpec};

pub use crate::proxy::ProxyFound;
pub use host::revert;
pub use proxy::{proxies, proxy_plan, ProxyChange, ProxyPlan, WantedProxy};

/// What one role should run after the rollout, host by host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleTarget {
    pub role: String,
    pub version: String,
    pub image_id: String,
    /// How a new container is judged healthy.
    pub health: HealthMode,
    /// How long a new container may take to become healthy.
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
    /// How the old container gives way to the new one.
    pub switch: Switch,
    pub hosts: Vec<HostTarget>,
}

/// The role's container on one host: its definition differs per host when
/// the host has its own variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostTarget {
    pub host: String,
    pub spec: RoleSpec,
    /// Digest of `spec` (and the secrets' values): a container with another
    /// digest runs another definition and is replaced.
    pub digest: String,
}

/// How the old container of a role gives way to the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Switch {
    /// The host's proxy checks the new container, routes to it and drains
    /// the old one; then the old one stops.
    Proxy(Route),
    /// The role publishes host ports: the old one stops before the new
    /// starts (a short gap).
    StopFirst,
    /// The new one starts and is checked, then the old one stops.
    StartFirst,
}

impl Switch {
    pub fn route(&self) -> Option<&Route> {
        match self {
            Switch::Proxy(route) => Some(route),
            _ => None,
        }
    }
}

/// What planning knows of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// The service's containers there, newest first.
    pub containers: Vec<AppContainer>,
    /// Where the host's proxy routes each route now (route name to
    /// `ip:port` targets); empty when no proxy answered.
    pub routes: BTreeMap<String, Vec<String>>,
    /// Image IDs the host has.
    pub images: BTreeSet<String>,
    /// Containers found healthy when observed (checked only for a target
    /// container already running alone, so a rerun knows it was proven).
    pub proven: BTreeSet<String>,
    /// The host's ballast-proxy container, if it has one.
    pub proxy: Option<ProxyFound>,
}

/// How many hosts of a role switch together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BatchSize {
    Count(usize),
    Percent(u8),
}

impl BatchSize {
    /// Hosts per batch for a role of `hosts` hosts: at least one.
    pub fn of(self, hosts: usize) -> usize {
        let n = match self {
            BatchSize::Count(c) => c,
            // Split so that no product overflows, whatever the host count.
            BatchSize::Percent(p) => {
                let p = p as usize;
                (hosts / 100) * p + ((hosts % 100) * p).div_ceil(100)
            }
        };
        n.clamp(1, hosts.max(1))
    }
}

/// One step on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// A running container holds the name the new one needs: move it aside.
    Rename {
        from: String,
        to: String,
    },
    /// Remove a container: a stale one in the way, a crash-looping one, or
    /// one past `retain`.
    Remove {
        name: String,
    },
    /// Write the new container's secret files on the host (roles with
    /// `secret_files`), each 0400 in a root-only directory.
    WriteSecrets {
        name: String,
    },
    /// Create the new container from the plan's definition.
    Create {
        name: String,
    },
    Start {
        name: String,
    },
    AwaitHealthy {
        name: String,
    },
    /// Have the host's proxy check the container, switch to it and drain
    /// the old one.
    Route {
        name: String,
    },
    /// Stop an old container; it is kept for rollback.
    Stop {
        name: String,
    },
}

/// The kind of a step, for timing reports and for tests that stop a
/// deploy at a named step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Rename,
    Remove,
    WriteSecrets,
    Create,
    Start,
    AwaitHealthy,
    Route,
    Stop,
}

impl Step {
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Rename { .. } => StepKind::Rename,
            Step::Remove { .. } => StepKind::Remove,
            Step::WriteSecrets { .. } => StepKind::WriteSecrets,
            Step::Create { .. } => StepKind::Create,
            Step::Start { .. } => StepKind::Start,
            Step::AwaitHealthy { .. } => StepKind::AwaitHealthy,
            Step::Route { .. } => StepKind::Route,
            Step::Stop { .. } => StepKind::Stop,
        }
    }

    /// The phase of a deploy this step belongs to, for timing reports.
    pub fn phase(&self) -> &'static str {
        match self.kind() {
            StepKind::Rename
            | StepKind::Remove
            | StepKind::WriteSecrets
            | StepKind::Create
            | StepKind::Start => "start",
            StepKind::AwaitHealthy | StepKind::Route => "healthy",
            StepKind::Stop => "stop",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Step::Rename { from, to } => format!("rename {from} to {to}"),
            Step::Remove { name } => format!("remove {name}"),
            Step::WriteSecrets { name } => {
                format!("write the secret files of {name} (0400, root only)")
            }
            Step::Create { name } => format!("create {name}"),
            Step::Start { name } => format!("start {name}"),
            Step::AwaitHealthy { name } => format!("wait until {name} is healthy"),
            Step::Route { name } => {
                format!("switch the proxy to {name} once healthy, drain the old")
            }
            Step::Stop { name } => format!("stop {name}, kept for rollback"),
        }
    }
}

/// A release as one container records it: what a revert returns to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Previous {
    pub name: String,
    pub version: String,
    pub image_id: String,
    pub digest: String,
}

/// The steps of one role on one host, and all they need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub role: String,
    /// The container that runs the target version once done.
    pub target: String,
    pub version: String,
    pub image_id: String,
    pub digest: String,
    /// The definition a `Create` step creates the target from.
    pub spec: RoleSpec,
    pub health: HealthMode,
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
    pub switch: Switch,
    /// The image must be sent to the host first (only missing layers are).
    pub deliver: bool,
    /// Containers running now that the rollout stops.
    pub old: Vec<String>,
    /// What served before this rollout, if anything: where a revert goes.
    pub previous: Option<Previous>,
    /// A stopped container to start again if the target fails its gate: set
    /// when an interrupted rollout already stopped the old one (a role that
    /// publishes ports) and left the target unproven.
    pub fallback: Option<String>,
    /// Whether a failed gate stops the target though this run did not start
    /// it: an interrupted run left it running unproven (a crash loop caught
    /// between restarts, a version that never turns healthy) while another
    /// container serves or can serve again.
    pub stop_unproven: bool,
    /// Whether the target is a retained container started again (rollback).
    pub reuses: bool,
    pub steps: Vec<Step>,
    /// How many of the first steps run before the first batch, on every
    /// host at once (`deploy.start_ahead`): the target of a proxy role is
    /// created and started while the old container serves; its batch
    /// then only switches. Zero: the whole plan runs in its batch.
    pub ahead: usize,
    /// How many of the last steps run beside the later batches (also
    /// `deploy.start_ahead`): once the proxy routes to the target and has
    /// drained the old container, stopping it and pruning old releases
    /// leave traffic alone, so they need not hold up the next batch; the
    /// deploy ends once they are done. Zero: the whole plan runs in its
    /// batch.
    pub behind: usize,
}

impl HostPlan {
    pub fn is_current(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether carrying out the steps switches what serves on the host.
    pub fn switches(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s.kind(),
                StepKind::Create | StepKind::Start | StepKind::Route | StepKind::AwaitHealthy
            )
        })
    }
}

/// Hosts of one role switched together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    pub role: String,
    pub hosts: Vec<HostPlan>,
}

/// The whole rollout, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub service: String,
    pub version: String,
    pub image_id: String,
    /// Where the image can be pulled again by digest (registry delivery),
    /// recorded on the containers created: known once pushed, or, for a
    /// rollback, from the release's containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_source: Option<String>,
    /// What becomes of the proxies before the roles roll.
    pub proxies: Vec<ProxyPlan>,
    pub batches: Vec<Batch>,
}

impl Plan {
    pub fn host_plans(&self) -> impl Iterator<Item = &HostPlan> {
        self.batches.iter().flat_map(|b| b.hosts.iter())
    }

    pub fn is_noop(&self) -> bool {
        self.host_plans().all(HostPlan::is_current) && self.proxies.iter().all(|p| !p.change.acts())
    }

    /// Hosts the image must be delivered to, sorted, each once.
    pub fn deliveries(&self) -> Vec<&str> {
        let hosts: BTreeSet<&str> = self
            .host_plans()
            .filter(|p| p.deliver)
            .map(|p| p.host.as_str())
            .collect();
        hosts.into_iter().collect()
    }
}

/// How the rollout goes beyond what each role should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub batch: BatchSize,
    /// Releases each host keeps, the running one included.
    pub retain: usize,
    /// Unix seconds, to name containers moved aside.
    pub now: i64,
    /// Start the new containers of proxy roles before the first batch
    /// (`deploy.start_ahead`).
    pub start_ahead: bool,
}

/// Plans the rollout of `targets` given each host's `observed` state.
pub fn plan(
    service: &str,
    version: &str,
    image_id: &str,
    targets: &[RoleTarget],
    settings: Settings,
    observed: &HashMap<String, HostState>,
) -> Plan {
    let empty = HostState::default();
    let mut batches = Vec::new();
    for target in targets {
        let size = settings.batch.of(target.hosts.len());
        for chunk in target.hosts.chunks(size) {
            let hosts = chunk
                .iter()
                .map(|h| {
                    let state = observed.get(&h.host).unwrap_or(&empty);
                    host::plan_host(service, target, h, &settings, state)
                })
                .collect();
            batches.push(Batch {
                role: target.role.clone(),
                hosts,
            });
        }
    }
    Plan {
        service: service.to_string(),
        version: version.to_string(),
        image_id: image_id.to_string(),
        image_source: None,
        proxies: Vec::new(),
        batches,
    }
}
