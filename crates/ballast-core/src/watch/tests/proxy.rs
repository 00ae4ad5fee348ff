//! The proxy in the watcher's decisions: a proxy down is one incident per
//! host, with a hint and never a restart; held while its host is down or
//! the lock is held; and what the status shows of each proxy.

use std::collections::BTreeMap;

use super::super::incident::Event;
use super::super::observe::HostSeen;
use super::super::proxy_look::{ProxySeen, RouteCounts};
use super::super::Key;
use super::{events, looks, Sim};

fn stopped() -> ProxySeen {
    ProxySeen::Down("its container ballast-proxy is exited".into())
}

#[test]
fn a_proxy_down_is_one_incident_with_a_hint_never_a_restart() {
    let mut sim = Sim::new();
    sim.proxy("h2", stopped());
    assert!(looks(&mut sim, 1).is_empty(), "one look is not enough");
    let r = sim.look();
    assert!(r.restarts.is_empty());
    assert_eq!(events(&r), [(Event::Opened, "proxy down on h2".into())]);
    let i = &r.notices[0].incident;
    assert_eq!(i.key, Key::proxy_down("h2"));
    assert_eq!(i.cause, "its container ballast-proxy is exited");
    assert_eq!(i.container.as_deref(), Some("ballast-proxy"));
    let hint = i.hint.as_deref().unwrap();
    assert!(
        hint.contains("`ballast proxy restart --hosts h2`"),
        "{hint}"
    );
    // Still down: no more alerts until the escalation, and no restart.
    let all = looks(&mut sim, 70);
    assert_eq!(all, [(Event::Escalated, "proxy down on h2".into())]);
    // Started again: recovered after `recover_after`, once.
    sim.proxy("h2", ProxySeen::Serving(BTreeMap::new()));
    let all = looks(&mut sim, 10);
    assert_eq!(all, [(Event::Recovered, "proxy down on h2".into())]);
    assert!(sim.w.book.open.is_empty());
}

#[test]
fn a_proxy_that_does_not_answer_once_is_not_an_incident() {
    let mut sim = Sim::new();
    for _ in 0..5 {
        sim.proxy("h1", ProxySeen::Down("it does not answer".into()));
        assert!(looks(&mut sim, 1).is_empty());
        sim.proxy("h1", ProxySeen::Serving(BTreeMap::new()));
        assert!(looks(&mut sim, 1).is_empty());
    }
    assert!(sim.w.book.open.is_empty());
}

#[test]
fn a_proxy_down_is_held_while_its_host_is_down() {
    let mut sim = Sim::new();
    sim.proxy("h3", stopped());
    let all = looks(&mut sim, 2);
    assert_eq!(all, [(Event::Opened, "proxy down on h3".into())]);
    sim.hosts
        .insert("h3".into(), HostSeen::Down("no answer within 3s".into()));
    // Only the host's own incident speaks; the proxy's is neither
    // escalated nor closed while the host cannot be seen.
    let all = looks(&mut sim, 100);
    assert_eq!(
        all,
        [
            (Event::Opened, "host h3 down".into()),
            (Event::Escalated, "host h3 down".into())
        ]
    );
    assert!(sim.w.book.open.contains_key(&Key::proxy_down("h3")));
    // Back with its proxy serving: both recover.
    sim.healthy("h3");
    let mut all = looks(&mut sim, 10);
    all.sort_by_key(|(_, what)| what.clone());
    assert_eq!(
        all,
        [
            (Event::Recovered, "host h3 down".into()),
            (Event::Recovered, "proxy down on h3".into())
        ]
    );
}

#[test]
fn a_host_down_opens_no_proxy_incident() {
    let mut sim = Sim::new();
    sim.hosts.insert("h1".into(), HostSeen::Down("gone".into()));
    let all = looks(&mut sim, 5);
    assert_eq!(all, [(Event::Opened, "host h1 down".into())]);
    assert!(!sim.w.book.open.contains_key(&Key::proxy_down("h1")));
}

#[test]
fn the_proxy_is_not_judged_while_the_lock_is_held() {
    let mut sim = Sim::new();
    sim.lock("h1", Some("held by ana@laptop for proxy restart"));
    sim.proxy("h2", stopped());
    assert!(looks(&mut sim, 5).is_empty());
    // Released with the proxy running again: nothing to say.
    sim.lock("h1", None);
    sim.proxy("h2", ProxySeen::Serving(BTreeMap::new()));
    assert!(looks(&mut sim, 5).is_empty());
    assert!(sim.w.book.open.is_empty());
}

#[test]
fn the_status_shows_each_proxy_and_its_counts() {
    let mut sim = Sim::new();
    let web = RouteCounts {
        requests: 42,
        responses_5xx: 2,
    };
    sim.proxy(
        "h1",
        ProxySeen::Serving(BTreeMap::from([("web".to_string(), web)])),
    );
    sim.proxy("h2", stopped());
    sim.hosts.insert("h3".into(), HostSeen::Down("gone".into()));
    sim.look();
    let p = &sim.w.status.proxies;
    assert_eq!(p.keys().collect::<Vec<_>>(), ["h1", "h2"], "h3: unknown");
    assert!(p["h1"].up);
    assert_eq!(p["h1"].routes["web"], web);
    assert!(!p["h2"].up);
    assert_eq!(
        p["h2"].error.as_deref(),
        Some("its container ballast-proxy is exited")
    );
    assert!(p["h2"].routes.is_empty());
    let text = super::super::serve::metrics::render(&sim.w.status);
    for line in [
        "ballast_proxy_up{service=\"shop\",host=\"h1\"} 1",
        "ballast_proxy_up{service=\"shop\",host=\"h2\"} 0",
        "ballast_proxy_requests_total{service=\"shop\",host=\"h1\",role=\"web\"} 42",
        "ballast_proxy_responses_5xx_total{service=\"shop\",host=\"h1\",role=\"web\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(!text.contains("host=\"h3\",role="), "{text}");
}
