//! Doctor's exit code, host selection and table; what it prints for a
//! fleet (text and `--json`) is pinned as snapshots.

use super::*;
use ballast_core::doctor::Facts;

fn finding(rule: &'static str, severity: Severity) -> Finding {
    Finding {
        rule,
        severity,
        reason: "a reason long enough to be wrapped onto a second line of the table",
        fix: "a fix",
        source: "docs",
        detail: Some("what was seen".into()),
        role: None,
    }
}

fn report(host: &str, findings: Vec<Finding>, unreachable: Option<&str>) -> HostReport {
    HostReport {
        host: host.into(),
        about: "Debian 12".into(),
        findings,
        unreachable: unreachable.map(str::to_string),
    }
}

#[test]
fn exit_codes_follow_the_worst_host() {
    let ok = report("a", vec![finding("x", Severity::Info)], None);
    let warn = report("b", vec![finding("y", Severity::Warn)], None);
    let block = report("c", vec![finding("z", Severity::Block)], None);
    let gone = report("d", vec![], Some("connect over SSH: timed out"));
    assert_eq!(exit_code(std::slice::from_ref(&ok)), Exit::Success);
    assert_eq!(exit_code(&[ok.clone(), warn.clone()]), Exit::DoctorWarnings);
    // An unchecked host outranks warnings; a blocked one outranks both.
    assert_eq!(
        exit_code(&[warn.clone(), gone.clone(), ok]),
        Exit::Unreachable
    );
    assert_eq!(exit_code(&[gone, warn, block]), Exit::DoctorBlocked);
}

#[test]
fn hosts_must_be_the_configs() {
    let all = vec!["a".to_string(), "b".to_string()];
    assert_eq!(select(&all, &[]).unwrap(), all);
    assert_eq!(select(&all, &["b".into()]).unwrap(), ["b"]);
    let e = select(&all, &["c".into()]).unwrap_err();
    assert!(e.cause.contains("`c` is not a host"));
    assert_eq!(e.hint.as_deref(), Some("its hosts are: a, b"));
}

#[test]
fn the_table_wraps_and_shows_what_was_seen() {
    let reports = [
        report(
            "10.0.0.1",
            vec![finding("log-no-rotation", Severity::Warn)],
            None,
        ),
        report("10.0.0.2", vec![], Some("connect over SSH: timed out")),
    ];
    insta::assert_snapshot!(human(&reports, &summary(&reports)));
}

#[test]
fn config_findings_are_shown_once_with_their_hosts() {
    let mut f = finding("secret-in-clear", Severity::Block);
    f.role = Some("web".into());
    let reports = [
        report("a", vec![f.clone()], None),
        report("b", vec![f], None),
    ];
    insta::assert_snapshot!(human(&reports, &summary(&reports)));
}

/// Facts as `ballast doctor --facts --json` prints them, for hosts of a
/// fleet: a current Debian, an Ubuntu without log rotation or live-restore,
/// and a CentOS 7 on devicemapper over loop files; and one that did not answer.
fn fleet_facts() -> Vec<Facts> {
    let facts = serde_json::json!([
        {
            "host": "web-1",
            "kernel": "6.1.0-28-amd64",
            "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
            "init": "systemd",
            "engine": {
                "server_version": "29.1.3", "driver": "overlay2",
                "driver_status": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
                "cgroup_version": "2", "cgroup_driver": "systemd", "logging_driver": "local",
                "live_restore": true,
                "security_options": ["name=apparmor", "name=seccomp,profile=builtin", "name=cgroupns"],
                "root_dir": "/var/lib/docker", "memory_limit": true, "swap_limit": true,
                "pids_limit": true, "ipv4_forwarding": true, "experimental": false,
                "init_binary": "docker-init"
            },
            "daemon_json": {"log-driver": "local", "live-restore": true, "init": true},
            "daemon_running": true,
            "root": {
                "dir": "/var/lib/docker", "bytes_total": 214748364800u64, "bytes_free": 150323855360u64,
                "inodes_total": 13107200, "inodes_free": 12900000,
                "mount": {"point": "/var/lib/docker", "fstype": "ext4", "source": "/dev/nvme1n1", "options": "rw,relatime"}
            },
            "clock": {"offset_ms": 12, "uncertainty_ms": 15}
        },
        {
            "host": "web-2",
            "kernel": "5.15.0-126-generic",
            "os": {"id": "ubuntu", "version_id": "22.04", "id_like": ["debian"], "pretty_name": "Ubuntu 22.04.5 LTS"},
            "init": "systemd",
            "engine": {
                "server_version": "27.5.1", "driver": "overlay2",
                "driver_status": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
                "cgroup_version": "2", "cgroup_driver": "systemd", "logging_driver": "json-file",
                "live_restore": false,
                "security_options": ["name=apparmor", "name=seccomp,profile=builtin", "name=cgroupns"],
                "root_dir": "/var/lib/docker", "memory_limit": true, "swap_limit": true,
                "pids_limit": true, "ipv4_forwarding": true, "experimental": false,
                "init_binary": "docker-init"
            },
            "daemon_running": true,
            "root": {
                "dir": "/var/lib/docker", "bytes_total": 107374182400u64, "bytes_free": 64424509440u64,
                "inodes_total": 6553600, "inodes_free": 6400000,
                "mount": {"point": "/", "fstype": "ext4", "source": "/dev/sda1", "options": "rw,relatime"}
            },
            "clock": {"offset_ms": -40, "uncertainty_ms": 20}
        },
        {
            "host": "db-1",
            "kernel": "3.10.0-1160.el7.x86_64",
            "os": {"id": "centos", "version_id": "7", "id_like": ["rhel", "fedora"], "pretty_name": "CentOS Linux 7 (Core)"},
            "init": "systemd",
            "engine": {
                "server_version": "1.13.1", "driver": "devicemapper",
                "driver_status": [
                    ["Backing Filesystem", "xfs"], ["Data file", "/dev/loop0"], ["Metadata file", "/dev/loop1"],
                    ["Data loop file", "/var/lib/docker/devicemapper/devicemapper/data"]
                ],
                "cgroup_driver": "systemd", "logging_driver": "journald", "live_restore": false,
                "security_options": ["name=seccomp,profile=/etc/docker/seccomp.json", "name=selinux"],
                "root_dir": "/var/lib/docker", "memory_limit": true, "swap_limit": true,
                "pids_limit": true, "ipv4_forwarding": true, "experimental": false
            },
            "daemon_json": {},
            "daemon_running": true,
            "clock": {"offset_ms": 3, "uncertainty_ms": 10}
        },
        {"host": "10.0.0.9", "unreachable": "connect over SSH: no answer within 15s"}
    ]);
    serde_json::from_value(facts).expect("facts as doctor writes them")
}

const FLEET_CONFIG: &str = "\
service: shop
image: shop
roles:
  web:
    hosts: [web-1, web-2, 10.0.0.9]
    port: 8080
    env:
      clear:
        STRIPE_API_KEY: sk_live_0000
  worker:
    hosts: [db-1]
";

/// What `ballast doctor` prints for [`fleet_facts`] checked against
/// [`FLEET_CONFIG`], with the rules of `ballast_core::doctor`.
#[test]
fn a_fleet_as_doctor_shows_it() {
    let loaded = ballast_core::config::parse(
        std::path::Path::new("ballast.yml"),
        FLEET_CONFIG,
        ballast_core::config::SecretSource::Env,
    )
    .expect("the fixture config is valid");
    let reports = doctor::evaluate(&fleet_facts(), Some(&loaded.config));
    let outcome = Outcome::of(&reports);
    assert_eq!(outcome.exit_code, Exit::DoctorBlocked.code());
    insta::assert_snapshot!("doctor_fleet_text", human(&reports, &outcome.summary));
    insta::assert_json_snapshot!("doctor_fleet_json", crate::output::result_json(&outcome));
}
