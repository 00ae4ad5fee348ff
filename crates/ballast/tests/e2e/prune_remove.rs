//! `ballast prune` and `ballast remove` on a real 2-host lab: hello behind
//! ballast-proxy with a volume under the service's state directory. Four
//! releases deployed, then pruned to `retain: 2` (a dry run first, which
//! changes nothing); `remove` refused without `--yes` and no terminal, then
//! done: no container, no route, no image of the service, and the volume's
//! file still there, with the removal in the audit log.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ballast_core::host::Host;
use ballast_core::prune::{self, Observed};
use ballast_core::{proxy, state};

use common::*;

const DATA: &str = "/var/lib/ballast/hello/data";

fn write_config(dir: &Path, lab: &Lab, retain: usize) -> PathBuf {
    let inv = &lab.inventory;
    let rest = format!(
        "roles:
  web:
    hosts: [{h1}, {h2}]
    port: 8080
    volumes: [\"{DATA}:/data\"]
    proxy:
      drain_timeout: 2s
deploy:
  health_timeout: 10s
  retain: {retain}
",
        h1 = inv.hosts[0].ip,
        h2 = inv.hosts[1].ip,
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

fn run(config: &Path, binary: &Path, args: &[&str]) -> Output {
    Command::new(ballast_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("BALLAST_PROXY_BINARY", binary)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// The `--json` result line of a command's output.
fn result_json(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("no result line:\n{}", text(out)))
}

/// Per host: the service's containers (`name state`, newest first) and the
/// tags of its images, as the hosts themselves say.
struct Seen {
    containers: Vec<String>,
    images: Vec<String>,
}

async fn seen(host: &Host) -> Seen {
    let Observed {
        containers, images, ..
    } = prune::observe(host.engine(), "hello").await.unwrap();
    let mut tags: Vec<String> = images
        .into_iter()
        .flat_map(|i| i.tags)
        .filter(|t| t.starts_with("hello:"))
        .collect();
    tags.sort();
    Seen {
        containers: containers
            .iter()
            .map(|c| format!("{} {}", c.name, c.state))
            .collect(),
        images: tags,
    }
}

async fn connect(lab: &Lab) -> Vec<Host> {
    let inv = &lab.inventory;
    let mut hosts = Vec::new();
    for h in &inv.hosts {
        hosts.push(Host::connect(&h.ip, &inv.ssh_target(h)).await.unwrap());
    }
    hosts
}

#[test]
fn prune_keeps_retain_releases_and_remove_keeps_the_data() {
    require_engine!();
    let binary = static_ballast();
    for v in ["v1", "v2", "v3", "v4"] {
        hello_image(v);
    }
    let lab = Lab::up("prune", 2);
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let rt = runtime();
    let hosts = rt.block_on(connect(&lab));

    // Data written on each host, in the volume under the state directory.
    rt.block_on(async {
        for h in &hosts {
            let d = Duration::from_secs(10);
            assert!(h
                .run("mkdir", &["-p", DATA], None, d)
                .await
                .unwrap()
                .success());
            let file = format!("{DATA}/precious.txt");
            let out = h.run("tee", &[&file], Some(b"keep me\n"), d).await.unwrap();
            assert!(out.success(), "{out:?}");
        }
    });

    // Deploys keep 3 releases; then the operator lowers retain to 2.
    let config = write_config(work.path(), &lab, 3);
    for v in ["v1", "v2", "v3", "v4"] {
        ok(run(&config, &binary, &["deploy", "--version", v]));
    }
    let deployed = started.elapsed();
    let config = write_config(work.path(), &lab, 2);
    let before: Vec<Seen> = rt.block_on(async {
        let mut all = Vec::new();
        for h in &hosts {
            all.push(seen(h).await);
        }
        all
    });
    for s in &before {
        assert_eq!(
            s.containers,
            [
                "hello-web-v4 running",
                "hello-web-v3 exited",
                "hello-web-v2 exited"
            ]
        );
        assert_eq!(s.images, ["hello:v1", "hello:v2", "hello:v3", "hello:v4"]);
    }

    // A dry run says what would go, per host, and changes nothing.
    let dry = result_json(&ok(run(
        &config,
        &binary,
        &["--json", "prune", "--dry-run"],
    )));
    assert_eq!(dry["dry_run"], true);
    let hosts_said = dry["hosts"].as_array().unwrap();
    assert_eq!(hosts_said.len(), 2);
    for (h, said) in hosts.iter().zip(hosts_said) {
        assert_eq!(said["host"], h.name());
        let names: Vec<&str> = said["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["hello-web-v2"]);
        let mut tags: Vec<&str> = said["images"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["tags"].as_array().unwrap())
            .map(|t| t.as_str().unwrap())
            .collect();
        tags.sort();
        assert_eq!(tags, ["hello:v1", "hello:v2"]);
    }
    rt.block_on(async {
        for (h, was) in hosts.iter().zip(&before) {
            let now = seen(h).await;
            assert_eq!(
                (now.containers, now.images),
                (was.containers.clone(), was.images.clone())
            );
        }
    });

    // Pruned: 2 releases per host, only their images.
    let t = Instant::now();
    let out = ok(run(&config, &binary, &["prune"]));
    let pruned = t.elapsed();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    rt.block_on(async {
        for h in &hosts {
            let now = seen(h).await;
            assert_eq!(
                now.containers,
                ["hello-web-v4 running", "hello-web-v3 exited"]
            );
            assert_eq!(now.images, ["hello:v3", "hello:v4"]);
        }
    });

    // No terminal, no --yes: refused before anything is touched.
    let refused = run(&config, &binary, &["remove"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--yes"),
        "{}",
        text(&refused)
    );
    rt.block_on(async {
        for h in &hosts {
            assert_eq!(seen(h).await.containers.len(), 2);
            assert!(proxy::routes(h).await.contains_key("hello-web"));
        }
    });

    // Removed: no container, route or image of the service; the data, the
    // audit log and the proxy stay.
    let t = Instant::now();
    let out = ok(run(&config, &binary, &["remove", "--yes"]));
    let removed = t.elapsed();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    rt.block_on(async {
        let d = Duration::from_secs(10);
        for h in &hosts {
            let now = seen(h).await;
            assert_eq!(
                (now.containers.len(), now.images.len()),
                (0, 0),
                "{}",
                h.name()
            );
            assert!(!proxy::routes(h).await.contains_key("hello-web"));
            assert!(proxy::observe(h).await.running, "the proxy keeps running");
            let network = h.engine().docker().inspect_network("ballast-hello", None);
            assert!(network.await.is_err(), "the service's network is gone");
            let file = format!("{DATA}/precious.txt");
            let data = h.run("cat", &[&file], None, d).await.unwrap();
            assert_eq!(data.stdout, "keep me\n", "{data:?}");
            let gone = h.run("test", &["-e", "/var/lib/ballast/hello/lock"], None, d);
            assert!(!gone.await.unwrap().success(), "the lock was given back");
            let audit = state::read_audit(h, "hello", 1).await.unwrap();
            assert_eq!(audit.len(), 1);
            assert_eq!(
                (audit[0].command.as_str(), audit[0].outcome.as_str()),
                ("remove", "ok")
            );
        }
        for h in hosts {
            h.close().await;
        }
    });
    eprintln!(
        "measure: 4 deploys {:.1}s, prune {:.1}s, remove {:.1}s, whole test {:.1}s",
        deployed.as_secs_f64(),
        pruned.as_secs_f64(),
        removed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
