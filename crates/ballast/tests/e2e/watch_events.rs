//! `ballast watch` following Docker events, and watching what is about the
//! hosts themselves, on a real 2-host lab with a long interval (10 s) and
//! a webhook receiver run by the test:
//! - an app container killed (`docker kill`) opens its incident within
//!   about an event's latency (well under the interval): one alert, then
//!   one recovery;
//! - a file filling the hosts' Docker filesystem (`fallocate` in a lab
//!   host's `/var/lib/docker`) past `watch.disk_full_percent` opens a
//!   `disk_full` incident per host sharing that filesystem, recovered once
//!   it is removed;
//! - a daemon.json written at run time with the API on TCP without TLS
//!   makes doctor's `api-tcp-without-tls` rule block the host: a
//!   `doctor_block` incident naming the rule, recovered once undone;
//! - then, watched again with a short interval (2 s) and a long deadline
//!   (8 s), one host frozen (`docker pause`: its TCP stack accepts, nothing
//!   answers, so each look at it waits out the deadline): a container
//!   killed on the other host three times is seen each time within an
//!   event's latency (the first kill alerted), not held up behind the
//!   frozen host's look; the frozen host is one `host_down` incident, its
//!   containers raise none, and it recovers once thawed.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ballast_core::host::Host;
use serde_json::Value;

use common::webhook::{events, free_port, http_get, metric, receiver, wait, Got};
use common::*;

const FILL: &str = "/var/lib/docker/ballast-watch-events-fill";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// The lab's config, with watch looking every `interval` within `deadline`.
fn write_config(
    dir: &Path,
    lab: &Lab,
    port: u16,
    disk_full_percent: u8,
    (interval, deadline): (&str, &str),
) -> std::path::PathBuf {
    let inv = &lab.inventory;
    let (h1, h2) = (&inv.hosts[0].ip, &inv.hosts[1].ip);
    let rest = format!(
        "roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
deploy:
  health_timeout: 20s
watch:
  interval: {interval}
  deadline: {deadline}
  failures: 2
  recover_after: 3s
  doctor_every: 10s
  disk_full_percent: {disk_full_percent}
  alerts:
    - {{type: webhook, url: \"http://127.0.0.1:{port}/hook\"}}
"
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

/// `docker exec CONTAINER ARGS` on this machine, with `stdin` if given;
/// its stdout. Fails the test unless it succeeds.
fn exec(container: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new("docker");
    cmd.arg("exec");
    if stdin.is_some() {
        cmd.arg("-i");
    }
    cmd.arg(container).args(args);
    cmd.stdin(match stdin {
        Some(_) => std::process::Stdio::piped(),
        None => std::process::Stdio::null(),
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker exec {args:?}\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(used percent, used KiB, available KiB)` of the filesystem holding the
/// lab host's `/var/lib/docker`.
fn disk_of(container: &str) -> (u64, u64, u64) {
    let out = exec(container, &["df", "-P", "/var/lib/docker"], None);
    let words: Vec<&str> = out.lines().last().unwrap().split_whitespace().collect();
    let n = |i: usize| words[i].trim_end_matches('%').parse::<u64>().unwrap();
    (n(4), n(2), n(3))
}

/// The events of the alerts about the `doctor_block` incident of `rule`
/// on `host`.
fn doctor_events(got: &Got, host: &str, rule: &str) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|a| {
            let key = &a["incident"]["key"];
            key["kind"] == "doctor_block" && key["host"] == host && key["rule"] == rule
        })
        .map(|a| a["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Removes what the test put on a lab host even when it fails midway, so
/// the machine's disk is not left full, and thaws it.
struct Undo<'a>(&'a str);

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["unpause", self.0]).output();
        let _ = Command::new("docker")
            .args(["exec", self.0, "rm", "-f", FILL, DAEMON_JSON])
            .output();
    }
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
}

#[test]
fn events_bring_looks_forward_and_disks_and_doctor_rules_are_incidents() {
    require_engine!();
    hello_image("v1");
    let lab = Lab::up("wevents", 2);
    let inv = lab.inventory.clone();
    let (h1, h2) = (&inv.hosts[0], &inv.hosts[1]);
    let _undo = Undo(&h2.container);
    let work = tempfile::tempdir().unwrap();
    let (port, got) = receiver();
    // The hosts' Docker filesystem is this machine's: the threshold is set
    // just above what it uses now, and crossed by a file of a few percent.
    let (used, used_kib, avail_kib) = disk_of(&h2.container);
    let threshold = u8::try_from(used + 2).unwrap().min(99);
    let config = write_config(work.path(), &lab, port, threshold, ("10s", "5s"));
    let binary = static_ballast();
    run_ok(&config, &binary, &["deploy", "--version", "v1"]);

    let state = work.path().join("watch-state.json");
    let http = free_port();
    let watch = common::watch::start(&config, &binary, &state, http, 2, "hello");
    let started = Instant::now();

    // (c) At run time, the API on TCP without TLS in h2's daemon.json (the
    // engine is not restarted: doctor reads the file).
    exec(
        &h2.container,
        &["tee", DAEMON_JSON],
        Some(r#"{"hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2375"]}"#),
    );

    // Hosts are judged from their second answer: two looks, 10 s apart.
    let looks = |n: f64| {
        let (_, m) = http_get(http, "/metrics");
        metric(&m, "ballast_watch_looks_total{service=\"hello\"}").is_some_and(|l| l >= n)
    };
    wait(&got, "two looks", Duration::from_secs(25), || looks(2.0));
    // The followers subscribe right after a look.
    std::thread::sleep(Duration::from_millis(500));

    // (a) A killed app container: the event brings the look forward.
    let rt = runtime();
    let host1 = rt
        .block_on(Host::connect(&h1.ip, &inv.ssh_target(h1)))
        .unwrap();
    let web = "hello-web-v1";
    let kill_web = || {
        rt.block_on(
            host1
                .engine()
                .docker()
                .kill_container(web, None::<bollard::query_parameters::KillContainerOptions>),
        )
        .unwrap();
    };
    let (_, m) = http_get(http, "/metrics");
    let looks_before = metric(&m, "ballast_watch_looks_total{service=\"hello\"}").unwrap();
    kill_web();
    let killed = Instant::now();
    let a = |got: &Got| events(got, "container_failing", Some(&h1.ip), Some("web"));
    let opened = wait(&got, "web on h1 opened", Duration::from_secs(15), || {
        a(&got) == ["opened"]
    });
    eprintln!(
        "measure: killed container's incident opened after {:.2}s (interval 10s)",
        opened.as_secs_f64()
    );
    assert!(
        opened < Duration::from_secs(3),
        "opened after {opened:?}: the event did not bring the look forward"
    );
    wait(
        &got,
        "web on h1 running again",
        Duration::from_secs(10),
        || {
            let c = rt
                .block_on(host1.engine().docker().inspect_container(web, None))
                .unwrap();
            c.state.and_then(|s| s.running).unwrap_or(false)
        },
    );
    eprintln!(
        "measure: killed container running again after {:.2}s",
        killed.elapsed().as_secs_f64()
    );
    let (_, m) = http_get(http, "/metrics");
    let events_seen = metric(&m, "ballast_watch_docker_events_total{service=\"hello\"}").unwrap();
    // The kill and the die arrive together; the loop may take them as one
    // nudge, and one is what brought the look forward.
    assert!(
        events_seen >= 1.0,
        "the event that brought the look forward:\n{m}"
    );
    let looks_after = metric(&m, "ballast_watch_looks_total{service=\"hello\"}").unwrap();
    assert!(looks_after > looks_before, "{m}");

    // (c) The doctor rule blocks h2 by now (doctor runs every 10 s).
    let rule = "api-tcp-without-tls";
    wait(&got, "doctor_block on h2", Duration::from_secs(30), || {
        doctor_events(&got, &h2.ip, rule) == ["opened"]
    });
    eprintln!(
        "measure: doctor_block opened {:.1}s after watch started (doctor every 10s)",
        started.elapsed().as_secs_f64()
    );
    let alert = got
        .lock()
        .unwrap()
        .iter()
        .find(|a| a["incident"]["key"]["kind"] == "doctor_block")
        .cloned()
        .unwrap();
    let cause = alert["incident"]["cause"].as_str().unwrap();
    assert!(cause.contains("tcp://0.0.0.0:2375"), "{alert}");
    assert!(cause.contains("(source: docs.docker.com/"), "{alert}");
    assert!(alert["text"].as_str().unwrap().contains(rule), "{alert}");
    exec(&h2.container, &["rm", DAEMON_JSON], None);
    let undone = Instant::now();

    // (b) A file of a few percent of the filesystem crosses the threshold.
    let total = used_kib + avail_kib;
    let fill_kib = (total * (u64::from(threshold) + 2) / 100).saturating_sub(used_kib);
    eprintln!(
        "disk: {used}% used, threshold {threshold}%, filling {} MiB",
        fill_kib / 1024
    );
    let size = format!("{}K", fill_kib);
    exec(&h2.container, &["fallocate", "-l", &size, FILL], None);
    let b = |got: &Got, host: &str| events(got, "disk_full", Some(host), None);
    let full = wait(&got, "disk_full on h2", Duration::from_secs(15), || {
        b(&got, &h2.ip) == ["opened"]
    });
    eprintln!(
        "measure: disk_full opened {:.1}s after the fill (looks every 10s)",
        full.as_secs_f64()
    );
    let (_, m) = http_get(http, "/metrics");
    let percent = metric(
        &m,
        &format!(
            "ballast_host_disk_used_percent{{service=\"hello\",host=\"{}\"}}",
            h2.ip
        ),
    );
    assert!(
        percent.is_some_and(|p| p >= f64::from(threshold)),
        "{percent:?}\n{m}"
    );
    let open = metric(
        &m,
        "ballast_watch_incidents_open{service=\"hello\",kind=\"disk_full\"}",
    );
    assert!(open.is_some_and(|n| n >= 1.0), "{m}");
    exec(&h2.container, &["rm", FILL], None);
    let freed = Instant::now();

    // Everything recovers, once each: each recovery timed from its undo.
    let recovered = |got: &Got| {
        [
            a(got).len() == 2,
            doctor_events(got, &h2.ip, rule).len() == 2,
            b(got, &h2.ip).len() == 2,
        ]
    };
    let bases = [killed, undone, freed];
    let took = std::cell::Cell::new([None::<Duration>; 3]);
    wait(&got, "all recovered", Duration::from_secs(45), || {
        let mut t = took.get();
        for (i, done) in recovered(&got).into_iter().enumerate() {
            if done && t[i].is_none() {
                t[i] = Some(bases[i].elapsed());
            }
        }
        took.set(t);
        t.iter().all(Option::is_some)
    });
    let secs = |i: usize| took.get()[i].unwrap().as_secs_f64();
    eprintln!(
        "measure: recovered {:.1}s after the kill, doctor_block {:.1}s after the undo, \
         disk_full {:.1}s after the removal (recover_after 3s, doctor every 10s, looks every 10s)",
        secs(0),
        secs(1),
        secs(2)
    );
    // Nothing more comes meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a(&got), ["opened", "recovered"]);
    assert_eq!(doctor_events(&got, &h2.ip, rule), ["opened", "recovered"]);
    assert_eq!(b(&got, &h2.ip), ["opened", "recovered"]);
    // h1 shares the filesystem: at most its own one incident, no flood;
    // if it opened one, its recovery may come a look after h2's.
    wait(
        &got,
        "h1's disk incident closed, if any",
        Duration::from_secs(30),
        || {
            let e = b(&got, &h1.ip);
            e.is_empty() || e.last().is_some_and(|w| w == "recovered")
        },
    );
    let h1_disk = b(&got, &h1.ip);
    assert!(
        h1_disk.is_empty() || h1_disk == ["opened", "recovered"],
        "{h1_disk:?}"
    );
    let others: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|al| {
            let kind = al["incident"]["key"]["kind"].as_str().unwrap_or("");
            let host = al["incident"]["key"]["host"].as_str().unwrap_or("");
            !(kind == "disk_full"
                || (kind == "doctor_block" && host == h2.ip)
                || (kind == "container_failing" && host == h1.ip))
        })
        .cloned()
        .collect();
    assert!(others.is_empty(), "unexpected alerts: {others:?}");

    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
    for al in got.lock().unwrap().iter() {
        eprintln!("alert: {}", al["text"]);
    }
    assert!(
        said.contains(&format!("docker event: die of {web}")),
        "{said}"
    );

    // (d) A frozen host holds up no other host's verdict.
    let work = tempfile::tempdir().unwrap();
    let receiver = common::webhook::Receiver::start(0);
    let (port, got) = (receiver.port, receiver.got.clone());
    let config = write_config(work.path(), &lab, port, 99, ("2s", "8s"));
    let state = work.path().join("watch-state.json");
    let http = free_port();
    let mut watch = common::watch::start(&config, &binary, &state, http, 2, "hello");
    wait(&got, "two looks", Duration::from_secs(20), || {
        let (_, m) = http_get(http, "/metrics");
        metric(&m, "ballast_watch_looks_total{service=\"hello\"}").is_some_and(|l| l >= 2.0)
    });
    std::thread::sleep(Duration::from_millis(500));
    freeze_host(&h2.container);
    let paused = Instant::now();
    // A look at h2 is under way from the next tick on.
    std::thread::sleep(Duration::from_secs(3));
    // What watch said is shown if it falls behind.
    let frozen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Watch's published state of web on h1. The first kill is an
        // incident and an alert; the next ones, a crash loop by now (its
        // incident stays open until web has been healthy for
        // `backoff_reset`), are timed by the state watch publishes, and
        // the test starts web again itself rather than wait out backoff.
        let state_is = |word: &str| {
            let (_, m) = http_get(http, "/metrics");
            let series = format!(
                "ballast_watch_container_state{{service=\"hello\",host=\"{}\",kind=\"role\",name=\"web\",state=\"{word}\"}}",
                h1.ip
            );
            metric(&m, &series) == Some(1.0)
        };
        let mut seen = Vec::new();
        for n in 0..3 {
            kill_web();
            let took = match n {
                0 => wait(&got, "web on h1 opened", Duration::from_secs(20), || {
                    a(&got) == ["opened"]
                }),
                _ => wait(
                    &got,
                    "web on h1 seen exited",
                    Duration::from_secs(20),
                    || state_is("exited"),
                ),
            };
            seen.push(took.as_secs_f64());
            let _ = rt.block_on(host1.engine().docker().start_container(
                web,
                None::<bollard::query_parameters::StartContainerOptions>,
            ));
            wait(
                &got,
                "web on h1 seen running",
                Duration::from_secs(20),
                || state_is("running"),
            );
        }
        eprintln!(
            "measure: with h2 frozen (deadline 8s), kills on h1 seen after {seen:.2?}s (the first: alerted)"
        );
        assert!(
            seen.iter().all(|&s| s < 3.0),
            "seen after {seen:?}s: held up behind the frozen host's look"
        );
        let down = |got: &Got| events(got, "host_down", Some(&h2.ip), None);
        wait(&got, "h2 down", Duration::from_secs(40), || {
            down(&got) == ["opened"]
        });
        eprintln!(
            "measure: frozen host alerted down {:.1}s after the freeze (interval 2s, deadline 8s, failures 2)",
            paused.elapsed().as_secs_f64()
        );
    }));
    if let Err(e) = frozen {
        eprintln!(
            "watch said:\n{}\nthe receiver read {} POSTs",
            watch.said_so_far(),
            receiver.requests()
        );
        std::panic::resume_unwind(e);
    }
    let down = |got: &Got| events(got, "host_down", Some(&h2.ip), None);
    docker(&["unpause", &h2.container]);
    wait(&got, "h2 recovered", Duration::from_secs(40), || {
        down(&got) == ["opened", "recovered"]
    });
    let others: Vec<Value> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|al| {
            let key = &al["incident"]["key"];
            !(key["kind"] == "host_down" && key["host"] == h2.ip.as_str()
                || key["kind"] == "container_failing" && key["host"] == h1.ip.as_str())
        })
        .cloned()
        .collect();
    assert!(others.is_empty(), "unexpected alerts: {others:?}");
    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
    rt.block_on(host1.close());
}
