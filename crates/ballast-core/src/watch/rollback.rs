//! `watch.auto_rollback`: which roles a new release broke, and what was
//! done about it. A role qualifies when, on every one of its hosts, its
//! container of one and the same version crash-loops (or watch's breaker
//! gave up on it) and that version was deployed there within
//! `watch.rollback_window`; one bad host is a host problem, not the
//! release's. A release is rolled back at most once: what was done is
//! remembered ([`RolledBack`], kept in the state file). Pure: a status and
//! times in, the roles to roll back out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::assess::{Cause, Condition};
use super::backoff::millis;
use super::status::{ContainerStatus, Status};
use super::watcher::Topology;
use super::{Millis, Subject};

/// A role whose release crash-loops on every one of its hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspect {
    pub role: String,
    /// The release they all run.
    pub version: String,
    /// Every host of the role, in config order.
    pub hosts: Vec<String>,
}

/// What came of an automatic rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Every host of the role went back to `to`.
    RolledBack { to: String },
    /// It was tried and did not work: why.
    Failed { why: String },
}

/// A release watch rolled back, or tried to: never tried again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub role: String,
    /// The release that crash-looped.
    pub version: String,
    pub at: Millis,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl RolledBack {
    /// The line an incident and the operator get.
    pub fn describe(&self) -> String {
        match &self.outcome {
            Outcome::RolledBack { to } => format!(
                "rolled back role {} to {to}: release {} crash-looped on every host after its deploy (watch.auto_rollback)",
                self.role, self.version
            ),
            Outcome::Failed { why } => format!(
                "rolling back role {} from release {} failed: {why}; run `ballast rollback --roles {}`",
                self.role, self.version, self.role
            ),
        }
    }
}

/// The roles of `topology` whose one release crash-loops on all their
/// hosts in `status`, but those already in `done`. Nothing while a deploy
/// holds the lock: what it leaves is its own business.
pub fn suspects(status: &Status, topology: &Topology, done: &[RolledBack]) -> Vec<Suspect> {
    if status.locked.is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (role, r) in &topology.roles {
        let subject = Subject::Role(role.clone());
        let versions: Vec<Option<&str>> = r
            .hosts
            .iter()
            .map(|host| {
                status
                    .containers
                    .iter()
                    .find(|c| &c.host == host && c.subject == subject)
                    .filter(|c| crash_looping(c))
                    .and_then(|c| c.version.as_deref())
            })
            .collect();
        let Some(Some(version)) = versions.first().copied() else {
            continue;
        };
        let same = versions.iter().all(|v| *v == Some(version));
        let tried = done.iter().any(|d| &d.role == role && d.version == version);
        if same && !tried {
            out.push(Suspect {
                role: role.clone(),
                version: version.to_string(),
                hosts: r.hosts.clone(),
            });
        }
    }
    out
}

/// Whether a crash loop is blamed on its release's deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// Deployed on every host within the window: the release did it.
    Deploy,
    /// Deployed longer ago on some host: not the deploy's doing, and
    /// never going to be.
    Old,
    /// Not known for every host (one did not answer): asked again later.
    Unknown,
}

/// The [`Blame`] for a release deployed at `deployed` (one entry per host,
/// `None` where unknown), with `window` at `now`.
pub fn blame(deployed: &[Option<Millis>], window: Duration, now: Millis) -> Blame {
    let old = |at: &Millis| now.saturating_sub(*at) > millis(window);
    if deployed.iter().flatten().any(old) {
        Blame::Old
    } else if deployed.is_empty() || deployed.iter().any(Option::is_none) {
        Blame::Unknown
    } else {
        Blame::Deploy
    }
}

/// A container that falls over again and again, or that watch gave up on.
fn crash_looping(c: &ContainerStatus) -> bool {
    c.breaker_open || matches!(c.condition, Condition::Failing(Cause::CrashLoop { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn topology() -> Topology {
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [h1, h2]\n  worker:\n    hosts: [h3]\n";
        let config: Config = crate::config::testing::parse_yaml(yaml).unwrap().config;
        Topology::from_config(&config)
    }

    fn container(host: &str, role: &str, version: &str, condition: Condition) -> ContainerStatus {
        ContainerStatus {
            host: host.into(),
            subject: Subject::Role(role.into()),
            name: Some(format!("shop-{role}-{version}")),
            version: Some(version.into()),
            state: None,
            condition,
            restarts: 0,
            breaker_open: false,
            started_at: None,
        }
    }

    fn looping() -> Condition {
        Condition::Failing(Cause::CrashLoop {
            restarts: 3,
            now: None,
        })
    }

    fn status(containers: Vec<ContainerStatus>) -> Status {
        Status {
            containers,
            ..Status::default()
        }
    }

    fn roles(s: &[Suspect]) -> Vec<(&str, &str)> {
        s.iter()
            .map(|s| (s.role.as_str(), s.version.as_str()))
            .collect()
    }

    #[test]
    fn a_release_crash_looping_on_every_host_of_its_role_is_suspect() {
        let t = topology();
        let s = status(vec![
            container("h1", "web", "v2", looping()),
            container("h2", "web", "v2", looping()),
            container("h3", "worker", "v2", Condition::Healthy),
        ]);
        let found = suspects(&s, &t, &[]);
        assert_eq!(roles(&found), [("web", "v2")]);
        assert_eq!(found[0].hosts, ["h1", "h2"]);
    }

    #[test]
    fn an_open_breaker_counts_as_a_crash_loop() {
        let t = topology();
        let mut given_up = container("h2", "web", "v2", Condition::Failing(Cause::Restarting));
        given_up.breaker_open = true;
        let s = status(vec![container("h1", "web", "v2", looping()), given_up]);
        assert_eq!(roles(&suspects(&s, &t, &[])), [("web", "v2")]);
    }

    #[test]
    fn one_bad_host_is_a_host_problem_not_the_release() {
        let t = topology();
        let healthy_elsewhere = status(vec![
            container("h1", "web", "v2", looping()),
            container("h2", "web", "v2", Condition::Healthy),
        ]);
        assert!(suspects(&healthy_elsewhere, &t, &[]).is_empty());
        // A host not seen (down, not answering) proves nothing either.
        let unseen = status(vec![container("h1", "web", "v2", looping())]);
        assert!(suspects(&unseen, &t, &[]).is_empty());
        // Nor does an exit that is not (yet) a loop.
        let exited = status(vec![
            container("h1", "web", "v2", looping()),
            container(
                "h2",
                "web",
                "v2",
                Condition::Failing(Cause::Exited { code: Some(1) }),
            ),
        ]);
        assert!(suspects(&exited, &t, &[]).is_empty());
    }

    #[test]
    fn different_releases_on_the_hosts_are_not_one_bad_release() {
        let t = topology();
        let s = status(vec![
            container("h1", "web", "v2", looping()),
            container("h2", "web", "v1", looping()),
        ]);
        assert!(suspects(&s, &t, &[]).is_empty());
    }

    #[test]
    fn a_single_host_role_needs_only_its_host() {
        let t = topology();
        let s = status(vec![container("h3", "worker", "v7", looping())]);
        assert_eq!(roles(&suspects(&s, &t, &[])), [("worker", "v7")]);
    }

    #[test]
    fn a_release_is_rolled_back_once_and_never_under_a_lock() {
        let t = topology();
        let mut s = status(vec![
            container("h1", "web", "v2", looping()),
            container("h2", "web", "v2", looping()),
        ]);
        let failed = RolledBack {
            role: "web".into(),
            version: "v2".into(),
            at: 1,
            outcome: Outcome::Failed {
                why: "no host retains a release other than the current one".into(),
            },
        };
        assert!(suspects(&s, &t, std::slice::from_ref(&failed)).is_empty());
        // Another release of the same role is another matter.
        let older = RolledBack {
            version: "v1".into(),
            ..failed
        };
        assert_eq!(roles(&suspects(&s, &t, &[older])), [("web", "v2")]);
        s.locked = Some("deploy by ops@laptop".into());
        assert!(suspects(&s, &t, &[]).is_empty());
    }

    #[test]
    fn only_a_recent_deploy_is_blamed() {
        let window = Duration::from_secs(600);
        let now = 1_000_000_000;
        let recent = Some(now - 60_000);
        let blamed = |deployed: &[Option<Millis>]| blame(deployed, window, now);
        assert_eq!(blamed(&[recent, Some(now - 600_000)]), Blame::Deploy);
        assert_eq!(blamed(&[recent, Some(now - 600_001)]), Blame::Old);
        // One host did not say: not decided either way.
        assert_eq!(blamed(&[recent, None]), Blame::Unknown);
        assert_eq!(blamed(&[None, Some(0)]), Blame::Old);
        assert_eq!(blamed(&[]), Blame::Unknown);
    }

    #[test]
    fn what_was_done_reads_plainly() {
        let done = RolledBack {
            role: "web".into(),
            version: "v2".into(),
            at: 0,
            outcome: Outcome::RolledBack { to: "v1".into() },
        };
        assert_eq!(
            done.describe(),
            "rolled back role web to v1: release v2 crash-looped on every host after its deploy (watch.auto_rollback)"
        );
        let json = serde_json::to_value(&done).unwrap();
        assert_eq!(json["outcome"], "rolled_back");
        assert_eq!(json["to"], "v1");
        let back: RolledBack = serde_json::from_value(json).unwrap();
        assert_eq!(back, done);
    }
}
