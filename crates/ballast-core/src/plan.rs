//! Planning a rollout: from what each role should run and what each host runs
//! now, the ordered steps per host, grouped in batches. Pure data, no I/O:
//! `ballast plan` prints it, the deploy executor carries it out.

use std::collections::HashMap;

use serde::Serialize;

use crate::release::{container_name, AppContainer};

/// What one role should run after the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleTarget {
    pub role: String,
    pub hosts: Vec<String>,
    pub version: String,
    pub image_id: String,
    /// Digest of everything in the container's definition but the image.
    pub digest: String,
    /// Publishes host ports: the old container must stop before the new starts.
    pub publishes: bool,
    /// Served through ballast-proxy: the proxy checks the new container and
    /// switches to it before the old one stops.
    pub proxied: bool,
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
            BatchSize::Percent(p) => (hosts * p as usize).div_ceil(100),
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
    /// Remove a stopped container (a stale one in the way, or past `retain`).
    Remove {
        name: String,
    },
    /// Create the new container from the role's definition.
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

impl Step {
    /// The phase of a deploy this step belongs to, for timing reports.
    pub fn phase(&self) -> &'static str {
        match self {
            Step::Rename { .. }
            | Step::Remove { .. }
            | Step::Create { .. }
            | Step::Start { .. } => "start",
            Step::AwaitHealthy { .. } | Step::Route { .. } => "healthy",
            Step::Stop { .. } => "switch",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Step::Rename { from, to } => format!("rename {from} to {to}"),
            Step::Remove { name } => format!("remove {name}"),
            Step::Create { name } => format!("create {name}"),
            Step::Start { name } => format!("start {name}"),
            Step::AwaitHealthy { name } => format!("wait until {name} is healthy"),
            Step::Route { name } => {
                format!("switch the proxy to {name} once healthy, drain the old")
            }
            Step::Stop { name } => format!("stop {name} (kept for rollback)"),
        }
    }
}

/// The steps of one role on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub role: String,
    /// The container that runs the target version once done.
    pub target: String,
    /// Containers running now that the rollout stops.
    pub old: Vec<String>,
    /// Whether the target is a retained container started again (rollback).
    pub reuses: bool,
    pub steps: Vec<Step>,
}

impl HostPlan {
    pub fn is_current(&self) -> bool {
        self.steps.is_empty()
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
    pub batches: Vec<Batch>,
}

impl Plan {
    pub fn host_plans(&self) -> impl Iterator<Item = &HostPlan> {
        self.batches.iter().flat_map(|b| b.hosts.iter())
    }

    pub fn is_noop(&self) -> bool {
        self.host_plans().all(HostPlan::is_current)
    }
}

/// Plans the rollout of `targets` given what `observed` says each host runs.
/// `now` (unix seconds) names containers moved aside.
pub fn plan(
    service: &str,
    targets: &[RoleTarget],
    batch: BatchSize,
    retain: usize,
    observed: &HashMap<String, Vec<AppContainer>>,
    now: i64,
) -> Plan {
    let mut batches = Vec::new();
    for target in targets {
        let size = batch.of(target.hosts.len());
        for chunk in target.hosts.chunks(size) {
            let hosts = chunk
                .iter()
                .map(|host| {
                    let on_host: Vec<&AppContainer> = observed
                        .get(host)
                        .map(|cs| cs.iter().filter(|c| c.role == target.role).collect())
                        .unwrap_or_default();
                    plan_host(service, host, target, retain, &on_host, now)
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
        batches,
    }
}

fn plan_host(
    service: &str,
    host: &str,
    target: &RoleTarget,
    retain: usize,
    containers: &[&AppContainer],
    now: i64,
) -> HostPlan {
    let name = container_name(service, &target.role, &target.version);
    let matches =
        |c: &AppContainer| c.image_id == target.image_id && c.config_digest == target.digest;
    let existing = containers.iter().find(|c| c.name == name);
    let others_running: Vec<String> = containers
        .iter()
        .filter(|c| c.running && c.name != name)
        .map(|c| c.name.clone())
        .collect();
    let mut plan = HostPlan {
        host: host.to_string(),
        role: target.role.clone(),
        target: name.clone(),
        old: others_running.clone(),
        reuses: false,
        steps: Vec::new(),
    };

    // Already there and alone: nothing to do.
    if let Some(c) = existing {
        if c.running && matches(c) && others_running.is_empty() {
            return plan;
        }
    }

    let mut steps = Vec::new();
    let mut old = others_running;
    let mut gone: Vec<String> = Vec::new();
    let mut create = true;
    match existing {
        Some(c) if matches(c) && !c.running => {
            // A retained release: start it again instead of creating one.
            create = false;
            plan.reuses = true;
        }
        Some(c) if matches(c) => {
            // Running and right, but others run beside it: only stop those.
            plan.old = old.clone();
            plan.steps = old.iter().map(|n| Step::Stop { name: n.clone() }).collect();
            return plan;
        }
        Some(c) if c.running => {
            let aside = format!("{name}-replaced-{now}");
            steps.push(Step::Rename {
                from: name.clone(),
                to: aside.clone(),
            });
            old.push(aside);
        }
        Some(_) => {
            steps.push(Step::Remove { name: name.clone() });
            gone.push(name.clone());
        }
        None => {}
    }
    if create {
        steps.push(Step::Create { name: name.clone() });
    }
    let stop_old = old.iter().map(|n| Step::Stop { name: n.clone() });
    if target.proxied {
        steps.push(Step::Start { name: name.clone() });
        steps.push(Step::Route { name: name.clone() });
        steps.extend(stop_old);
    } else if target.publishes {
        steps.extend(stop_old);
        steps.push(Step::Start { name: name.clone() });
        steps.push(Step::AwaitHealthy { name: name.clone() });
    } else {
        steps.push(Step::Start { name: name.clone() });
        steps.push(Step::AwaitHealthy { name: name.clone() });
        steps.extend(stop_old);
    }
    steps.extend(prune(&name, &old, containers, &gone, retain));
    plan.old = old;
    plan.steps = steps;
    plan
}

/// Stopped containers beyond `retain` releases, oldest first. The target
/// counts as the newest, the containers just stopped come next.
fn prune(
    target: &str,
    stopping: &[String],
    containers: &[&AppContainer],
    gone: &[String],
    retain: usize,
) -> Vec<Step> {
    let mut kept = 1 + stopping.len();
    let mut steps = Vec::new();
    // `containers` is newest first (see release::observe).
    for c in containers {
        let counted = c.name == target || stopping.contains(&c.name) || gone.contains(&c.name);
        if counted || c.running {
            continue;
        }
        if kept < retain.max(1) {
            kept += 1;
        } else {
            steps.push(Step::Remove {
                name: c.name.clone(),
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(version: &str, publishes: bool, hosts: &[&str]) -> RoleTarget {
        RoleTarget {
            role: "web".into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            version: version.into(),
            image_id: format!("sha256:{version}"),
            digest: "cfg".into(),
            publishes,
            proxied: false,
        }
    }

    fn container(version: &str, running: bool, created: i64) -> AppContainer {
        AppContainer {
            id: format!("id-{version}"),
            name: format!("shop-web-{version}"),
            role: "web".into(),
            version: version.into(),
            image_id: format!("sha256:{version}"),
            config_digest: "cfg".into(),
            running,
            state: if running { "running" } else { "exited" }.into(),
            status: String::new(),
            created,
            deployed_by: String::new(),
            deployed_at: String::new(),
        }
    }

    fn steps_for(t: RoleTarget, on_host: Vec<AppContainer>, retain: usize) -> Vec<Step> {
        let observed = HashMap::from([("h1".to_string(), on_host)]);
        let p = plan("shop", &[t], BatchSize::Count(1), retain, &observed, 1000);
        p.batches[0].hosts[0].steps.clone()
    }

    fn create(v: &str) -> Step {
        Step::Create {
            name: format!("shop-web-{v}"),
        }
    }
    fn start(v: &str) -> Step {
        Step::Start {
            name: format!("shop-web-{v}"),
        }
    }
    fn healthy(v: &str) -> Step {
        Step::AwaitHealthy {
            name: format!("shop-web-{v}"),
        }
    }
    fn stop(v: &str) -> Step {
        Step::Stop {
            name: format!("shop-web-{v}"),
        }
    }
    fn remove(v: &str) -> Step {
        Step::Remove {
            name: format!("shop-web-{v}"),
        }
    }

    #[test]
    fn first_deploy_creates_starts_and_waits() {
        let steps = steps_for(target("v1", false, &["h1"]), vec![], 5);
        assert_eq!(steps, [create("v1"), start("v1"), healthy("v1")]);
    }

    #[test]
    fn upgrade_starts_new_before_stopping_old() {
        let steps = steps_for(
            target("v2", false, &["h1"]),
            vec![container("v1", true, 1)],
            5,
        );
        assert_eq!(
            steps,
            [create("v2"), start("v2"), healthy("v2"), stop("v1")]
        );
    }

    #[test]
    fn publishing_roles_stop_old_first_to_free_the_port() {
        let steps = steps_for(
            target("v2", true, &["h1"]),
            vec![container("v1", true, 1)],
            5,
        );
        assert_eq!(
            steps,
            [create("v2"), stop("v1"), start("v2"), healthy("v2")]
        );
    }

    #[test]
    fn proxied_roles_switch_through_the_proxy_before_stopping_old() {
        let mut t = target("v2", false, &["h1"]);
        t.proxied = true;
        let steps = steps_for(t, vec![container("v1", true, 1)], 5);
        let route = Step::Route {
            name: "shop-web-v2".into(),
        };
        assert_eq!(steps, [create("v2"), start("v2"), route, stop("v1")]);
    }

    #[test]
    fn a_host_already_on_the_target_has_nothing_to_do() {
        let observed = vec![container("v2", true, 2), container("v1", false, 1)];
        assert_eq!(steps_for(target("v2", false, &["h1"]), observed, 5), []);
    }

    #[test]
    fn rollback_starts_the_retained_container() {
        let observed = vec![container("v2", true, 2), container("v1", false, 1)];
        let observed_map = HashMap::from([("h1".to_string(), observed)]);
        let p = plan(
            "shop",
            &[target("v1", false, &["h1"])],
            BatchSize::Count(1),
            5,
            &observed_map,
            9,
        );
        let host = &p.batches[0].hosts[0];
        assert!(host.reuses);
        assert_eq!(host.steps, [start("v1"), healthy("v1"), stop("v2")]);
    }

    #[test]
    fn same_version_with_new_config_moves_the_running_one_aside() {
        let mut t = target("v2", false, &["h1"]);
        t.digest = "new".into();
        let steps = steps_for(t, vec![container("v2", true, 2)], 5);
        let aside = "shop-web-v2-replaced-1000".to_string();
        assert_eq!(
            steps,
            [
                Step::Rename {
                    from: "shop-web-v2".into(),
                    to: aside.clone()
                },
                create("v2"),
                start("v2"),
                healthy("v2"),
                Step::Stop { name: aside },
            ]
        );
    }

    #[test]
    fn a_stale_stopped_container_in_the_way_is_removed() {
        let mut stale = container("v3", false, 3);
        stale.image_id = "sha256:other".into();
        let steps = steps_for(
            target("v3", false, &["h1"]),
            vec![stale, container("v2", true, 2)],
            5,
        );
        assert_eq!(
            steps,
            [
                remove("v3"),
                create("v3"),
                start("v3"),
                healthy("v3"),
                stop("v2")
            ]
        );
    }

    #[test]
    fn releases_beyond_retain_are_pruned_oldest_first() {
        let observed = vec![
            container("v4", true, 4),
            container("v3", false, 3),
            container("v2", false, 2),
            container("v1", false, 1),
        ];
        let steps = steps_for(target("v5", false, &["h1"]), observed, 3);
        // Kept: v5 (new), v4 (just stopped), v3. Removed: v2, v1.
        assert_eq!(
            steps,
            [
                create("v5"),
                start("v5"),
                healthy("v5"),
                stop("v4"),
                remove("v2"),
                remove("v1")
            ]
        );
    }

    #[test]
    fn batches_follow_count_and_percent() {
        assert_eq!(BatchSize::Count(2).of(5), 2);
        assert_eq!(BatchSize::Count(9).of(3), 3);
        assert_eq!(BatchSize::Count(0).of(3), 1);
        assert_eq!(BatchSize::Percent(50).of(3), 2);
        assert_eq!(BatchSize::Percent(25).of(10), 3);
        assert_eq!(BatchSize::Percent(1).of(3), 1);
        let t = target("v1", false, &["a", "b", "c", "d", "e"]);
        let p = plan("shop", &[t], BatchSize::Count(2), 5, &HashMap::new(), 0);
        let sizes: Vec<usize> = p.batches.iter().map(|b| b.hosts.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }
}
