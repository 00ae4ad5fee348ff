//! The state machine of `ballast watch`: a look goes in, the restarts to
//! make and the notices to send come out ([`Watcher::round`]); what came of
//! each restart goes back in ([`Watcher::done`]), and so does each run of
//! doctor's rules ([`Watcher::checked`]). It holds everything that
//! outlives a look: the memory of containers and hosts, the latest
//! checkups, the incident book, and the [`Status`] others read. No I/O:
//! the loop in `run` does that.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::assess::{self, Condition, Memory};
use super::backoff::Policy;
use super::breaker::Limit;
use super::checkup::Checkups;
use super::disk::DiskSeen;
use super::heal::{self, Restart};
use super::incident::{Book, Event, Notice, Timing};
use super::observe::{HostSeen, Observation};
use super::proxy_look::ProxySeen;
use super::status::{ContainerStatus, ProxyStatus, Status};
use super::{Key, Millis, Subject};
use crate::config::{watch::Watch, Config, Role};

/// The policy, from `watch:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub failures: u32,
    pub recover_after: Duration,
    pub escalate_after: Duration,
    pub backoff: Policy,
    pub breaker: Limit,
    /// `max_share`, in percent.
    pub max_share: u32,
    /// `disk_full_percent`.
    pub disk_full_percent: u8,
    /// How soon after a deploy a crash loop is blamed on its release.
    pub rollback_window: Duration,
}

impl Settings {
    pub fn from_config(w: &Watch) -> Settings {
        Settings {
            failures: w.failures.max(1),
            recover_after: w.recover_after,
            escalate_after: w.escalate_after,
            backoff: Policy {
                initial: w.backoff.initial,
                max: w.backoff.max,
                reset_after: w.backoff.reset_after,
            },
            breaker: Limit {
                restarts: w.breaker.restarts.max(1),
                window: w.breaker.window,
            },
            max_share: w.max_share_percent(),
            disk_full_percent: w.disk_full_percent,
            rollback_window: w.rollback_window,
        }
    }

    fn timing(&self) -> Timing {
        Timing {
            recover_after: self.recover_after,
            escalate_after: self.escalate_after,
        }
    }
}

/// What is watched: the service, its roles' hosts, its accessories.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub service: String,
    /// Every host once, in config order.
    pub hosts: Vec<String>,
    pub roles: BTreeMap<String, RoleTopology>,
    /// Accessory name to (host, container name).
    pub accessories: BTreeMap<String, (String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleTopology {
    pub hosts: Vec<String>,
    pub stop_timeout: Duration,
    /// The role as configured: its health check.
    pub role: Role,
}

impl Topology {
    pub fn from_config(config: &Config) -> Topology {
        Topology {
            service: config.service.clone(),
            hosts: config.all_hosts(),
            roles: config
                .roles
                .iter()
                .map(|(name, role)| {
                    let r = RoleTopology {
                        hosts: role.addresses().iter().map(|h| h.to_string()).collect(),
                        stop_timeout: config.stop_timeout(name),
                        role: role.clone(),
                    };
                    (name.clone(), r)
                })
                .collect(),
            accessories: config
                .accessories
                .iter()
                .map(|(name, a)| {
                    let container = format!("{}-{name}", config.service);
                    (name.clone(), (a.host().to_string(), container))
                })
                .collect(),
        }
    }

    /// The roles running on `host`.
    pub fn roles_on<'a>(
        &'a self,
        host: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a RoleTopology)> {
        self.roles
            .iter()
            .filter(move |(_, r)| r.hosts.iter().any(|h| h == host))
    }

    /// The roles on `host` that ballast-proxy serves.
    pub fn proxied_on<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a String> {
        self.roles_on(host)
            .filter(|(_, r)| r.role.proxy.is_some())
            .map(|(name, _)| name)
    }

    /// The accessories on `host`, with their container names.
    pub fn accessories_on<'a>(
        &'a self,
        host: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a String)> {
        self.accessories
            .iter()
            .filter(move |(_, (h, _))| h == host)
            .map(|(name, (_, container))| (name, container))
    }
}

/// What a restarted watcher takes back from the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub memory: Memory,
    pub book: Book,
}

/// What to do after a look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub restarts: Vec<Restart>,
    pub notices: Vec<Notice>,
}

pub struct Watcher {
    pub settings: Settings,
    pub topology: Topology,
    pub memory: Memory,
    /// The latest run of doctor's rules on each host (none yet: its
    /// `doctor_block` incidents are held). Not kept in the state file: a
    /// restarted watcher runs the rules again first thing.
    pub checkups: Checkups,
    pub book: Book,
    pub status: Status,
}

impl Watcher {
    pub fn new(settings: Settings, topology: Topology, saved: Saved) -> Watcher {
        let status = Status {
            service: topology.service.clone(),
            ..Status::default()
        };
        Watcher {
            settings,
            topology,
            memory: saved.memory,
            checkups: Checkups::new(),
            book: saved.book,
            status,
        }
    }

    /// Takes in a run of doctor's rules; returns the hosts whose blocks
    /// changed (worth a look now).
    pub fn checked(&mut self, checkups: Checkups) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        for (host, checkup) in checkups {
            if self.checkups.get(&host) != Some(&checkup) {
                changed.insert(host.clone());
            }
            self.checkups.insert(host, checkup);
        }
        changed
    }

    /// What to keep in the state file.
    pub fn saved(&self) -> Saved {
        Saved {
            memory: self.memory.clone(),
            book: self.book.clone(),
        }
    }

    /// Takes in one look: judges it, decides the restarts, and moves the
    /// incidents on.
    /// Containers in `busy` have a restart under way: left alone.
    pub fn round(&mut self, obs: &Observation, busy: &BTreeSet<Key>) -> Round {
        let now = obs.at;
        let a = assess::assess(
            &self.topology,
            &self.settings,
            obs,
            &self.checkups,
            &mut self.memory,
            now,
        );
        let decision = match a.locked {
            Some(_) => heal::Decision::default(),
            None => heal::decide(
                &a.candidates,
                busy,
                &mut self.memory,
                &self.topology,
                &self.settings,
                now,
            ),
        };
        let unknown = |k: &Key| a.unknown(k);
        let timing = self.settings.timing();
        let mut notices = self.book.update(&a.findings, &unknown, &timing, now);
        for (key, why) in a.gave_up.iter().chain(&decision.gave_up) {
            self.book
                .tried(key, format!("{}: {why}", super::rfc3339(now)));
            self.book.give_up(key);
            // A role down everywhere speaks for its hosts.
            if let Some(Subject::Role(role)) = &key.subject {
                self.book.give_up(&Key::role_down(role));
            }
        }
        notices.extend(self.book.escalate(&unknown, &timing, now));
        self.status.at = now;
        self.status.locked = a.locked.clone();
        self.status.counters.looks += 1;
        self.status.counters.docker_restarts += a.docker_restarts;
        self.count(&notices);
        self.refresh(obs, &a.conditions);
        Round {
            restarts: decision.restarts,
            notices,
        }
    }

    /// Takes in what came of `restart`: noted in its incident (and its
    /// role's, if that one speaks for it).
    pub fn done(&mut self, restart: &Restart, outcome: &Result<(), String>, now: Millis) {
        let what = match outcome {
            Ok(()) => format!(
                "{}: {} {} ({})",
                super::rfc3339(now),
                restart.verb(),
                restart.container,
                restart.why
            ),
            Err(e) => format!(
                "{}: {} {} failed: {e}",
                super::rfc3339(now),
                restart.verb(),
                restart.container
            ),
        };
        self.book.tried(&restart.key(), what.clone());
        if let Subject::Role(role) = &restart.subject {
            self.book.tried(
                &Key::role_down(role),
                format!("{} on {}", what, restart.host),
            );
        }
        match outcome {
            Ok(()) => {
                self.status.counters.restarts += 1;
                let c = &mut self.status.counters;
                *c.restarts_of.entry(restart.subject.clone()).or_default() += 1;
            }
            Err(_) => self.status.counters.restarts_failed += 1,
        }
        self.status.incidents = self.book.open.values().cloned().collect();
    }

    /// Whether `host` failed a look but not yet `watch.failures` in a row:
    /// worth asking again at once rather than at the next tick.
    pub fn confirming(&self, host: &str) -> bool {
        self.memory
            .hosts
            .get(host)
            .is_some_and(|t| t.failures > 0 && t.failures < self.settings.failures)
    }

    /// Counts a Docker event about one of the service's containers.
    pub fn nudged(&mut self) {
        self.status.counters.events += 1;
    }

    /// Counts a delivery that failed for good.
    pub fn delivery_failed(&mut self) {
        self.status.counters.deliveries_failed += 1;
    }

    fn count(&mut self, notices: &[Notice]) {
        for n in notices {
            self.status.counters.notices += 1;
            if n.event == Event::Opened {
                self.status.counters.incidents_opened += 1;
            }
        }
    }

    fn refresh(&mut self, obs: &Observation, conditions: &BTreeMap<(String, Subject), Condition>) {
        for (host, seen) in &obs.hosts {
            let entry = self.status.hosts.entry(host.clone()).or_default();
            entry.latency_ms = obs.took.get(host).map(|d| super::backoff::millis(*d));
            match seen {
                HostSeen::Up(view) => {
                    entry.up = true;
                    entry.error = None;
                    entry.disk_used_percent = match &view.disk {
                        Some(DiskSeen::Read(u)) => Some(u.used_percent),
                        _ => None,
                    };
                }
                HostSeen::Down(why) | HostSeen::Unknown(why) => {
                    entry.up = matches!(seen, HostSeen::Unknown(_));
                    entry.error = Some(why.clone());
                    entry.disk_used_percent = None;
                }
            }
        }
        self.refresh_proxies(obs);
        // A look at a few hosts leaves the others' containers as they were.
        let mut containers: Vec<ContainerStatus> = std::mem::take(&mut self.status.containers)
            .into_iter()
            .filter(|c| !obs.hosts.contains_key(&c.host))
            .collect();
        for (host, seen) in &obs.hosts {
            let HostSeen::Up(view) = seen else { continue };
            for (subject, c) in &view.containers {
                let track = self.memory.containers.get(&(host.clone(), subject.clone()));
                let Some(condition) = conditions.get(&(host.clone(), subject.clone())) else {
                    continue;
                };
                containers.push(ContainerStatus {
                    host: host.clone(),
                    subject: subject.clone(),
                    name: c.as_ref().map(|c| c.name.clone()),
                    version: c.as_ref().and_then(|c| c.version.clone()),
                    state: c.as_ref().map(|c| c.state),
                    condition: condition.clone(),
                    restarts: track.map_or(0, |t| t.breaker.recent(&self.settings.breaker, obs.at)),
                    breaker_open: track.is_some_and(|t| t.breaker.open),
                    started_at: c.as_ref().and_then(|c| c.started_at),
                });
            }
        }
        containers.sort_by(|a, b| (&a.host, &a.subject).cmp(&(&b.host, &b.subject)));
        self.status.containers = containers;
        self.status.incidents = self.book.open.values().cloned().collect();
    }

    /// Each host's proxy as this look saw it; one on a host that did not
    /// answer is unknown, and left out.
    fn refresh_proxies(&mut self, obs: &Observation) {
        for (host, seen) in &obs.hosts {
            let proxy = match seen {
                HostSeen::Up(view) => view.proxy.as_ref(),
                // Nothing could be said this time: what was seen stays.
                HostSeen::Unknown(_) => continue,
                HostSeen::Down(_) => None,
            };
            let Some(proxy) = proxy else {
                self.status.proxies.remove(host);
                continue;
            };
            let status = match proxy {
                ProxySeen::Serving(routes) => ProxyStatus {
                    up: true,
                    error: None,
                    routes: routes.clone(),
                },
                ProxySeen::Down(why) => ProxyStatus {
                    up: false,
                    error: Some(why.clone()),
                    routes: BTreeMap::new(),
                },
            };
            self.status.proxies.insert(host.clone(), status);
        }
    }
}
