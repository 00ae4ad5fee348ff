//! Doctor against real faults, not faked facts: lab hosts whose Docker root
//! is a loop-mounted ext4 made without d_type (dockerd silently falls back
//! to vfs; with overlay2 forced it refuses to start) or a filesystem more
//! than 95% full. Doctor names each cause, and deploy refuses the blocked
//! hosts unless forced, which the audit log records.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ballast_lab::{HostOverrides, LabName, UpRequest};

use common::*;

/// An ext4 image loop-mounted on this machine, unmounted when dropped.
struct LoopFs {
    dir: tempfile::TempDir,
}

impl LoopFs {
    fn new(megabytes: u64, mkfs_options: &[&str]) -> LoopFs {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-F", "-q"])
            .args(mkfs_options)
            .arg(&image)
            .output()
            .unwrap();
        assert!(mkfs.status.success(), "{}", text(&mkfs));
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir.path().join("mnt"))
            .output()
            .unwrap();
        assert!(mount.status.success(), "{}", text(&mount));
        LoopFs { dir }
    }

    fn mount(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Fills the filesystem until only `percent` of it is free.
    fn fill_until_free(&self, percent: u64) {
        let df = Command::new("df")
            .args(["-B1", "--output=size,avail"])
            .arg(self.mount())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&df.stdout);
        let numbers: Vec<u64> = text
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let (size, avail) = (numbers[0], numbers[1]);
        let fill = avail - size * percent / 100;
        let out = Command::new("fallocate")
            .args(["-l", &fill.to_string()])
            .arg(self.mount().join("ballast-test-fill"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text_of(&out));
    }
}

fn text_of(out: &std::process::Output) -> String {
    text(out)
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.mount()).status();
    }
}

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    run_with_config(config, args)
}

fn findings(report: &serde_json::Value, host: &str) -> Vec<(String, String, String)> {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("no report for {host}: {report}"))["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                format!("{} {}", f["detail"].as_str().unwrap_or(""), f["fix"]),
            )
        })
        .collect()
}

#[test]
fn doctor_names_real_faults_and_deploy_refuses_blocked_hosts() {
    require_engine!();
    hello_image("v1");
    let no_dtype_vfs = LoopFs::new(1024, &["-O", "^filetype"]);
    let no_dtype_forced = LoopFs::new(1024, &["-O", "^filetype"]);
    let small = LoopFs::new(300, &[]);
    let home = tempfile::tempdir().unwrap();
    let name = LabName::parse(&lab_name("faults")).unwrap();
    let overrides = BTreeMap::from([
        (
            1,
            HostOverrides {
                docker_root: Some(no_dtype_vfs.mount()),
                ..Default::default()
            },
        ),
        (
            2,
            HostOverrides {
                docker_root: Some(no_dtype_forced.mount()),
                daemon_json: Some(r#"{"storage-driver": "overlay2"}"#.into()),
                docker_may_fail: true,
                ..Default::default()
            },
        ),
        (
            3,
            HostOverrides {
                docker_root: Some(small.mount()),
                ..Default::default()
            },
        ),
    ]);
    let request = UpRequest {
        name: name.clone(),
        hosts: 3,
        base: home.path().to_path_buf(),
        subnet: None,
        timeout: Duration::from_secs(120),
        overrides,
    };
    let rt = runtime();
    let engine = rt.block_on(local_engine());
    let inv = rt.block_on(ballast_lab::up(&engine, &request, &mut |_| {}));
    // Take the lab down before the filesystems under it are unmounted.
    struct Down<'a>(
        &'a tokio::runtime::Runtime,
        &'a ballast_core::Engine,
        &'a LabName,
        &'a Path,
    );
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = self.0.block_on(ballast_lab::down(self.1, self.2, self.3));
        }
    }
    let _down = Down(&rt, &engine, &name, home.path());
    let inv = inv.unwrap();
    small.fill_until_free(4);
    let ips: Vec<String> = inv.hosts.iter().map(|h| h.ip.clone()).collect();

    let work = tempfile::tempdir().unwrap();
    let write = |hosts: &[&String]| {
        let list: Vec<&str> = hosts.iter().map(|h| h.as_str()).collect();
        let rest = format!(
            "roles:\n  web:\n    hosts: [{}]\n    port: 8080\n",
            list.join(", ")
        );
        lab_config(
            work.path(),
            &inv,
            &inv.known_hosts,
            "faults",
            "hello",
            &rest,
        )
    };
    let config = write(&[&ips[0], &ips[1], &ips[2]]);

    let out = run(&config, &["--json", "doctor"]);
    assert_eq!(out.status.code(), Some(11), "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("\"type\":\"result\""))
        .expect("a result line")
        .to_string();
    let report: serde_json::Value = serde_json::from_str(&line).unwrap();

    let h1 = findings(&report, &ips[0]);
    let vfs = h1
        .iter()
        .find(|f| f.0 == "storage-vfs")
        .unwrap_or_else(|| panic!("{h1:?}"));
    assert_eq!(vfs.1, "warn");
    assert!(vfs.2.contains("d_type"), "names the cause: {vfs:?}");
    assert!(h1.iter().any(|f| f.0 == "log-no-rotation"), "{h1:?}");
    assert!(h1.iter().any(|f| f.0 == "live-restore-off"), "{h1:?}");

    let h2 = findings(&report, &ips[1]);
    let down = h2
        .iter()
        .find(|f| f.0 == "engine-down")
        .unwrap_or_else(|| panic!("{h2:?}"));
    assert_eq!(down.1, "block");
    assert!(down.2.contains("d_type"), "names the cause: {down:?}");

    let h3 = findings(&report, &ips[2]);
    let full = h3
        .iter()
        .find(|f| f.0 == "docker-root-full")
        .unwrap_or_else(|| panic!("{h3:?}"));
    assert_eq!(full.1, "block");

    // Deploy refuses: host 2's engine is down, host 3 is blocked by doctor.
    let out = run(&config, &["deploy", "--version", "v1"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&ips[1]), "names host 2:\n{stderr}");

    write(&[&ips[0], &ips[2]]);
    let out = run(&config, &["deploy", "--version", "v1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&ips[2])
            && stderr.contains("docker-root-full")
            && stderr.contains("--force-unsafe-host"),
        "{stderr}"
    );
    let status = run(&config, &["--json", "status"]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("\"version\":\"v1\""),
        "nothing was deployed"
    );

    // Forced, it deploys, and the audit log says so.
    let out = run(
        &config,
        &["deploy", "--version", "v1", "--force-unsafe-host", &ips[2]],
    );
    assert!(out.status.success(), "{}", text(&out));
    let audit = run(&config, &["--json", "audit", "--tail", "1"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("forced_unsafe") && audit.contains("docker-root-full"),
        "{audit}"
    );
}
