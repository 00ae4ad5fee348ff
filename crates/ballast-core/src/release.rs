//! Releases as they live on the hosts: app containers carry labels saying
//! which service, role, version, image and config they run, so the hosts
//! themselves are the record of what is deployed and what can be rolled back.
//! [`table`] gathers what they keep into releases, as `ballast releases`
//! shows them.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::ListContainersOptionsBuilder;
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::scope::Scope;

pub const SERVICE_LABEL: &str = "io.ballast.service";
pub const ROLE_LABEL: &str = "io.ballast.role";
pub const VERSION_LABEL: &str = "io.ballast.version";
pub const IMAGE_LABEL: &str = "io.ballast.image";
pub const CONFIG_LABEL: &str = "io.ballast.config";
/// Where the release's image can be fetched again, when it came from a
/// registry: `SERVER/REPOSITORY@sha256:…`, pulled by a rollback on a host
/// that no longer holds the image.
pub const SOURCE_LABEL: &str = "io.ballast.image-source";
pub const BY_LABEL: &str = "io.ballast.deployed-by";
pub const AT_LABEL: &str = "io.ballast.deployed-at";

/// Checks a version string: it becomes part of container names and image
/// tags, so it follows Docker's tag rules.
pub fn check_version(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version.len() <= 100
        && version
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Error::input(
            "read the version",
            format_args!("{version:?} is not a valid version"),
        )
        .hint(
            "use letters, digits, '.', '-' and '_', starting with a letter or digit (at most 100)",
        ))
    }
}

/// The container of `role` at `version`: `<service>-<role>-<version>`.
pub fn container_name(service: &str, role: &str, version: &str) -> String {
    format!("{service}-{role}-{version}")
}

/// Docker's state of a container, as far as a rollout cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Created, never started (a rollout interrupted before `start`).
    Created,
    Running,
    /// Exiting and being restarted by its restart policy: a crash loop.
    /// It holds resources (and ports) yet serves nothing.
    Restarting,
    Paused,
    /// Stopped: a retained release, or a crashed container.
    Exited,
    Dead,
    Removing,
}

impl ContainerState {
    pub fn from_docker(word: &str) -> ContainerState {
        match word {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "restarting" => ContainerState::Restarting,
            "paused" => ContainerState::Paused,
            "dead" => ContainerState::Dead,
            "removing" => ContainerState::Removing,
            _ => ContainerState::Exited,
        }
    }

    /// Holds the role's resources: it must be stopped when replaced.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ContainerState::Running | ContainerState::Restarting | ContainerState::Paused
        )
    }

    pub fn word(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Restarting => "restarting",
            ContainerState::Paused => "paused",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
            ContainerState::Removing => "removing",
        }
    }
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// An app container found on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppContainer {
    pub id: String,
    pub name: String,
    pub role: String,
    pub version: String,
    pub image_id: String,
    pub config_digest: String,
    /// [`SOURCE_LABEL`]: empty when the image was sent directly.
    pub image_source: String,
    /// Running and not crash-looping: the only state that can serve.
    pub running: bool,
    /// Docker's state.
    pub state: ContainerState,
    /// Its address on the service's own network `ballast-<service>`
    /// (proxied roles), where the host's proxy routes to it: an address
    /// there only ever belongs to this service.
    pub ip: Option<String>,
    /// Docker's status line: "Up 3 minutes (healthy)".
    pub status: String,
    /// Unix seconds when the container was created.
    pub created: i64,
    pub deployed_by: String,
    pub deployed_at: String,
}

/// Every container of `service` on a host, newest first. Accessories'
/// containers carry no [`SERVICE_LABEL`] (see
/// [`crate::accessory::spec::SERVICE_LABEL`]), so neither this nor deploy,
/// rollback, prune or remove, which all start from it, ever sees them.
pub async fn observe(engine: &Engine, service: &str) -> Result<Vec<AppContainer>> {
    let filters = HashMap::from([("label", vec![format!("{SERVICE_LABEL}={service}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let listed = engine
        .call(
            "list the service's containers",
            engine.docker().list_containers(Some(options)),
        )
        .await?;
    let service_network = crate::proxy::service_network(service);
    let mut found: Vec<AppContainer> = listed
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let state =
                ContainerState::from_docker(&c.state.map(|s| s.to_string()).unwrap_or_default());
            let ip = c
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut nets| nets.remove(&service_network))
                .and_then(|e| e.ip_address)
                .filter(|ip| !ip.is_empty());
            Some(AppContainer {
                id: c.id?,
                name: c.names?.first()?.trim_start_matches('/').to_string(),
                role: label(ROLE_LABEL),
                version: label(VERSION_LABEL),
                image_id: label(IMAGE_LABEL),
                config_digest: label(CONFIG_LABEL),
                image_source: label(SOURCE_LABEL),
                running: state == ContainerState::Running,
                state,
                ip,
                status: c.status.unwrap_or_default(),
                created: c.created.unwrap_or(0),
                deployed_by: label(BY_LABEL),
                deployed_at: label(AT_LABEL),
            })
        })
        .collect();
    found.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
    Ok(found)
}

/// Every container of `service` on each connected host of `fleet`, by host.
pub async fn observe_fleet(
    fleet: &Fleet,
    service: &str,
) -> Vec<(String, Result<Vec<AppContainer>>)> {
    fleet
        .each(|h| async move { observe(h.engine(), service).await })
        .await
}

/// One release as the hosts keep it: a version and every container of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub version: String,
    /// The image ID of its first container found (hosts in name order).
    pub image_id: String,
    /// Who deployed its newest container.
    pub deployed_by: String,
    /// When its newest container was deployed.
    pub deployed_at: String,
    /// `host (role): state` for every container of this release.
    pub hosts: Vec<String>,
    /// Whether one of its containers runs; else it is only retained.
    pub running: bool,
}

/// The releases of the roles in `scope` among the containers `found` on
/// each host (as [`observe_fleet`] returns them), newest deploy first.
/// Fails with the first host's error, by host name.
pub fn table(found: &[(String, Result<Vec<AppContainer>>)], scope: &Scope) -> Result<Vec<Release>> {
    let mut by_version: BTreeMap<&str, Release> = BTreeMap::new();
    for (host, result) in found {
        let containers = result.as_ref().map_err(Clone::clone)?;
        for c in containers.iter().filter(|c| scope.has_role(&c.role)) {
            let release = by_version.entry(&c.version).or_insert_with(|| Release {
                version: c.version.clone(),
                image_id: c.image_id.clone(),
                deployed_by: c.deployed_by.clone(),
                deployed_at: c.deployed_at.clone(),
                hosts: Vec::new(),
                running: false,
            });
            release.running |= c.running;
            if c.deployed_at > release.deployed_at {
                release.deployed_at = c.deployed_at.clone();
                release.deployed_by = c.deployed_by.clone();
            }
            release
                .hosts
                .push(format!("{host} ({}): {}", c.role, c.state));
        }
    }
    let mut releases: Vec<Release> = by_version.into_values().collect();
    releases.sort_by(|a, b| b.deployed_at.cmp(&a.deployed_at));
    Ok(releases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_docker_tag_rules() {
        for good in ["v1", "1.2.3", "abc123-dirty", "2024_10_01"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["", "-v1", "v 1", "v1/2", "v1:2", &"a".repeat(101)] {
            let e = check_version(bad).unwrap_err();
            assert!(e.hint.is_some(), "{bad}");
        }
    }

    #[test]
    fn container_names_join_service_role_version() {
        assert_eq!(container_name("shop", "web", "v2"), "shop-web-v2");
    }

    fn container(
        role: &str,
        version: &str,
        state: ContainerState,
        by: &str,
        at: &str,
    ) -> AppContainer {
        AppContainer {
            deployed_by: by.into(),
            deployed_at: at.into(),
            ..crate::testing::app_container(role, version, state)
        }
    }

    fn release(version: &str, by: &str, at: &str, hosts: &[&str], running: bool) -> Release {
        Release {
            version: version.into(),
            image_id: format!("sha256:{version}"),
            deployed_by: by.into(),
            deployed_at: at.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            running,
        }
    }

    const T1: &str = "2024-05-01T10:00:00Z";
    const T2: &str = "2024-05-02T10:00:00Z";
    const T3: &str = "2024-05-03T10:00:00Z";

    #[test]
    fn releases_gather_every_host_newest_deploy_first() {
        use ContainerState::{Exited, Running};
        let found = vec![
            (
                "a".to_string(),
                Ok(vec![
                    container("web", "v2", Running, "ann", T2),
                    container("web", "v1", Exited, "bob", T1),
                ]),
            ),
            (
                "b".to_string(),
                Ok(vec![
                    // Deployed later on b: the release says the latest.
                    container("web", "v2", Running, "cid", T3),
                    container("worker", "v1", Exited, "bob", T1),
                ]),
            ),
        ];
        assert_eq!(
            table(&found, &Scope::all()).unwrap(),
            [
                release(
                    "v2",
                    "cid",
                    T3,
                    &["a (web): running", "b (web): running"],
                    true
                ),
                release(
                    "v1",
                    "bob",
                    T1,
                    &["a (web): exited", "b (worker): exited"],
                    false
                ),
            ]
        );
    }

    #[test]
    fn one_running_container_makes_a_release_running() {
        use ContainerState::{Restarting, Running};
        let found = vec![
            (
                "a".to_string(),
                Ok(vec![container("web", "v1", Restarting, "ann", T1)]),
            ),
            (
                "b".to_string(),
                Ok(vec![container("web", "v1", Running, "ann", T1)]),
            ),
        ];
        assert_eq!(
            table(&found, &Scope::all()).unwrap(),
            [release(
                "v1",
                "ann",
                T1,
                &["a (web): restarting", "b (web): running"],
                true
            )]
        );
    }

    #[test]
    fn roles_out_of_scope_are_left_out() {
        let found = vec![(
            "a".to_string(),
            Ok(vec![
                container("web", "v2", ContainerState::Running, "ann", T2),
                container("worker", "v1", ContainerState::Running, "ann", T1),
            ]),
        )];
        let scope = Scope {
            roles: vec!["worker".into()],
            ..Scope::all()
        };
        assert_eq!(
            table(&found, &scope).unwrap(),
            [release("v1", "ann", T1, &["a (worker): running"], true)]
        );
    }

    #[test]
    fn a_host_that_failed_to_answer_fails_the_table() {
        let gone = Error::failed("list the service's containers", "engine gone").on("b");
        let found = vec![
            ("a".to_string(), Ok(vec![])),
            ("b".to_string(), Err(gone.clone())),
            ("c".to_string(), Err(Error::failed("x", "y").on("c"))),
        ];
        assert_eq!(table(&found, &Scope::all()), Err(gone));
    }
}
