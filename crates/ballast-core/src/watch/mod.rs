//! `ballast watch`: looks at every host of the service on an interval,
//! restarts what fell over (without restart storms), and tells people
//! through incidents that open, escalate and recover, never an alert per
//! look.
//!
//! The pure part decides, an executor carries out: each round, what the
//! hosts show ([`observe::Observation`]) goes into the [`Watcher`], which
//! returns the restarts to make and the notices to send; the loop in
//! `run` makes them, writes the audit log, and keeps the state file.
//!
//! # Layout
//! - [`observe`]: one look at the hosts (containers of each role and
//!   accessory, their health, the deploy lock), each host within its
//!   deadline, bounded concurrency, one connection per host kept open.
//! - [`proxy_look`]: a host's ballast-proxy in that look: serving or
//!   down, and its request counters per role.
//! - [`disk`]: in that look too, how full the filesystem holding the
//!   engine's data root is; at `watch.disk_full_percent`, an incident.
//! - [`checkup`]: doctor's rules on fresh facts every
//!   `watch.doctor_every`, on a task of its own; a rule that blocks is an
//!   incident.
//! - [`events`]: each host's Docker events, followed over the kept
//!   connection: a container of the service dying (or starting) brings
//!   the next look at that host forward; the interval stays the
//!   fallback.
//! - [`assess`]: what a look means: hosts down, roles down everywhere,
//!   the deploy lock; findings with inhibition, and what could be healed.
//!   [`condition`]: what it means for one container (counting failed
//!   checks and Docker's own restarts).
//! - [`backoff`], [`breaker`], [`cascade`]: the three bounds on restarts:
//!   capped exponential waits, a circuit breaker per container, and a
//!   share of a role's hosts at a time.
//! - [`heal`]: which restarts to make now, within those bounds.
//! - [`incident`]: one incident per problem: open, escalate, recover.
//! - [`watcher`]: the state machine a round runs through ([`Watcher`]).
//! - [`status`]: the plain snapshot of what watch knows (hosts,
//!   containers, incidents, counters), for printing, metrics or a status
//!   page.
//! - [`alert`]: what a notice says (JSON, Slack text, the escalation
//!   report), and [`channel`]: delivering it (webhook, Slack, command),
//!   retried with backoff.
//! - [`rollback`]: which roles a new release broke on every host
//!   (`watch.auto_rollback`), and [`guard`]: the task beside the loop
//!   that rolls them back, once per release, and alerts what it did.
//! - [`image`]: the `ballast-watch` image watch runs from as an
//!   accessory, built offline like the proxy's, and its health check.
//! - [`persist`]: the state file, so a restarted watcher neither forgets
//!   nor re-alerts.
//! - [`serve`]: the status served over HTTP: Prometheus metrics, the
//!   status page, and watch's own health check.
//! - `execute`: restarts carried out on a host, audited; the report's
//!   log lines.
//! - `run`: the loop, until the shutdown signal.

pub mod alert;
pub mod assess;
pub mod backoff;
pub mod batch;
pub mod breaker;
pub mod cascade;
pub mod channel;
pub mod checkup;
pub mod condition;
pub mod disk;
pub mod events;
mod execute;
pub mod guard;
pub mod heal;
pub mod image;
pub mod incident;
pub mod observe;
pub mod persist;
pub mod proxy_look;
pub mod rollback;
mod run;
pub mod serve;
pub mod status;
#[cfg(test)]
mod tests;
pub mod watcher;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use run::{run, Options, Say};
pub use watcher::{Settings, Topology, Watcher};

/// Milliseconds since the Unix epoch: every time the pure part handles.
pub type Millis = u64;

/// Now, in [`Millis`].
pub fn now() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2026-12-01T10:00:00Z` for a time in [`Millis`].
pub fn rfc3339(at: Millis) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at))
        .to_string()
}

/// What a container belongs to: a role or an accessory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Role(String),
    Accessory(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Role(r) => write!(f, "role {r}"),
            Subject::Accessory(a) => write!(f, "accessory {a}"),
        }
    }
}

/// The kinds of problem, one incident each per host and subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The host (SSH or its engine) does not answer.
    HostDown,
    /// A role's or accessory's container on a host is not running
    /// healthy: exited, dead, unhealthy, restarting, missing.
    ContainerFailing,
    /// A role has no healthy container on any of its hosts.
    RoleDown,
    /// The ballast-proxy of a host whose roles use it does not serve: its
    /// container is not running, or it does not answer its admin API.
    /// Never restarted by watch (a restart drops connections).
    ProxyDown,
    /// The filesystem holding the engine's data root (`DockerRootDir`)
    /// is used at or above `watch.disk_full_percent`.
    DiskFull,
    /// A doctor rule of severity block fires on the host's fresh facts:
    /// one incident per rule ([`Key::rule`]).
    DoctorBlock,
}

/// What identifies an incident: kind, host and role or accessory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// The doctor rule's id, for a [`Kind::DoctorBlock`]: each rule that
    /// blocks is its own incident, closed when that rule passes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl Key {
    pub fn new(kind: Kind, host: Option<&str>, subject: Option<Subject>) -> Key {
        Key {
            kind,
            host: host.map(str::to_string),
            subject,
            rule: None,
        }
    }

    pub fn host_down(host: &str) -> Key {
        Key::new(Kind::HostDown, Some(host), None)
    }

    pub fn container(host: &str, subject: &Subject) -> Key {
        Key::new(Kind::ContainerFailing, Some(host), Some(subject.clone()))
    }

    pub fn role_down(role: &str) -> Key {
        Key::new(Kind::RoleDown, None, Some(Subject::Role(role.to_string())))
    }

    pub fn proxy_down(host: &str) -> Key {
        Key::new(Kind::ProxyDown, Some(host), None)
    }

    pub fn disk_full(host: &str) -> Key {
        Key::new(Kind::DiskFull, Some(host), None)
    }

    pub fn doctor_block(host: &str, rule: &str) -> Key {
        Key {
            rule: Some(rule.to_string()),
            ..Key::new(Kind::DoctorBlock, Some(host), None)
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.host, &self.subject) {
            (Kind::HostDown, Some(h), _) => write!(f, "host {h} down"),
            (Kind::ContainerFailing, Some(h), Some(s)) => write!(f, "{s} failing on {h}"),
            (Kind::RoleDown, _, Some(s)) => write!(f, "{s} down on all its hosts"),
            (Kind::ProxyDown, Some(h), _) => write!(f, "proxy down on {h}"),
            (Kind::DiskFull, Some(h), _) => write!(f, "Docker's disk nearly full on {h}"),
            (Kind::DoctorBlock, Some(h), _) => match &self.rule {
                Some(rule) => write!(f, "doctor rule {rule} blocks {h}"),
                None => write!(f, "a doctor rule blocks {h}"),
            },
            (kind, host, subject) => write!(f, "{kind:?} {host:?} {subject:?}"),
        }
    }
}
