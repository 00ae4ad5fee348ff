//! Every rule with a fixture that fires it and a near miss that does not;
//! whole hosts (data files in `fixtures/`, shaped like `ballast doctor
//! --facts`) with the exact set of rules that fire on each.

use std::collections::{BTreeMap, BTreeSet};

use super::facts::{Clock, EngineInfo, Facts, ImageFacts, KernelConfig, Mount, Os};
use super::*;
use crate::config::{self, SecretSource};

fn fixture(name: &str) -> Facts {
    let text = match name {
        "centos6" => include_str!("fixtures/centos6.json"),
        "centos7-loop-lvm" => include_str!("fixtures/centos7-loop-lvm.json"),
        "rhel7-xfs-ftype0" => include_str!("fixtures/rhel7-xfs-ftype0.json"),
        "debian8-aufs" => include_str!("fixtures/debian8-aufs.json"),
        "ubuntu1604-overlay2" => include_str!("fixtures/ubuntu1604-overlay2.json"),
        "debian12-current" => include_str!("fixtures/debian12-current.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixtures/{name}.json: {e}"))
}

/// The ids of the host rules that fire on `facts` alone.
fn fired(facts: &Facts) -> BTreeSet<&'static str> {
    evaluate(std::slice::from_ref(facts), None)[0]
        .findings
        .iter()
        .map(|f| f.rule)
        .collect()
}

fn detail(facts: &Facts, id: &str) -> String {
    evaluate(std::slice::from_ref(facts), None)[0]
        .findings
        .iter()
        .find(|f| f.rule == id)
        .and_then(|f| f.detail.clone())
        .unwrap_or_else(|| panic!("{id} did not fire"))
}

fn set(ids: &[&'static str]) -> BTreeSet<&'static str> {
    ids.iter().copied().collect()
}

// ---- whole hosts ----

#[test]
fn centos_6() {
    assert_eq!(
        fired(&fixture("centos6")),
        set(&[
            "kernel-too-old",
            "storage-legacy",
            "devicemapper-loop-lvm",
            "distribution-unsupported",
            "cgroup-v1",
            "log-no-rotation",
            "seccomp-off",
            "engine-unmaintained",
            "docker-root-shared",
            "no-default-init",
        ])
    );
}

#[test]
fn centos_7_with_devicemapper_loop_lvm() {
    assert_eq!(
        fired(&fixture("centos7-loop-lvm")),
        set(&[
            "storage-legacy",
            "devicemapper-loop-lvm",
            "distribution-unsupported",
            "cgroup-v1",
            "live-restore-off",
            "engine-unmaintained",
            "docker-root-shared",
            "no-default-init",
        ])
    );
}

#[test]
fn rhel_7_with_xfs_ftype_0() {
    let facts = fixture("rhel7-xfs-ftype0");
    assert_eq!(
        fired(&facts),
        set(&[
            "overlay-without-d-type",
            "distribution-unsupported",
            "cgroup-v1",
            "log-no-rotation",
            "live-restore-off",
            "engine-unmaintained",
            "docker-root-shared",
            "no-default-init",
        ])
    );
    assert!(detail(&facts, "overlay-without-d-type").contains("ftype=0"));
}

#[test]
fn debian_8_with_aufs() {
    assert_eq!(
        fired(&fixture("debian8-aufs")),
        set(&[
            "storage-legacy",
            "debian8-aufs",
            "distribution-unsupported",
            "cgroup-v1",
            "log-no-rotation",
            "live-restore-off",
            "seccomp-off",
            "limits-unsupported",
            "engine-unmaintained",
            "docker-root-shared",
            "no-default-init",
        ])
    );
}

#[test]
fn ubuntu_16_04_with_overlay2_on_ext4_has_no_block() {
    let facts = fixture("ubuntu1604-overlay2");
    assert_eq!(
        fired(&facts),
        set(&[
            "distribution-unsupported",
            "cgroup-v1",
            "log-no-rotation",
            "live-restore-off",
            "engine-unmaintained",
            "docker-root-shared",
            "no-default-init",
        ])
    );
    assert!(!evaluate(&[facts], None)[0].blocks());
}

#[test]
fn debian_12_with_a_current_engine_is_clean() {
    let facts = fixture("debian12-current");
    assert_eq!(fired(&facts), set(&[]));
    let report = &evaluate(&[facts], None)[0];
    assert!(!report.blocks());
    assert_eq!(report.worst(), None);
    assert_eq!(
        report.about,
        "Debian GNU/Linux 12 (bookworm), kernel 6.1.0-28-amd64, Docker 29.1.3, overlay2 on extfs"
    );
}

#[test]
fn fixtures_round_trip_as_facts_json() {
    for name in [
        "centos6",
        "centos7-loop-lvm",
        "rhel7-xfs-ftype0",
        "debian8-aufs",
        "ubuntu1604-overlay2",
        "debian12-current",
    ] {
        let facts = fixture(name);
        let again: Facts = serde_json::from_str(&serde_json::to_string(&facts).unwrap()).unwrap();
        assert_eq!(facts, again, "{name}");
    }
}

// ---- every host rule: fires, and a near miss that does not ----

/// A rule, a change to a clean host that makes it fire, and a near miss.
struct Case {
    id: &'static str,
    fires: fn(&mut Facts),
    quiet: fn(&mut Facts),
}

fn engine(f: &mut Facts) -> &mut EngineInfo {
    f.engine.as_mut().expect("the clean host has an engine")
}

fn status(f: &mut Facts, pairs: &[(&str, &str)]) {
    engine(f).driver_status = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
}

fn os(f: &mut Facts, id: &str, version: &str, like: &[&str]) {
    f.os = Some(Os {
        id: id.into(),
        version_id: version.into(),
        id_like: like.iter().map(|s| s.to_string()).collect(),
        pretty_name: format!("{id} {version}"),
    });
}

fn root_free(f: &mut Facts, bytes_pct: u64, inodes_pct: u64) {
    let root = f.root.as_mut().unwrap();
    root.bytes_total = Some(1000);
    root.bytes_free = Some(bytes_pct * 10);
    root.inodes_total = Some(1000);
    root.inodes_free = Some(inodes_pct * 10);
}

const CASES: &[Case] = &[
    Case {
        id: "engine-down",
        fires: |f| {
            f.engine = None;
            f.engine_error = Some("connection closed before message completed".into());
        },
        quiet: |f| f.engine = None, // not asked (no error recorded): nothing is known
    },
    Case {
        id: "storage-legacy",
        fires: |f| engine(f).driver = Some("devicemapper".into()),
        quiet: |f| engine(f).driver = Some("overlay2".into()),
    },
    Case {
        id: "devicemapper-loop-lvm",
        fires: |f| {
            engine(f).driver = Some("devicemapper".into());
            status(
                f,
                &[(
                    "Data loop file",
                    "/var/lib/docker/devicemapper/devicemapper/data",
                )],
            );
        },
        quiet: |f| {
            engine(f).driver = Some("devicemapper".into());
            status(f, &[("Pool Name", "docker-thinpool"), ("Data file", "")]);
        },
    },
    Case {
        id: "thin-pool-full",
        fires: |f| {
            engine(f).driver = Some("devicemapper".into());
            status(
                f,
                &[
                    ("Data Space Total", "107.4 GB"),
                    ("Data Space Available", "5.1 GB"),
                ],
            );
        },
        quiet: |f| {
            engine(f).driver = Some("devicemapper".into());
            status(
                f,
                &[
                    ("Data Space Total", "107.4 GB"),
                    ("Data Space Available", "52.57 GB"),
                ],
            );
        },
    },
    Case {
        id: "overlay-without-d-type",
        fires: |f| {
            status(
                f,
                &[("Backing Filesystem", "xfs"), ("Supports d_type", "false")],
            )
        },
        quiet: |f| {
            status(
                f,
                &[("Backing Filesystem", "xfs"), ("Supports d_type", "true")],
            )
        },
    },
    Case {
        id: "overlay-old-kernel",
        fires: |f| {
            os(f, "centos", "7", &["rhel", "fedora"]);
            f.kernel = Some("3.10.0-327.el7.x86_64".into());
        },
        quiet: |f| {
            os(f, "centos", "7", &["rhel", "fedora"]);
            f.kernel = Some("3.10.0-514.el7.x86_64".into());
        },
    },
    Case {
        id: "kernel-too-old",
        fires: |f| f.kernel = Some("2.6.32-754.el6.x86_64".into()),
        quiet: |f| f.kernel = Some("3.10.0-1160.el7.x86_64".into()),
    },
    Case {
        id: "debian8-aufs",
        fires: |f| {
            os(f, "debian", "8", &[]);
            f.kernel = Some("3.16.0-4-amd64".into());
            engine(f).driver = Some("aufs".into());
        },
        quiet: |f| {
            os(f, "ubuntu", "16.04", &["debian"]);
            f.kernel = Some("4.4.0-210-generic".into());
            engine(f).driver = Some("aufs".into());
        },
    },
    Case {
        id: "btrfs-on-rhel",
        fires: |f| {
            os(f, "rhel", "7.9", &["fedora"]);
            engine(f).driver = Some("btrfs".into());
        },
        quiet: |f| {
            os(f, "fedora", "42", &[]);
            engine(f).driver = Some("btrfs".into());
        },
    },
    Case {
        id: "cgroup2-old-kernel",
        fires: |f| f.kernel = Some("4.14.0-1-amd64".into()),
        quiet: |f| f.kernel = Some("4.15.0-20-generic".into()),
    },
    Case {
        id: "docker-root-full",
        fires: |f| root_free(f, 4, 50),
        quiet: |f| root_free(f, 6, 50),
    },
    Case {
        id: "api-tcp-without-tls",
        fires: |f| f.daemon_json.as_mut().unwrap().hosts = vec!["tcp://0.0.0.0:2375".into()],
        quiet: |f| {
            let d = f.daemon_json.as_mut().unwrap();
            d.hosts = vec!["tcp://0.0.0.0:2376".into()];
            d.tlsverify = Some(true);
        },
    },
    Case {
        id: "overlay-backing-fs",
        fires: |f| {
            status(
                f,
                &[("Backing Filesystem", "btrfs"), ("Supports d_type", "true")],
            )
        },
        quiet: |f| {
            status(
                f,
                &[("Backing Filesystem", "xfs"), ("Supports d_type", "true")],
            )
        },
    },
    Case {
        id: "storage-vfs",
        fires: |f| {
            engine(f).driver = Some("vfs".into());
            status(f, &[]);
        },
        quiet: |f| engine(f).driver = Some("overlay2".into()),
    },
    Case {
        id: "storage-btrfs-zfs",
        fires: |f| engine(f).driver = Some("zfs".into()),
        quiet: |f| {
            os(f, "rocky", "9.3", &["rhel", "centos", "fedora"]);
            engine(f).driver = Some("btrfs".into());
        },
    },
    Case {
        id: "cgroup-v1",
        fires: |f| engine(f).cgroup_version = Some("1".into()),
        quiet: |f| engine(f).cgroup_version = Some("2".into()),
    },
    Case {
        id: "cgroup-driver-mismatch",
        fires: |f| engine(f).cgroup_driver = Some("cgroupfs".into()),
        quiet: |f| {
            engine(f).cgroup_driver = Some("cgroupfs".into());
            f.init = Some("docker-init".into());
        },
    },
    Case {
        id: "distribution-unsupported",
        fires: |f| os(f, "ubuntu", "16.04", &["debian"]),
        quiet: |f| os(f, "rocky", "9.3", &["rhel", "centos", "fedora"]),
    },
    Case {
        id: "docker-root-low",
        fires: |f| root_free(f, 50, 8),
        quiet: |f| root_free(f, 50, 11),
    },
    Case {
        id: "log-no-rotation",
        fires: |f| f.daemon_json.as_mut().unwrap().log_opts.clear(),
        quiet: |f| {
            f.daemon_json.as_mut().unwrap().log_opts.clear();
            engine(f).logging_driver = Some("local".into());
        },
    },
    Case {
        id: "live-restore-off",
        fires: |f| engine(f).live_restore = Some(false),
        quiet: |f| engine(f).live_restore = None,
    },
    Case {
        id: "seccomp-off",
        fires: |f| engine(f).security_options = vec!["name=apparmor".into()],
        quiet: |f| engine(f).security_options = vec!["seccomp".into()],
    },
    Case {
        id: "experimental-daemon",
        fires: |f| engine(f).experimental = Some(true),
        quiet: |f| engine(f).experimental = Some(false),
    },
    Case {
        id: "ip-forward-off",
        fires: |f| engine(f).ipv4_forwarding = Some(false),
        quiet: |f| engine(f).ipv4_forwarding = None,
    },
    Case {
        id: "limits-unsupported",
        fires: |f| engine(f).pids_limit = Some(false),
        quiet: |f| engine(f).swap_limit = Some(false),
    },
    Case {
        id: "kernel-options-missing",
        fires: |f| set_flag(f, "MEMCG", "n"),
        quiet: |f| set_flag(f, "CGROUP_PIDS", "n"),
    },
    Case {
        id: "engine-unmaintained",
        fires: |f| engine(f).server_version = Some("27.5.1".into()),
        quiet: |f| engine(f).server_version = Some("28.0.0".into()),
    },
    Case {
        id: "daemon-json-invalid",
        fires: |f| {
            f.daemon_json = None;
            f.daemon_json_error = Some("invalid JSON: EOF while parsing an object".into());
        },
        quiet: |f| f.daemon_json = None, // no file at all is fine
    },
    Case {
        id: "docker-root-shared",
        fires: |f| f.root.as_mut().unwrap().mount.as_mut().unwrap().point = "/".into(),
        quiet: |f| f.root.as_mut().unwrap().dir = "/var/lib/docker/".into(),
    },
    Case {
        id: "no-default-init",
        fires: |f| f.daemon_json.as_mut().unwrap().init = None,
        quiet: |f| {
            f.daemon_json.as_mut().unwrap().init = None;
            f.daemon_args = Some("/usr/bin/dockerd -H fd:// --init".into());
        },
    },
];

fn set_flag(f: &mut Facts, flag: &str, value: &str) {
    f.kernel_config
        .as_mut()
        .unwrap()
        .flags
        .insert(flag.into(), value.into());
}

#[test]
fn every_host_rule_fires_on_its_fixture_and_not_on_a_near_miss() {
    for case in CASES {
        let mut fires = fixture("debian12-current");
        (case.fires)(&mut fires);
        assert!(
            fired(&fires).contains(case.id),
            "{} did not fire; fired: {:?}",
            case.id,
            fired(&fires)
        );
        let mut quiet = fixture("debian12-current");
        (case.quiet)(&mut quiet);
        assert!(
            !fired(&quiet).contains(case.id),
            "{} fired on its near miss: {}",
            case.id,
            detail(&quiet, case.id)
        );
    }
}

#[test]
fn every_rule_has_fixtures() {
    let covered: BTreeSet<&str> = CASES
        .iter()
        .map(|c| c.id)
        .chain(ROLE_CASES.iter().map(|c| c.id))
        .chain(["clock-skew"])
        .collect();
    for r in RULES {
        assert!(covered.contains(r.id), "rule {} has no fixture", r.id);
    }
    assert_eq!(
        covered.len(),
        RULES.len(),
        "fixtures name a rule that does not exist"
    );
}

// ---- details that matter ----

#[test]
fn a_dead_engine_is_explained_from_its_log() {
    let mut f = fixture("debian12-current");
    f.engine = None;
    f.daemon_args = None;
    f.daemon_running = Some(false);
    f.engine_error = Some("connection closed before message completed".into());
    f.daemon_log = Some(
        "level=info msg=\"Starting up\"\n\
         failed to start daemon: error initializing graphdriver: overlay2: the backing extfs \
         filesystem is formatted without d_type support, which leads to incorrect behavior. \
         Reformat the filesystem (or use an overlay2-compatible filesystem)"
            .into(),
    );
    let d = detail(&f, "engine-down");
    assert!(
        d.starts_with("dockerd is not running: its backing filesystem has no d_type"),
        "{d}"
    );
    assert!(d.contains("formatted without d_type support"), "{d}");
    // Without a log it says what it knows.
    f.daemon_log = None;
    assert_eq!(
        detail(&f, "engine-down"),
        "dockerd is not running (connection closed before message completed)"
    );
    // Running but silent (hung), with nothing recognisable in its log.
    f.daemon_running = Some(true);
    f.daemon_log =
        Some("level=info msg=\"a\"\nlevel=error msg=\"b failed\"\nlevel=info msg=\"c\"".into());
    assert_eq!(
        detail(&f, "engine-down"),
        "dockerd is running but does not answer (connection closed before message completed); its log says: level=error msg=\"b failed\""
    );
    let report = &evaluate(&[f], None)[0];
    assert!(report.blocks());
    assert_eq!(
        report.about,
        "Debian GNU/Linux 12 (bookworm), kernel 6.1.0-28-amd64, engine not answering"
    );
}

#[test]
fn vfs_on_ext4_names_d_type() {
    let mut f = fixture("debian12-current");
    engine(&mut f).driver = Some("vfs".into());
    status(&mut f, &[]);
    assert!(detail(&f, "storage-vfs").contains("lacks d_type"));
    // vfs chosen on purpose, or on a kernel without overlay: no d_type guess.
    f.daemon_args = Some("dockerd --storage-driver=vfs".into());
    assert_eq!(
        detail(&f, "storage-vfs"),
        "vfs is set in the daemon's settings"
    );
    let mut old = fixture("debian12-current");
    engine(&mut old).driver = Some("vfs".into());
    old.kernel = Some("3.16.0-4-amd64".into());
    assert_eq!(detail(&old, "storage-vfs"), "the storage driver is vfs");
}

#[test]
fn the_rhel_backport_of_overlay2() {
    let mut f = fixture("debian12-current");
    os(&mut f, "rhel", "7.3", &["fedora"]);
    f.kernel = Some("3.10.0-514.el7.x86_64".into());
    assert!(!fired(&f).contains("overlay-old-kernel"));
    os(&mut f, "ubuntu", "14.04", &["debian"]);
    f.kernel = Some("3.13.0-170-generic".into());
    assert!(fired(&f).contains("overlay-old-kernel"));
}

#[test]
fn tcp_api_flags_on_the_command_line_count() {
    let mut f = fixture("debian12-current");
    f.daemon_args = Some("/usr/bin/dockerd -H fd:// -H tcp://0.0.0.0:2376 --tls".into());
    assert!(detail(&f, "api-tcp-without-tls").contains("without client verification"));
    f.daemon_args = Some("/usr/bin/dockerd -H tcp://0.0.0.0:2376 --tlsverify".into());
    assert!(!fired(&f).contains("api-tcp-without-tls"));
}

#[test]
fn root_space_fires_one_rule_at_a_time() {
    let mut f = fixture("debian12-current");
    root_free(&mut f, 3, 8);
    let ids = fired(&f);
    assert!(ids.contains("docker-root-full") && !ids.contains("docker-root-low"));
    assert!(detail(&f, "docker-root-full").contains("(3.0%)"));
    // btrfs has no inode table: zero inodes is not a full disk.
    let root = f.root.as_mut().unwrap();
    (root.bytes_free, root.inodes_total, root.inodes_free) = (Some(500), Some(0), Some(0));
    assert!(!fired(&f).contains("docker-root-full"));
}

// ---- the clock, across hosts ----

fn with_clock(host: &str, offset_ms: i64) -> Facts {
    Facts {
        host: host.into(),
        clock: Some(Clock {
            offset_ms,
            uncertainty_ms: 20,
        }),
        ..Facts::default()
    }
}

#[test]
fn clock_skew_names_the_host_that_is_off() {
    let hosts = [
        with_clock("a", 10),
        with_clock("b", -30),
        with_clock("c", 2500),
        with_clock("d", 40),
    ];
    let reports = evaluate(&hosts, None);
    let skewed: Vec<&str> = reports
        .iter()
        .filter(|r| r.findings.iter().any(|f| f.rule == "clock-skew"))
        .map(|r| r.host.as_str())
        .collect();
    assert_eq!(skewed, ["c"]);
    let c = reports[2]
        .findings
        .iter()
        .find(|f| f.rule == "clock-skew")
        .unwrap();
    assert!(
        c.detail.as_deref().unwrap().contains("2.5 s ahead of"),
        "{c:?}"
    );
    // Within a second (and the measurement's uncertainty): quiet.
    let near = [with_clock("a", 0), with_clock("b", 1030)];
    assert!(evaluate(&near, None).iter().all(|r| r.findings.is_empty()));
    // One host alone has nobody to disagree with.
    assert!(evaluate(&[with_clock("a", 99_000)], None)[0]
        .findings
        .is_empty());
}

// ---- config rules ----

fn config(yaml: &str) -> config::Config {
    let secrets = BTreeMap::from([("DB_PASSWORD".to_string(), "x".to_string())]);
    config::parse(
        std::path::Path::new("ballast.yml"),
        yaml,
        SecretSource::Map(secrets),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", e.hint()))
    .config
}

/// Config rules that fire for `yaml` on host 10.0.0.1, with `image` facts.
fn config_fired(yaml: &str, image: Option<ImageFacts>) -> BTreeSet<&'static str> {
    let facts = Facts {
        image,
        ..fixture("debian12-current")
    };
    let facts = Facts {
        host: "10.0.0.1".into(),
        ..facts
    };
    evaluate(&[facts], Some(&config(yaml)))[0]
        .findings
        .iter()
        .filter(|f| f.role.is_some())
        .map(|f| f.rule)
        .collect()
}

struct RoleCase {
    id: &'static str,
    fires: &'static str,
    quiet: &'static str,
}

const ROLE_CASES: &[RoleCase] = &[
    RoleCase {
        id: "stateful-without-volume",
        fires: "service: shop\nimage: postgres:16.4\nroles:\n  db:\n    hosts: [10.0.0.1]\n",
        quiet: "service: shop\nimage: postgres:16.4\nroles:\n  db:\n    hosts: [10.0.0.1]\n    volumes: [/var/lib/ballast/shop/db:/var/lib/postgresql/data]\n",
    },
    RoleCase {
        id: "secret-in-clear",
        fires: "service: shop\nimage: shop:1\nroles:\n  web:\n    hosts: [10.0.0.1]\n    env:\n      clear: { DB_PASSWORD: hunter2 }\n",
        quiet: "service: shop\nimage: shop:1\nroles:\n  web:\n    hosts: [10.0.0.1]\n    env:\n      clear: { DB_PASSWORD_FILE: /run/secrets/db, RUST_LOG: info }\n      secret: [DB_PASSWORD]\n",
    },
    RoleCase {
        id: "image-unpinned",
        fires: "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [10.0.0.1]\n",
        quiet: "service: shop\nimage: shop\nbuild: { context: . }\nroles:\n  web:\n    hosts: [10.0.0.1]\n",
    },
    RoleCase {
        id: "published-without-healthcheck",
        fires: "service: shop\nimage: shop:1\nroles:\n  web:\n    hosts: [10.0.0.1]\n    publish: [\"80:8080\"]\n",
        quiet: "service: shop\nimage: shop:1\nroles:\n  web:\n    hosts: [10.0.0.1]\n    port: 8080\n    publish: [\"80:8080\"]\n",
    },
];

#[test]
fn every_config_rule_fires_on_its_fixture_and_not_on_a_near_miss() {
    for case in ROLE_CASES {
        let fires = config_fired(case.fires, None);
        assert!(
            fires.contains(case.id),
            "{} did not fire: {fires:?}",
            case.id
        );
        let quiet = config_fired(case.quiet, None);
        assert!(
            !quiet.contains(case.id),
            "{} fired on its near miss",
            case.id
        );
    }
}

#[test]
fn an_image_that_declares_a_volume_needs_a_host_directory() {
    let uploads = ImageFacts {
        reference: "shop:1".into(),
        id: "sha256:1".into(),
        volumes: vec!["/srv/uploads".into()],
        healthcheck: false,
    };
    let bare =
        "service: shop\nimage: shop:1\nroles:\n  web:\n    hosts: [10.0.0.1]\n    port: 8080\n";
    assert!(config_fired(bare, Some(uploads.clone())).contains("stateful-without-volume"));
    let mounted = format!("{bare}    volumes: [/var/lib/ballast/shop/uploads:/srv]\n");
    assert!(!config_fired(&mounted, Some(uploads.clone())).contains("stateful-without-volume"));
    // An image HEALTHCHECK is a health check.
    let published = "service: shop\nimage: shop:1\nroles:\n  web:\n    hosts: [10.0.0.1]\n    publish: [\"80:8080\"]\n    volumes: [/var/lib/ballast/shop/uploads:/srv]\n";
    let checked = ImageFacts {
        healthcheck: true,
        ..uploads
    };
    assert!(config_fired(published, Some(checked)).is_empty());
}

#[test]
fn secrets_are_named_never_shown() {
    let yaml = "service: shop\nimage: shop:1\nroles:\n  web:\n    hosts:\n      - { host: 10.0.0.1, env: { API_TOKEN: tok-123 } }\n    port: 8080\n    env:\n      clear: { DATABASE_URL: \"postgres://app:hunter2@db/app\" }\n";
    let c = config(yaml);
    let findings = check_config(&c);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let d = findings[0].detail.as_deref().unwrap();
    assert!(
        d.contains("`DATABASE_URL` (env.clear, its value embeds a password)"),
        "{d}"
    );
    assert!(d.contains("`API_TOKEN` (hosts[].env)"), "{d}");
    assert!(!d.contains("hunter2") && !d.contains("tok-123"), "{d}");
    assert_eq!(findings[0].role.as_deref(), Some("web"));
}

#[test]
fn config_findings_reach_the_hosts_of_their_role_only() {
    let yaml = "service: shop\nimage: shop:1\nroles:\n  web:\n    hosts: [10.0.0.1]\n    port: 8080\n  db:\n    hosts: [10.0.0.2]\n    env:\n      clear: { ADMIN_PASSWORD: x }\n";
    let c = config(yaml);
    let hosts = [Facts::new("10.0.0.1"), Facts::new("10.0.0.2")];
    let reports = evaluate(&hosts, Some(&c));
    assert!(!reports[0].blocks());
    assert!(reports[1].blocks());
    assert_eq!(reports[1].findings[0].rule, "secret-in-clear");
}

#[test]
fn unreachable_hosts_are_reported_without_host_findings() {
    let facts = Facts {
        unreachable: Some("connect over SSH: Connection timed out".into()),
        ..Facts::new("10.0.0.9")
    };
    let report = &evaluate(&[facts], None)[0];
    assert!(report.findings.is_empty() && !report.blocks());
    assert_eq!(
        report.unreachable.as_deref(),
        Some("connect over SSH: Connection timed out")
    );
}

#[test]
fn findings_are_sorted_most_severe_first() {
    let report = &evaluate(&[fixture("centos6")], None)[0];
    let severities: Vec<Severity> = report.findings.iter().map(|f| f.severity).collect();
    let mut sorted = severities.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(severities, sorted);
    assert_eq!(report.worst(), Some(Severity::Block));
}

#[test]
fn facts_of_a_mount_and_kernel_config_serialize_plainly() {
    let f = Facts {
        root: Some(super::facts::RootFacts {
            dir: "/var/lib/docker".into(),
            mount: Some(Mount {
                point: "/".into(),
                fstype: "ext4".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        kernel_config: Some(KernelConfig::default()),
        ..Facts::new("h")
    };
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(v["root"]["mount"]["fstype"], "ext4");
    assert_eq!(v["host"], "h");
    assert!(v.get("unreachable").is_none());
}
