//! Which restarts to make now: of the containers a restart may heal, those
//! whose breaker is closed, whose backoff has run out, and that fit in
//! their role's share of hosts (see `cascade`); each one made is counted
//! in its backoff and breaker at once. Pure: candidates, memory and a time
//! in, restarts out.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::assess::{Candidate, Memory};
use super::watcher::{Settings, Topology};
use super::{cascade, Key, Millis, Subject};

/// A restart to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restart {
    pub host: String,
    pub subject: Subject,
    pub container: String,
    /// Still running: `docker restart` (stop, then start); else `start`.
    pub running: bool,
    /// What is wrong with it.
    pub why: String,
    /// How long it gets to stop.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
}

impl Restart {
    pub fn key(&self) -> Key {
        Key::container(&self.host, &self.subject)
    }

    /// "restart", or "start" for a container that is not running.
    pub fn verb(&self) -> &'static str {
        if self.running {
            "restart"
        } else {
            "start"
        }
    }
}

/// What to do this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub restarts: Vec<Restart>,
    /// Containers watch gives up on (their breaker opened), with why.
    pub gave_up: Vec<(Key, String)>,
    /// Containers that wait for their role's share, by key.
    pub held: Vec<Key>,
}

/// Decides the restarts among `candidates` (but those in `busy`, under
/// way), recording them in `memory`.
pub fn decide(
    candidates: &[Candidate],
    busy: &BTreeSet<Key>,
    memory: &mut Memory,
    topology: &Topology,
    settings: &Settings,
    now: Millis,
) -> Decision {
    let mut out = Decision::default();
    let mut ready: Vec<&Candidate> = Vec::new();
    for c in candidates {
        let track = memory
            .containers
            .entry((c.host.clone(), c.subject.clone()))
            .or_default();
        let key = Key::container(&c.host, &c.subject);
        if busy.contains(&key) || track.breaker.open || !track.backoff.ready(&settings.backoff, now)
        {
            continue;
        }
        ready.push(c);
    }
    // Per role, those already acted on first: they hold their slot.
    let mut allowed: Vec<&Candidate> = Vec::new();
    for (role, r) in &topology.roles {
        let subject = Subject::Role(role.clone());
        let mut wanted: Vec<&Candidate> = ready
            .iter()
            .copied()
            .filter(|c| c.subject == subject)
            .collect();
        let acted = |host: &str| {
            memory
                .containers
                .get(&(host.to_string(), subject.clone()))
                .is_some_and(|t| t.acted && !t.breaker.open)
        };
        // A restart still under way holds its slot even if a look already
        // saw its container healthy: it is not done until it says so.
        let under_way = |host: &str| busy.contains(&Key::container(host, &subject));
        wanted.sort_by_key(|c| (!acted(&c.host), c.host.clone()));
        let holding = r
            .hosts
            .iter()
            .filter(|h| (acted(h) || under_way(h)) && !wanted.iter().any(|c| &c.host == *h))
            .count();
        let cap = cascade::cap(r.hosts.len(), settings.max_share);
        let (go, wait) = cascade::allow(&wanted, holding, cap);
        allowed.extend(go);
        out.held
            .extend(wait.iter().map(|c| Key::container(&c.host, &c.subject)));
    }
    allowed.extend(
        ready
            .iter()
            .copied()
            .filter(|c| matches!(c.subject, Subject::Accessory(_))),
    );
    for c in allowed {
        let track = memory
            .containers
            .get_mut(&(c.host.clone(), c.subject.clone()))
            .expect("made above");
        track.backoff.record(now);
        track.acted = true;
        if track.breaker.record(&settings.breaker, 1, now) {
            out.gave_up.push((
                Key::container(&c.host, &c.subject),
                format!(
                    "restarted {} times within {}: watch stops restarting it",
                    track.breaker.restarts.len(),
                    crate::error::humanize(settings.breaker.window)
                ),
            ));
        }
        let stop_timeout = match &c.subject {
            Subject::Role(role) => topology
                .roles
                .get(role)
                .map_or(Duration::from_secs(30), |r| r.stop_timeout),
            Subject::Accessory(_) => Duration::from_secs(30),
        };
        out.restarts.push(Restart {
            host: c.host.clone(),
            subject: c.subject.clone(),
            container: c.container.clone(),
            running: c.running,
            why: c.why.clone(),
            stop_timeout,
        });
    }
    out
}
