//! Real `docker info` answers (the engine API's `/info`, captured from lab
//! hosts by `crates/ballast/tests/e2e/engines.rs`) of every engine the lab
//! runs: Debian bookworm's Docker 20.10, trixie's 26.1 and sid's 28.5, the
//! last also on the containerd image store. Each is read as doctor reads
//! it, then judged as a host: its facts come out right and no rule
//! misreads a newer engine.

use std::collections::BTreeSet;

use bollard::models::SystemInfo;

use super::facts::{EngineInfo, Facts, ImageStore, Os};
use super::{evaluate, parse};

/// `fixtures/docker-info/NAME.json`, read as doctor reads `docker info`.
fn engine(name: &str) -> EngineInfo {
    let text = match name {
        "bookworm-classic" => include_str!("fixtures/docker-info/bookworm-classic.json"),
        "trixie-classic" => include_str!("fixtures/docker-info/trixie-classic.json"),
        "sid-classic" => include_str!("fixtures/docker-info/sid-classic.json"),
        "sid-containerd" => include_str!("fixtures/docker-info/sid-containerd.json"),
        other => panic!("no fixture {other}"),
    };
    let info: SystemInfo = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("fixtures/docker-info/{name}.json: {e}"));
    parse::engine_info(info)
}

/// A lab host running `engine`: Debian, the machine's kernel, nothing else
/// known, so only what the engine says can make rules fire.
fn host(name: &str, pretty: &str, version_id: &str) -> Facts {
    Facts {
        kernel: Some("6.18.0".into()),
        os: Some(Os {
            id: "debian".into(),
            version_id: version_id.into(),
            id_like: vec![],
            pretty_name: pretty.into(),
        }),
        engine: Some(engine(name)),
        ..Facts::new(name)
    }
}

fn fired(facts: &Facts) -> BTreeSet<&'static str> {
    evaluate(std::slice::from_ref(facts), None)[0]
        .findings
        .iter()
        .map(|f| f.rule)
        .collect()
}

/// What doctor must read from one fixture.
struct Expected {
    name: &'static str,
    version: &'static str,
    driver: &'static str,
    backing_fs: Option<&'static str>,
    store: ImageStore,
}

#[test]
fn every_engine_is_read_with_its_version_cgroups_and_image_store() {
    let classic = |name, version| Expected {
        name,
        version,
        driver: "overlay2",
        backing_fs: Some("extfs"),
        store: ImageStore::Classic,
    };
    let all = [
        classic("bookworm-classic", "20.10.24+dfsg1"),
        classic("trixie-classic", "26.1.5+dfsg1"),
        classic("sid-classic", "28.5.2+dfsg4"),
        Expected {
            name: "sid-containerd",
            version: "28.5.2+dfsg4",
            // The snapshotter stands where the graph driver was.
            driver: "overlayfs",
            backing_fs: None,
            store: ImageStore::Containerd,
        },
    ];
    for x in all {
        let e = engine(x.name);
        assert_eq!(e.server_version.as_deref(), Some(x.version), "{}", x.name);
        assert_eq!(e.driver.as_deref(), Some(x.driver), "{}", x.name);
        assert_eq!(e.backing_fs(), x.backing_fs, "{}", x.name);
        assert_eq!(e.image_store, Some(x.store), "{}", x.name);
        assert_eq!(e.containerd_store(), x.store == ImageStore::Containerd);
        // The machine the fixtures come from boots cgroup v1.
        assert_eq!(e.cgroup_version.as_deref(), Some("1"), "{}", x.name);
        assert_eq!(e.cgroup_driver.as_deref(), Some("cgroupfs"), "{}", x.name);
        assert!(e.security_option("seccomp").is_some(), "{}", x.name);
    }
}

#[test]
fn no_rule_misreads_a_newer_engine_or_the_containerd_store() {
    let bookworm = ("Debian GNU/Linux 12 (bookworm)", "12");
    let trixie = ("Debian GNU/Linux 13 (trixie)", "13");
    // sid's os-release has no VERSION_ID.
    let sid = ("Debian GNU/Linux forky/sid", "");
    // What every lab host shows: the machine's cgroup v1, dockerd started
    // by hand without daemon settings.
    let every = [
        "cgroup-v1",
        "live-restore-off",
        "log-no-rotation",
        "no-default-init",
    ];
    let cases = [
        ("bookworm-classic", bookworm, &["engine-unmaintained"][..]),
        ("trixie-classic", trixie, &["engine-unmaintained"][..]),
        ("sid-classic", sid, &["distribution-unsupported"][..]),
        ("sid-containerd", sid, &["distribution-unsupported"][..]),
    ];
    for (name, (pretty, version), own) in cases {
        let facts = host(name, pretty, version);
        let expected: BTreeSet<&str> = every.iter().chain(own).copied().collect();
        assert_eq!(fired(&facts), expected, "{name}");
        let report = &evaluate(&[facts], None)[0];
        assert!(!report.blocks(), "{name}: {report:?}");
    }
    let about = evaluate(&[host("sid-containerd", sid.0, sid.1)], None)[0]
        .about
        .clone();
    assert_eq!(
        about,
        "Debian GNU/Linux forky/sid, kernel 6.18.0, Docker 28.5.2+dfsg4, overlayfs, containerd image store"
    );
}
