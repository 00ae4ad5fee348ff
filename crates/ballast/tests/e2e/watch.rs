//! `ballast watch` on a real 3-host lab, with test-short intervals and a
//! webhook receiver run by the test, counting what it gets:
//! - an app container killed (`docker kill`, which Docker's restart policy
//!   leaves alone) is started again within 5 s: one incident, exactly one
//!   alert and one recovery;
//! - a container whose health check starts failing while it keeps running
//!   (hello's `HELLO_FAIL_HEALTH_AFTER`) is restarted, which Docker would
//!   never do;
//! - a container that crashes on every start (`HELLO_CRASH_AFTER`, Docker
//!   restarting it) opens the breaker after K restarts: one incident, an
//!   alert and one escalation, no flood;
//! - a stopped lab host is alerted within 10 s and escalated with a report
//!   naming it; its containers raise nothing of their own; its recovery is
//!   sent once it is started again;
//! - meanwhile, the metrics and the status page served by watch show the
//!   stopped host down, its incident open, and the restarts made.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ballast_core::host::Host;
use serde_json::Value;

use common::webhook::{events, http_get, metric, receiver, wait, Got};
use common::*;

fn write_config(dir: &Path, lab: &Lab, port: u16) -> std::path::PathBuf {
    let inv = &lab.inventory;
    let (h1, h2, h3) = (&inv.hosts[0].ip, &inv.hosts[1].ip, &inv.hosts[2].ip);
    let rest = format!(
        "roles:
  web:
    hosts: [{h1}, {h2}, {h3}]
    port: 8080
  sick:
    hosts: [{h2}]
    port: 8080
    env: {{clear: {{HELLO_FAIL_HEALTH_AFTER: \"20s\"}}}}
  crashy:
    hosts: [{h1}]
    port: 8080
    env: {{clear: {{HELLO_CRASH_AFTER: \"5s\"}}}}
deploy:
  health_timeout: 20s
watch:
  interval: 1s
  deadline: 3s
  failures: 2
  recover_after: 7s
  escalate_after: 12s
  backoff: {{initial: 2s, max: 10s, reset_after: 30s}}
  breaker: {{restarts: 3, window: 2m}}
  alerts:
    - {{type: webhook, url: \"http://127.0.0.1:{port}/hook\"}}
"
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

/// `(running, started at)` of `container` on `host`.
async fn state_of(host: &Host, container: &str) -> (bool, String) {
    let c = host
        .engine()
        .docker()
        .inspect_container(container, None)
        .await
        .unwrap();
    let s = c.state.unwrap_or_default();
    (
        s.running.unwrap_or(false) && !s.restarting.unwrap_or(false),
        s.started_at.unwrap_or_default(),
    )
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}\n{}", text(&out));
}

#[test]
fn watch_heals_alerts_escalates_and_recovers_without_floods() {
    require_engine!();
    hello_image("v1");
    let lab = Lab::up("watch", 3);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let (port, got) = receiver();
    let config = write_config(work.path(), &lab, port);
    let binary = static_ballast();
    run_ok(
        &config,
        &binary,
        &["deploy", "--version", "v1", "--roles", "web,sick"],
    );
    // Deployed last: it crashes 5 s after every start. `recover_after`
    // (7 s) is longer than one life of it, so a look that caught its first
    // crash cannot see it "recovered" before the loop is recognised.
    run_ok(
        &config,
        &binary,
        &["deploy", "--version", "v1", "--roles", "crashy"],
    );

    let rt = runtime();
    let h1 = rt
        .block_on(Host::connect(
            &inv.hosts[0].ip,
            &inv.ssh_target(&inv.hosts[0]),
        ))
        .unwrap();
    let h2 = rt
        .block_on(Host::connect(
            &inv.hosts[1].ip,
            &inv.ssh_target(&inv.hosts[1]),
        ))
        .unwrap();
    let (h1_ip, h2_ip, h3_ip) = (&inv.hosts[0].ip, &inv.hosts[1].ip, &inv.hosts[2].ip);
    // When sick last started, read before watch runs: watch may restart it
    // as soon as it has looked twice, before (b) begins.
    let sick = "hello-sick-v1";
    let (_, sick_started) = rt.block_on(state_of(&h2, sick));

    let state = work.path().join("watch-state.json");
    let http = common::webhook::free_port();
    let mut watch = common::watch::start(&config, &binary, &state, http, 3, "hello");
    let web = "hello-web-v1";
    // Two looks so that the hosts are judged, then the kill.
    std::thread::sleep(Duration::from_secs(3));

    // (a) A killed app container: started again within 5 s.
    let (_, before) = rt.block_on(state_of(&h1, web));
    rt.block_on(
        h1.engine()
            .docker()
            .kill_container(web, None::<bollard::query_parameters::KillContainerOptions>),
    )
    .unwrap();
    let killed = Instant::now();
    let back = loop {
        let (running, started) = rt.block_on(state_of(&h1, web));
        if running && started != before {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "{web} not running again within 5s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "measure: killed container running again after {:.1}s",
        back.as_secs_f64()
    );
    let a = |got: &Got| events(got, "container_failing", Some(h1_ip), Some("web"));
    wait(&got, "web on h1 recovered", Duration::from_secs(20), || {
        a(&got).contains(&"recovered".into())
    });

    // (b) Health failing while it runs: restarted by watch.
    watch.wait_for(
        &format!("restart {sick} (role sick: unhealthy"),
        Duration::from_secs(45),
    );
    wait(&got, "sick restarted", Duration::from_secs(15), || {
        let (running, started) = rt.block_on(state_of(&h2, sick));
        running && started != sick_started
    });
    let b = events(&got, "container_failing", Some(h2_ip), Some("sick"));
    assert_eq!(b.first().map(String::as_str), Some("opened"), "{b:?}");

    // (d) Crashing on every start: the breaker opens after 3 restarts.
    let d = |got: &Got| events(got, "container_failing", Some(h1_ip), Some("crashy"));
    wait(&got, "crashy escalated", Duration::from_secs(60), || {
        d(&got).contains(&"escalated".into())
    });
    let escalation = got
        .lock()
        .unwrap()
        .iter()
        .find(|a| a["event"] == "escalated" && a["incident"]["key"]["subject"]["role"] == "crashy")
        .cloned()
        .unwrap();
    assert_eq!(escalation["incident"]["given_up"], true, "{escalation}");
    assert!(
        escalation["incident"]["cause"]
            .as_str()
            .unwrap()
            .starts_with("crash loop"),
        "{escalation}"
    );

    // (c) A lab host stopped: alert within 10 s.
    let victim = &inv.hosts[2];
    docker(&["stop", "-t", "1", &victim.container]);
    let stopped = Instant::now();
    let c = |got: &Got| events(got, "host_down", Some(h3_ip), None);
    let alerted = wait(&got, "h3 down alerted", Duration::from_secs(10), || {
        c(&got) == ["opened"]
    });
    eprintln!(
        "measure: stopped host alerted after {:.1}s",
        alerted.as_secs_f64()
    );
    // Metrics and page, while the host is down: its incident open, two
    // hosts up, the restart of (a) counted.
    wait(&got, "h3 down in /metrics", Duration::from_secs(5), || {
        let (_, m) = http_get(http, "/metrics");
        metric(
            &m,
            &format!("ballast_watch_host_up{{service=\"hello\",host=\"{h3_ip}\"}}"),
        ) == Some(0.0)
    });
    let (code, m) = http_get(http, "/metrics");
    assert_eq!(code, 200, "{m}");
    let up: f64 = [h1_ip, h2_ip, h3_ip]
        .iter()
        .filter_map(|h| {
            metric(
                &m,
                &format!("ballast_watch_host_up{{service=\"hello\",host=\"{h}\"}}"),
            )
        })
        .sum();
    assert_eq!(up, 2.0, "{m}");
    let open = metric(
        &m,
        "ballast_watch_incidents_open{service=\"hello\",kind=\"host_down\"}",
    );
    assert_eq!(open, Some(1.0), "{m}");
    let restarts = metric(
        &m,
        "ballast_watch_restarts_total{service=\"hello\",kind=\"role\",name=\"web\"}",
    );
    assert!(restarts.is_some_and(|n| n >= 1.0), "{m}");
    let (code, page) = http_get(http, "/");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(&format!("<tr data-host=\"{h3_ip}\" data-state=\"down\">")),
        "{page}"
    );
    assert!(
        page.contains(&format!("<tr data-host=\"{h1_ip}\" data-state=\"up\">")),
        "{page}"
    );
    assert!(
        page.contains(&format!("<td class=\"failing\">host {h3_ip} down")),
        "{page}"
    );
    assert_eq!(http_get(http, "/healthz").0, 200);
    wait(&got, "h3 down escalated", Duration::from_secs(30), || {
        c(&got).len() == 2
    });
    let report = got
        .lock()
        .unwrap()
        .iter()
        .find(|a| a["event"] == "escalated" && a["incident"]["key"]["kind"] == "host_down")
        .cloned()
        .unwrap();
    assert_eq!(report["report"]["host"], h3_ip.as_str(), "{report}");
    assert!(
        report["text"].as_str().unwrap().contains(h3_ip.as_str()),
        "{report}"
    );
    assert!(
        stopped.elapsed() >= Duration::from_secs(12),
        "escalated before the threshold"
    );
    docker(&["start", &victim.container]);
    wait(&got, "h3 recovered", Duration::from_secs(90), || {
        c(&got).len() == 3
    });
    assert_eq!(c(&got), ["opened", "escalated", "recovered"]);

    // Nothing more came meanwhile: the killed container's incident, the
    // crash loop's, and nothing about containers of the stopped host.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a(&got), ["opened", "recovered"]);
    assert_eq!(d(&got), ["opened", "escalated"]);
    let about_h3: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|a| {
            a["incident"]["key"]["host"] == h3_ip.as_str()
                && a["incident"]["key"]["kind"] != "host_down"
        })
        .cloned()
        .collect();
    assert!(about_h3.is_empty(), "{about_h3:?}");
    let roles_down = events(&got, "role_down", None, Some("web"));
    assert!(roles_down.is_empty(), "{roles_down:?}");

    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
    for a in got.lock().unwrap().iter() {
        eprintln!("alert: {}", a["text"]);
    }
    eprintln!("watch said:\n{said}");
    // Every restart is in the audit log of its host.
    let audit = run_ok(&config, &binary, &["audit", "--tail", "100"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains(&format!("watch start {web}")), "{audit}");
    assert!(audit.contains(&format!("watch restart {sick}")), "{audit}");
    rt.block_on(h1.close());
    rt.block_on(h2.close());
}
