//! `ballast setup` on real hosts: a lab host made without Docker gets
//! `docker.io` at the pinned version from Debian's package registry,
//! held there, with dockerd's settings written first; a host whose Docker
//! is another version is reported and left unchanged without
//! `--upgrade-docker`; dockerd restarts only with `--restart-docker`; the
//! last run changes nothing and says so; a deploy then works on both.
//! `doctor --fix` puts back a setting an operator took away.
//! Refused before any change on any host: an unknown distribution (a fake
//! os-release), a version the package registry does not have (naming the
//! ones it has), and no version pinned where Docker is missing.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ballast_lab::{HostOverrides, Inventory, LabName, UpRequest};

use common::*;

/// The dockerd settings setup writes.
const SETTINGS: &str =
    r#"{"init": true, "live-restore": true, "log-opts": {"max-file": "5", "max-size": "10m"}}"#;

/// A lab whose first host has no Docker, taken down when the test ends.
struct BareLab {
    name: LabName,
    home: tempfile::TempDir,
    inventory: Inventory,
}

impl BareLab {
    fn up(hosts: usize) -> BareLab {
        let home = tempfile::tempdir().unwrap();
        let name = LabName::parse(&lab_name("setup")).unwrap();
        let request = UpRequest {
            name: name.clone(),
            hosts,
            base: home.path().to_path_buf(),
            subnet: None,
            timeout: Duration::from_secs(180),
            overrides: BTreeMap::from([
                (
                    1,
                    HostOverrides {
                        without_docker: true,
                        ..Default::default()
                    },
                ),
                // The lab starts this host's dockerd itself, not through
                // the docker service, so `setup --restart-docker` could not
                // restart it: it gets ballast's settings from the start.
                (
                    2,
                    HostOverrides {
                        daemon_json: Some(SETTINGS.into()),
                        ..Default::default()
                    },
                ),
            ]),
        };
        let inventory = runtime().block_on(async {
            let engine = local_engine().await;
            ballast_lab::up(&engine, &request, &mut |_| {}).await
        });
        BareLab {
            name,
            home,
            inventory: inventory.unwrap_or_else(|e| panic!("lab up failed: {e}")),
        }
    }
}

impl Drop for BareLab {
    fn drop(&mut self) {
        let _ = ballast(
            self.home.path(),
            &["lab", "down", "--name", self.name.as_str()],
        );
    }
}

/// `docker exec CONTAINER ARGS` on the lab host; what it printed and
/// whether it succeeded.
fn on_host(container: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .arg("exec")
        .arg(container)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn docker_version(container: &str) -> Option<String> {
    let (ok, v) = on_host(
        container,
        &[
            "dpkg-query",
            "--show",
            "--showformat=${Version}",
            "docker.io",
        ],
    );
    (ok && !v.is_empty()).then_some(v)
}

/// What a refused setup must leave as it was: the settings file, the
/// holds and the engine's package.
fn untouched(container: &str) -> (String, String, Option<String>) {
    let (_, json) = on_host(container, &["cat", "/etc/docker/daemon.json"]);
    let (_, holds) = on_host(container, &["apt-mark", "showhold"]);
    (json, holds, docker_version(container))
}

fn config(dir: &Path, inv: &Inventory, hosts: &[&str], pin: Option<&str>) -> PathBuf {
    config_with(dir, inv, hosts, pin, "")
}

/// [`config`] with more top-level keys (`accessories:`).
fn config_with(
    dir: &Path,
    inv: &Inventory,
    hosts: &[&str],
    pin: Option<&str>,
    more: &str,
) -> PathBuf {
    let docker = pin.map_or(String::new(), |v| format!("docker:\n  version: \"{v}\"\n"));
    let rest = format!(
        "{docker}roles:\n  web:\n    hosts: [{}]\n    port: 8080\n    proxy:\n      drain_timeout: 1s\ndeploy:\n  health_timeout: 20s\n{more}",
        hosts.join(", ")
    );
    lab_config(dir, inv, &inv.known_hosts, "hello", "hello", &rest)
}

fn setup(config: &Path, binary: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["setup"];
    args.extend_from_slice(extra);
    ballast_cmd(config, binary, &args).output().unwrap()
}

#[test]
fn setup_installs_the_pinned_docker_and_a_second_run_changes_nothing() {
    require_engine!();
    let binary = static_ballast();
    hello_image("v1");
    let started = Instant::now();
    let lab = BareLab::up(3);
    eprintln!(
        "measure: lab with a host without Docker up in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let inv = &lab.inventory;
    let (bare, other, fake) = (&inv.hosts[0], &inv.hosts[1], &inv.hosts[2]);
    let work = tempfile::tempdir().unwrap();
    assert_eq!(
        docker_version(&bare.container),
        None,
        "the bare host has no Docker"
    );
    let theirs = docker_version(&other.container).expect("the second host has Docker");
    let (other_before, bare_before) = (untouched(&other.container), untouched(&bare.container));

    // What Debian's package registry has now, as the bare host sees it.
    let (ok, _) = on_host(&bare.container, &["apt-get", "update", "-q"]);
    assert!(ok, "apt-get update on the lab host");
    let (_, madison) = on_host(&bare.container, &["apt-cache", "madison", "docker.io"]);
    let pinned = madison
        .lines()
        .filter_map(|l| l.split('|').nth(1))
        .map(str::trim)
        .next()
        .expect("bookworm has docker.io")
        .to_string();
    eprintln!("measure: pinning docker.io {pinned}; the second host runs {theirs}");

    // An unknown distribution is refused, and nothing changes anywhere.
    on_host(
        &fake.container,
        &["cp", "/etc/os-release", "/etc/os-release.real"],
    );
    let (ok, _) = on_host(
        &fake.container,
        &[
            "sh",
            "-c",
            "printf 'ID=plan9\\nPRETTY_NAME=\"Plan 9 from Bell Labs\"\\n' > /etc/os-release",
        ],
    );
    assert!(ok);
    let cfg = config(work.path(), inv, &[&other.ip, &fake.ip], Some(&pinned));
    let out = setup(&cfg, &binary, &[]);
    assert_refused(
        &["setup"],
        out,
        "does not know how to install Docker on Plan 9 from Bell Labs (os-release ID `plan9`)",
    );
    assert_eq!(
        untouched(&other.container),
        other_before,
        "a refused setup changed another host"
    );

    // A version the package registry lacks: refused, naming what it has.
    let cfg = config(
        work.path(),
        inv,
        &[&bare.ip, &other.ip],
        Some("20.10.0+dfsg1-1"),
    );
    let out = setup(&cfg, &binary, &[]);
    let out = assert_refused(
        &["setup"],
        out,
        &format!("the package registry has no Docker 20.10.0+dfsg1-1; it has {pinned}"),
    );
    eprintln!("refused:\n{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was changed on any host"),
        "{}",
        text(&out)
    );
    // No version pinned where Docker is missing: refused, with one to pin.
    let cfg = config(work.path(), inv, &[&bare.ip, &other.ip], None);
    let out = setup(&cfg, &binary, &[]);
    assert_refused(
        &["setup"],
        out,
        "Docker is not installed and `docker.version` is not set",
    );
    assert_eq!(docker_version(&bare.container), None);
    assert_eq!(
        untouched(&other.container),
        other_before,
        "a refused setup changed a host"
    );
    assert_eq!(
        untouched(&bare.container),
        bare_before,
        "a refused setup changed a host"
    );

    // Another version than pinned: reported, left alone without --upgrade-docker.
    let cfg = config(
        work.path(),
        inv,
        &[&other.ip],
        Some("20.10.5+dfsg1-1+deb11u2"),
    );
    let out = assert_ok(&["setup"], setup(&cfg, &binary, &[]));
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "runs Docker {theirs}, not the pinned 20.10.5+dfsg1-1+deb11u2: left as it is"
        )),
        "{said}"
    );
    assert_eq!(
        docker_version(&other.container).as_deref(),
        Some(theirs.as_str())
    );
    let out = setup(&cfg, &binary, &["--upgrade-docker"]);
    assert_refused(
        &["setup", "--upgrade-docker"],
        out,
        "the package registry has no Docker 20.10.5+dfsg1-1+deb11u2",
    );
    assert_eq!(
        docker_version(&other.container).as_deref(),
        Some(theirs.as_str())
    );

    // The real run: the bare host gets the pinned engine, and the
    // accessory's host its data directory, with its owner and mode.
    let db = format!(
        "accessories:\n  db:\n    image: busybox:none\n    host: {}\n    directories:\n      - {{container: /var/lib/db, owner: \"999:998\", mode: \"0750\"}}\n",
        other.ip
    );
    let cfg = config_with(work.path(), inv, &[&bare.ip, &other.ip], Some(&pinned), &db);
    let began = Instant::now();
    let out = assert_ok(&["setup"], setup(&cfg, &binary, &[]));
    eprintln!(
        "measure: first setup (install on one host) took {:.1}s",
        began.elapsed().as_secs_f64()
    );
    let said = text(&out);
    eprintln!("first setup said:\n{said}");
    assert!(
        said.contains(&format!("installing docker.io {pinned}")),
        "{said}"
    );
    assert!(
        said.contains("+++ /etc/docker/daemon.json"),
        "the diff is shown first:\n{said}"
    );
    assert!(said.contains("+  \"live-restore\": true"), "{said}");
    assert_eq!(
        docker_version(&bare.container).as_deref(),
        Some(pinned.as_str())
    );
    let (made, _) = on_host(
        &bare.container,
        &["docker", "network", "inspect", "ballast"],
    );
    assert!(made, "setup made the ballast network");
    let (_, dir) = on_host(
        &other.container,
        &["stat", "-c", "%u:%g %a", "/var/lib/ballast/hello/db/db"],
    );
    assert_eq!(dir, "999:998 750", "the accessory's data directory");
    let (_, holds) = on_host(&bare.container, &["apt-mark", "showhold"]);
    assert!(holds.lines().any(|l| l == "docker.io"), "held: {holds}");
    let (_, live) = on_host(
        &bare.container,
        &["docker", "info", "--format", "{{.LiveRestoreEnabled}}"],
    );
    assert_eq!(
        live, "true",
        "the new engine read its settings as it started"
    );
    // An operator's edit takes a setting away: setup puts it back, and
    // dockerd is restarted only with consent.
    let (ok, _) = on_host(
        &bare.container,
        &["sed", "-i", "/\"init\"/d", "/etc/docker/daemon.json"],
    );
    assert!(ok);
    let (_, pid_before) = on_host(&bare.container, &["cat", "/var/run/docker.pid"]);
    // `doctor --fix` offers the same fix, and then checks.
    let out = ballast_cmd(&cfg, &binary, &["doctor", "--fix"])
        .output()
        .unwrap();
    let said = text(&out);
    assert!(said.contains("+  \"init\": true,"), "{said}");
    assert!(said.contains("has not read its new settings yet"), "{said}");
    let (_, pid) = on_host(&bare.container, &["cat", "/var/run/docker.pid"]);
    assert_eq!(pid, pid_before, "dockerd was restarted without consent");
    let out = assert_ok(
        &["setup", "--restart-docker"],
        setup(&cfg, &binary, &["--restart-docker"]),
    );
    let said = text(&out);
    assert!(said.contains("restarting dockerd"), "{said}");
    let (_, pid_after) = on_host(&bare.container, &["cat", "/var/run/docker.pid"]);
    assert_ne!(pid_before, pid_after, "dockerd was restarted");

    // Now nothing is left to do, and setup says so.
    let out = assert_ok(&["setup"], setup(&cfg, &binary, &[]));
    let said = text(&out);
    if theirs == pinned {
        assert!(said.contains("no machine needed a change"), "{said}");
    } else {
        // The host image was built before the registry moved on: its
        // version is reported, nothing else.
        assert!(said.contains("no machine changed"), "{said}");
    }
    assert!(
        !said.contains("installing") && !said.contains("writing"),
        "{said}"
    );

    // A deploy then works on the host setup installed.
    assert_ok(
        &["deploy"],
        ballast_cmd(&cfg, &binary, &["deploy", "--version", "v1"])
            .output()
            .unwrap(),
    );
    let rt = runtime();
    for h in [bare, other] {
        let (_, body) = rt.block_on(wait_http_ok(
            &format!("http://{}:80/", h.ip),
            Duration::from_secs(20),
        ));
        assert!(body.contains("v1"), "{}: {body}", h.ip);
    }
    on_host(
        &fake.container,
        &["mv", "/etc/os-release.real", "/etc/os-release"],
    );
}
