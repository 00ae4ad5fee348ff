//! `ballast watch` on a real 4-host lab when things around it go wrong,
//! with test-short intervals (a look every second) and a webhook receiver
//! run by the test, in one sequence on one lab:
//! 1. the webhook answers 500 to the first alerts: the alert (a stopped lab
//!    host) is retried and arrives, each failure is logged, watch keeps
//!    looking; watch is then stopped (SIGINT) with that incident open and
//!    started again on the same state file: the incident is not alerted
//!    again, and its recovery arrives once the host is back;
//! 2. a deploy (`ballast deploy --version v2`) while watch runs: watch
//!    stands aside while the lock is held and afterwards, restarts nothing
//!    and sends nothing;
//! 3. the app container stopped on 2 of the 4 hosts at once, with
//!    `max_share: 25%` (one host at a time): watch starts one, and the
//!    other only after the first was done.
//!
//!
//! And on a 2-host lab of its own, with `web` behind ballast-proxy: a few
//! requests through a proxy show in `ballast_proxy_requests_total`; the
//! proxy container stopped on one host is one `proxy_down` alert (with
//! the command that starts it), no restart of anything, and a recovery
//! once it is started again.
//!
//! No absence is asserted after a fixed sleep: each waits for watch's own
//! looks (`ballast_watch_looks_total`) to have had the chance to act, or
//! for a later alert that the same channel queue delivers in order. The
//! two tests take turns ([`ONE_LAB_AT_A_TIME`]): the first measures
//! timings that a second lab beside it would blur.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::child::Watched;
use common::webhook::{events, free_port, http_get, metric, wait, Got, Receiver};
use common::*;

/// POSTs the receiver answers 500 to before it accepts any.
const FAILED_FIRST: usize = 2;

/// Held by each test for its whole run.
static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn write_config(dir: &Path, lab: &Lab, port: u16) -> PathBuf {
    let inv = &lab.inventory;
    let hosts: Vec<&str> = inv.hosts.iter().map(|h| h.ip.as_str()).collect();
    let rest = format!(
        "roles:
  web:
    hosts: [{}]
    port: 8080
deploy:
  health_timeout: 20s
watch:
  interval: 1s
  deadline: 3s
  failures: 2
  recover_after: 4s
  escalate_after: 10m
  max_share: \"25%\"
  backoff: {{initial: 2s, max: 10s, reset_after: 30s}}
  breaker: {{restarts: 5, window: 2m}}
  alert_timeout: 2s
  alert_attempts: 5
  alerts:
    - {{type: webhook, url: \"http://127.0.0.1:{port}/hook\"}}
",
        hosts.join(", ")
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

/// `ballast watch` on `state`, serving on loopback port `http`, once it
/// says it watches the 4 hosts.
fn start_watch(config: &Path, binary: &Path, state: &Path, http: u16) -> Watched {
    start_watch_of(config, binary, state, http, 4)
}

fn start_watch_of(config: &Path, binary: &Path, state: &Path, http: u16, hosts: usize) -> Watched {
    common::watch::start(config, binary, state, http, hosts, "hello")
}

fn metrics(http: u16) -> String {
    let (code, text) = http_get(http, "/metrics");
    assert_eq!(code, 200, "{text}");
    text
}

fn looks(http: u16) -> f64 {
    metric(
        &metrics(http),
        "ballast_watch_looks_total{service=\"hello\"}",
    )
    .unwrap_or(0.0)
}

/// Waits until watch has finished `n` more looks.
fn wait_looks(got: &Got, http: u16, n: f64, what: &str) {
    let from = looks(http);
    wait(got, what, Duration::from_secs(60), || {
        looks(http) >= from + n
    });
}

fn web_healthy(http: u16, host: &str) -> bool {
    let series = format!(
        "ballast_watch_container_condition{{service=\"hello\",host=\"{host}\",kind=\"role\",name=\"web\",condition=\"healthy\"}}"
    );
    metric(&metrics(http), &series) == Some(1.0)
}

fn web_restarts(http: u16) -> f64 {
    let series = "ballast_watch_restarts_total{service=\"hello\",kind=\"role\",name=\"web\"}";
    metric(&metrics(http), series).unwrap_or(0.0)
}

/// Open incidents of every kind.
fn open_incidents(http: u16) -> f64 {
    metrics(http)
        .lines()
        .filter(|l| l.starts_with("ballast_watch_incidents_open{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The restarts and starts watch wrote to the hosts' audit logs.
fn audited_acts(config: &Path, binary: &Path) -> Vec<String> {
    let out = run_ok(config, binary, &["audit", "--tail", "200"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("watch start ") || l.contains("watch restart "))
        .map(str::to_string)
        .collect()
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn watch_survives_a_failing_webhook_its_own_restart_a_deploy_and_half_the_fleet_down() {
    require_engine!();
    let _turn = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    hello_image("v1");
    hello_image("v2");
    let started = Instant::now();
    let lab = Lab::up("watchf", 4);
    let inv = lab.inventory.clone();
    let ips: Vec<&str> = inv.hosts.iter().map(|h| h.ip.as_str()).collect();
    let work = tempfile::tempdir().unwrap();
    let hook = Receiver::start(FAILED_FIRST);
    let got = &hook.got;
    let config = write_config(work.path(), &lab, hook.port);
    let binary = static_ballast();
    run_ok(&config, &binary, &["deploy", "--version", "v1"]);
    let state = work.path().join("watch-state.json");

    // 1. A lab host stopped while the webhook fails: retried, logged.
    let http = free_port();
    let mut watch = start_watch(&config, &binary, &state, http);
    let h4 = ips[3];
    let h4_down = |got: &Got| events(got, "host_down", Some(h4), None);
    docker(&["stop", "-t", "1", &inv.hosts[3].container]);
    let stopped = Instant::now();
    let channel = format!("alert to webhook http://127.0.0.1:{}/…", hook.port);
    watch.wait_for(
        &format!("{channel} failed (attempt 1): answered 500"),
        Duration::from_secs(30),
    );
    watch.wait_for(
        &format!("{channel} failed (attempt 2): answered 500"),
        Duration::from_secs(10),
    );
    wait(got, "h4 down alerted", Duration::from_secs(20), || {
        h4_down(got) == ["opened"]
    });
    eprintln!(
        "measure: host down alerted {:.1}s after the stop, through {FAILED_FIRST} failed deliveries",
        stopped.elapsed().as_secs_f64()
    );
    assert!(hook.requests() > FAILED_FIRST);
    // It kept looking, and says so on its health check.
    wait_looks(got, http, 2.0, "looks after the failed deliveries");
    assert_eq!(http_get(http, "/healthz").0, 200);

    // Stopped with the incident open, started again on the same state.
    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
    let summary = said.split("--- stderr").next().unwrap();
    assert!(summary.contains(&format!("host {h4} down since")), "{said}");
    let http = free_port();
    let mut watch = start_watch(&config, &binary, &state, http);
    // It judges the host down again (two looks that it does not answer):
    // three more looks leave time for any alert that would bring.
    wait(got, "h4 seen down again", Duration::from_secs(30), || {
        metric(
            &metrics(http),
            &format!("ballast_watch_host_up{{service=\"hello\",host=\"{h4}\"}}"),
        ) == Some(0.0)
    });
    wait_looks(got, http, 3.0, "looks at the stopped host");
    let open = metric(
        &metrics(http),
        "ballast_watch_incidents_open{service=\"hello\",kind=\"host_down\"}",
    );
    assert_eq!(open, Some(1.0));
    docker(&["start", &inv.hosts[3].container]);
    // The recovery goes through the same queue after any second
    // `opened`: once it is in, nothing about the host is still on its way.
    wait(got, "h4 recovered", Duration::from_secs(90), || {
        h4_down(got).len() >= 2
    });
    assert_eq!(h4_down(got), ["opened", "recovered"]);

    // 2. A deploy while watching: watch stands aside, then finds nothing.
    wait(
        got,
        "every web container healthy, no incident open",
        Duration::from_secs(90),
        || ips.iter().all(|h| web_healthy(http, h)) && open_incidents(http) == 0.0,
    );
    // One more look, for the recovery notices of that round to arrive.
    wait_looks(got, http, 1.0, "a look after the calm");
    let alerts_before = hook.requests();
    let acts_before = audited_acts(&config, &binary);
    let restarts_before = web_restarts(http);
    let deploying = Instant::now();
    run_ok(&config, &binary, &["deploy", "--version", "v2"]);
    let deployed = deploying.elapsed();
    watch.wait_for("standing aside: the deploy lock is", Duration::from_secs(5));
    watch.wait_for("the lock is free again: watching", Duration::from_secs(30));
    // A container is judged failing after `failures` (2) looks: five
    // looks after the lock is free, anything the deploy left for watch to
    // act on would have been acted on and alerted.
    wait_looks(got, http, 5.0, "looks after the deploy");
    assert!(
        ips.iter().all(|h| web_healthy(http, h)),
        "{}",
        metrics(http)
    );
    assert_eq!(
        hook.requests(),
        alerts_before,
        "alerts during the deploy: {:?}",
        got.lock().unwrap()
    );
    assert_eq!(web_restarts(http), restarts_before);
    assert_eq!(audited_acts(&config, &binary).len(), acts_before.len());
    eprintln!(
        "measure: deploy of v2 took {:.1}s while watching",
        deployed.as_secs_f64()
    );

    // 3. The app stopped on half the hosts at once, one host at a time
    // allowed: started one after the other.
    let web = "hello-web-v2";
    let stops: Vec<_> = inv.hosts[..2]
        .iter()
        .map(|h| {
            Command::new("docker")
                .args(["exec", &h.container, "docker", "stop", web])
                .output()
        })
        .collect();
    for s in stops {
        let s = s.unwrap();
        assert!(s.status.success(), "{}", text(&s));
    }
    wait(
        got,
        "both stopped containers started and healthy",
        Duration::from_secs(60),
        || {
            web_restarts(http) >= restarts_before + 2.0
                && ips[..2].iter().all(|h| web_healthy(http, h))
        },
    );
    for h in &ips[..2] {
        wait(
            got,
            "stopped container recovered",
            Duration::from_secs(30),
            || events(got, "container_failing", Some(h), Some("web")).len() >= 2,
        );
    }
    let started_at: Vec<String> = inv.hosts[..2]
        .iter()
        .map(|h| {
            docker(&[
                "exec",
                &h.container,
                "docker",
                "inspect",
                "-f",
                "{{.State.StartedAt}}",
                web,
            ])
        })
        .collect();

    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
    for a in got.lock().unwrap().iter() {
        eprintln!("alert: {}", a["text"]);
    }
    eprintln!("watch said:\n{said}");
    assert!(!said.contains("(0 open incidents"), "{said}");
    for h in &ips[..2] {
        let e = events(got, "container_failing", Some(h), Some("web"));
        assert_eq!(e, ["opened", "recovered"], "{h}");
    }
    // Since the deploy: only the two starts of step 3, the second after
    // the first was done.
    let since = said.split_once("standing aside").unwrap().1;
    let lines: Vec<&str> = since
        .lines()
        .filter(|l| l.contains("| start hello-web") || l.contains("| restart hello-web"))
        .collect();
    let acts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(&format!("start {web} (")))
        .collect();
    assert_eq!(acts.len(), 2, "{lines:#?}");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let host_of = |line: &str| {
        *ips[..2]
            .iter()
            .find(|h| line.contains(&format!(" {h} |")))
            .unwrap()
    };
    let (first, second) = (host_of(lines[acts[0]]), host_of(lines[acts[1]]));
    assert_ne!(first, second, "{lines:#?}");
    let first_done = lines
        .iter()
        .position(|l| l.contains(&format!(" {first} | start {web}: done")))
        .unwrap();
    assert!(first_done < acts[1], "{lines:#?}");
    let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
    let gap = at(&started_at[1])
        .duration_since(at(&started_at[0]))
        .or_else(|_| at(&started_at[0]).duration_since(at(&started_at[1])))
        .unwrap();
    eprintln!(
        "measure: the two stopped containers were started {:.1}s apart ({started_at:?})",
        gap.as_secs_f64()
    );
    assert_eq!(audited_acts(&config, &binary).len(), acts_before.len() + 2);
    eprintln!(
        "measure: whole test {:.0}s",
        started.elapsed().as_secs_f64()
    );
}

fn write_proxied_config(dir: &Path, lab: &Lab, port: u16) -> PathBuf {
    let inv = &lab.inventory;
    let rest = format!(
        "roles:
  web:
    hosts: [{}, {}]
    port: 8080
    proxy: {{}}
deploy:
  health_timeout: 20s
watch:
  interval: 1s
  deadline: 3s
  failures: 2
  recover_after: 2s
  escalate_after: 10m
  alert_timeout: 2s
  alerts:
    - {{type: webhook, url: \"http://127.0.0.1:{port}/hook\"}}
",
        inv.hosts[0].ip, inv.hosts[1].ip
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

fn proxy_requests(http: u16, host: &str) -> f64 {
    let series =
        format!("ballast_proxy_requests_total{{service=\"hello\",host=\"{host}\",role=\"web\"}}");
    metric(&metrics(http), &series).unwrap_or(0.0)
}

#[test]
fn watch_counts_requests_through_the_proxy_and_alerts_a_stopped_one() {
    require_engine!();
    let _turn = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    hello_image("v1");
    let lab = Lab::up("watchp", 2);
    let inv = lab.inventory.clone();
    let (h1, h2) = (inv.hosts[0].ip.as_str(), inv.hosts[1].ip.as_str());
    let work = tempfile::tempdir().unwrap();
    let hook = Receiver::start(0);
    let got = &hook.got;
    let config = write_proxied_config(work.path(), &lab, hook.port);
    let binary = static_ballast();
    run_ok(&config, &binary, &["setup"]);
    run_ok(&config, &binary, &["deploy", "--version", "v1"]);
    let state = work.path().join("watch-state.json");
    let http = free_port();
    let watch = start_watch_of(&config, &binary, &state, http, 2);
    let started = Instant::now();

    // Requests through h1's proxy show in its counter for web.
    let url = format!("http://{h1}:80/");
    for _ in 0..5 {
        let answer = runtime().block_on(common::http_get(&url)).unwrap();
        assert_eq!(answer, (200, "v1\n".to_string()));
    }
    wait(
        got,
        "h1's proxy requests counted",
        Duration::from_secs(20),
        || proxy_requests(http, h1) >= 5.0,
    );
    let up = format!("ballast_proxy_up{{service=\"hello\",host=\"{h1}\"}}");
    assert_eq!(metric(&metrics(http), &up), Some(1.0));
    eprintln!(
        "measure: {} requests counted through h1's proxy, {} through h2's",
        proxy_requests(http, h1),
        proxy_requests(http, h2)
    );

    // h1's proxy stopped: one alert, naming the command that starts it.
    let proxy_down = |got: &Got| events(got, "proxy_down", Some(h1), None);
    docker(&[
        "exec",
        &inv.hosts[0].container,
        "docker",
        "stop",
        "ballast-proxy",
    ]);
    let stopped = Instant::now();
    wait(
        got,
        "h1's proxy down alerted",
        Duration::from_secs(20),
        || proxy_down(got) == ["opened"],
    );
    eprintln!(
        "measure: proxy down alerted {:.1}s after the stop",
        stopped.elapsed().as_secs_f64()
    );
    let hint = got
        .lock()
        .unwrap()
        .iter()
        .find(|a| a["incident"]["key"]["kind"] == "proxy_down")
        .map(|a| a["incident"]["hint"].to_string())
        .unwrap_or_default();
    assert!(
        hint.contains(&format!("ballast proxy restart --hosts {h1}")),
        "{hint}"
    );
    assert_eq!(metric(&metrics(http), &up), Some(0.0));
    // Looks enough for a restart, had watch wanted one.
    wait_looks(got, http, 3.0, "looks with the proxy down");

    // Started again: recovered.
    docker(&[
        "exec",
        &inv.hosts[0].container,
        "docker",
        "start",
        "ballast-proxy",
    ]);
    wait(got, "h1's proxy recovered", Duration::from_secs(30), || {
        proxy_down(got).len() >= 2
    });
    assert_eq!(proxy_down(got), ["opened", "recovered"]);
    assert_eq!(metric(&metrics(http), &up), Some(1.0));

    assert_eq!(web_restarts(http), 0.0);

    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
    eprintln!("watch said:\n{said}");
    // Nothing else was alerted, and nothing restarted or started.
    assert_eq!(hook.requests(), 2, "{:?}", got.lock().unwrap());
    assert!(
        !said.contains("| start hello-") && !said.contains("| restart hello-"),
        "{said}"
    );
    eprintln!(
        "measure: proxy case {:.0}s from watch's start",
        started.elapsed().as_secs_f64()
    );
}
