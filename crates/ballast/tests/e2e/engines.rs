//! A lab of several engines: one host each of Debian bookworm (Docker
//! 20.10), trixie (26.1) and sid (28.5), and a fourth sid host whose engine
//! keeps images in containerd. `ballast doctor` reads every one of them:
//! the engine's version, its cgroup version and its image store, with no
//! host blocked by a misread fact. Then hello v1 → v2 → rollback → v2
//! through ballast-proxy under load, with 0 failed requests, on all four
//! at once, measuring the bytes the one-layer change sent each: the
//! changed layer alone everywhere. The containerd store's partial loads
//! are also exercised by direct delivery, up to a host whose layers went
//! missing under an image's record, which gets the whole image.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ballast_core::delivery::{self, DeliveryReport};
use ballast_core::ssh::SshHost;
use ballast_lab::{Distro, HostEngine, ImageStore, Inventory, LabEngines, LabName, UpRequest};
use serde_json::Value;

use common::report::{host as by_host, result, rules};
use common::*;

/// The engine of each host, by host number, and the Docker version its
/// distribution packages.
const HOSTS: [(HostEngine, &str); 4] = [
    (
        HostEngine::new(Distro::Bookworm, ImageStore::Classic),
        "Docker 20.10.",
    ),
    (
        HostEngine::new(Distro::Trixie, ImageStore::Classic),
        "Docker 26.1.",
    ),
    (
        HostEngine::new(Distro::Sid, ImageStore::Classic),
        "Docker 28.5.",
    ),
    (
        HostEngine::new(Distro::Sid, ImageStore::Containerd),
        "Docker 28.5.",
    ),
];

/// A lab started through the library with per-host engines, taken down
/// when the test ends, pass or fail.
struct EnginesLab {
    name: LabName,
    home: tempfile::TempDir,
    inventory: Inventory,
}

impl EnginesLab {
    fn up(tag: &str, engines: &LabEngines, hosts: usize) -> EnginesLab {
        let home = tempfile::tempdir().expect("temp dir");
        let name = LabName::parse(&lab_name(tag)).unwrap();
        let request = UpRequest {
            name: name.clone(),
            hosts,
            base: home.path().to_path_buf(),
            subnet: None,
            // Building a distribution's host image the first time takes
            // minutes; the hosts themselves come up in seconds.
            timeout: Duration::from_secs(180),
            overrides: Default::default(),
        };
        let started = Instant::now();
        let inventory = runtime().block_on(async {
            let engine = local_engine().await;
            ballast_lab::up_with(&engine, &request, engines, &mut |e| eprintln!("lab: {e:?}")).await
        });
        let lab = EnginesLab {
            name,
            home,
            inventory: inventory.unwrap_or_else(|e| panic!("lab up failed: {e}")),
        };
        eprintln!(
            "measure: {hosts}-host lab of several engines up in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        lab
    }
}

impl Drop for EnginesLab {
    fn drop(&mut self) {
        let _ = ballast(
            self.home.path(),
            &["lab", "down", "--name", self.name.as_str()],
        );
    }
}

/// Writes a config with one role, `web`, on every host of the lab.
fn write_config(dir: &Path, inv: &Inventory) -> PathBuf {
    let hosts: Vec<&str> = inv.hosts.iter().map(|h| h.ip.as_str()).collect();
    let text = format!(
        "service: hello\nimage: hello:v1\nssh:\n  user: root\n  identity_file: {}\n  known_hosts: {}\n  connect_timeout: 5s\nroles:\n  web:\n    hosts: [{}]\n    port: 8080\n",
        inv.key.display(),
        inv.known_hosts.display(),
        hosts.join(", ")
    );
    let path = dir.join("ballast.yml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn doctor_reads_bookworm_trixie_and_sid_engines_and_the_containerd_store() {
    require_engine!();
    let engines = HOSTS
        .iter()
        .enumerate()
        .fold(LabEngines::default(), |all, (i, (e, _))| {
            all.host(i + 1, *e)
        });
    let lab = EnginesLab::up("engines", &engines, HOSTS.len());
    let inv = &lab.inventory;
    for (h, (engine, _)) in inv.hosts.iter().zip(HOSTS) {
        assert_eq!((h.distro, h.store), (engine.distro, engine.store), "{h:?}");
    }
    // `lab status` tells the engines apart too.
    let out = ballast(
        lab.home.path(),
        &["--json", "lab", "status", "--name", lab.name.as_str()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let status = result(&out);
    let hosts = status["labs"][0]["hosts"].as_array().unwrap();
    let seen: Vec<(String, bool)> = hosts
        .iter()
        .map(|h| {
            let e = &h["engine"];
            (
                format!(
                    "{}/{}",
                    e["distro"].as_str().unwrap(),
                    e["store"].as_str().unwrap()
                ),
                h["answers"] == true,
            )
        })
        .collect();
    assert_eq!(
        seen,
        HOSTS
            .iter()
            .map(|(e, _)| (format!("{}/{}", e.distro, e.store), true))
            .collect::<Vec<_>>(),
        "{status}"
    );
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), inv);

    let started = Instant::now();
    let out = run_with_config(&config, &["--json", "doctor"]);
    eprintln!(
        "measure: doctor over 4 engines took {:.2}s",
        started.elapsed().as_secs_f64()
    );
    // Warnings (cgroup v1 here, no log rotation...) but nothing blocks.
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    let report = result(&out);
    assert_eq!(report["summary"]["blocked"], 0, "{report}");
    for (h, (engine, version)) in inv.hosts.iter().zip(HOSTS) {
        let host = by_host(&report, &h.ip);
        let about = host["about"].as_str().unwrap();
        eprintln!("{} ({engine}): {about}", h.name);
        assert!(host["unreachable"].is_null(), "{host}");
        assert!(about.contains(version), "{engine}: {about}");
        assert_eq!(
            about.contains("containerd image store"),
            engine.store == ImageStore::Containerd,
            "{engine}: {about}"
        );
        let ids = rules(host);
        assert!(!ids.contains(&"engine-down"), "{engine}: {ids:?}");
        // The machine runs cgroup v1 and every host shares its kernel.
        assert!(ids.contains(&"cgroup-v1"), "{engine}: {ids:?}");
        // 20.10 and 26 are past upstream maintenance; 28 is not.
        assert_eq!(
            ids.contains(&"engine-unmaintained"),
            engine.distro != Distro::Sid,
            "{engine}: {ids:?}"
        );
    }

    let out = run_with_config(&config, &["--json", "doctor", "--facts"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let facts = result(&out);
    for (h, (engine, _)) in inv.hosts.iter().zip(HOSTS) {
        let f = by_host(&facts, &h.ip);
        let e = &f["engine"];
        assert_eq!(e["image_store"], engine.store.to_string(), "{engine}: {e}");
        assert_eq!(e["cgroup_version"], "1", "{engine}: {e}");
        let driver = if engine.store == ImageStore::Containerd {
            "overlayfs"
        } else {
            "overlay2"
        };
        assert_eq!(e["driver"], driver, "{engine}: {e}");
    }
    capture_docker_info(inv);
}

/// With `BALLAST_CAPTURE_DOCKER_INFO=DIR`, writes each host's raw `docker
/// info` (the engine API's answer) to `DIR/DISTRO-STORE.json`: the
/// fixtures of doctor's unit tests come from here.
fn capture_docker_info(inv: &Inventory) {
    let Some(dir) = std::env::var_os("BALLAST_CAPTURE_DOCKER_INFO") else {
        return;
    };
    let script =
        "import docker, json; print(json.dumps(docker.APIClient(version='auto').info(), indent=1))";
    for h in &inv.hosts {
        let out = std::process::Command::new("docker")
            .args(["exec", &h.container, "python3", "-c", script])
            .output()
            .expect("run docker exec");
        assert!(out.status.success(), "{}", text(&out));
        let path = Path::new(&dir).join(format!("{}-{}.json", h.distro, h.store));
        std::fs::write(&path, &out.stdout).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

/// The delivery reports of a `deploy --json` run.
fn delivered(out: &std::process::Output) -> Vec<Value> {
    result(out)["delivered"]
        .as_array()
        .unwrap_or_else(|| panic!("no delivered list:\n{}", text(out)))
        .clone()
}

/// A lab of `engines`, hosts numbered in their order.
fn lab_of(tag: &str, engines: &[HostEngine]) -> EnginesLab {
    let all = engines
        .iter()
        .enumerate()
        .fold(LabEngines::default(), |all, (i, e)| all.host(i + 1, *e));
    EnginesLab::up(tag, &all, engines.len())
}

/// What [`roll_through_the_proxy`] saw.
struct Rolled {
    /// Each deploy's delivery reports, by version (v1, then v2).
    sent: Vec<(String, Value)>,
    /// The delivery reports of v2 deployed again after the rollback.
    again: Vec<Value>,
}

/// Deploys hello v1 to `hosts` behind ballast-proxy, then under load
/// through their proxies: v2, a rollback, and v2 again.
fn roll_through_the_proxy(lab: &EnginesLab, hosts: &[&ballast_lab::LabHost]) -> Rolled {
    let inv = &lab.inventory;
    let work = tempfile::tempdir().unwrap();
    let ips: Vec<&str> = hosts.iter().map(|h| h.ip.as_str()).collect();
    let rest = format!(
        "roles:\n  web:\n    hosts: [{}]\n    port: 8080\n    proxy: {{}}\ndeploy:\n  health_timeout: 20s\n",
        ips.join(", ")
    );
    let config = lab_config(work.path(), inv, &inv.known_hosts, "hello", "hello", &rest);
    let deploy = |version: &str| {
        let args = ["--json", "deploy", "--version", version];
        let out = run_with_config(&config, &args);
        assert!(out.status.success(), "{args:?}\n{}", text(&out));
        delivered(&out)
    };
    let rt = runtime();
    let mut sent = Vec::new();
    let mut load = None;
    for version in ["v1", "v2"] {
        for d in deploy(version) {
            let h = inv.host(d["host"].as_str().unwrap()).expect("a lab host");
            eprintln!(
                "measure: deploy hello {version} -> {} ({}): {} of {} layers, {} bytes{}",
                h.name,
                HostEngine::new(h.distro, h.store),
                d["layers_sent"],
                d["layers_total"],
                d["bytes_sent"],
                if d["full"] == true { " (full)" } else { "" }
            );
            sent.push((version.to_string(), d));
        }
        if load.is_none() {
            let urls = ips.iter().map(|ip| format!("http://{ip}:80/")).collect();
            load = Some(load::Running::start(&rt, urls, 200, 8));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let back = run_with_config(&config, &["rollback"]);
    assert!(back.status.success(), "{}", text(&back));
    let again = deploy("v2");
    let load = load.expect("started").stop(&rt);
    let engines: Vec<String> = hosts
        .iter()
        .map(|h| HostEngine::new(h.distro, h.store).to_string())
        .collect();
    eprintln!(
        "measure: v1 -> v2 -> rollback -> v2 through the proxy on {engines:?}: {} requests, {} failed, versions {:?}",
        load.sent, load.failed, load.versions
    );
    assert_eq!(load.failed, 0, "{:?}", load.failures);
    assert!(
        load.versions.contains_key("v1") && load.versions.contains_key("v2"),
        "{:?}",
        load.versions
    );
    Rolled { sent, again }
}

#[test]
fn a_one_layer_change_reaches_every_engine_and_store() {
    require_engine!();
    hello_image("v1");
    hello_image("v2");
    let lab = lab_of(
        "engdeliver",
        &[
            HostEngine::new(Distro::Bookworm, ImageStore::Classic),
            HostEngine::new(Distro::Trixie, ImageStore::Classic),
            HostEngine::new(Distro::Sid, ImageStore::Classic),
            HostEngine::new(Distro::Sid, ImageStore::Containerd),
        ],
    );
    let inv = &lab.inventory;

    // Docker 20.10, 26 and 28 on the classic store, and 28 on the
    // containerd store, through the proxy: only the changed layer, and no
    // request lost.
    let hosts: Vec<&ballast_lab::LabHost> = inv.hosts.iter().collect();
    let rolled = roll_through_the_proxy(&lab, &hosts);
    let changes: Vec<&Value> = rolled
        .sent
        .iter()
        .filter(|(v, _)| v == "v2")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(changes.len(), 4, "{:?}", rolled.sent);
    for d in changes {
        assert_eq!(
            (&d["full"], &d["layers_sent"]),
            (&false.into(), &1.into()),
            "{d}"
        );
        assert!(d["bytes_sent"].as_u64().unwrap() < 100_000, "{d}");
    }
    assert!(
        rolled
            .again
            .iter()
            .all(|d| d["skipped"] == true || d["bytes_sent"] == 0),
        "v2 again sent it again: {:?}",
        rolled.again
    );
    // The containerd store names each release, and the proxy's image, by
    // config digest: containers are created from those names.
    let host = &inv.hosts[3];
    // The host names each release, and the proxy's image, by config digest.
    let tags = std::process::Command::new("docker")
        .args([
            "exec",
            &host.container,
            "docker",
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .output()
        .unwrap();
    let tags = String::from_utf8_lossy(&tags.stdout);
    assert!(
        tags.lines()
            .filter(|t| t.starts_with("ballast-image:sha256-"))
            .count()
            >= 3,
        "hello v1, v2 and the proxy by config digest:\n{tags}"
    );
}

/// A fail point armed in this process until dropped (a panic included).
struct Armed(String);

impl Armed {
    fn at(name: &str, actions: &str) -> Armed {
        ballast_core::faults::arm(name, actions).unwrap();
        Armed(name.to_string())
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        ballast_core::faults::disarm(&self.0);
    }
}

/// Runs `script` with `sh -c` on the lab host `container`; panics unless
/// it succeeds.
fn on_host(container: &str, script: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .expect("run docker exec");
    assert!(out.status.success(), "{script}\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The containerd store loads an OCI layout without the layers it has:
/// v1 whole, then v2's changed layer alone (its bytes measured against
/// the layer's), the image runnable each time. Then the fault a partial
/// load cannot see: a host that lost a layer delivery counted on. The
/// store loads the partial v2 there without a word, the check that a
/// container can be created from it fails, and the whole image follows.
#[test]
fn the_containerd_store_gets_only_the_missing_layers() {
    require_engine!();
    let v1 = hello_image("v1");
    let v2 = hello_image("v2");
    let containerd = HostEngine::new(Distro::Sid, ImageStore::Containerd);
    let lab = lab_of("engcdlayers", &[containerd, containerd]);
    let inv = &lab.inventory;
    let deliver = |host: &ballast_lab::LabHost, image: &str| -> DeliveryReport {
        runtime().block_on(async {
            let local = local_engine().await;
            let ssh = SshHost::connect(&inv.ssh_target(host)).await.unwrap();
            let prepared = delivery::prepare(&local, image).await.unwrap();
            let report = prepared.send(ssh.engine(), &mut |_| {}).await.unwrap();
            eprintln!(
                "measure: direct delivery {image} -> {} (sid, containerd store): {} of {} layers, {} bytes{}",
                host.name,
                report.layers_sent,
                report.layers_total,
                report.bytes_sent,
                if report.full { " (full)" } else { "" }
            );
            let there = ssh.engine().docker().inspect_image(image).await.unwrap();
            let here = local.docker().inspect_image(image).await.unwrap();
            assert_eq!(
                there.root_fs.and_then(|r| r.layers),
                here.root_fs.and_then(|r| r.layers),
                "{image}"
            );
            let _ = ssh.close().await;
            report
        })
    };
    let runs = |host: &ballast_lab::LabHost, image: &str| {
        let id = on_host(&host.container, &format!("docker create {image}"));
        on_host(&host.container, &format!("docker rm {}", id.trim()));
    };

    let host = &inv.hosts[0];
    let first = deliver(host, &v1);
    assert_eq!((first.layers_sent, first.full), (first.layers_total, false));
    runs(host, &v1);
    let change = deliver(host, &v2);
    assert_eq!((change.layers_sent, change.full), (1, false), "{change:?}");
    // The changed layer is one small file: its tar is a few KiB.
    assert!(change.bytes_sent < 100_000, "{change:?}");
    assert!(
        change.bytes_sent * 10 < first.bytes_sent,
        "{change:?} {first:?}"
    );
    runs(host, &v2);
    let again = deliver(host, &v2);
    assert!(again.skipped, "{again:?}");

    // A second host, whose image of v1 lost its layers between delivery's
    // look and the load (ballast is told it has v1's base): the store
    // loads the partial v2 without a word, the check that a container can
    // be created from it fails, and the whole image follows.
    let host = &inv.hosts[1];
    let _fault = Armed::at(&format!("survey-shared@{}", host.ip), "return(1)");
    let fallback = deliver(host, &v2);
    assert_eq!(
        (fallback.layers_sent, fallback.full),
        (fallback.layers_total, true),
        "{fallback:?}"
    );
    runs(host, &v2);
}

/// A unix socket on this machine forwarded over SSH to a lab host's
/// dockerd: that engine, as `DOCKER_HOST` sees it. Closed on drop.
struct EngineForward {
    ssh: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl EngineForward {
    fn to(inv: &Inventory, host: &ballast_lab::LabHost) -> EngineForward {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let forward = format!("{}:/var/run/docker.sock", socket.display());
        let ssh = std::process::Command::new("ssh")
            .args([
                "-N",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
            ])
            .arg("-i")
            .arg(&inv.key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", inv.known_hosts.display()))
            .args(["-L", &forward, &format!("root@{}", host.ip)])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("run ssh");
        let until = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < until,
                "ssh did not forward the engine's socket"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        EngineForward {
            ssh,
            socket,
            _dir: dir,
        }
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for EngineForward {
    fn drop(&mut self) {
        let _ = self.ssh.kill();
        let _ = self.ssh.wait();
    }
}

/// Deploying from a machine whose own engine keeps images in containerd
/// (fresh Docker 29 installs, Docker Desktop): it names images by
/// manifest and reports no config digest, which releases are named by.
/// Here that engine is a sid host's, reached as `DOCKER_HOST` through a
/// socket forwarded over SSH; the target runs the classic store. v1, the
/// one-layer v2 and a rollback each serve; before, the first deploy
/// failed with "No such image: sha256:<manifest digest>".
#[test]
fn deploys_from_an_engine_on_the_containerd_store() {
    require_engine!();
    hello_image("v1");
    hello_image("v2");
    let lab = lab_of(
        "engfromcd",
        &[
            HostEngine::new(Distro::Sid, ImageStore::Containerd),
            HostEngine::new(Distro::Sid, ImageStore::Classic),
        ],
    );
    let inv = &lab.inventory;
    let (operator, target) = (&inv.hosts[0], &inv.hosts[1]);
    let loaded = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker save hello:v1 hello:v2 | docker exec -i {} docker load",
            operator.container
        ))
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", text(&loaded));
    let engine = EngineForward::to(inv, operator);
    let work = tempfile::tempdir().unwrap();
    let rest = format!(
        "roles:\n  web:\n    hosts: [{}]\n    port: 8080\n    proxy: {{}}\ndeploy:\n  health_timeout: 20s\n",
        target.ip
    );
    let config = lab_config(work.path(), inv, &inv.known_hosts, "hello", "hello", &rest);
    let run = |args: &[&str]| {
        let out = ballast_cmd(&config, &ballast_bin(), args)
            .env("DOCKER_HOST", engine.docker_host())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}\n{}", text(&out));
        out
    };
    let rt = runtime();
    let serves = |version: &str| {
        let (_, body) = rt.block_on(wait_http_ok(
            &format!("http://{}:80/", target.ip),
            Duration::from_secs(20),
        ));
        assert!(body.contains(version), "{version}: {body}");
    };
    run(&["deploy", "--version", "v1"]);
    serves("v1");
    let out = run(&["--json", "deploy", "--version", "v2"]);
    let sent = delivered(&out);
    eprintln!("measure: v2 from an engine on the containerd store: {sent:?}");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["layers_sent"], 1, "{sent:?}");
    serves("v2");
    run(&["rollback"]);
    serves("v1");
}
