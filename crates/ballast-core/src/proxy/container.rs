//! The proxy's containers as Docker sees them: creating one with the
//! proxy's spec (host networking, the shared state directory, its labels),
//! looking at one, and the single engine calls [`super::lifecycle`] composes
//! (start, stop, pause, rename, restart policy, remove). Every call names
//! the host in its error; none decides anything.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, HostConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
};

use super::lifecycle::Image;
use super::listen::Listen;
use super::{LABEL, STATE_DIR};
use crate::error::{ErrorKind, Result};
use crate::host::Host;

pub(super) const SETTINGS_LABEL: &str = "io.ballast.proxy.settings";
pub(super) use crate::container::{inspect, rename, start};

pub(super) const LISTEN_LABEL: &str = "io.ballast.proxy.listen";

pub(super) fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

pub(super) fn is_paused(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub(super) fn labels(c: &ContainerInspectResponse) -> HashMap<String, String> {
    c.config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

pub(super) fn restarts_always(c: &ContainerInspectResponse) -> bool {
    c.host_config
        .as_ref()
        .and_then(|h| h.restart_policy.as_ref())
        .and_then(|p| p.name)
        == Some(RestartPolicyNameEnum::ALWAYS)
}

pub(super) async fn create(
    host: &Host,
    name: &str,
    image: &Image,
    listen: &Listen,
    restart: RestartPolicyNameEnum,
) -> Result<()> {
    let mut labels = HashMap::from([
        (LABEL.to_string(), "1".to_string()),
        (SETTINGS_LABEL.to_string(), listen.digest()),
        (LISTEN_LABEL.to_string(), listen.label()),
    ]);
    labels.extend(image.build.labels());
    let body = ContainerCreateBody {
        image: Some(image.id.clone()),
        cmd: Some(listen.args()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{STATE_DIR}:{STATE_DIR}")]),
            // Old and new process share the host's network namespace, so
            // listening sockets can pass from one to the other; Docker's
            // published ports could not.
            network_mode: Some("host".into()),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    crate::container::create(host, name, &body)
        .await
        .map_err(|e| e.on(host.name()))
}

/// Stops `name`, killing it after `grace` seconds; `step` says why.
pub(super) async fn stop(host: &Host, name: &str, grace: i32, step: &str) -> Result<()> {
    let engine = host.engine();
    let options = StopContainerOptionsBuilder::default().t(grace).build();
    engine
        .call(step, engine.docker().stop_container(name, Some(options)))
        .await
        .map_err(|e| e.on(host.name()))
}

pub(super) async fn remove(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match engine
        .call(
            &format!("remove {name}"),
            engine.docker().remove_container(name, Some(options)),
        )
        .await
    {
        Err(e) if e.kind != ErrorKind::NotFound => Err(e.on(host.name())),
        _ => Ok(()),
    }
}

/// Freezes a container's processes (they keep their sockets).
pub(super) async fn pause(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    engine
        .call(
            &format!("pause {name}"),
            engine.docker().pause_container(name),
        )
        .await
        .map_err(|e| e.on(host.name()))
}

pub(super) async fn unpause(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    engine
        .call(
            &format!("unpause {name}"),
            engine.docker().unpause_container(name),
        )
        .await
        .map_err(|e| e.on(host.name()))
}

pub(super) async fn set_restart(
    host: &Host,
    name: &str,
    policy: RestartPolicyNameEnum,
) -> Result<()> {
    let engine = host.engine();
    let body = ContainerUpdateBody {
        restart_policy: Some(RestartPolicy {
            name: Some(policy),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    engine
        .call(
            &format!("set the restart policy of {name} to {policy}"),
            engine.docker().update_container(name, body),
        )
        .await
        .map_err(|e| e.on(host.name()))
}

/// Has Docker restart `name` in place, killing it after `grace` seconds;
/// `step` says why.
pub(super) async fn restart(host: &Host, name: &str, grace: i32, step: &str) -> Result<()> {
    let engine = host.engine();
    let options = RestartContainerOptionsBuilder::default().t(grace).build();
    engine
        .call(step, engine.docker().restart_container(name, Some(options)))
        .await
        .map_err(|e| e.on(host.name()))
}

/// An inspected proxy container for tests.
#[cfg(test)]
pub(super) fn inspected(
    running: bool,
    paused: bool,
    policy: RestartPolicyNameEnum,
    labels: HashMap<String, String>,
) -> ContainerInspectResponse {
    use bollard::models::{ContainerConfig, ContainerState};
    ContainerInspectResponse {
        state: Some(ContainerState {
            running: Some(running),
            paused: Some(paused),
            ..Default::default()
        }),
        config: Some(ContainerConfig {
            labels: Some(labels),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            restart_policy: Some(RestartPolicy {
                name: Some(policy),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(
        running: bool,
        paused: bool,
        policy: RestartPolicyNameEnum,
    ) -> ContainerInspectResponse {
        inspected(running, paused, policy, HashMap::new())
    }

    #[test]
    fn a_restart_policy_left_at_no_and_a_frozen_container_are_seen() {
        let left = container(true, false, RestartPolicyNameEnum::NO);
        assert!(!restarts_always(&left));
        assert!(restarts_always(&container(
            true,
            false,
            RestartPolicyNameEnum::ALWAYS
        )));
        let frozen = container(true, true, RestartPolicyNameEnum::NO);
        assert!(is_running(&frozen) && is_paused(&frozen));
    }
}
