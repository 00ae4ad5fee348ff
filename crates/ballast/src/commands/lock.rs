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
    out.result(&status_json(service, &rows), &status_text(service, &rows));
    Ok(())
}

fn status_json(service: &str, rows: &[Row]) -> serde_json::Value {
    let held = rows.iter().any(|r| matches!(r, Row::Held { .. }));
    serde_json::json!({
        "service": service,
        "held": held,
        "location": lock::lock_location(service),
        "hosts": rows,
    })
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
    out.result(
        &acquired_json(service, &hosts, &info),
        &acquired_text(service, &hosts, &info),
    );
    Ok(())
}

/// The lock taken for maintenance, and the token that releases it.
fn acquired_text(service: &str, hosts: &[String], info: &LockInfo) -> String {
    format!(
        "took the lock of {service} on {} for maintenance: {}\ntoken: {}\n\
         nothing renews it and no command takes it over: it stays until \
         `ballast lock release --token {}` (or `--force`)\n",
        self::hosts(hosts.len()),
        hosts.join(", "),
        info.token,
        info.token
    )
}

fn acquired_json(service: &str, hosts: &[String], info: &LockInfo) -> serde_json::Value {
    serde_json::json!({"service": service, "hosts": hosts, "token": info.token, "lock": info})
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
    out.result(&release_json(service, &rows), &release_text(service, &rows));
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

fn release_json(service: &str, rows: &[Row]) -> serde_json::Value {
    serde_json::json!({"service": service, "hosts": rows})
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
    let fleet = service::fleet(&loaded, accept_new).await;
    if fleet.hosts.is_empty() {
        let first = fleet.unreachable.first().cloned();
        fleet.close().await;
        return Err(first
            .unwrap_or_else(|| Error::input("read the audit log", "the config lists no hosts"))
            .hint("the audit log lives on the hosts; run `ballast audit` again once one answers"));
    }
    let (records, unread) = state::read_fleet_audit(&fleet, &loaded.config.service, tail).await;
    // Records of the hosts that did not answer may be missing: say which.
    for e in fleet.unreachable.iter().chain(&unread) {
        out.progress(
            e.host.as_deref(),
            &format!("warning: audit log not read: {}", e.cause),
        );
    }
    fleet.close().await;
    out.result(&audit_json(&records), &render_audit(&records));
    Ok(())
}

/// One line per record, oldest first.
fn render_audit(records: &[AuditRecord]) -> String {
    let mut text = String::new();
    for r in records {
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
    text
}

fn audit_json(records: &[AuditRecord]) -> serde_json::Value {
    serde_json::json!({"records": records})
}

#[cfg(test)]
mod tests;
