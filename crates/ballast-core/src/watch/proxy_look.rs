//! A host's ballast-proxy in watch: what one look sees of it (whether it
//! serves: its container runs and it answers `status` on its admin
//! socket; and the request counters it reports for each proxied role on
//! the host), and what that means for the incident book. It is asked
//! within what is left of the host's deadline, so a proxy that does not
//! answer is a proxy down, not a host down.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::assess::{Assessment, HostTrack};
use super::incident::Finding;
use super::watcher::Settings;
use super::Key;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::proxy;
use crate::release::ContainerState;

/// The proxy of a host whose roles use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySeen {
    /// It answered: the counters of each proxied role it routes (a role
    /// not deployed there yet has none).
    Serving(BTreeMap<String, RouteCounts>),
    /// Its container is missing or not running, or it did not answer: why.
    Down(String),
}

/// A role's requests through the proxy, as it reports them: counted since
/// the proxy process started (a new process starts them from 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RouteCounts {
    /// Requests answered.
    pub requests: u64,
    /// Of those, answered 5xx (by the app or by the proxy itself).
    pub responses_5xx: u64,
}

/// Below this, no time is left to ask the proxy: the look says nothing
/// of it rather than calling it down.
const LEAST_TIME: Duration = Duration::from_millis(100);

/// Looks at the proxy on `host` for `roles` of `service`, asking it for
/// an answer by `answer_by`. An error only when the engine cannot tell
/// whether its container runs, or no time is left: nothing can be said of
/// it then.
pub async fn look(
    host: &Host,
    service: &str,
    roles: &[&String],
    answer_by: Instant,
) -> Result<ProxySeen> {
    let step = "ask the proxy its status";
    let Some(c) = crate::container::inspect(host, proxy::CONTAINER).await? else {
        return Ok(ProxySeen::Down(format!(
            "there is no {} container",
            proxy::CONTAINER
        )));
    };
    let state = c
        .state
        .as_ref()
        .and_then(|s| s.status)
        .map(|s| ContainerState::from_docker(s.as_ref()))
        .unwrap_or(ContainerState::Exited);
    if state != ContainerState::Running {
        return Ok(ProxySeen::Down(format!(
            "its container {} is {state}",
            proxy::CONTAINER
        )));
    }
    let budget = answer_by.saturating_duration_since(Instant::now());
    if budget < LEAST_TIME {
        return Err(Error::failed(step, "the look's deadline left no time").on(host.name()));
    }
    match proxy::status(host, budget).await {
        Ok(report) => Ok(ProxySeen::Serving(counts(&report, service, roles))),
        Err(e) => Ok(ProxySeen::Down(format!(
            "it does not answer on its admin socket: {}",
            e.cause
        ))),
    }
}

/// The counters of `roles` among the services `report` lists.
fn counts(
    report: &ballast_proxy_wire::StatusReport,
    service: &str,
    roles: &[&String],
) -> BTreeMap<String, RouteCounts> {
    roles
        .iter()
        .filter_map(|role| {
            let name = proxy::route_name(service, role);
            let s = report.services.iter().find(|s| s.name == name)?;
            let counts = RouteCounts {
                requests: s.requests,
                responses_5xx: s.responses_5xx,
            };
            Some((role.to_string(), counts))
        })
        .collect()
}

/// Judges the proxy of `host` (`seen`: none when no role there uses
/// one): down for `watch.failures` looks in a row is a finding, fewer
/// cannot be judged yet. The hint names the command that starts it, as
/// watch never does (a proxy restart drops connections).
pub fn judge(
    host: &str,
    seen: Option<&ProxySeen>,
    track: &mut HostTrack,
    settings: &Settings,
    locked: bool,
    out: &mut Assessment,
) {
    let key = Key::proxy_down(host);
    match seen {
        None => track.proxy_failures = 0,
        Some(_) if locked => {
            // A deploy or `ballast proxy restart` may be replacing it.
            track.proxy_failures = 0;
            out.unknown.insert(key);
        }
        Some(ProxySeen::Serving(_)) => track.proxy_failures = 0,
        Some(ProxySeen::Down(why)) => {
            track.proxy_failures += 1;
            if track.proxy_failures < settings.failures {
                out.unknown.insert(key);
                return;
            }
            out.findings.push(Finding {
                key,
                cause: why.clone(),
                inhibited: false,
                container: Some(crate::proxy::CONTAINER.to_string()),
                hint: Some(format!(
                    "requests to {host} are not served; watch does not restart the proxy \
                     (a restart drops connections): start it with \
                     `ballast proxy restart --hosts {host}` (routes survive), or see \
                     `docker logs {}` on the host",
                    crate::proxy::CONTAINER
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_proxy_wire::{ServiceStatus, StatusReport};

    fn route(name: &str, requests: u64, responses_5xx: u64) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            hosts: Vec::new(),
            path_prefix: "/".into(),
            targets: Vec::new(),
            maintenance: false,
            paused: false,
            requests,
            responses_5xx,
        }
    }

    #[test]
    fn counts_are_read_per_role_of_this_service_only() {
        let report = StatusReport {
            services: vec![
                route("shop-web", 10, 2),
                route("shop-api", 5, 0),
                route("blog-web", 99, 9),
            ],
            ..StatusReport::default()
        };
        let (web, admin) = ("web".to_string(), "admin".to_string());
        let got = counts(&report, "shop", &[&web, &admin]);
        assert_eq!(
            got,
            BTreeMap::from([(
                "web".to_string(),
                RouteCounts {
                    requests: 10,
                    responses_5xx: 2
                }
            )])
        );
    }
}
