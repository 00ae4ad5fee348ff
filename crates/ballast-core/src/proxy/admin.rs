//! Talking to a host's proxy through its admin socket (reached over the
//! host's SSH connection only): one request, which process answers and
//! what it reports, and the routes: how a role is routed, switching it,
//! and reading it back.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use ballast_proxy_wire::{
    AdminError, AdminRequest, AdminResponse, DeployRequest, HealthSpec, StatusReport,
};

use super::ADMIN_SOCKET;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;

/// Which proxy process answers on `host` (its `instance`).
pub async fn instance(host: &Host) -> Result<String> {
    instance_within(host, Duration::from_secs(5)).await
}

/// Which proxy process answers on `host`, if it answers within `deadline`.
pub async fn instance_within(host: &Host, deadline: Duration) -> Result<String> {
    Ok(status(host, deadline).await?.instance)
}

/// What the proxy on `host` reports (its process, routes, targets and
/// request counters), if it answers within `deadline`.
pub async fn status(host: &Host, deadline: Duration) -> Result<StatusReport> {
    match admin(host, &AdminRequest::Status, deadline).await? {
        AdminResponse {
            status: Some(status),
            ..
        } => Ok(status),
        _ => Err(
            Error::failed("ask the proxy its status", "it answered status without one")
                .on(host.name()),
        ),
    }
}

/// Waits until a proxy answers on `host`, and (with `not`) one that is not
/// the process `not`; `container` is the one whose logs explain a failure.
pub async fn wait_for_instance(
    host: &Host,
    not: Option<&str>,
    deadline: Duration,
    container: &str,
) -> Result<String> {
    let until = Instant::now() + deadline;
    loop {
        let cause = match instance(host).await {
            Ok(i) if Some(i.as_str()) != not => return Ok(i),
            Ok(_) => "the old proxy still answers: the new one has not taken over".to_string(),
            Err(e) => e.cause,
        };
        if Instant::now() >= until {
            let logs = host
                .engine()
                .log_tail(container, 10)
                .await
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("wait for {container} to answer"),
                format_args!(
                    "{cause}\n  last log lines:\n    {}",
                    logs.trim().replace('\n', "\n    ")
                ),
            )
            .on(host.name())
            .hint(format!("see `docker logs {container}` on the host")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends one admin request to the proxy on `host`, through its socket.
pub async fn admin(
    host: &Host,
    request: &AdminRequest,
    deadline: Duration,
) -> Result<AdminResponse> {
    let socket = host
        .unix(ADMIN_SOCKET, deadline.min(Duration::from_secs(10)))
        .await?;
    ballast_proxy_wire::admin_request(&socket, request, deadline)
        .await
        .map_err(|e| Error::new(kind_of(&e), "ask the proxy", e).on(host.name()))
}

/// What an admin failure says about the request: the proxy's own refusal
/// (`Failed`: it answered, and did not do it), no answer in time
/// (`Timeout`) or a connection that could not be made or broke off
/// (`Unreachable`). After the last two, a request the proxy received may
/// have been carried out all the same.
fn kind_of(e: &AdminError) -> ErrorKind {
    match e {
        AdminError::Refused { .. } => ErrorKind::Failed,
        AdminError::Timeout { .. } => ErrorKind::Timeout,
        _ => ErrorKind::Unreachable,
    }
}

/// The proxy's name for the route of `role` of `service`.
pub fn route_name(service: &str, role: &str) -> String {
    format!("{service}-{role}")
}

/// Where and how a role is routed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// The proxy's name for the route: `<service>-<role>`.
    pub service: String,
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    /// The app's port inside its container.
    pub port: u16,
    pub health: HealthSpec,
    #[serde(with = "humantime_serde")]
    pub deploy_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Body limits in bytes (`None`: no limit).
    pub max_request_body_bytes: Option<u64>,
    pub max_response_body_bytes: Option<u64>,
}

impl Route {
    /// The address the proxy routes to for a container at `ip`.
    pub fn target(&self, ip: &str) -> String {
        format!("{ip}:{}", self.port)
    }
}

/// Has the proxy on `host` check `target` (`ip:port`), switch to it and
/// drain the old target; answers once done. If the target never gets
/// healthy, nothing is switched and the error says so.
pub async fn switch(host: &Host, route: &Route, target: &str) -> Result<()> {
    let request = AdminRequest::Deploy(DeployRequest {
        service: route.service.clone(),
        hosts: route.hosts.clone(),
        path_prefix: route.path_prefix.clone(),
        targets: vec![target.to_string()],
        health: route.health.clone(),
        deploy_timeout_ms: route.deploy_timeout.as_millis() as u64,
        drain_timeout_ms: route.drain_timeout.as_millis() as u64,
        max_request_body_bytes: route.max_request_body_bytes,
        max_response_body_bytes: route.max_response_body_bytes,
    });
    let deadline = route
        .deploy_timeout
        .saturating_add(route.drain_timeout)
        .saturating_add(Duration::from_secs(15));
    // A switch left running by an interrupted deploy finishes inside the
    // proxy on its own; wait for it rather than fail.
    // The proxy stays busy through the health wait and the drain.
    let give_up = Instant::now() + route.deploy_timeout.saturating_add(route.drain_timeout);
    loop {
        let result = admin(host, &request, deadline).await.map(|_| ());
        match result {
            Err(e) if e.cause.contains("already under way") && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => {
                return other.map_err(|e| Error {
                    step: format!("switch the proxy to {target}"),
                    ..e
                })
            }
        }
    }
}

/// Where the proxy on `host` routes each route now (route name to
/// `ip:port` targets); empty when the host has no proxy that answers.
pub async fn routes(host: &Host) -> BTreeMap<String, Vec<String>> {
    try_routes(host).await.unwrap_or_default()
}

/// Where the proxy on `host` routes each route now; an error when it does
/// not answer.
pub async fn try_routes(host: &Host) -> Result<BTreeMap<String, Vec<String>>> {
    Ok(status(host, Duration::from_secs(5))
        .await?
        .services
        .into_iter()
        .map(|s| (s.name, s.targets.into_iter().map(|t| t.addr).collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_proxys_own_refusal_says_nothing_was_done() {
        let refused = AdminError::Refused {
            command: "deploy",
            message: "target never got healthy".into(),
            response: Box::new(AdminResponse::error("target never got healthy")),
        };
        assert_eq!(kind_of(&refused), ErrorKind::Failed);
        let timeout = AdminError::Timeout {
            command: "deploy",
            deadline: Duration::from_secs(1),
        };
        assert_eq!(kind_of(&timeout), ErrorKind::Timeout);
        let broke = AdminError::Protocol {
            command: "deploy",
            reason: "connection closed before message completed".into(),
        };
        assert_eq!(kind_of(&broke), ErrorKind::Unreachable);
        let connect = AdminError::Connect {
            socket: ADMIN_SOCKET.into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(kind_of(&connect), ErrorKind::Unreachable);
    }
}
