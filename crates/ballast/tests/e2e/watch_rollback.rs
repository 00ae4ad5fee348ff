//! `watch.auto_rollback` and `ballast watch` run as an accessory, on real
//! labs (web on hosts 1 and 2; host 3, when there is one, for the watch
//! accessory):
//! - a release that passes its deploy's health gate and then crash-loops
//!   on both web hosts: with `auto_rollback` off, watch only suggests
//!   `ballast rollback` (the incidents say so, the release stays); with it
//!   on, watch rolls web back to v1 by itself, exactly once, one alert
//!   says so, v1 answers again on both hosts, and the rollback is in the
//!   audit log;
//! - the `ballast-watch` image (built offline by `ballast watch --image`)
//!   booted as an accessory on host 3, watching hosts 1 and 2: its
//!   `/healthz` health check passes (`accessory details` shows it
//!   healthy) and an incident it sees reaches the test's webhook.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_core::host::Host;
use ballast_core::release;
use ballast_lab::Inventory;
use serde_json::Value;

use common::child::Watched;
use common::webhook::{receiver, wait, Got};
use common::*;

const WEB_PORT: u16 = 18080;
const BAD: &str = "v2-crashing";

/// The roles, and `watch:` with test-short intervals, alerts to `hook`.
fn roles_and_watch(inv: &Inventory, hook: &str, auto_rollback: bool) -> String {
    let (h1, h2) = (&inv.hosts[0].ip, &inv.hosts[1].ip);
    format!(
        "roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
    publish: [\"{WEB_PORT}:8080\"]
deploy:
  health_timeout: 20s
watch:
  interval: 1s
  deadline: 3s
  failures: 2
  recover_after: 5s
  escalate_after: 10m
  backoff: {{initial: 2s, max: 10s, reset_after: 30s}}
  breaker: {{restarts: 3, window: 2m}}
  auto_rollback: {auto_rollback}
  rollback_window: 5m
  alerts:
    - {{type: webhook, url: \"{hook}\"}}
"
    )
}

/// The web containers running on hosts 1 and 2, by version, and what
/// each answers on the published port.
fn web_versions(inv: &Inventory) -> Vec<(Vec<String>, String)> {
    runtime().block_on(async {
        let mut seen = Vec::new();
        for h in &inv.hosts[..2] {
            let host = Host::connect(&h.ip, &inv.ssh_target(h)).await.unwrap();
            let running: Vec<String> = release::observe(host.engine(), "hello")
                .await
                .unwrap()
                .into_iter()
                .filter(|c| c.running && c.role == "web")
                .map(|c| c.version)
                .collect();
            host.close().await;
            let answer = match http_get(&format!("http://{}:{WEB_PORT}/", h.ip)).await {
                Ok((200, body)) => body.trim().to_string(),
                other => format!("{other:?}"),
            };
            seen.push((running, answer));
        }
        seen
    })
}

fn watch_cmd(config: &Path, state: &Path) -> Watched {
    let http = common::webhook::free_port();
    common::watch::spawn(config, &static_ballast(), state, http)
}

/// The alerts whose text contains `needle`.
fn alerts_with(got: &Got, needle: &str) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|a| a["text"].as_str().is_some_and(|t| t.contains(needle)))
        .cloned()
        .collect()
}

#[test]
fn watch_rolls_back_a_release_that_crash_loops_on_every_host_once() {
    require_engine!();
    hello_image("v1");
    // Healthy for its deploy's gate, then down every 8 s: Docker's restart
    // policy brings it back, and it falls again.
    hello_image_with(BAD, "HELLO_CRASH_AFTER=8s");
    let lab = Lab::up("watch-rb", 2);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let (port, got) = receiver();
    let hook = format!("http://127.0.0.1:{port}/hook");
    let binary = static_ballast();
    let dir = work.path().join("service");
    let write = |auto: bool| {
        let rest = roles_and_watch(&inv, &hook, auto);
        lab_config(&dir, &inv, &inv.known_hosts, "hello", "hello", &rest)
    };
    let config = write(false);
    let state = work.path().join("watch-state.json");
    run_ok(&config, &binary, &["deploy", "--version", "v1"]);
    run_ok(&config, &binary, &["deploy", "--version", BAD]);
    let deployed = Instant::now();

    // auto_rollback off: the crash loop is told, with the way back, and
    // nothing is rolled back.
    let mut watch = watch_cmd(&config, &state);
    watch.wait_for("watching 2 hosts of hello", Duration::from_secs(30));
    wait(&got, "web down everywhere", Duration::from_secs(60), || {
        !common::webhook::events(&got, "role_down", None, Some("web")).is_empty()
    });
    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
    assert!(!said.contains("auto rollback on"), "{said}");
    // The incidents kept in the state file: `open` is a list of pairs.
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let hints: Vec<&str> = kept["book"]["open"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|pair| pair[1]["hint"].as_str())
        .collect();
    assert!(
        hints
            .iter()
            .any(|h| h.contains(BAD) && h.contains("consider `ballast rollback`")),
        "no incident suggests the rollback: {hints:?}\n{said}"
    );
    assert!(alerts_with(&got, "rolled back").is_empty());
    for (running, _) in web_versions(&inv) {
        assert!(running.contains(&BAD.to_string()), "{running:?}");
    }

    // auto_rollback on: watch rolls web back by itself, once.
    let config = write(true);
    let mut watch = watch_cmd(&config, &state);
    watch.wait_for("auto rollback on", Duration::from_secs(30));
    let took = wait(&got, "the rollback alert", Duration::from_secs(90), || {
        !alerts_with(&got, "rolled back role web to v1").is_empty()
    });
    eprintln!(
        "measure: rolled back {:.1}s after watch started, {:.0}s after the bad deploy",
        took.as_secs_f64(),
        deployed.elapsed().as_secs_f64()
    );
    let said_so = alerts_with(&got, "rolled back role web");
    assert_eq!(said_so.len(), 1, "{said_so:#?}");
    assert_eq!(said_so[0]["event"], "rolled_back", "{said_so:#?}");
    let tried = said_so[0]["incident"]["tried"].to_string();
    assert!(tried.contains("rolled back role web to v1"), "{tried}");
    for (running, answer) in web_versions(&inv) {
        assert_eq!(running, ["v1"], "{answer}");
        assert_eq!(answer, "v1");
    }
    // A few more looks: the release is not rolled back again.
    std::thread::sleep(Duration::from_secs(5));
    watch.signal("INT");
    let (status, said) = watch.finish(Duration::from_secs(60));
    assert!(status.success(), "{said}");
    assert_eq!(alerts_with(&got, "rolled back role web").len(), 1, "{said}");
    let kept = std::fs::read_to_string(&state).unwrap();
    assert!(kept.contains("\"rollbacks\""), "{kept}");
    let audit = run_ok(&config, &binary, &["audit", "--tail", "20"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("watch: rollback --roles web"), "{audit}");
}

/// The watch image booted as an accessory on host 3, watching hosts 1 and
/// 2 with its own config, key and known_hosts mounted as files.
#[test]
fn watch_runs_as_an_accessory_checked_by_its_own_healthz() {
    require_engine!();
    hello_image("v1");
    let lab = Lab::up("watch-acc", 3);
    let inv = &lab.inventory;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let binary = static_ballast();
    let gateway = gateway(inv);
    let hook = Hook::start(&gateway);
    // What the watcher in the container reads, with paths inside it.
    let inner_dir = work.join("inner");
    std::fs::create_dir_all(&inner_dir).unwrap();
    let rest = roles_and_watch(inv, &format!("http://{gateway}:{}/hook", hook.port), false);
    let inner = format!(
        "service: hello\nimage: hello\nssh:\n  user: root\n  identity_file: /etc/ballast/id\n  known_hosts: /etc/ballast/known_hosts\n{rest}"
    );
    std::fs::write(inner_dir.join("watch.yml"), inner).unwrap();
    let outer_dir = work.join("outer");
    let roles = roles_and_watch(inv, "http://127.0.0.1:9/unused", false);
    let config = lab_config(&outer_dir, inv, &inv.known_hosts, "hello", "hello", &roles);
    run_ok(&config, &binary, &["deploy", "--version", "v1"]);
    let out = run_ok(&config, &binary, &["watch", "--image"]);
    let tag = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(tag.starts_with("ballast-watch:"), "{tag}");
    let accessory = format!(
        "accessories:
  watch:
    image: {tag}
    host: {h3}
    files:
      - {{local: {dir}/watch.yml, container: /etc/ballast/ballast.yml, mode: \"0600\"}}
      - {{local: {key}, container: /etc/ballast/id, mode: \"0600\"}}
      - {{local: {kh}, container: /etc/ballast/known_hosts}}
    directories:
      - {{container: /var/lib/ballast-watch, owner: \"0:0\"}}
    healthcheck: {{cmd: [/ballast, watch, --check, \"http://127.0.0.1:9465/healthz\"], interval: 2s, retries: 3}}
    health_timeout: 60s
",
        h3 = inv.hosts[2].ip,
        dir = inner_dir.display(),
        key = inv.key.display(),
        kh = inv.known_hosts.display(),
    );
    let config = lab_config(
        &outer_dir,
        inv,
        &inv.known_hosts,
        "hello",
        "hello",
        &format!("{roles}{accessory}"),
    );
    let started = Instant::now();
    run_ok(&config, &binary, &["accessory", "boot", "watch"]);
    eprintln!(
        "measure: watch accessory booted healthy in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let details = run_ok(
        &config,
        &binary,
        &["--json", "accessory", "details", "watch"],
    );
    let details = String::from_utf8_lossy(&details.stdout);
    let parsed: Value = serde_json::from_str(details.trim()).unwrap();
    let current = &parsed["accessories"][0]["current"];
    assert_eq!(current["health"], "healthy", "{details}");
    assert_eq!(current["state"], "running", "{details}");
    assert_eq!(current["image"].as_str(), Some(tag.as_str()), "{details}");

    // An incident the watcher in the container sees: web killed on host 1.
    let h1 = &inv.hosts[0];
    std::thread::sleep(Duration::from_secs(5));
    runtime().block_on(async {
        let host = Host::connect(&h1.ip, &inv.ssh_target(h1)).await.unwrap();
        host.engine()
            .docker()
            .kill_container(
                "hello-web-v1",
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .unwrap();
        host.close().await;
    });
    wait(
        &hook.got,
        "the accessory's alert",
        Duration::from_secs(60),
        || {
            common::webhook::events(&hook.got, "container_failing", Some(&h1.ip), Some("web"))
                .contains(&"opened".to_string())
        },
    );
    run_ok(&config, &binary, &["accessory", "remove", "watch"]);
}

/// The machine's address on the lab's network: where a container inside
/// a lab host reaches the test.
fn gateway(inv: &Inventory) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            &inv.network,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A webhook receiver on the lab network's gateway address (the one in
/// `common::webhook` listens on loopback, out of a container's reach).
struct Hook {
    port: u16,
    got: Got,
}

impl Hook {
    fn start(address: &str) -> Hook {
        let listener = TcpListener::bind((address, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream);
                let (mut length, mut line) = (0usize, String::new());
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        keep.lock().unwrap().push(v);
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = reader.get_mut().write_all(answer.as_bytes());
            }
        });
        Hook { port, got }
    }
}
