//! End-to-end tests of `ballast doctor` on a real 3-host lab: facts gathered
//! from real hosts; the warnings every lab host has (json-file logging
//! without max-size, live-restore off) with exit code 10 and no block;
//! `--facts --json`; a stopped host reported unreachable within the
//! deadline while the others are still checked; and a host whose dockerd
//! was stopped, blocked by `engine-down` with the daemon's own log.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ballast_lab::Inventory;
use serde_json::Value;

use common::report::{host, result, rules};
use common::*;

/// How long SSH may take to connect before a host counts as unreachable.
const CONNECT_TIMEOUT: &str = "3s";

/// Writes ballast.yml for the lab into `dir` and returns its path.
fn write_config(dir: &Path, inv: &Inventory) -> PathBuf {
    let ip = |n: usize| inv.hosts[n].ip.clone();
    let text = format!(
        "service: hello
image: hello:v1
ssh:
  user: root
  identity_file: {key}
  known_hosts: {kh}
  connect_timeout: {CONNECT_TIMEOUT}
roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
    publish: [\"18080:8080\"]
  worker:
    hosts: [{h3}]
    port: 8080
",
        key = inv.key.display(),
        kh = inv.known_hosts.display(),
        h1 = ip(0),
        h2 = ip(1),
        h3 = ip(2),
    );
    let path = dir.join("ballast.yml");
    std::fs::write(&path, text).unwrap();
    path
}

fn doctor(config: &Path, args: &[&str]) -> (std::process::Output, Duration) {
    let mut full = vec!["--config", config.to_str().unwrap()];
    full.extend_from_slice(args);
    let started = Instant::now();
    let out = ballast(config.parent().unwrap(), &full);
    (out, started.elapsed())
}

fn severities(host: &Value) -> Vec<&str> {
    host["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["severity"].as_str().unwrap())
        .collect()
}

fn docker(args: &[&str]) -> std::process::Output {
    let out = Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run docker");
    assert!(out.status.success(), "docker {args:?}:\n{}", text(&out));
    out
}

/// Stops dockerd inside a lab host and waits until it is gone.
fn stop_dockerd(container: &str) {
    docker(&["exec", container, "pkill", "-x", "dockerd"]);
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let alive = Command::new("docker")
            .args(["exec", container, "pgrep", "-x", "dockerd"])
            .output()
            .unwrap();
        if !alive.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("dockerd in {container} did not stop");
}

#[test]
fn doctor_checks_real_hosts_and_reports_the_ones_it_cannot_reach() {
    require_engine!();
    let lab = Lab::up("doctor", 3);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &inv);
    let ips: Vec<String> = inv.hosts.iter().map(|h| h.ip.clone()).collect();

    // Every lab host: json-file without max-size and live-restore off are
    // warnings; nothing blocks; exit 1.
    let (out, took) = doctor(&config, &["--json", "doctor"]);
    eprintln!(
        "measure: doctor over 3 lab hosts took {:.2}s",
        took.as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let r = result(&out);
    assert_eq!(r["exit_code"], 10, "{r}");
    assert_eq!(r["summary"]["blocked"], 0, "{r}");
    for ip in &ips {
        let h = host(&r, ip);
        assert!(h["unreachable"].is_null(), "{h}");
        let ids = rules(h);
        assert!(ids.contains(&"log-no-rotation"), "{ip}: {ids:?}");
        assert!(ids.contains(&"live-restore-off"), "{ip}: {ids:?}");
        assert!(!severities(h).contains(&"block"), "{ip}: {h}");
        assert!(
            h["about"].as_str().unwrap().contains("overlay2 on extfs"),
            "{h}"
        );
    }

    // The same as text: a table per host and the summary.
    let (out, _) = doctor(&config, &["doctor"]);
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("SEVERITY  RULE"), "{human}");
    assert!(
        human.contains("3 hosts checked: 0 blocked, 3 with warnings, 0 unreachable"),
        "{human}"
    );

    // Facts, as JSON, from real hosts.
    let (out, _) = doctor(&config, &["--json", "doctor", "--facts"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let facts = result(&out);
    let hosts = facts["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{facts}");
    for f in hosts {
        assert_eq!(f["os"]["id"], "debian", "{f}");
        assert!(f["kernel"].as_str().is_some_and(|k| !k.is_empty()), "{f}");
        assert_eq!(f["engine"]["driver"], "overlay2", "{f}");
        assert_eq!(f["engine"]["live_restore"], false, "{f}");
        assert_eq!(f["root"]["dir"], "/var/lib/docker", "{f}");
        assert!(f["root"]["bytes_total"].as_u64().unwrap() > 0, "{f}");
        // The lab mounts a volume at /var/lib/docker.
        assert_eq!(f["root"]["mount"]["point"], "/var/lib/docker", "{f}");
        assert!(
            f["clock"]["offset_ms"].as_i64().unwrap().abs() < 5_000,
            "{f}"
        );
    }

    // A stopped host: unreachable within the deadline, the others checked.
    docker(&["stop", "-t", "1", &inv.hosts[1].container]);
    let (out, took) = doctor(&config, &["--json", "doctor"]);
    eprintln!(
        "measure: doctor with one host down took {:.2}s (connect timeout {CONNECT_TIMEOUT})",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let r = result(&out);
    assert_eq!(r["summary"]["unreachable"], 1, "{r}");
    let down = host(&r, &ips[1]);
    assert!(
        down["unreachable"]
            .as_str()
            .is_some_and(|u| u.contains("SSH")),
        "{down}"
    );
    for ip in [&ips[0], &ips[2]] {
        assert!(host(&r, ip)["unreachable"].is_null(), "{r}");
        assert!(rules(host(&r, ip)).contains(&"live-restore-off"), "{r}");
    }

    // dockerd stopped on a host whose SSH works: blocked, with its log.
    stop_dockerd(&inv.hosts[2].container);
    let (out, _) = doctor(&config, &["--json", "doctor", "--host", &ips[2]]);
    assert_eq!(out.status.code(), Some(11), "{}", text(&out));
    let r = result(&out);
    let dead = host(&r, &ips[2]);
    assert_eq!(rules(dead)[0], "engine-down", "{dead}");
    let detail = dead["findings"][0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("dockerd is not running"), "{detail}");
    assert!(detail.contains("Daemon shutdown complete"), "{detail}");
    assert_eq!(r["hosts"].as_array().unwrap().len(), 1, "{r}");
}
