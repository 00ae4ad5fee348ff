//! What the hosts run now, role by role: the table `ballast status` shows,
//! built from the containers observed on each host. One row per host and
//! role of the config in scope: each running container, or why none runs;
//! hosts that did not answer are listed apart.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::release::AppContainer;
use crate::scope::Scope;

/// The status of every host and role in scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    /// By role name, then host in the role's order.
    pub hosts: Vec<Row>,
    /// Hosts that could not be connected to or asked, by host name.
    pub unreachable: Vec<Unreachable>,
}

/// A role on a host: one running container of it, or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub host: String,
    pub role: String,
    /// The running container's version; `None` when none runs.
    pub version: Option<String>,
    pub state: State,
    /// Docker's status line: uptime and health (of the newest container
    /// when none runs; empty when there is none).
    pub status: String,
}

/// Whether a role runs on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    /// No container of the role on the host.
    #[serde(rename = "not deployed")]
    NotDeployed,
    /// Containers of the role, none running (crashed or retained).
    #[serde(rename = "stopped")]
    Stopped,
    /// A container of the role runs.
    #[serde(rename = "running")]
    Running,
}

impl State {
    /// The word shown and serialized.
    pub fn word(self) -> &'static str {
        match self {
            State::NotDeployed => "not deployed",
            State::Stopped => "stopped",
            State::Running => "running",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.word())
    }
}

/// A host that did not answer, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    pub host: String,
    pub error: String,
}

/// The status table of the hosts and roles of `config` in `scope`, from
/// the containers `found` on each host (by host name, as
/// [`crate::release::observe_fleet`] returns them) and the hosts that could
/// not be connected to.
pub fn table(
    config: &Config,
    scope: &Scope,
    found: &[(String, Result<Vec<AppContainer>>)],
    not_connected: &[Error],
) -> Table {
    let found: BTreeMap<&str, &Result<Vec<AppContainer>>> =
        found.iter().map(|(h, r)| (h.as_str(), r)).collect();
    let mut rows = Vec::new();
    let mut unreachable: Vec<Unreachable> = not_connected
        .iter()
        .map(|e| Unreachable {
            host: e.host.clone().unwrap_or_default(),
            error: e.cause.clone(),
        })
        .collect();
    for (role_name, role) in &config.roles {
        if !scope.has_role(role_name) {
            continue;
        }
        for entry in &role.hosts {
            let host = entry.address();
            if !scope.has_host(host) {
                continue;
            }
            let containers = match found.get(host) {
                Some(Ok(containers)) => containers,
                Some(Err(e)) => {
                    unreachable.push(Unreachable {
                        host: host.into(),
                        error: e.cause.clone(),
                    });
                    continue;
                }
                None => continue,
            };
            let mine: Vec<&AppContainer> =
                containers.iter().filter(|c| &c.role == role_name).collect();
            let running: Vec<&&AppContainer> = mine.iter().filter(|c| c.running).collect();
            if running.is_empty() {
                rows.push(Row {
                    host: host.into(),
                    role: role_name.clone(),
                    version: None,
                    state: if mine.is_empty() {
                        State::NotDeployed
                    } else {
                        State::Stopped
                    },
                    status: mine.first().map(|c| c.status.clone()).unwrap_or_default(),
                });
            }
            for c in running {
                rows.push(Row {
                    host: host.into(),
                    role: role_name.clone(),
                    version: Some(c.version.clone()),
                    state: State::Running,
                    status: c.status.clone(),
                });
            }
        }
    }
    unreachable.sort_by(|a, b| a.host.cmp(&b.host));
    unreachable.dedup_by(|a, b| a.host == b.host);
    Table {
        hosts: rows,
        unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ContainerState;
    use crate::ErrorKind;

    fn config() -> Config {
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a, b]\n  worker:\n    hosts: [a, c]\n";
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn container(role: &str, version: &str, state: ContainerState, status: &str) -> AppContainer {
        AppContainer {
            status: status.into(),
            deployed_by: "ann".into(),
            deployed_at: "2024-05-01T10:00:00Z".into(),
            ..crate::testing::app_container(role, version, state)
        }
    }

    fn row(host: &str, role: &str, version: Option<&str>, state: State, status: &str) -> Row {
        Row {
            host: host.into(),
            role: role.into(),
            version: version.map(Into::into),
            state,
            status: status.into(),
        }
    }

    fn unreachable(host: &str, error: &str) -> Unreachable {
        Unreachable {
            host: host.into(),
            error: error.into(),
        }
    }

    fn lost(host: &str, cause: &str) -> Error {
        Error::new(ErrorKind::Unreachable, "connect", cause).on(host)
    }

    #[test]
    fn each_host_and_role_shows_what_runs_or_why_nothing_does() {
        let found = vec![
            (
                "a".to_string(),
                Ok(vec![
                    container(
                        "web",
                        "v2",
                        ContainerState::Running,
                        "Up 1 minute (healthy)",
                    ),
                    container(
                        "web",
                        "v1",
                        ContainerState::Exited,
                        "Exited (0) 1 minute ago",
                    ),
                    container(
                        "worker",
                        "v2",
                        ContainerState::Restarting,
                        "Restarting (1) 2 seconds ago",
                    ),
                    container(
                        "worker",
                        "v1",
                        ContainerState::Exited,
                        "Exited (0) 1 minute ago",
                    ),
                ]),
            ),
            ("b".to_string(), Ok(vec![])),
        ];
        let t = table(
            &config(),
            &Scope::all(),
            &found,
            &[lost("c", "connection refused")],
        );
        assert_eq!(
            t.hosts,
            [
                row(
                    "a",
                    "web",
                    Some("v2"),
                    State::Running,
                    "Up 1 minute (healthy)"
                ),
                row("b", "web", None, State::NotDeployed, ""),
                row(
                    "a",
                    "worker",
                    None,
                    State::Stopped,
                    "Restarting (1) 2 seconds ago"
                ),
            ]
        );
        assert_eq!(t.unreachable, [unreachable("c", "connection refused")]);
    }

    #[test]
    fn two_running_containers_of_a_role_make_two_rows() {
        let found = vec![(
            "b".to_string(),
            Ok(vec![
                container("web", "v3", ContainerState::Running, "Up 2 seconds"),
                container("web", "v2", ContainerState::Running, "Up 1 hour"),
            ]),
        )];
        let scope = Scope::new(&config(), vec!["b".into()], vec![], false).unwrap();
        let t = table(&config(), &scope, &found, &[]);
        assert_eq!(
            t.hosts,
            [
                row("b", "web", Some("v3"), State::Running, "Up 2 seconds"),
                row("b", "web", Some("v2"), State::Running, "Up 1 hour"),
            ]
        );
        assert_eq!(t.unreachable, []);
    }

    #[test]
    fn hosts_that_failed_to_answer_are_listed_once_by_name() {
        let refused = Error::failed("list the service's containers", "engine gone").on("a");
        let found = vec![
            ("a".to_string(), Err(refused)),
            ("b".to_string(), Ok(vec![])),
        ];
        let not_connected = [lost("c", "no route to host")];
        let t = table(&config(), &Scope::all(), &found, &not_connected);
        // `a` runs two roles yet is listed once.
        assert_eq!(
            t.unreachable,
            [
                unreachable("a", "engine gone"),
                unreachable("c", "no route to host")
            ]
        );
        assert_eq!(t.hosts, [row("b", "web", None, State::NotDeployed, "")]);
    }

    #[test]
    fn roles_out_of_scope_are_left_out() {
        let found = vec![(
            "a".to_string(),
            Ok(vec![container("web", "v1", ContainerState::Running, "Up")]),
        )];
        let scope = Scope::new(&config(), vec!["a".into()], vec!["worker".into()], false).unwrap();
        let t = table(&config(), &scope, &found, &[]);
        assert_eq!(t.hosts, [row("a", "worker", None, State::NotDeployed, "")]);
    }

    #[test]
    fn states_read_and_serialize_as_before() {
        let json = serde_json::to_value(row("a", "web", None, State::NotDeployed, "")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"host": "a", "role": "web", "version": null,
                               "state": "not deployed", "status": ""})
        );
        assert_eq!(serde_json::to_value(State::Stopped).unwrap(), "stopped");
        assert_eq!(serde_json::to_value(State::Running).unwrap(), "running");
        assert_eq!(format!("[{:<8}]", State::Running), "[running ]");
    }
}
