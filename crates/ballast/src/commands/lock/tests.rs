//! The lock commands' rows, texts and outcomes; what `lock status`,
//! `lock acquire`, `lock release` and `audit` print is pinned as snapshots
//! (text and `--json`).

use super::*;
use ballast_core::lock::GoneWhy;
use clap::Parser;

use crate::cli::{Cli, Command};

fn held(liveness: Liveness, age: u64) -> HeldLock {
    HeldLock {
        host: "web-1".into(),
        info: Some(LockInfo {
            holder: "ana@laptop".into(),
            pid: 42,
            boot_id: None,
            pid_namespace: None,
            start_time: None,
            command: "deploy --version v2".into(),
            message: Some("hotfix".into()),
            since: "2026-11-22T18:00:00Z".into(),
            token: "0123456789abcdef0123456789abcdef".into(),
            manual: false,
        }),
        lease_age_secs: age,
        liveness,
    }
}

fn rows() -> Vec<Row> {
    sorted(vec![
        Row::Unreachable {
            host: "10.0.0.9".into(),
            error: "connect over SSH: timed out".into(),
        },
        Row::Held {
            host: "web-1".into(),
            lock: View::from(&held(Liveness::Alive, 3)),
        },
        Row::Free { host: "db".into() },
    ])
}

#[test]
fn status_shows_each_host_and_where_the_lock_lives() {
    assert_eq!(
        status_text("shop", &rows()),
        "10.0.0.9  did not answer: connect over SSH: timed out\n\
         db        free\n\
         web-1     held by ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42): hotfix, token 01234567: alive (lease renewed 3s ago)\n\
         the lock of shop is held on 1 of 3 hosts; 1 did not answer\n\
         it lives on every host of the service, in /var/lib/ballast/shop/lock/: it cannot move when roles are added, renamed or reordered, and two commands that touch a common host conflict there\n"
    );
    let free = [Row::Free { host: "a".into() }];
    assert!(status_text("shop", &free).contains("the lock of shop is free on 1 of 1 host\n"));
}

#[test]
fn status_json_is_structured_and_never_holds_the_full_token() {
    let json = serde_json::to_value(rows()).unwrap();
    assert_eq!(json[0]["state"], "unreachable");
    assert_eq!(json[1], serde_json::json!({"state": "free", "host": "db"}));
    assert_eq!(
        json[2],
        serde_json::json!({
            "state": "held", "host": "web-1", "holder": "ana@laptop", "pid": 42,
            "command": "deploy --version v2", "message": "hotfix",
            "since": "2026-11-22T18:00:00Z", "token_prefix": "01234567", "manual": false,
            "lease_age_secs": 3, "liveness": {"state": "alive"},
            "says": "alive (lease renewed 3s ago)"
        })
    );
    assert!(!json.to_string().contains("0123456789abcdef"));
}

#[test]
fn a_release_without_token_names_every_holder_and_its_liveness() {
    let gone = Liveness::Gone {
        why: GoneWhy::NotRunning { pid: 42 },
    };
    let rows = [
        Row::Free { host: "db".into() },
        Row::Held {
            host: "web-1".into(),
            lock: View::from(&held(gone, 30)),
        },
    ];
    let e = refuse("shop", &rows).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(e.cause, "the lock of shop is held:\n  web-1: held by ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42): hotfix, token 01234567: gone (pid 42 no longer runs on this machine)");
    assert!(e
        .hint
        .unwrap()
        .starts_with("its holder is gone: the next deploy"));
    let alive = [Row::Held {
        host: "web-1".into(),
        lock: View::from(&held(Liveness::Alive, 3)),
    }];
    let hint = refuse("shop", &alive).unwrap_err().hint.unwrap();
    assert!(
        hint.starts_with("give the token its holder printed"),
        "{hint}"
    );
    assert!(refuse("shop", &rows[..1]).is_ok());
}

#[test]
fn a_release_says_what_it_removed_and_fails_on_refusals_and_silent_hosts() {
    let expired = View::from(&held(Liveness::LeaseExpired { for_secs: 95 }, 95));
    let mut rows = vec![
        Row::Removed {
            host: "web-1".into(),
            lock: expired,
        },
        Row::Free {
            host: "web-2".into(),
        },
    ];
    assert_eq!(
        release_text("shop", &rows),
        "web-1  released: it was held by ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42): hotfix, token 01234567: probably gone (it stopped renewing its lease 95s ago)\n\
         web-2  free\n\
         released the lock of shop on 1 of 2 hosts\n"
    );
    assert!(release_outcome("shop", &rows).is_ok());
    rows.push(Row::Unreachable {
        host: "web-3".into(),
        error: "x".into(),
    });
    let e = release_outcome("shop", &rows).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable);
    assert_eq!(
        e.cause,
        "the lock of shop may still be held on web-3, which did not answer"
    );
    rows.push(Row::Refused {
        host: "web-4".into(),
        error: "held by bob".into(),
    });
    assert_eq!(
        release_outcome("shop", &rows).unwrap_err().kind,
        ErrorKind::Conflict
    );
}

#[test]
fn release_takes_a_token_or_force_but_not_both() {
    let parse = |args: &[&str]| {
        let cli = Cli::try_parse_from([&["ballast", "lock"], args].concat())?;
        match cli.command {
            Command::Lock(c) => Ok::<_, clap::Error>(c),
            other => panic!("parsed as {other:?}"),
        }
    };
    assert!(matches!(
        parse(&["release", "--token", "abc"]).unwrap(),
        LockCommand::Release { token: Some(t), force: false } if t == "abc"
    ));
    assert!(matches!(
        parse(&["release", "--force"]).unwrap(),
        LockCommand::Release {
            token: None,
            force: true
        }
    ));
    assert!(parse(&["release", "--token", "abc", "--force"]).is_err());
    assert!(matches!(
        parse(&["acquire", "-m", "disk swap"]).unwrap(),
        LockCommand::Acquire { message: Some(m) } if m == "disk swap"
    ));
}

/// A lock as a host has it: `held` with another holder, note and token.
fn other(holder: &str, pid: u32, command: &str, message: Option<&str>, token: &str) -> LockInfo {
    let mut info = held(Liveness::Alive, 0).info.unwrap();
    info.holder = holder.into();
    info.pid = pid;
    info.command = command.into();
    info.message = message.map(str::to_string);
    info.token = token.into();
    info
}

/// The maintenance lock `ballast lock acquire -m "disk swap"` took.
fn maintenance() -> HeldLock {
    let info = other(
        "ops@bastion",
        977,
        "lock acquire",
        Some("disk swap"),
        "89abcdef0123456789abcdef01234567",
    )
    .manual();
    HeldLock {
        host: "ops-1".into(),
        info: Some(info),
        lease_age_secs: 3600,
        liveness: Liveness::Manual,
    }
}

/// A deploy holds the lock on web-1 and web-2; db-1 keeps one of a deploy
/// killed on another machine; cache-1 has one whose record is not written
/// yet; ops-1 is locked for maintenance; 10.0.0.9 did not answer.
fn fleet_rows() -> Vec<Row> {
    let killed = HeldLock {
        host: "db-1".into(),
        info: Some(other(
            "bob@ci",
            7,
            "deploy --version v3",
            None,
            "fedcba9876543210fedcba9876543210",
        )),
        lease_age_secs: 95,
        liveness: Liveness::LeaseExpired { for_secs: 95 },
    };
    let unrecorded = HeldLock {
        host: "cache-1".into(),
        info: None,
        lease_age_secs: 2,
        liveness: Liveness::Alive,
    };
    sorted(vec![
        Row::Held {
            host: "web-2".into(),
            lock: View::from(&held(Liveness::Alive, 4)),
        },
        Row::Held {
            host: "web-1".into(),
            lock: View::from(&held(Liveness::Alive, 3)),
        },
        Row::Held {
            host: "db-1".into(),
            lock: View::from(&killed),
        },
        Row::Held {
            host: "cache-1".into(),
            lock: View::from(&unrecorded),
        },
        Row::Held {
            host: "ops-1".into(),
            lock: View::from(&maintenance()),
        },
        Row::Unreachable {
            host: "10.0.0.9".into(),
            error: "connect over SSH: no answer within 15s".into(),
        },
    ])
}

#[test]
fn lock_status_snapshots() {
    let rows = fleet_rows();
    insta::assert_snapshot!("lock_status_held", status_text("shop", &rows));
    insta::assert_json_snapshot!(
        "lock_status_held_json",
        crate::output::result_json(&status_json("shop", &rows))
    );
    let free = [
        Row::Free {
            host: "db-1".into(),
        },
        Row::Free {
            host: "web-1".into(),
        },
    ];
    insta::assert_snapshot!("lock_status_free", status_text("shop", &free));
}

#[test]
fn lock_acquire_and_release_snapshots() {
    let info = maintenance().info.unwrap();
    let hosts = vec!["ops-1".to_string(), "ops-2".to_string()];
    insta::assert_snapshot!("lock_acquire", acquired_text("shop", &hosts, &info));
    insta::assert_json_snapshot!(
        "lock_acquire_json",
        crate::output::result_json(&acquired_json("shop", &hosts, &info))
    );

    let rows = sorted(vec![
        Row::Removed {
            host: "ops-1".into(),
            lock: View::from(&maintenance()),
        },
        Row::Refused {
            host: "web-2".into(),
            error: "the token given does not hold the lock of shop on web-2: it is held by bob@ci since 2026-11-22T18:05:00Z for `deploy --version v3` (pid 7) — alive (it renews its lease)".into(),
        },
        Row::Free {
            host: "ops-2".into(),
        },
    ]);
    let mut shown = release_text("shop", &rows);
    let e = release_outcome("shop", &rows).unwrap_err();
    shown.push_str(&format!("--- stderr\n{}", crate::output::error_text(&e)));
    insta::assert_snapshot!("lock_release_refused_on_a_host", shown);
    insta::assert_json_snapshot!(
        "lock_release_json",
        crate::output::result_json(&release_json("shop", &rows))
    );
}

#[test]
fn a_release_without_token_shows_the_holders() {
    let rows = fleet_rows();
    let e = refuse("shop", &rows).unwrap_err();
    insta::assert_snapshot!(crate::output::error_text(&e));
}

fn record(
    at: &str,
    command: &str,
    version: Option<&str>,
    hosts: &[&str],
    outcome: &str,
) -> AuditRecord {
    AuditRecord {
        at: at.into(),
        who: "ana@laptop".into(),
        command: command.into(),
        version: version.map(str::to_string),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        outcome: outcome.into(),
        forced_unsafe: Vec::new(),
        skipped: Vec::new(),
        took_over: Vec::new(),
    }
}

#[test]
fn audit_snapshots() {
    let mut forced = record(
        "2026-11-22T18:07:41Z",
        "deploy --version v3 --force-unsafe-host web-2",
        Some("v3"),
        &["web-1", "web-2"],
        "ok",
    );
    forced.forced_unsafe = vec!["web-2 (log-no-rotation)".into()];
    forced.took_over = vec![
        "took over the lock on web-1 from ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42), whose holder is gone: pid 42 no longer runs on this machine".into(),
    ];
    let mut skipped = record(
        "2026-11-22T18:20:05Z",
        "rollback --skip-unreachable",
        Some("v2"),
        &["web-1"],
        "ok",
    );
    skipped.skipped = vec!["web-2".into()];
    let records = vec![
        record(
            "2026-11-20T09:15:03Z",
            "deploy --version v2",
            Some("v2"),
            &["web-1", "web-2"],
            "ok",
        ),
        record(
            "2026-11-22T18:02:10Z",
            "deploy --version v3",
            Some("v3"),
            &["web-1", "web-2"],
            "failed: web-2: wait until shop-web-v3 is healthy: GET /up answered 503 for 30s",
        ),
        forced,
        record(
            "2026-11-22T18:15:00Z",
            "lock acquire",
            None,
            &["web-1"],
            "ok: took the lock for maintenance: disk swap",
        ),
        skipped,
    ];
    insta::assert_snapshot!("audit_text", render_audit(&records));
    insta::assert_json_snapshot!(
        "audit_json",
        crate::output::result_json(&audit_json(&records))
    );
    insta::assert_snapshot!("audit_empty", render_audit(&[]));
}
