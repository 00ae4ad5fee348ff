//! What a look means. Each container gets a [`Condition`] (see
//! [`super::condition`]) from what was seen and what is remembered of it
//! ([`Memory`]: failed checks in a row, Docker's restart count, restarts in
//! the breaker's window, whether an accessory was seen running). From those
//! come the findings for the incident book, with inhibition: containers of
//! a host that is down are not judged (their incidents are held), and a
//! role down on all its hosts is one incident, its hosts' own held silent.
//! A host's proxy that does not serve for `watch.failures` looks in a row
//! is one incident for the host, held like its containers' while the host
//! is down, and never a restart candidate. A host's Docker disk at
//! `watch.disk_full_percent` and each doctor rule that blocks it (from the
//! latest checkup) are incidents of the host too, held while it does not
//! answer. Nothing of the containers or proxies is judged while a deploy
//! holds the lock (nor the look after, while its last steps settle); disks
//! and doctor's rules are, as they are about the host. A look at a few
//! hosts (after an event, or a silent host's late answer) judges those
//! only; the lock is remembered per host, each forgotten by its own host's
//! answer, and a host missing from a look counts as down by what is
//! remembered of it. Pure: a look and a time in.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::breaker::Breaker;
use super::checkup::{self, Checkups};
use super::condition::judge;
pub use super::condition::{Cause, Condition};
use super::disk;
use super::incident::Finding;
use super::observe::{HostSeen, Observation};
use super::proxy_look;
use super::watcher::{Settings, Topology};
use super::{Key, Kind, Millis, Subject};

/// What watch remembers of one container between looks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// The container it is about; another one starts the track over.
    pub id: String,
    /// Failed health checks in a row.
    pub health_failures: u32,
    /// Docker's restart count at the last look.
    pub restart_count: Option<i64>,
    pub backoff: Backoff,
    pub breaker: Breaker,
    /// Since when it has been running healthy.
    pub healthy_since: Option<Millis>,
    /// Restarted by watch and not healthy since: it takes one of the
    /// role's slots (see `cascade`).
    pub acted: bool,
    /// An accessory seen running outside any lock: one found stopped
    /// after that fell over, while one stopped under a lock (`ballast
    /// accessory stop`) or never seen running was stopped on purpose.
    pub seen_running: bool,
}

/// What watch remembers of a host between looks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTrack {
    /// Looks in a row it did not answer.
    pub failures: u32,
    /// Why, last time.
    pub error: Option<String>,
    /// Looks in a row it answered: a host is judged from its
    /// `watch.failures`-th (its engine may still be starting containers).
    #[serde(default)]
    pub answers: u32,
    /// Looks in a row its proxy did not serve.
    #[serde(default)]
    pub proxy_failures: u32,
}

/// Everything remembered between looks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(with = "super::persist::pairs")]
    pub containers: BTreeMap<(String, Subject), Track>,
    pub hosts: BTreeMap<String, HostTrack>,
    /// The hosts whose last answer showed the deploy lock held by a live
    /// holder, and who held it. Each host's entry changes only with its
    /// own answer, so a look that misses the holder's host (an event's
    /// look at another host, a round it was late for) does not forget it.
    #[serde(default)]
    pub locks: BTreeMap<String, String>,
}

/// A container that a restart may heal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: String,
    pub subject: Subject,
    pub container: String,
    /// Still running (unhealthy): restarted rather than started.
    pub running: bool,
    pub why: String,
}

/// What a look means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessment {
    pub findings: Vec<Finding>,
    /// Incidents that cannot be judged this time: left as they are.
    pub unknown: BTreeSet<Key>,
    /// Every incident of a kind on a host that cannot be judged this time
    /// (keys not known in advance: a doctor rule's).
    pub held: BTreeSet<(Kind, String)>,
    /// Hosts that could not be judged (down, or no answer yet counted).
    pub unjudged_hosts: BTreeSet<String>,
    /// The lock's holder, while watch stands aside.
    pub locked: Option<String>,
    pub candidates: Vec<Candidate>,
    /// Containers whose breaker Docker's own restarts opened, with why.
    pub gave_up: Vec<(Key, String)>,
    pub conditions: BTreeMap<(String, Subject), Condition>,
    /// Restarts Docker's restart policy made since the last look.
    pub docker_restarts: u64,
}

impl Assessment {
    /// Whether the incident of `key` cannot be judged this time.
    pub fn unknown(&self, key: &Key) -> bool {
        self.unknown.contains(key)
            || key
                .host
                .as_ref()
                .is_some_and(|h| self.held.contains(&(key.kind, h.clone())))
    }
}

/// Judges `obs` against what `memory` remembers, updating it; `checkups`
/// are the latest of doctor's rules on each host.
pub fn assess(
    topology: &Topology,
    settings: &Settings,
    obs: &Observation,
    checkups: &Checkups,
    memory: &mut Memory,
    now: Millis,
) -> Assessment {
    let mut out = Assessment::default();
    let was_locked = !memory.locks.is_empty();
    for (host, seen) in &obs.hosts {
        match seen {
            HostSeen::Up(v) => match &v.locked {
                Some(holder) => memory.locks.insert(host.clone(), holder.clone()),
                None => memory.locks.remove(host),
            },
            // A host that does not answer holds nothing up.
            HostSeen::Down(_) => memory.locks.remove(host),
            HostSeen::Unknown(_) => None,
        };
    }
    let held = memory.locks.values().next().cloned();
    // The look after the lock is released stands aside too: the holder's
    // last steps settle.
    let locked = held.is_some() || was_locked;
    out.locked = held.or_else(|| locked.then(|| "a deploy that just ended".to_string()));
    // Hosts down by what is remembered, this look's verdicts aside: a role
    // whose other hosts are down is down everywhere when this look's
    // hosts fail it.
    let mut down: BTreeSet<String> = topology
        .hosts
        .iter()
        .filter(|h| !obs.hosts.contains_key(*h))
        .filter(|h| {
            memory
                .hosts
                .get(*h)
                .is_some_and(|t| t.failures >= settings.failures)
        })
        .cloned()
        .collect();
    for host in &topology.hosts {
        let track = memory.hosts.entry(host.clone()).or_default();
        let view = match obs.hosts.get(host) {
            Some(HostSeen::Up(view)) => {
                track.failures = 0;
                track.error = None;
                track.answers = (track.answers + 1).min(settings.failures);
                if track.answers < settings.failures {
                    // Just back (or first seen): its engine may still be
                    // starting its containers; judged from the next look.
                    out.unjudged_hosts.insert(host.clone());
                    continue;
                }
                proxy_look::judge(host, view.proxy.as_ref(), track, settings, locked, &mut out);
                disk::judge(
                    host,
                    view.disk.as_ref(),
                    settings.disk_full_percent,
                    &mut out,
                );
                checkup::judge(host, checkups.get(host), &mut out);
                view
            }
            Some(HostSeen::Down(why)) => {
                track.answers = 0;
                track.failures += 1;
                track.error = Some(why.clone());
                if track.failures >= settings.failures {
                    down.insert(host.clone());
                    out.findings.push(Finding {
                        key: Key::host_down(host),
                        cause: format!("does not answer: {why}"),
                        inhibited: false,
                        container: None,
                        hint: Some(format!(
                            "check that {host} is up and answers SSH (`ssh {host} docker info`)"
                        )),
                    });
                } else {
                    out.unknown.insert(Key::host_down(host));
                }
                out.unjudged_hosts.insert(host.clone());
                continue;
            }
            Some(HostSeen::Unknown(_)) | None => {
                out.unknown.insert(Key::host_down(host));
                out.unjudged_hosts.insert(host.clone());
                continue;
            }
        };
        for (subject, seen) in &view.containers {
            let track = memory
                .containers
                .entry((host.clone(), subject.clone()))
                .or_default();
            if locked {
                // Whatever the lock's holder leaves stopped, it meant to.
                track.seen_running = false;
                track.health_failures = 0;
                continue;
            }
            let (condition, opened, restarted) =
                judge(track, subject, seen.as_ref(), settings, now);
            out.docker_restarts += restarted;
            let key = Key::container(host, subject);
            if opened {
                let n = track.breaker.restarts.len();
                out.gave_up.push((
                    key.clone(),
                    format!(
                        "restarted {n} times within {}: watch stopped restarting it",
                        crate::error::humanize(settings.breaker.window)
                    ),
                ));
            }
            match &condition {
                Condition::Failing(cause) => {
                    let container = seen.as_ref().map(|c| c.name.clone());
                    if let (Some(running), Some(c)) = (cause.healable(), seen) {
                        let wanted = match subject {
                            Subject::Role(_) => true,
                            // Accessories are started, never replaced.
                            Subject::Accessory(_) => !running,
                        };
                        if wanted {
                            out.candidates.push(Candidate {
                                host: host.clone(),
                                subject: subject.clone(),
                                container: c.name.clone(),
                                running,
                                why: cause.describe(),
                            });
                        }
                    }
                    out.findings.push(Finding {
                        key,
                        cause: cause.describe(),
                        inhibited: false,
                        container,
                        hint: cause.after_deploy(seen.as_ref(), now, settings.rollback_window),
                    });
                }
                Condition::Pending => {
                    out.unknown.insert(key);
                }
                Condition::Healthy | Condition::Stopped => {}
            }
            out.conditions
                .insert((host.clone(), subject.clone()), condition);
        }
    }
    for host in &out.unjudged_hosts {
        out.unknown.insert(Key::disk_full(host));
        out.held.insert((Kind::DoctorBlock, host.clone()));
    }
    if locked {
        for (host, subject) in memory.containers.keys() {
            out.unknown.insert(Key::container(host, subject));
        }
        for role in topology.roles.keys() {
            out.unknown.insert(Key::role_down(role));
        }
        for host in &topology.hosts {
            out.unknown.insert(Key::proxy_down(host));
        }
        // About the hosts themselves: judged whoever holds the lock.
        out.findings.retain(|f| {
            matches!(
                f.key.kind,
                Kind::HostDown | Kind::DiskFull | Kind::DoctorBlock
            )
        });
        return out;
    }
    for host in &out.unjudged_hosts {
        out.unknown.insert(Key::proxy_down(host));
        for (h, subject) in memory.containers.keys() {
            if h == host {
                out.unknown.insert(Key::container(h, subject));
            }
        }
    }
    group_roles(topology, &down, &mut out);
    out
}

/// A role down on all its hosts (two or more) is one incident: its
/// hosts' container incidents are held silent. Its own is silent too when
/// every one of its hosts is down (those incidents say it all).
fn group_roles(topology: &Topology, down: &BTreeSet<String>, out: &mut Assessment) {
    for (role, r) in &topology.roles {
        if r.hosts.len() < 2 {
            continue;
        }
        let subject = Subject::Role(role.clone());
        let failing = |host: &String| {
            out.findings
                .iter()
                .any(|f| f.key == Key::container(host, &subject))
        };
        let undecided = r
            .hosts
            .iter()
            .any(|h| !down.contains(h) && (out.unjudged_hosts.contains(h) || !failing(h)));
        if undecided {
            if r.hosts
                .iter()
                .any(|h| out.unjudged_hosts.contains(h) && !down.contains(h))
            {
                out.unknown.insert(Key::role_down(role));
            }
            continue;
        }
        let causes: Vec<String> = r
            .hosts
            .iter()
            .map(|h| {
                match out
                    .findings
                    .iter()
                    .find(|f| f.key == Key::container(h, &subject))
                {
                    Some(f) => format!("{h}: {}", f.cause),
                    None => format!("{h}: host down"),
                }
            })
            .collect();
        // The hosts' own findings go silent: their hint (a crash loop
        // right after a deploy) is the role's.
        let mut hint = None;
        for f in out.findings.iter_mut() {
            if f.key.kind == super::Kind::ContainerFailing
                && f.key.subject.as_ref() == Some(&subject)
            {
                f.inhibited = true;
                hint = hint.or_else(|| f.hint.clone());
            }
        }
        out.findings.push(Finding {
            key: Key::role_down(role),
            cause: format!(
                "no healthy container on any of its {} hosts ({})",
                r.hosts.len(),
                causes.join("; ")
            ),
            inhibited: r.hosts.iter().all(|h| down.contains(h)),
            container: None,
            hint,
        });
    }
}
