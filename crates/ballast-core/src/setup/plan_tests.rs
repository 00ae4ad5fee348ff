use super::*;
use crate::doctor::parse::os_release;

const BOOKWORM: &str = "20.10.24+dfsg1-1+deb12u1";

fn debian() -> Observed {
    Observed {
        os: os_release(
            "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        ),
        ..Observed::default()
    }
}

/// A bookworm host as setup leaves it: engine pinned, held, settings read.
fn settled() -> Observed {
    let settings = super::daemon::wanted(&daemon::Current::default()).unwrap();
    Observed {
        installed: Some(BOOKWORM.into()),
        held: true,
        daemon_json: settings,
        daemon_args: "dockerd".into(),
        engine: Some(EngineSeen {
            version: "20.10.24+dfsg1".into(),
            swarm: false,
        }),
        ..debian()
    }
}

fn pinned(version: &str) -> Wanted<'_> {
    Wanted {
        version: Some(version),
        engine: true,
        ..Wanted::default()
    }
}

/// What `doctor --fix` asks: settings only.
fn settings_only() -> Wanted<'static> {
    Wanted::default()
}

fn kinds(p: &HostPlan) -> Vec<&'static str> {
    p.steps
        .iter()
        .map(|s| match s {
            Step::WriteSettings { .. } => "write settings",
            Step::ReloadEngine => "reload",
            Step::Install { .. } => "install",
            Step::Hold { .. } => "hold",
            Step::StartEngine => "start",
            Step::RestartEngine => "restart",
            Step::TrustRegistry { .. } => "trust registry",
            Step::SettleNewEngine => "settle new engine",
        })
        .collect()
}

#[test]
fn a_host_without_docker_gets_the_pinned_engine_then_its_settings() {
    let seen = Observed {
        available: vec![BOOKWORM.into(), "20.10.24+dfsg1-1".into()],
        ..debian()
    };
    let p = plan("h1", &seen, &pinned(BOOKWORM));
    assert_eq!(kinds(&p), ["install", "hold", "settle new engine"]);
    assert_eq!(
        p.steps[0],
        Step::Install {
            packages: vec![("docker.io".into(), BOOKWORM.into())],
            replacing: None
        }
    );
    assert!(needs_catalog(None, false, &pinned(BOOKWORM)));
}

#[test]
fn the_client_is_installed_with_the_engine_where_it_is_apart() {
    let trixie = "26.1.5+dfsg1-9+deb13u1+b1";
    let seen = Observed {
        available: vec![trixie.into()],
        client_available: vec!["26.1.5+dfsg1-9+deb13u1".into()],
        ..debian()
    };
    let p = plan("h1", &seen, &pinned(trixie));
    assert_eq!(
        p.steps[0],
        Step::Install {
            packages: vec![
                ("docker.io".into(), trixie.into()),
                ("docker-cli".into(), "26.1.5+dfsg1-9+deb13u1".into())
            ],
            replacing: None
        }
    );
    assert_eq!(
        p.steps[1],
        Step::Hold {
            packages: vec!["docker.io".into(), "docker-cli".into()]
        }
    );
    // A client of no matching version is refused before any change.
    let seen = Observed {
        client_available: vec!["27.0".into()],
        ..seen
    };
    assert!(matches!(
        plan("h1", &seen, &pinned(trixie)).refusal,
        Some(Refusal::VersionUnavailable { .. })
    ));
}

#[test]
fn a_second_run_changes_nothing() {
    let p = plan("h1", &settled(), &pinned(BOOKWORM));
    assert!(p.is_settled(), "{p:?}");
    assert!(!needs_catalog(Some(BOOKWORM), true, &pinned(BOOKWORM)));
}

#[test]
fn another_version_is_reported_and_left_without_upgrade() {
    let p = plan("h1", &settled(), &pinned("26.1.5+dfsg1-9+deb13u1+b1"));
    assert!(p.steps.is_empty());
    assert_eq!(
        p.notices,
        [Notice::VersionDiffers {
            installed: BOOKWORM.into(),
            pinned: "26.1.5+dfsg1-9+deb13u1+b1".into()
        }]
    );
    assert!(!needs_catalog(Some(BOOKWORM), true, &pinned("26.1.5")));
}

#[test]
fn upgrade_reloads_live_restore_then_restarts_the_engine_on_the_new_version() {
    let mut seen = settled();
    seen.daemon_json = None;
    seen.available = vec!["20.10.24+dfsg1-1".into(), BOOKWORM.into()];
    let wanted = Wanted {
        version: Some("20.10.24+dfsg1-1"),
        engine: true,
        upgrade: true,
        restart: false,
        registry_ca: None,
        lock_dir: None,
    };
    assert!(needs_catalog(Some(BOOKWORM), true, &wanted));
    let p = plan("h1", &seen, &wanted);
    assert_eq!(
        kinds(&p),
        ["write settings", "reload", "install", "hold", "restart"]
    );
    assert!(matches!(&p.steps[2], Step::Install { replacing: Some(v), .. } if v == BOOKWORM));
}

#[test]
fn a_version_the_registry_lacks_is_refused_naming_what_it_has() {
    let seen = Observed {
        available: vec![BOOKWORM.into()],
        ..debian()
    };
    let p = plan("h1", &seen, &pinned("99.0"));
    assert!(p.steps.is_empty());
    assert_eq!(
        p.refusal,
        Some(Refusal::VersionUnavailable {
            pinned: "99.0".into(),
            available: vec![BOOKWORM.into()],
            listing: "apt-cache madison docker.io".into()
        })
    );
}

#[test]
fn an_unknown_distribution_is_refused_when_a_version_is_pinned() {
    let mut seen = settled();
    seen.os = os_release("ID=plan9\n");
    seen.installed = None;
    let p = plan("h1", &seen, &pinned(BOOKWORM));
    assert!(matches!(p.refusal, Some(Refusal::UnknownOs(ref why)) if why.contains("`plan9`")));
    // Without a pin, its engine is left as it is.
    let p = plan(
        "h1",
        &seen,
        &Wanted {
            engine: true,
            ..Wanted::default()
        },
    );
    assert_eq!(p.refusal, None);
    assert!(p.notices.is_empty());
}

#[test]
fn no_engine_and_no_pin_is_refused_naming_the_versions() {
    let seen = Observed {
        available: vec![BOOKWORM.into()],
        ..debian()
    };
    let p = plan(
        "h1",
        &seen,
        &Wanted {
            engine: true,
            ..Wanted::default()
        },
    );
    assert_eq!(
        p.refusal,
        Some(Refusal::NoEngine {
            available: vec![BOOKWORM.into()]
        })
    );
}

#[test]
fn changed_settings_restart_only_with_consent() {
    let mut seen = settled();
    seen.daemon_json = Some("{}".into());
    let p = plan("h1", &seen, &pinned(BOOKWORM));
    assert_eq!(kinds(&p), ["write settings", "reload"]);
    assert_eq!(p.notices, [Notice::RestartPending]);
    let p = plan(
        "h1",
        &seen,
        &Wanted {
            restart: true,
            ..pinned(BOOKWORM)
        },
    );
    assert_eq!(kinds(&p), ["write settings", "reload", "restart"]);
    assert!(p.notices.is_empty());
    // Written by an earlier run and not read yet: still pending.
    let mut seen = settled();
    seen.settings_unread = true;
    assert_eq!(
        plan("h1", &seen, &pinned(BOOKWORM)).notices,
        [Notice::RestartPending]
    );
}

#[test]
fn an_engine_not_from_the_package_is_left_alone() {
    let mut seen = settled();
    seen.installed = None;
    let p = plan("h1", &seen, &pinned(BOOKWORM));
    assert!(p.steps.is_empty());
    assert_eq!(
        p.notices,
        [Notice::ForeignEngine {
            version: "20.10.24+dfsg1".into()
        }]
    );
}

#[test]
fn a_stopped_engine_is_started_and_a_missing_hold_is_made() {
    let mut seen = settled();
    seen.engine = None;
    seen.held = false;
    let p = plan("h1", &seen, &pinned(BOOKWORM));
    assert_eq!(kinds(&p), ["hold", "start"]);
}

#[test]
fn a_broken_settings_file_is_refused() {
    let mut seen = settled();
    seen.daemon_json = Some("{".into());
    let p = plan("h1", &seen, &pinned(BOOKWORM));
    assert!(matches!(p.refusal, Some(Refusal::Settings(_))));
}

#[test]
fn doctor_fix_writes_settings_and_never_touches_the_engine() {
    let mut seen = settled();
    seen.daemon_json = None;
    seen.held = false;
    seen.installed = Some("19.03".into());
    let p = plan("h1", &seen, &settings_only());
    assert_eq!(kinds(&p), ["write settings", "reload"]);
    assert_eq!(p.notices, [Notice::RestartPending]);
    assert!(!needs_catalog(None, false, &settings_only()));
}

#[test]
fn the_registry_ca_is_written_once() {
    let pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
    let wanted = Wanted {
        registry_ca: Some(("r:5000", pem)),
        ..pinned(BOOKWORM)
    };
    let p = plan("h1", &settled(), &wanted);
    assert_eq!(
        p.steps,
        [Step::TrustRegistry {
            server: "r:5000".into(),
            pem: pem.into()
        }]
    );
    let mut seen = settled();
    seen.registry_ca = Some(pem.into());
    assert!(plan("h1", &seen, &wanted).is_settled());
}

#[test]
fn a_docker_not_from_the_package_is_never_replaced_even_stopped() {
    let mut seen = settled();
    seen.installed = None;
    seen.engine = None;
    seen.dockerd_present = true;
    seen.available = vec![BOOKWORM.into()];
    let p = plan("h1", &seen, &pinned(BOOKWORM));
    assert!(!kinds(&p).contains(&"install"), "{p:?}");
    assert!(matches!(p.notices[..], [Notice::ForeignEngine { .. }]));
}

#[test]
fn unread_settings_are_reloaded_before_a_restart() {
    let mut seen = settled();
    seen.settings_unread = true;
    let wanted = Wanted {
        restart: true,
        ..pinned(BOOKWORM)
    };
    assert_eq!(kinds(&plan("h1", &seen, &wanted)), ["reload", "restart"]);
}

#[test]
fn the_engine_is_not_restarted_under_a_held_lock() {
    let mut seen = settled();
    seen.settings_unread = true;
    seen.lock_held = true;
    let wanted = Wanted {
        restart: true,
        ..pinned(BOOKWORM)
    };
    assert_eq!(plan("h1", &seen, &wanted).refusal, Some(Refusal::LockHeld));
    // Without a restart, the lock is no reason to refuse.
    assert_eq!(plan("h1", &seen, &pinned(BOOKWORM)).refusal, None);
}
