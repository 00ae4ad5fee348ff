//! SSH connections kept for the next command (`ssh.persist`), on a real
//! lab host: the second command reuses the first one's master; an edited
//! known_hosts, or `persist: 0s`, never reuses one; and a kept master
//! whose host went away is dropped for a fresh attempt that names the
//! host, within the connect deadline.
#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `ballast --config CONFIG status` with its own temporary directory,
/// where kept masters live.
fn status(config: &Path, tmp: &Path) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = Command::new(ballast_bin())
        .arg("--config")
        .arg(config)
        .arg("status")
        .env("TMPDIR", tmp)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), text(&out), started.elapsed())
}

/// The kept masters' records: `<key>.master` files holding a control
/// socket path.
fn records(tmp: &Path) -> Vec<(PathBuf, String)> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let Ok(dir) = std::fs::read_dir(tmp.join(format!("ballast-ssh-{uid}"))) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, String)> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "master"))
        .map(|p| {
            let ctl = std::fs::read_to_string(&p).unwrap();
            (p, ctl)
        })
        .collect();
    found.sort();
    found
}

fn config(dir: &Path, inv: &ballast_lab::Inventory, known_hosts: &Path, persist: &str) -> PathBuf {
    let rest = format!(
        "  persist: {persist}\nroles:\n  web:\n    hosts: [{}]\n",
        inv.hosts[0].ip
    );
    lab_config(dir, inv, known_hosts, "conn", "hello:v1", &rest)
}

#[test]
fn a_kept_connection_is_reused_until_known_hosts_changes_or_its_host_goes() {
    require_engine!();
    let lab = Lab::up("conn", 1);
    let inv = lab.inventory.clone();
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let known_hosts = work.path().join("known_hosts");
    std::fs::copy(&inv.known_hosts, &known_hosts).unwrap();
    let kept = config(&work.path().join("kept"), &inv, &known_hosts, "60s");

    let (ok, said, first) = status(&kept, &tmp);
    assert!(ok, "{said}");
    let after_first = records(&tmp);
    assert_eq!(after_first.len(), 1, "one master kept: {after_first:?}");
    let ctl = &after_first[0].1;
    assert!(Path::new(ctl).exists(), "its control socket: {ctl}");

    let (ok, said, second) = status(&kept, &tmp);
    assert!(ok, "{said}");
    assert_eq!(records(&tmp), after_first, "the second command reused it");
    eprintln!("measure: status over a fresh connection {first:?}, over the kept one {second:?}");

    // known_hosts edited (a reinstalled host's key, a removed line): the
    // next command connects afresh and checks the host key again.
    let mut edited_text = std::fs::read_to_string(&known_hosts).unwrap();
    edited_text.push_str("# edited by the operator\n");
    std::fs::write(&known_hosts, edited_text).unwrap();
    let (ok, said, _) = status(&kept, &tmp);
    assert!(ok, "{said}");
    let now = records(&tmp);
    assert_eq!(
        now.len(),
        2,
        "a second master for the new contents: {now:?}"
    );
    let edited = now
        .iter()
        .find(|r| !after_first.contains(r))
        .map(|(_, c)| c.clone())
        .unwrap();

    // persist: 0s keeps nothing.
    let fresh = config(&work.path().join("fresh"), &inv, &known_hosts, "0s");
    let (ok, said, _) = status(&fresh, &tmp);
    assert!(ok, "{said}");
    assert_eq!(records(&tmp), now, "nothing more kept");

    // The host goes away while its master is kept: the next command does
    // not hang on the dead master; it names the host, and the record is
    // dropped.
    let stopped = Command::new("docker")
        .args(["stop", "-t", "1", &inv.hosts[0].container])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{}", text(&stopped));
    let (_, said, took) = status(&kept, &tmp);
    eprintln!("measure: status with the host stopped and its master kept: {took:?}\n{said}");
    assert!(said.contains(&inv.hosts[0].ip), "{said}");
    assert!(took < Duration::from_secs(30), "took {took:?}:\n{said}");
    let left = records(&tmp);
    assert!(
        !left.iter().any(|(_, c)| *c == edited),
        "the dead master's record was dropped: {left:?}"
    );
}
