//! The watcher's decisions, round by round, on made-up looks: exact
//! restarts and notices, with the clock passed in. The proxy's cases are
//! in `tests/proxy.rs`; the disk's, doctor's rules' and looks at a few
//! hosts (after events) in `tests/host.rs`.

mod host;
mod proxy;

use std::collections::{BTreeMap, BTreeSet};

use super::disk::{DiskSeen, Usage};
use super::heal::Restart;
use super::incident::Event;
use super::observe::{ContainerSeen, Health, HostSeen, HostView, Observation};
use super::proxy_look::ProxySeen;
use super::watcher::{Saved, Settings, Topology, Watcher};
use super::{Key, Kind, Millis, Subject};
use crate::release::ContainerState::{self, Exited, Restarting, Running};

const S: Millis = 1_000;

const YAML: &str = "\
service: shop
image: shop
roles:
  web:
    hosts: [h1, h2, h3]
    port: 8080
    proxy: {}
  worker:
    hosts: [h3]
accessories:
  db:
    image: postgres:16.4
    host: h1
watch:
  failures: 2
  recover_after: 5s
  escalate_after: 60s
  backoff: {initial: 10s, max: 40s, reset_after: 30s}
  breaker: {restarts: 3, window: 5m}
";

fn web() -> Subject {
    Subject::Role("web".into())
}
fn worker() -> Subject {
    Subject::Role("worker".into())
}
fn db() -> Subject {
    Subject::Accessory("db".into())
}

fn disk_used(percent: u8) -> DiskSeen {
    DiskSeen::Read(Usage {
        root: "/var/lib/docker".into(),
        mount: "/".into(),
        used_percent: percent,
    })
}

fn seen(name: &str, state: ContainerState, health: Health, restarts: i64) -> Option<ContainerSeen> {
    Some(ContainerSeen {
        name: name.into(),
        id: format!("id-{name}"),
        version: Some("v1".into()),
        deployed_at: Some("2020-01-01T00:00:00Z".into()),
        state,
        exit_code: (state == Exited).then_some(137),
        restart_count: restarts,
        health,
        started_at: None,
    })
}

/// A test's world: what each host shows, changed between looks.
struct Sim {
    w: Watcher,
    at: Millis,
    hosts: BTreeMap<String, HostSeen>,
    busy: BTreeSet<Key>,
}

impl Sim {
    fn new() -> Sim {
        let config = crate::config::testing::parse_yaml(YAML).unwrap().config;
        let w = Watcher::new(
            Settings::from_config(&config.watch),
            Topology::from_config(&config),
            Saved::default(),
        );
        let mut sim = Sim {
            w,
            at: 1_000_000 * S,
            hosts: BTreeMap::new(),
            busy: BTreeSet::new(),
        };
        for h in ["h1", "h2", "h3"] {
            sim.healthy(h);
        }
        // Hosts are judged from their second answer.
        sim.look();
        assert!(sim.look().notices.is_empty());
        sim
    }

    fn healthy(&mut self, host: &str) {
        let mut containers = BTreeMap::from([(
            web(),
            seen(&format!("web-{host}"), Running, Health::Healthy, 0),
        )]);
        if host == "h3" {
            containers.insert(worker(), seen("worker", Running, Health::Unchecked, 0));
        }
        if host == "h1" {
            containers.insert(db(), seen("shop-db", Running, Health::Healthy, 0));
        }
        self.hosts.insert(
            host.into(),
            HostSeen::Up(HostView {
                locked: None,
                containers,
                // Every host runs web, which the proxy serves.
                proxy: Some(ProxySeen::Serving(BTreeMap::new())),
                disk: Some(disk_used(40)),
            }),
        );
    }

    fn proxy(&mut self, host: &str, proxy: ProxySeen) {
        match self.hosts.get_mut(host) {
            Some(HostSeen::Up(v)) => v.proxy = Some(proxy),
            _ => panic!("{host} is not up"),
        }
    }

    fn set(&mut self, host: &str, subject: Subject, c: Option<ContainerSeen>) {
        match self.hosts.get_mut(host) {
            Some(HostSeen::Up(v)) => {
                v.containers.insert(subject, c);
            }
            _ => panic!("{host} is not up"),
        }
    }

    fn lock(&mut self, host: &str, holder: Option<&str>) {
        if let Some(HostSeen::Up(v)) = self.hosts.get_mut(host) {
            v.locked = holder.map(str::to_string);
        }
    }

    /// One look, a second after the last.
    fn look(&mut self) -> super::watcher::Round {
        self.round(S, |_| true)
    }

    /// A look at `only` these hosts (an event came from them), a tenth of
    /// a second after the last.
    fn look_at(&mut self, only: &[&str]) -> super::watcher::Round {
        self.round(S / 10, |h| only.contains(&h))
    }

    /// A tick's look that the `silent` hosts did not answer in time (they
    /// will be judged on their own when they do), a second after the last.
    fn tick_without(&mut self, silent: &[&str]) -> super::watcher::Round {
        self.round(S, |h| !silent.contains(&h))
    }

    /// A round `after` the last, of the hosts `answered` keeps.
    fn round(&mut self, after: Millis, answered: impl Fn(&str) -> bool) -> super::watcher::Round {
        self.at += after;
        let hosts = self
            .hosts
            .iter()
            .filter(|(h, _)| answered(h))
            .map(|(h, seen)| (h.clone(), seen.clone()))
            .collect();
        let obs = Observation {
            at: self.at,
            hosts,
            took: BTreeMap::new(),
        };
        self.w.round(&obs, &self.busy)
    }

    fn disk(&mut self, host: &str, disk: DiskSeen) {
        match self.hosts.get_mut(host) {
            Some(HostSeen::Up(v)) => v.disk = Some(disk),
            _ => panic!("{host} is not up"),
        }
    }
}

fn events(r: &super::watcher::Round) -> Vec<(Event, String)> {
    r.notices
        .iter()
        .map(|n| (n.event, n.incident.key.to_string()))
        .collect()
}

/// Every notice of `n` looks, and that none of them restarted anything.
fn looks(sim: &mut Sim, n: usize) -> Vec<(Event, String)> {
    let mut all = Vec::new();
    for _ in 0..n {
        let r = sim.look();
        assert!(r.restarts.is_empty(), "{:?}", r.restarts);
        all.extend(events(&r));
    }
    all
}

fn restarted(r: &super::watcher::Round) -> Vec<(String, String, bool)> {
    r.restarts
        .iter()
        .map(|x: &Restart| (x.host.clone(), x.container.clone(), x.running))
        .collect()
}

#[test]
fn a_killed_container_is_started_at_once_one_incident_one_recovery() {
    let mut sim = Sim::new();
    sim.set("h1", web(), seen("web-h1", Exited, Health::Unchecked, 0));
    let r = sim.look();
    assert_eq!(restarted(&r), [("h1".into(), "web-h1".into(), false)]);
    assert_eq!(r.restarts[0].why, "exited with code 137");
    assert_eq!(
        events(&r),
        [(Event::Opened, "role web failing on h1".into())]
    );
    let done = r.restarts[0].clone();
    sim.w.done(&done, &Ok(()), sim.at);
    let counted: Vec<_> = sim.w.status.counters.restarts_of.iter().collect();
    assert_eq!(counted, [(&web(), &1)], "restarts by role, for the metrics");
    sim.healthy("h1");
    let mut all = Vec::new();
    for _ in 0..10 {
        let r = sim.look();
        assert!(r.restarts.is_empty());
        all.extend(events(&r));
    }
    assert_eq!(all, [(Event::Recovered, "role web failing on h1".into())]);
}

#[test]
fn a_failing_health_check_restarts_a_running_container_after_the_count() {
    let mut sim = Sim::new();
    let sick = || {
        seen(
            "web-h2",
            Running,
            Health::Failing("GET /up answered 503".into()),
            0,
        )
    };
    sim.set("h2", web(), sick());
    let r = sim.look();
    assert!(
        r.restarts.is_empty() && r.notices.is_empty(),
        "one failed check is not enough"
    );
    let r = sim.look();
    assert_eq!(restarted(&r), [("h2".into(), "web-h2".into(), true)]);
    assert_eq!(r.restarts[0].why, "unhealthy: GET /up answered 503");
    assert_eq!(
        events(&r),
        [(Event::Opened, "role web failing on h2".into())]
    );
}

#[test]
fn a_host_down_is_one_incident_that_escalates_and_hides_its_containers() {
    let mut sim = Sim::new();
    sim.hosts
        .insert("h3".into(), HostSeen::Down("no answer within 3s".into()));
    assert!(
        sim.look().notices.is_empty(),
        "one failed look is not enough"
    );
    let r = sim.look();
    assert_eq!(events(&r), [(Event::Opened, "host h3 down".into())]);
    assert!(r.restarts.is_empty());
    let mut all = Vec::new();
    for _ in 0..70 {
        all.extend(events(&sim.look()));
    }
    assert_eq!(all, [(Event::Escalated, "host h3 down".into())]);
    // Back: judged from its second answer, recovered `recover_after` later.
    sim.healthy("h3");
    let mut all = Vec::new();
    for _ in 0..10 {
        let r = sim.look();
        assert!(r.restarts.is_empty());
        all.extend(events(&r));
    }
    assert_eq!(all, [(Event::Recovered, "host h3 down".into())]);
}

#[test]
fn containers_of_a_down_host_raise_nothing_of_their_own() {
    let mut sim = Sim::new();
    // The worker on h3 exits just before h3 goes down: seen once.
    sim.set("h3", worker(), seen("worker", Exited, Health::Unchecked, 0));
    let r = sim.look();
    assert_eq!(
        events(&r),
        [(Event::Opened, "role worker failing on h3".into())]
    );
    sim.hosts.insert("h3".into(), HostSeen::Down("gone".into()));
    let mut all = Vec::new();
    for _ in 0..100 {
        all.extend(events(&sim.look()));
    }
    // The worker's incident is held: neither escalated nor closed.
    assert_eq!(
        all,
        [
            (Event::Opened, "host h3 down".into()),
            (Event::Escalated, "host h3 down".into())
        ]
    );
    assert!(sim
        .w
        .book
        .open
        .contains_key(&Key::container("h3", &worker())));
}

#[test]
fn a_role_down_everywhere_is_one_incident_healed_a_share_at_a_time() {
    let mut sim = Sim::new();
    for h in ["h1", "h2", "h3"] {
        sim.set(
            h,
            web(),
            seen(&format!("web-{h}"), Exited, Health::Unchecked, 0),
        );
    }
    let r = sim.look();
    assert_eq!(
        events(&r),
        [(Event::Opened, "role web down on all its hosts".into())]
    );
    // 34% of 3 hosts: one at a time.
    assert_eq!(restarted(&r), [("h1".into(), "web-h1".into(), false)]);
    // h1 did not come up yet: the others wait, and h1 waits its backoff.
    for _ in 0..5 {
        let r = sim.look();
        assert!(r.restarts.is_empty(), "{:?}", r.restarts);
        assert!(r.notices.is_empty());
    }
    sim.healthy("h1");
    let r = sim.look();
    assert_eq!(restarted(&r), [("h2".into(), "web-h2".into(), false)]);
    // No longer down everywhere: h2 and h3 now speak for themselves.
    assert_eq!(
        events(&r),
        [
            (Event::Opened, "role web failing on h2".into()),
            (Event::Opened, "role web failing on h3".into())
        ]
    );
}

#[test]
fn a_restart_under_way_holds_its_slot_even_once_seen_healthy() {
    let mut sim = Sim::new();
    sim.set("h1", web(), seen("web-h1", Exited, Health::Unchecked, 0));
    let r = sim.look();
    assert_eq!(restarted(&r), [("h1".into(), "web-h1".into(), false)]);
    // The start has not answered yet, but h1's container already runs
    // healthy when h2's falls over.
    sim.busy.insert(Key::container("h1", &web()));
    sim.healthy("h1");
    sim.set("h2", web(), seen("web-h2", Exited, Health::Unchecked, 0));
    for _ in 0..3 {
        let r = sim.look();
        assert!(r.restarts.is_empty(), "{:?}", r.restarts);
    }
    // Once h1's restart is done, h2 gets its turn.
    sim.busy.clear();
    let r = sim.look();
    assert_eq!(restarted(&r), [("h2".into(), "web-h2".into(), false)]);
}

#[test]
fn the_breaker_opens_after_k_restarts_and_escalates_once() {
    let mut sim = Sim::new();
    sim.set("h2", web(), seen("web-h2", Exited, Health::Unchecked, 0));
    let mut restarts = Vec::new();
    let mut all = Vec::new();
    for _ in 0..200 {
        let r = sim.look();
        restarts.extend(r.restarts.iter().map(|_| sim.at));
        all.extend(events(&r));
    }
    // At once, then 10s and 20s later; then never again.
    let t0 = restarts[0];
    let waits: Vec<Millis> = restarts.iter().map(|t| (t - t0) / S).collect();
    assert_eq!(waits, [0, 10, 30]);
    assert_eq!(
        all,
        [
            (Event::Opened, "role web failing on h2".into()),
            (Event::Escalated, "role web failing on h2".into())
        ]
    );
    let incident = &sim.w.book.open[&Key::container("h2", &web())];
    assert!(incident.given_up);
    assert_eq!(incident.tried.len(), 1, "{:?}", incident.tried);
    assert!(incident.tried[0].ends_with("restarted 3 times within 5m: watch stops restarting it"));
}

#[test]
fn dockers_own_crash_loop_is_one_incident_and_opens_the_breaker() {
    let mut sim = Sim::new();
    let mut all = Vec::new();
    for n in 1..=30 {
        // Docker restarts it every 5 looks; it runs in between.
        let state = if n % 5 == 0 { Restarting } else { Running };
        sim.set(
            "h3",
            worker(),
            seen("worker", state, Health::Unchecked, n / 5),
        );
        let r = sim.look();
        assert!(r.restarts.is_empty(), "Docker is on it: {:?}", r.restarts);
        all.extend(events(&r));
    }
    assert_eq!(
        all,
        [
            (Event::Opened, "role worker failing on h3".into()),
            (Event::Escalated, "role worker failing on h3".into())
        ]
    );
    let incident = &sim.w.book.open[&Key::container("h3", &worker())];
    assert!(
        incident.cause.starts_with("crash loop: "),
        "{}",
        incident.cause
    );
    assert!(incident.given_up);
}

#[test]
fn watch_stands_aside_while_the_lock_is_held() {
    let mut sim = Sim::new();
    sim.lock("h2", Some("held by ana@laptop for deploy"));
    sim.set("h1", web(), seen("web-h1", Exited, Health::Unchecked, 0));
    sim.set("h1", web(), None);
    for _ in 0..5 {
        let r = sim.look();
        assert!(r.restarts.is_empty() && r.notices.is_empty());
    }
    // Nor do looks that miss h2 (an event's look at h1, a round h2 was
    // late for) forget that h2 holds the lock: only h2's answer does.
    for r in [sim.look_at(&["h1"]), sim.tick_without(&["h2"])] {
        assert!(r.restarts.is_empty() && r.notices.is_empty());
    }
    assert_eq!(
        sim.w.status.locked.as_deref(),
        Some("held by ana@laptop for deploy")
    );
    // Released, the deploy left a new container running.
    sim.lock("h2", None);
    sim.healthy("h1");
    let r = sim.look();
    assert!(r.restarts.is_empty() && r.notices.is_empty());
    assert_eq!(
        sim.w.status.locked.as_deref(),
        Some("a deploy that just ended")
    );
    sim.look();
    assert_eq!(sim.w.status.locked, None);
}

#[test]
fn accessories_are_started_only_when_they_fell_over() {
    let mut sim = Sim::new();
    sim.set("h1", db(), seen("shop-db", Exited, Health::Unchecked, 0));
    let r = sim.look();
    assert_eq!(restarted(&r), [("h1".into(), "shop-db".into(), false)]);
    assert_eq!(
        events(&r),
        [(Event::Opened, "accessory db failing on h1".into())]
    );
    // Stopped under the lock (`ballast accessory stop`): left stopped.
    let mut sim = Sim::new();
    sim.lock("h1", Some("held for accessory stop"));
    sim.look();
    sim.lock("h1", None);
    sim.set("h1", db(), seen("shop-db", Exited, Health::Unchecked, 0));
    for _ in 0..5 {
        let r = sim.look();
        assert!(r.restarts.is_empty() && r.notices.is_empty());
    }
}

#[test]
fn a_restarted_watcher_remembers_and_does_not_alert_again() {
    let mut sim = Sim::new();
    sim.set("h2", web(), seen("web-h2", Exited, Health::Unchecked, 0));
    assert_eq!(sim.look().notices.len(), 1);
    let saved = sim.w.saved();
    let config = crate::config::testing::parse_yaml(YAML).unwrap().config;
    sim.w = Watcher::new(
        Settings::from_config(&config.watch),
        Topology::from_config(&config),
        saved,
    );
    for _ in 0..20 {
        let r = sim.look();
        assert!(
            r.notices.iter().all(|n| n.event != Event::Opened),
            "{:?}",
            events(&r)
        );
    }
    assert_eq!(sim.w.book.open.len(), 1);
    assert_eq!(
        sim.w.book.open.keys().next().unwrap().kind,
        Kind::ContainerFailing
    );
}
