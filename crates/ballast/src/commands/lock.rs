//! `ballast lock status|acquire|release` and `ballast audit`. The deploy lock
//! lives on every host of the service (see `ballast_core::lock`), so each
//! lock command works on all of them and reports per host; the audit log is
//! read from the primary host.

use std::path::Path;
use std::sync::Arc;

use ballast_core::config::Loaded;
use ballast_core::fleet::Fleet;
use ballast_core::lock::{self, FleetLock, HeldLock, Liveness, LockInfo};
use ballast_core::state::{self, AuditRecord};
use ballast_core::{Error, ErrorKind, Result};
use futures_util::{stream, StreamExt};
use serde::Serialize;

use crate::cli::LockCommand;
use crate::commands::service;
use crate::output::Printer;

pub async fn run(
    config: &Path,
    accept_new: bool,
    command: LockCommand,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    match command {
        LockCommand::Status => status(&loaded, accept_new, out).await,
        LockCommand::Acquire { message } => acquire(&loaded, accept_new, message, out).await,
        LockCommand::Release { token, force } => {
            let how = match (token, force) {
                (Some(token), _) => How::Token(token),
                (None, true) => How::Force,
                (None, false) => How::Refuse,
            };
            release(&loaded, accept_new, how, out).await
        }
    }
}

/// What one host said about its lock.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Row {
    Free {
        host: String,
    },
    Held {
        host: String,
        #[serde(flatten)]
        lock: View,
    },
    /// Released by this command.
    Removed {
        host: String,
        #[serde(flatten)]
        lock: View,
    },
    /// Held under another token: left in place.
    Refused {
        host: String,
        error: String,
    },
    /// The host did not answer, or a step on it failed.
    Unreachable {
        host: String,
        error: String,
    },
}

/// A held lock as shown: everything but the full token, which releases it.
#[derive(Debug, Serialize)]
struct View {
    holder: Option<String>,
    pid: Option<u32>,
    command: Option<String>,
    message: Option<String>,
    since: Option<String>,
    token_prefix: Option<String>,
    manual: bool,
    lease_age_secs: u64,
    liveness: Liveness,
    /// The liveness in words.
    says: String,
    #[serde(skip)]
    describe: String,
}

impl From<&HeldLock> for View {
    fn from(held: &HeldLock) -> View {
        let info = held.info.as_ref();
        View {
            holder: info.map(|i| i.holder.clone()),
            pid: info.map(|i| i.pid),
            command: info.map(|i| i.command.clone()),
            message: info.and_then(|i| i.message.clone()),
            since: info.map(|i| i.since.clone()),
            token_prefix: info.map(|i| i.token_prefix().to_string()),
            manual: info.is_some_and(|i| i.manual),
            lease_age_secs: held.lease_age_secs,
            liveness: held.liveness,
            says: liveness_words(held),
            describe: held.describe(),
        }
    }
}

impl View {
    /// "held by … (pid 42), token 01234567: alive (lease renewed 3s ago)".
    fn line(&self) -> String {
        match &self.token_prefix {
            Some(t) if !t.is_empty() => format!("{}, token {t}: {}", self.describe, self.says),
            _ => format!("{}: {}", self.describe, self.says),
        }
    }
}

fn liveness_words(held: &HeldLock) -> String {
    match held.liveness {
        Liveness::Alive => format!("alive (lease renewed {}s ago)", held.lease_age_secs),
        other => other.to_string(),
    }
}

impl Row {
    fn host(&self) -> &str {
        match self {
            Row::Free { host }
            | Row::Held { host, .. }
            | Row::Removed { host, .. }
            | Row::Refused { host, .. }
            | Row::Unreachable { host, .. } => host,
        }
    }

    fn text(&self) -> String {
        match self {
            Row::Free { .. } => "free".into(),
            Row::Held { lock, .. } => lock.line(),
            Row::Removed { lock, .. } => format!("released: it was {}", lock.line()),
            Row::Refused { error, .. } => format!("refused: {error}"),
            Row::Unreachable { error, .. } => format!("did not answer: {error}"),
        }
    }

    fn unreachable(e: &Error) -> Row {
        Row::Unreachable {
            host: e.host.clone().unwrap_or_default(),
            error: without_host(e),
        }
    }
}

/// An error's text without its leading host, which the row already shows.
fn without_host(e: &Error) -> String {
    format!("{}: {}", e.step, e.cause)
}

/// One line per host, host names aligned, sorted by host.
fn table(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.host().len()).max().unwrap_or(0);
    rows.iter()
        .map(|r| format!("{:<width$}  {}\n", r.host(), r.text()))
        .collect()
}

/// The rows of hosts that did not connect, to list beside the others.
fn unreachable_rows(fleet: &Fleet) -> Vec<Row> {
    fleet.unreachable.iter().map(Row::unreachable).collect()
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| a.host().cmp(b.host()));
    rows
}

async fn status(loaded: &Loaded, accept_new: bool, out: &Printer) -> Result<()> {
    let service = &loaded.config.service;
    let fleet = service::fleet(loaded, accept_new).await;
    let read = fleet.each(|h| lock::read(h, service)).await;
    let mut rows = unreachable_rows(&fleet);
    fleet.close().await;
    for (host, result) in read {
        rows.push(match result {
            Ok(None) => Row::Free { host },
            Ok(Some(held)) => Row::Held {
                host,
                lock: View::from(&held),
            },
            Err(e) => Row::unreachable(&e),
        });
    }
    let rows = sorted(rows);
    let held = rows.iter().any(|r| matches!(r, Row::Held { .. }));
    out.result(
        &serde_json::json!({
            "service": service,
            "held": held,
            "location": lock::lock_location(service),
            "hosts": rows,
        }),
        &status_text(service, &rows),
    );
    Ok(())
}

fn status_text(service: &str, rows: &[Row]) -> String {
    let count = |f: fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count();
    let held = count(|r| matches!(r, Row::Held { .. }));
    let silent = count(|r| matches!(r, Row::Unreachable { .. }));
    let mut text = table(rows);
    text.push_str(&match held {
        0 => format!(
            "the lock of {service} is free on {} of {}",
            rows.len() - silent,
            hosts(rows.len())
        ),
        n => format!(
            "the lock of {service} is held on {n} of {}",
            hosts(rows.len())
        ),
    });
    if silent > 0 {
        text.push_str(&format!("; {silent} did not answer"));
    }
    text.push_str(&format!("\nit lives {}\n", lock::lock_location(service)));
    text
}

/// "1 host", "3 hosts".
fn hosts(n: usize) -> String {
    match n {
        1 => "1 host".into(),
        n => format!("{n} hosts"),
    }
}

async fn acquire(
    loaded: &Loaded,
    accept_new: bool,
    message: Option<String>,
    out: &Printer,
) -> Result<()> {
    let fleet = Arc::new(service::fleet(loaded, accept_new).await);
    let result = take(loaded, &fleet, message, out).await;
    if let Ok(fleet) = Arc::try_unwrap(fleet) {
        fleet.close().await;
    }
    result
}

/// Takes the lock for maintenance on every host, or on none.
async fn take(
    loaded: &Loaded,
    fleet: &Arc<Fleet>,
    message: Option<String>,
    out: &Printer,
) -> Result<()> {
    let service = &loaded.config.service;
    fleet.require_all("connect to the hosts")?;
    let info = LockInfo::new("lock acquire", message.clone())?.manual();
    let took = match &message {
        Some(m) => format!("ok: took the lock for maintenance: {m}"),
        None => "ok: took the lock for maintenance".to_string(),
    };
    let hosts: Vec<String> = fleet.hosts.keys().cloned().collect();
    let taken = FleetLock::acquire(fleet, &hosts, service, info, fleet.concurrency).await?;
    let info = taken.info().clone();
    let concerning: Vec<(String, String)> = hosts
        .iter()
        .map(|h| {
            let outcome = match taken.takeovers().iter().find(|t| &t.host == h) {
                Some(t) => {
                    out.progress(Some(h), &format!("warning: {}", t.describe()));
                    format!("{took}; {}", t.describe())
                }
                None => took.clone(),
            };
            (h.clone(), outcome)
        })
        .collect();
    // A manual lock is never renewed: dropping it leaves it on the hosts.
    drop(taken);
    audit_each(fleet, loaded, "lock acquire", concerning, out).await;
    let text = format!(
        "took the lock of {service} on {} for maintenance: {}\ntoken: {}\n\
         nothing renews it and no command takes it over: it stays until \
         `ballast lock release --token {}` (or `--force`)\n",
        self::hosts(hosts.len()),
        hosts.join(", "),
        info.token,
        info.token
    );
    out.result(
        &serde_json::json!({"service": service, "hosts": hosts, "token": info.token, "lock": info}),
        &text,
    );
    Ok(())
}

/// How `lock release` was asked to release.
enum How {
    /// Only a lock held under this token.
    Token(String),
    /// Whoever holds it.
    Force,
    /// Neither: say who holds it, and refuse.
    Refuse,
}

impl How {
    fn command(&self) -> &'static str {
        match self {
            How::Token(_) => "lock release --token",
            How::Force => "lock release --force",
            How::Refuse => "lock release",
        }
    }
}

async fn release(loaded: &Loaded, accept_new: bool, how: How, out: &Printer) -> Result<()> {
    let fleet = service::fleet(loaded, accept_new).await;
    let result = release_on(loaded, &fleet, &how, out).await;
    fleet.close().await;
    result
}

async fn release_on(loaded: &Loaded, fleet: &Fleet, how: &How, out: &Printer) -> Result<()> {
    let service = &loaded.config.service;
    let done = fleet
        .each(|h| async move {
            match how {
                How::Token(token) => lock::release(h, service, token).await,
                How::Force => lock::force_release(h, service).await,
                How::Refuse => lock::read(h, service).await,
            }
        })
        .await;
    let mut rows = unreachable_rows(fleet);
    for (host, result) in done {
        rows.push(match (result, how) {
            (Ok(None), _) => Row::Free { host },
            (Ok(Some(held)), How::Refuse) => Row::Held {
                host,
                lock: View::from(&held),
            },
            (Ok(Some(held)), _) => Row::Removed {
                host,
                lock: View::from(&held),
            },
            (Err(e), _) if e.kind == ErrorKind::Conflict => Row::Refused {
                host,
                error: e.cause,
            },
            (Err(e), _) => Row::unreachable(&e),
        });
    }
    let rows = sorted(rows);
    if let How::Refuse = how {
        return refuse(service, &rows);
    }
    let removed: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Removed { host, lock } => Some((
                host.clone(),
                format!("ok: removed the lock {}", lock.line()),
            )),
            _ => None,
        })
        .collect();
    audit_each(fleet, loaded, how.command(), removed, out).await;
    out.result(
        &serde_json::json!({"service": service, "hosts": rows}),
        &release_text(service, &rows),
    );
    release_outcome(service, &rows)
}

/// Without token or --force: fine if the lock is free everywhere, else a
/// conflict naming every holder.
fn refuse(service: &str, rows: &[Row]) -> Result<()> {
    let held: Vec<(&String, &View)> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Held { host, lock } => Some((host, lock)),
            _ => None,
        })
        .collect();
    if held.is_empty() {
        return release_outcome(service, rows);
    }
    let lines: Vec<String> = held
        .iter()
        .map(|(host, lock)| format!("  {host}: {}", lock.line()))
        .collect();
    let all_gone = held
        .iter()
        .all(|(_, lock)| matches!(lock.liveness, Liveness::Gone { .. }));
    let hint = match all_gone {
        true => "its holder is gone: the next deploy from this machine takes it over by itself, or remove it now with `--force`",
        false => "give the token its holder printed (`--token TOKEN`); or, after checking with `ballast lock status` that the holder is gone, remove it with `--force`",
    };
    Err(Error::new(
        ErrorKind::Conflict,
        "release the deploy lock",
        format_args!("the lock of {service} is held:\n{}", lines.join("\n")),
    )
    .hint(hint))
}

fn release_text(service: &str, rows: &[Row]) -> String {
    let removed = rows
        .iter()
        .filter(|r| matches!(r, Row::Removed { .. }))
        .count();
    format!(
        "{}released the lock of {service} on {removed} of {}\n",
        table(rows),
        hosts(rows.len())
    )
}

/// A refusal is a conflict (exit code 4); a host that did not answer may
/// still hold the lock (exit code 5).
fn release_outcome(service: &str, rows: &[Row]) -> Result<()> {
    let hosts = |f: fn(&Row) -> bool| -> Vec<&str> {
        rows.iter().filter(|r| f(r)).map(Row::host).collect()
    };
    let refused = hosts(|r| matches!(r, Row::Refused { .. }));
    if !refused.is_empty() {
        return Err(Error::new(
            ErrorKind::Conflict,
            "release the deploy lock",
            format_args!("the lock of {service} on {} is held under another token", refused.join(", ")),
        )
        .hint("check who holds it with `ballast lock status`; only its holder's token or `--force` releases it"));
    }
    let silent = hosts(|r| matches!(r, Row::Unreachable { .. }));
    if !silent.is_empty() {
        return Err(Error::new(
            ErrorKind::Unreachable,
            "release the deploy lock",
            format_args!(
                "the lock of {service} may still be held on {}, which did not answer",
                silent.join(", ")
            ),
        )
        .hint("run the same `ballast lock release` again once they answer"));
    }
    Ok(())
}

/// Appends one audit record per host, naming what happened there; a
/// record that cannot be written is a warning, not a failure.
async fn audit_each(
    fleet: &Fleet,
    loaded: &Loaded,
    command: &str,
    outcomes: Vec<(String, String)>,
    out: &Printer,
) {
    let service = &loaded.config.service;
    let writes = outcomes.into_iter().map(|(host, outcome)| async move {
        let record = AuditRecord {
            at: state::now_rfc3339(),
            who: state::whoami(),
            command: command.to_string(),
            version: None,
            hosts: vec![host.clone()],
            outcome,
            forced_unsafe: Vec::new(),
            skipped: Vec::new(),
            took_over: Vec::new(),
        };
        let written = match fleet.get(&host) {
            Some(h) => state::append_audit(h, service, &record).await,
            None => Ok(()),
        };
        (host, written)
    });
    let written: Vec<(String, Result<()>)> = stream::iter(writes)
        .buffer_unordered(fleet.concurrency.max(1))
        .collect()
        .await;
    for (host, result) in written {
        if let Err(e) = result {
            out.progress(
                Some(&host),
                &format!("warning: audit log not written: {}", e.cause),
            );
        }
    }
}

pub async fn audit(config: &Path, accept_new: bool, tail: usize, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let fleet = service::primary(&loaded, accept_new).await?;
    let primary = fleet.primary().expect("connected");
    let records = state::read_audit(primary, &loaded.config.service, tail).await;
    fleet.close().await;
    let records = records?;
    let mut text = String::new();
    for r in &records {
        text.push_str(&format!(
            "{} {} `{}` version={} hosts={} -> {}\n",
            r.at,
            r.who,
            r.command,
            r.version.as_deref().unwrap_or("-"),
            r.hosts.join(","),
            r.outcome
        ));
    }
    if records.is_empty() {
        text.push_str("the audit log is empty\n");
    }
    out.result(&serde_json::json!({"records": records}), &text);
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
