//! End-to-end tests of `ballast lab`: real Docker hosts with sshd, reached
//! the way ballast reaches production hosts.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::time::{Duration, Instant};

use ballast_core::image;
use ballast_core::ssh::SshHost;
use ballast_lab::lab::owned;
use ballast_lab::LabName;

use common::*;

#[test]
fn three_host_lab_answers_over_strict_ssh_and_goes_away_cleanly() {
    require_engine!();
    let hello = hello_image("lab-e2e");
    let lab = Lab::up("three", 3);
    let inv = lab.inventory.clone();
    assert_eq!(inv.hosts.len(), 3);
    let known_hosts = std::fs::read_to_string(&inv.known_hosts).unwrap();
    assert_eq!(known_hosts.lines().count(), 3, "{known_hosts}");

    let rt = runtime();
    rt.block_on(async {
        // Every host: strict SSH, forwarded socket, `docker info` answered.
        let mut hosts = Vec::new();
        for h in &inv.hosts {
            let ssh = SshHost::connect(&inv.ssh_target(h))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", h.name));
            let info = ssh.engine().docker().info().await.expect("docker info");
            assert_eq!(info.driver.as_deref(), Some("overlay2"), "{}", h.name);
            assert!(info.server_version.is_some());
            hosts.push(ssh);
        }

        // Host 1 reaches host 2 over the lab network.
        let ip2 = &inv.hosts[1].ip;
        let probe = format!("import socket; socket.create_connection(('{ip2}', 22), 3).close()");
        let out = hosts[0]
            .run("python3", &["-c", &probe], Duration::from_secs(10))
            .await
            .unwrap();
        assert!(out.success(), "host 1 cannot reach host 2: {out:?}");

        // hello on host 2, answering the machine and host 1.
        let local = local_engine().await;
        let sent = image::copy(
            &local,
            hosts[1].engine(),
            &hello,
            Duration::from_secs(120),
            &mut |_| {},
        )
        .await
        .unwrap();
        assert!(sent > 1_000_000, "a whole image crossed: {sent} bytes");
        run_hello(hosts[1].engine(), &hello, "hello-e2e", 18080).await;
        let (_, up) = wait_http_ok(&format!("http://{ip2}:18080/up"), Duration::from_secs(20)).await;
        assert_eq!(up, "ok\n");
        let (_, version) = wait_http_ok(&format!("http://{ip2}:18080/"), Duration::from_secs(5)).await;
        assert_eq!(version, "lab-e2e\n");
        let fetch = format!(
            "import urllib.request; print(urllib.request.urlopen('http://{ip2}:18080/', timeout=5).read().decode(), end='')"
        );
        let out = hosts[0]
            .run("python3", &["-c", &fetch], Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out.stdout, "lab-e2e\n", "{out:?}");

        // A host presenting a key other than the one in known_hosts is refused.
        let wrong = tempfile::NamedTempFile::new().unwrap();
        let h3 = &inv.hosts[2];
        std::fs::write(
            wrong.path(),
            format!("{},{} {}\n", h3.name, h3.ip, inv.hosts[0].host_key),
        )
        .unwrap();
        let mut target = inv.ssh_target(h3);
        target.known_hosts = Some(wrong.path().to_path_buf());
        let refused = SshHost::connect(&target).await.err().expect("refused");
        assert!(refused.cause.contains("host key"), "{refused}");
        assert_eq!(refused.host.as_deref(), Some(h3.ip.as_str()));

        for h in hosts {
            h.close().await.unwrap();
        }
    });

    // The system's own ssh works with the lab's config, strictly.
    let out = std::process::Command::new("ssh")
        .args(["-F"])
        .arg(&inv.ssh_config)
        .args(["-o", "BatchMode=yes", &inv.hosts[0].name, "true"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh -F: {}", text(&out));

    // status sees every host answering.
    let out = ballast(
        lab.home.path(),
        &["lab", "status", "--json", "--name", &lab.name],
    );
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answering = status["labs"][0]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["answers"] == true)
        .count();
    assert_eq!(answering, 3, "{status}");

    // A second lab with the same name is refused and changes nothing.
    let name = LabName::parse(&lab.name).unwrap();
    let before = rt.block_on(async { owned(&local_engine().await, &name).await.unwrap() });
    let out = ballast(lab.home.path(), &["lab", "up", "--name", &lab.name]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        text(&out)
    );
    let after = rt.block_on(async { owned(&local_engine().await, &name).await.unwrap() });
    assert_eq!(before, after);
    assert!(lab.dir().join("inventory.json").exists());

    // down leaves no container, network, volume or directory of the lab.
    let out = ballast(lab.home.path(), &["lab", "down", "--name", &lab.name]);
    assert!(out.status.success(), "{}", text(&out));
    let left = rt.block_on(async { owned(&local_engine().await, &name).await.unwrap() });
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!lab.dir().exists());

    // A second up finds the cached host image; measured, not asserted.
    let started = Instant::now();
    let out = ballast(
        lab.home.path(),
        &["lab", "up", "--name", &lab.name, "--hosts", "3"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("(cached)"));
    eprintln!(
        "measure: cached lab up of 3 hosts took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn bad_lab_input_is_refused_and_changes_nothing() {
    require_engine!();
    let home = tempfile::tempdir().unwrap();
    let zero = lab_name("zero");
    let ghost = lab_name("ghost");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["lab", "up", "--hosts", "0", "--name", &zero],
            2,
            "--hosts",
        ),
        (
            vec!["lab", "up", "--hosts", "201", "--name", &zero],
            2,
            "--hosts",
        ),
        (
            vec!["lab", "up", "--name", "Bad_Name!"],
            2,
            "not a valid lab name",
        ),
        (vec!["lab", "up", "--name", "-x"], 2, ""),
        (
            vec!["lab", "up", "--name", &zero, "--subnet", "banana"],
            2,
            "not an IPv4 subnet",
        ),
        (vec!["lab", "down", "--name", &ghost], 3, "no lab named"),
        (vec!["lab", "status", "--name", &ghost], 3, "no lab named"),
        (
            vec!["lab", "down", "--name", "UPPER"],
            2,
            "not a valid lab name",
        ),
    ];
    for (args, code, says) in cases {
        let out = ballast(home.path(), &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}\n{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says),
            "{args:?} should say {says:?}:\n{stderr}"
        );
    }
    // Nothing was written and no Docker object was made.
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
    runtime().block_on(async {
        let engine = local_engine().await;
        for name in [&zero, &ghost] {
            let found = owned(&engine, &LabName::parse(name).unwrap())
                .await
                .unwrap();
            assert!(found.is_empty(), "{name}: {found:?}");
        }
    });
}

/// A host can be given its own Docker root (a directory of this machine) and
/// daemon.json, which later doctor tests use to build real faults.
#[test]
fn a_host_can_have_its_own_docker_root_and_daemon_json() {
    require_engine!();
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir_in("/var/tmp").unwrap();
    let name = LabName::parse(&lab_name("own")).unwrap();
    let request = ballast_lab::UpRequest {
        name: name.clone(),
        hosts: 2,
        base: home.path().to_path_buf(),
        subnet: None,
        timeout: Duration::from_secs(120),
        overrides: std::collections::BTreeMap::from([(
            1,
            ballast_lab::HostOverrides {
                docker_root: Some(root.path().to_path_buf()),
                daemon_json: Some(r#"{"log-driver": "local"}"#.into()),
                docker_may_fail: false,
                without_docker: false,
            },
        )]),
    };
    runtime().block_on(async {
        let engine = local_engine().await;
        let result = ballast_lab::up(&engine, &request, &mut |_| {}).await;
        let checked = async {
            let inv = result?;
            let first = SshHost::connect(&inv.ssh_target(&inv.hosts[0])).await?;
            let second = SshHost::connect(&inv.ssh_target(&inv.hosts[1])).await?;
            let a = first.engine().docker().info().await.unwrap();
            let b = second.engine().docker().info().await.unwrap();
            assert_eq!(a.logging_driver.as_deref(), Some("local"));
            assert_eq!(b.logging_driver.as_deref(), Some("json-file"));
            assert!(
                root.path().join(a.driver.unwrap()).is_dir(),
                "dockerd writes into the given root"
            );
            first.close().await?;
            second.close().await
        }
        .await;
        ballast_lab::down(&engine, &name, home.path())
            .await
            .unwrap();
        checked.unwrap();
    });
}
