//! What watch knows, as one plain value: every host and its proxy, every
//! watched container with its condition, the open incidents, and counters. The
//! watcher keeps it up to date after each look and each restart; anything
//! that shows it (the printer, metrics, a status page) only reads it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::assess::Condition;
use super::incident::Incident;
use super::proxy_look::RouteCounts;
use super::{Millis, Subject};
use crate::release::ContainerState;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub service: String,
    /// When the last look was made.
    pub at: Millis,
    /// Who holds the lock, while watch stands aside.
    pub locked: Option<String>,
    pub hosts: BTreeMap<String, HostStatus>,
    /// The proxy of each host whose roles use one, as the last look that
    /// reached the host saw it (a host that does not answer has none).
    pub proxies: BTreeMap<String, ProxyStatus>,
    pub containers: Vec<ContainerStatus>,
    pub incidents: Vec<Incident>,
    pub counters: Counters,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    /// It answered the last look.
    pub up: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// How long the last look at it took, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Used share of the filesystem of its engine's data root, in
    /// percent, as the last look read it.
    pub disk_used_percent: Option<u8>,
}

/// A host's ballast-proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStatus {
    /// It answered its admin API.
    pub up: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// Each proxied role's requests through it, since the proxy process
    /// started (empty while it is down).
    pub routes: BTreeMap<String, RouteCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    pub host: String,
    pub subject: Subject,
    pub name: Option<String>,
    pub version: Option<String>,
    pub state: Option<ContainerState>,
    pub condition: Condition,
    /// Restarts within the breaker's window (watch's and Docker's).
    pub restarts: usize,
    /// Watch gave up restarting it.
    pub breaker_open: bool,
    /// When it was last started.
    pub started_at: Option<Millis>,
}

/// Running totals since the watcher started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub looks: u64,
    pub restarts: u64,
    /// `restarts` by role or accessory.
    #[serde(serialize_with = "as_pairs")]
    pub restarts_of: BTreeMap<Subject, u64>,
    pub restarts_failed: u64,
    /// Restarts seen made by Docker's restart policy.
    pub docker_restarts: u64,
    pub incidents_opened: u64,
    pub notices: u64,
    /// Docker events about the service's containers, each bringing a look
    /// at its host forward.
    pub events: u64,
    pub deliveries_failed: u64,
}

/// A map keyed by [`Subject`] as a list of `{"subject", "count"}`: JSON
/// keys are strings only.
fn as_pairs<S: serde::Serializer>(
    map: &BTreeMap<Subject, u64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Pair<'a> {
        subject: &'a Subject,
        count: u64,
    }
    s.collect_seq(map.iter().map(|(subject, &count)| Pair { subject, count }))
}
