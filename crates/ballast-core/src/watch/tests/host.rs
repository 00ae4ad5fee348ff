//! Incidents about a host itself: its Docker disk nearly full and doctor's
//! rules that block it, held while it does not answer and judged whoever
//! holds the lock; and looks at a few hosts (brought forward by Docker
//! events), which judge those hosts only.

use super::super::checkup::{Block, Checkup, Checkups};
use super::super::disk::DiskSeen;
use super::super::incident::Event;
use super::super::observe::HostSeen;
use super::super::{Key, Kind};
use super::{disk_used, events, looks, restarted, seen, web, Sim};
use crate::release::ContainerState::Exited;
use crate::watch::observe::Health;

fn block(rule: &str) -> Block {
    Block {
        rule: rule.into(),
        reason: "the Docker API on TCP without TLS client verification gives root".into(),
        fix: "remove the tcp:// host".into(),
        source: "docs.docker.com/engine/security/protect-access/".into(),
        detail: Some("the API listens on tcp://0.0.0.0:2375 without TLS".into()),
    }
}

fn checkups(host: &str, c: Checkup) -> Checkups {
    Checkups::from([(host.to_string(), c)])
}

const FULL: &str = "Docker's disk nearly full on h2";

#[test]
fn a_disk_nearly_full_is_one_incident_per_host_with_a_hint_never_a_restart() {
    let mut sim = Sim::new();
    sim.disk("h2", disk_used(89));
    assert!(looks(&mut sim, 3).is_empty(), "below the threshold (90%)");
    sim.disk("h2", disk_used(90));
    let r = sim.look();
    assert_eq!(events(&r), [(Event::Opened, FULL.into())]);
    let i = &r.notices[0].incident;
    assert_eq!(i.key, Key::disk_full("h2"));
    assert_eq!(
        i.cause,
        "the filesystem holding /var/lib/docker (mounted on /) is 90% used (watch.disk_full_percent: 90%)"
    );
    assert!(i.hint.as_deref().unwrap().contains("`ballast prune`"));
    // Fuller still: the same incident, escalated once past the threshold.
    sim.disk("h2", disk_used(97));
    assert_eq!(looks(&mut sim, 70), [(Event::Escalated, FULL.into())]);
    assert!(sim.w.book.open[&Key::disk_full("h2")].cause.contains("97%"));
    // Freed: recovered once it stays below for `recover_after` (5s).
    sim.disk("h2", disk_used(60));
    assert!(looks(&mut sim, 5).is_empty());
    assert_eq!(looks(&mut sim, 5), [(Event::Recovered, FULL.into())]);
    assert!(sim.w.book.open.is_empty());
}

#[test]
fn a_disk_not_read_or_a_host_down_leaves_its_incident_open() {
    let mut sim = Sim::new();
    sim.disk("h2", disk_used(95));
    assert_eq!(looks(&mut sim, 1), [(Event::Opened, FULL.into())]);
    sim.disk(
        "h2",
        DiskSeen::Unread("run df on the host: timed out".into()),
    );
    assert!(looks(&mut sim, 20).is_empty(), "not read: not recovered");
    sim.hosts
        .insert("h2".into(), HostSeen::Down("no answer within 3s".into()));
    let all = looks(&mut sim, 20);
    assert_eq!(all, [(Event::Opened, "host h2 down".into())]);
    assert!(sim.w.book.open.contains_key(&Key::disk_full("h2")));
    // Back, with room: both recover.
    sim.healthy("h2");
    let mut all = looks(&mut sim, 10);
    all.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        all,
        [
            (Event::Recovered, FULL.into()),
            (Event::Recovered, "host h2 down".into())
        ]
    );
}

#[test]
fn a_doctor_rule_that_blocks_is_an_incident_until_it_passes_again() {
    let mut sim = Sim::new();
    let what = "doctor rule api-tcp-without-tls blocks h1";
    let changed = sim.w.checked(checkups(
        "h1",
        Checkup::Checked(vec![block("api-tcp-without-tls")]),
    ));
    assert_eq!(changed.into_iter().collect::<Vec<_>>(), ["h1"]);
    let r = sim.look();
    assert_eq!(events(&r), [(Event::Opened, what.into())]);
    let i = &r.notices[0].incident;
    assert_eq!(i.key, Key::doctor_block("h1", "api-tcp-without-tls"));
    assert_eq!(
        i.cause,
        "the Docker API on TCP without TLS client verification gives root: \
         the API listens on tcp://0.0.0.0:2375 without TLS \
         (source: docs.docker.com/engine/security/protect-access/)"
    );
    assert_eq!(
        i.hint.as_deref(),
        Some("remove the tcp:// host (`ballast doctor --host h1` tells more)")
    );
    // The same verdict again changes nothing, and says nothing new.
    let same = checkups("h1", Checkup::Checked(vec![block("api-tcp-without-tls")]));
    assert!(sim.w.checked(same).is_empty());
    // A run that could not check the host leaves the incident open.
    sim.w
        .checked(checkups("h1", Checkup::Unchecked("ssh: timed out".into())));
    assert!(looks(&mut sim, 20).is_empty());
    assert_eq!(sim.w.book.open.len(), 1);
    // Another rule blocks too: its own incident.
    sim.w.checked(checkups(
        "h1",
        Checkup::Checked(vec![block("api-tcp-without-tls"), block("storage-legacy")]),
    ));
    assert_eq!(
        looks(&mut sim, 1),
        [(Event::Opened, "doctor rule storage-legacy blocks h1".into())]
    );
    // Both pass again: both recover, once.
    sim.w.checked(checkups("h1", Checkup::Checked(vec![])));
    let mut all = looks(&mut sim, 10);
    all.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        all,
        [
            (Event::Recovered, what.into()),
            (
                Event::Recovered,
                "doctor rule storage-legacy blocks h1".into()
            )
        ]
    );
}

#[test]
fn doctor_incidents_wait_for_the_first_checkup_of_a_restarted_watcher() {
    let mut sim = Sim::new();
    sim.w.checked(checkups(
        "h1",
        Checkup::Checked(vec![block("storage-legacy")]),
    ));
    assert_eq!(looks(&mut sim, 1).len(), 1);
    // A restarted watcher has no checkup yet: the incident stays open,
    // and is not alerted again.
    let saved = sim.w.saved();
    let (settings, topology) = (sim.w.settings.clone(), sim.w.topology.clone());
    sim.w = super::Watcher::new(settings, topology, saved);
    assert!(looks(&mut sim, 20).is_empty());
    assert_eq!(sim.w.book.open.len(), 1);
}

#[test]
fn disks_and_doctor_are_judged_while_the_lock_is_held() {
    let mut sim = Sim::new();
    sim.lock("h1", Some("held by ana@laptop for deploy"));
    sim.disk("h3", disk_used(99));
    sim.w.checked(checkups(
        "h2",
        Checkup::Checked(vec![block("storage-legacy")]),
    ));
    let mut all = looks(&mut sim, 1);
    all.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        all,
        [
            (Event::Opened, "Docker's disk nearly full on h3".into()),
            (Event::Opened, "doctor rule storage-legacy blocks h2".into()),
        ]
    );
}

#[test]
fn a_look_at_one_host_judges_that_host_only() {
    let mut sim = Sim::new();
    // h2's web fails and is restarted by a whole look...
    sim.set("h2", web(), seen("web-h2", Exited, Health::Unchecked, 0));
    sim.disk("h3", disk_used(95));
    let r = sim.look();
    assert_eq!(restarted(&r), [("h2".into(), "web-h2".into(), false)]);
    sim.w.done(&r.restarts[0], &Ok(()), sim.at);
    // ...then h1's is killed, and the event brings a look at h1 forward:
    // h1's incident opens, nothing of h2 or h3 changes (not seen: neither
    // recovered nor alerted again), the status keeps their containers.
    sim.set("h1", web(), seen("web-h1", Exited, Health::Unchecked, 0));
    sim.healthy("h2");
    sim.disk("h3", disk_used(10));
    for _ in 0..100 {
        let r = sim.look_at(&["h1"]);
        for (event, what) in events(&r) {
            assert_eq!(what, "role web failing on h1", "{event:?}");
        }
    }
    let open: Vec<Kind> = sim.w.book.open.keys().map(|k| k.kind).collect();
    assert_eq!(open.len(), 3, "{:?}", sim.w.book.open.keys());
    assert!(sim.w.book.open.contains_key(&Key::container("h2", &web())));
    assert!(sim.w.book.open.contains_key(&Key::disk_full("h3")));
    let hosts: Vec<&str> = sim
        .w
        .status
        .containers
        .iter()
        .map(|c| c.host.as_str())
        .collect();
    assert_eq!(hosts, ["h1", "h1", "h2", "h3", "h3"]);
    // A whole look sees h2 and h3 again.
    let mut all = looks_allowing_restarts(&mut sim, 10);
    all.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        all,
        [
            (Event::Recovered, "Docker's disk nearly full on h3".into()),
            (Event::Recovered, "role web failing on h2".into()),
        ]
    );
}

#[test]
fn a_look_at_one_host_does_not_forget_a_lock_held_on_another() {
    let mut sim = Sim::new();
    sim.lock("h2", Some("held by ana@laptop for deploy"));
    assert!(sim.look().restarts.is_empty());
    // A deploy on h2; h1's container dies; an event brings h1 forward.
    sim.set("h1", web(), seen("web-h1", Exited, Health::Unchecked, 0));
    for _ in 0..5 {
        let r = sim.look_at(&["h1"]);
        assert!(r.restarts.is_empty() && r.notices.is_empty(), "{r:?}");
        assert!(sim.w.status.locked.is_some());
    }
    // The lock is released: the whole look after next acts.
    sim.lock("h2", None);
    assert!(
        sim.look().restarts.is_empty(),
        "the look after a deploy settles"
    );
    let r = sim.look();
    assert_eq!(restarted(&r), [("h1".into(), "web-h1".into(), false)]);
}

#[test]
fn a_silent_host_is_called_down_on_its_second_failure_in_a_row() {
    let mut sim = Sim::new();
    sim.hosts
        .insert("h3".into(), HostSeen::Down("no answer within 10s".into()));
    // Its late answers, judged alone: one failure is worth asking again
    // at once, the second in a row is the incident.
    assert!(sim.look_at(&["h3"]).notices.is_empty());
    assert!(sim.w.confirming("h3"));
    assert_eq!(
        events(&sim.look_at(&["h3"])),
        [(Event::Opened, "host h3 down".to_string())]
    );
    assert!(!sim.w.confirming("h3"));
}

#[test]
fn a_role_failing_on_the_hosts_that_answer_and_its_others_down_is_one_incident() {
    let mut sim = Sim::new();
    sim.hosts
        .insert("h3".into(), HostSeen::Down("no answer within 10s".into()));
    sim.look_at(&["h3"]);
    let r = sim.look_at(&["h3"]);
    assert_eq!(events(&r), [(Event::Opened, "host h3 down".to_string())]);
    // h3 stays silent, left out of the ticks; web falls over on h1 and h2.
    for h in ["h1", "h2"] {
        sim.set(
            h,
            web(),
            seen(&format!("web-{h}"), Exited, Health::Unchecked, 0),
        );
    }
    let r = sim.tick_without(&["h3"]);
    assert_eq!(
        events(&r),
        [(Event::Opened, "role web down on all its hosts".into())]
    );
    let role = sim
        .w
        .book
        .open
        .values()
        .find(|i| i.key.kind == Kind::RoleDown)
        .unwrap();
    assert!(role.cause.contains("h3: host down"), "{}", role.cause);
}

/// Every notice of `n` whole looks.
fn looks_allowing_restarts(sim: &mut Sim, n: usize) -> Vec<(Event, String)> {
    (0..n).flat_map(|_| events(&sim.look())).collect()
}
