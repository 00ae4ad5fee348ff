//! The plan of one role on one host: from the containers found there (and
//! where the host's proxy routes), the steps that end with the target
//! container proven and serving, the old ones stopped and kept, and
//! releases past `retain` removed.

use super::{HostPlan, HostState, HostTarget, Previous, RoleTarget, Settings, Step, Switch};
use crate::release::{container_name, AppContainer, ContainerState};

/// What becomes of a container that holds the target's name.
enum Found {
    /// Nothing holds the name: create the target.
    Nothing,
    /// The target, running: prove it if it is not yet, then retire the rest.
    Running,
    /// The target, created or stopped: start it again (a retained release,
    /// or a deploy interrupted before `start`).
    Stopped,
    /// Another definition, running: move it aside, stop it once proven.
    InTheWay,
    /// Crash-looping, dead, or another definition stopped: remove it.
    Broken,
}

pub(super) fn plan_host(
    service: &str,
    target: &RoleTarget,
    h: &HostTarget,
    settings: &Settings,
    state: &HostState,
) -> HostPlan {
    let name = container_name(service, &target.role, &target.version);
    plan_named(name, target, h, settings, state)
}

/// [`plan_host`] for the container called `name` (a revert may return to
/// one moved aside under another name).
fn plan_named(
    name: String,
    target: &RoleTarget,
    h: &HostTarget,
    settings: &Settings,
    state: &HostState,
) -> HostPlan {
    let mine: Vec<&AppContainer> = state
        .containers
        .iter()
        .filter(|c| c.role == target.role)
        .collect();
    let existing = mine.iter().find(|c| c.name == name).copied();
    let matches = |c: &AppContainer| c.image_id == target.image_id && c.config_digest == h.digest;
    let found = match existing {
        None => Found::Nothing,
        Some(c) if matches(c) => match c.state {
            ContainerState::Running => Found::Running,
            ContainerState::Created | ContainerState::Exited => Found::Stopped,
            _ => Found::Broken,
        },
        Some(c) if c.state.is_active() => Found::InTheWay,
        Some(_) => Found::Broken,
    };
    let mut old: Vec<String> = mine
        .iter()
        .filter(|c| c.name != name && c.state.is_active())
        .map(|c| c.name.clone())
        .collect();
    let aside = format!("{name}-replaced-{}", settings.now);
    // What serves now: a container of another version, or the one of this
    // version with another definition, which is moved aside first.
    let previous = mine
        .iter()
        .find(|c| c.running && c.name != name)
        .map(|c| previous_of(c, &c.name))
        .or_else(|| match (&found, existing) {
            (Found::InTheWay, Some(c)) if c.running => Some(previous_of(c, &aside)),
            _ => None,
        });

    let mut steps = Vec::new();
    let mut gone = Vec::new();
    let mut reuses = false;
    let mut fallback = None;
    let mut stop_unproven = false;
    let stop = |names: &[String]| -> Vec<Step> {
        names
            .iter()
            .map(|n| Step::Stop { name: n.clone() })
            .collect()
    };
    match found {
        Found::Running => {
            if !proven(existing.expect("found"), target, &old, state) {
                steps.push(gate(&target.switch, &name));
                if old.is_empty() && target.switch.route().is_none() {
                    fallback = mine
                        .iter()
                        .find(|c| c.name != name && c.state == ContainerState::Exited)
                        .map(|c| c.name.clone());
                }
                // Left running by an interrupted run: if it fails its gate it
                // stops, unless it is all the role has (stopping it then
                // would be worse than leaving it).
                stop_unproven = fallback.is_some() || !old.is_empty() || previous.is_some();
            }
            steps.extend(stop(&old));
        }
        Found::Nothing | Found::Stopped | Found::InTheWay | Found::Broken => {
            match found {
                Found::InTheWay => {
                    steps.push(Step::Rename {
                        from: name.clone(),
                        to: aside.clone(),
                    });
                    old.push(aside);
                }
                Found::Broken => {
                    steps.push(Step::Remove { name: name.clone() });
                    gone.push(name.clone());
                }
                Found::Stopped => reuses = true,
                Found::Nothing | Found::Running => {}
            }
            if !reuses {
                if h.spec.secret_files && !h.spec.env_secret.is_empty() {
                    steps.push(Step::WriteSecrets { name: name.clone() });
                }
                steps.push(Step::Create { name: name.clone() });
            }
            let start = Step::Start { name: name.clone() };
            match &target.switch {
                Switch::StopFirst => {
                    steps.extend(stop(&old));
                    steps.push(start);
                    steps.push(gate(&target.switch, &name));
                }
                Switch::Proxy(_) | Switch::StartFirst => {
                    steps.push(start);
                    steps.push(gate(&target.switch, &name));
                    steps.extend(stop(&old));
                }
            }
        }
    }
    if !steps.is_empty() {
        steps.extend(prune(&name, &old, &mine, &gone, settings.retain));
    }
    let creates = steps.iter().any(|s| matches!(s, Step::Create { .. }));
    // Everything before the proxy's switch leaves traffic alone: it may
    // run before the first batch.
    let ahead = match &target.switch {
        Switch::Proxy(_) if settings.start_ahead => steps
            .iter()
            .position(|s| matches!(s, Step::Route { .. }))
            .unwrap_or(0),
        _ => 0,
    };
    // Everything after it only retires what no longer takes traffic: it
    // need not hold up the next batch.
    let behind = match &target.switch {
        Switch::Proxy(_) if settings.start_ahead => steps
            .iter()
            .position(|s| matches!(s, Step::Route { .. }))
            .map_or(0, |route| steps.len() - route - 1),
        _ => 0,
    };
    HostPlan {
        host: h.host.clone(),
        role: target.role.clone(),
        target: name,
        version: target.version.clone(),
        image_id: target.image_id.clone(),
        digest: h.digest.clone(),
        spec: h.spec.clone(),
        health: target.health.clone(),
        health_timeout: target.health_timeout,
        switch: target.switch.clone(),
        deliver: creates && !state.images.contains(&target.image_id),
        old,
        previous,
        fallback,
        stop_unproven,
        reuses,
        steps,
        ahead,
        behind,
    }
}

fn previous_of(c: &AppContainer, name: &str) -> Previous {
    Previous {
        name: name.to_string(),
        version: c.version.clone(),
        image_id: c.image_id.clone(),
        digest: c.config_digest.clone(),
    }
}

/// The step that proves the target before anything old stops: the proxy's
/// health-gated switch, or ballast's own health wait.
fn gate(switch: &Switch, name: &str) -> Step {
    let name = name.to_string();
    match switch {
        Switch::Proxy(_) => Step::Route { name },
        Switch::StopFirst | Switch::StartFirst => Step::AwaitHealthy { name },
    }
}

/// Whether the running target needs no gate: the proxy routes to it, or
/// (without a proxy) it runs alone and was found healthy when observed.
fn proven(c: &AppContainer, target: &RoleTarget, old: &[String], state: &HostState) -> bool {
    match &target.switch {
        Switch::Proxy(route) => c.ip.as_ref().is_some_and(|ip| {
            state
                .routes
                .get(&route.service)
                .is_some_and(|addrs| addrs.contains(&route.target(ip)))
        }),
        Switch::StopFirst | Switch::StartFirst => old.is_empty() && state.proven.contains(&c.name),
    }
}

/// Stopped containers beyond `retain` releases, oldest first. The target
/// counts as the newest, the containers just stopped come next; the rule
/// is `ballast prune`'s ([`crate::prune::past_retain`]).
fn prune(
    target: &str,
    stopping: &[String],
    mine: &[&AppContainer],
    gone: &[String],
    retain: usize,
) -> Vec<Step> {
    let kept = 1 + stopping.len();
    // `mine` is newest first (see release::observe).
    let stopped = mine.iter().filter(|c| {
        let counted = c.name == target || stopping.contains(&c.name) || gone.contains(&c.name);
        !counted && !c.state.is_active()
    });
    crate::prune::past_retain(stopped, kept, retain)
        .map(|c| Step::Remove {
            name: c.name.clone(),
        })
        .collect()
}

/// The plan that puts `done` (a host switched by this rollout) back on the
/// container that served before, through the same gate and switch; `None`
/// when nothing served before. `state` is the host as it is now. A revert
/// only starts what is there: if that container is gone, the plan creates
/// and the caller must refuse it.
pub fn revert(done: &HostPlan, state: &HostState, now: i64) -> Option<HostPlan> {
    let previous = done.previous.as_ref()?;
    let target = RoleTarget {
        role: done.role.clone(),
        version: previous.version.clone(),
        image_id: previous.image_id.clone(),
        health: done.health.clone(),
        health_timeout: done.health_timeout,
        switch: done.switch.clone(),
        hosts: Vec::new(),
    };
    let h = HostTarget {
        host: done.host.clone(),
        spec: done.spec.clone(),
        digest: previous.digest.clone(),
    };
    let settings = Settings {
        batch: super::BatchSize::Count(1),
        // Revert prunes nothing: every release stays for the operator.
        retain: usize::MAX,
        now,
        // A revert goes back host by host, through its batches.
        start_ahead: false,
    };
    Some(plan_named(
        previous.name.clone(),
        &target,
        &h,
        &settings,
        state,
    ))
}
