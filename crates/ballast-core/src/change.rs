//! A change to hosts outside a rollout (`setup`, `proxy restart`,
//! `proxy upgrade`, maintenance, pause, resume): connect to the hosts in
//! scope, take the lock on them, do the work, write one audit line on
//! each, and release the lock whatever happened. The same lock as deploy's,
//! so a proxy restart never runs in the middle of a deploy.

use std::sync::Arc;

use crate::config::Loaded;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host::{Host, Reach};
use crate::lock::{FleetLock, LockInfo};
use crate::scope::Scope;
use crate::state::{self, AuditRecord};

/// Who asks for a change, where.
pub struct Change<'a> {
    pub loaded: &'a Loaded,
    pub reach: &'a Reach,
    /// The command line, for the lock and the audit log.
    pub command: String,
    pub scope: Scope,
}

/// Connects to the hosts in `c.scope`, takes the lock, runs `work` on the
/// connected fleet, audits and releases. Every host must answer.
pub async fn run<T>(c: &Change<'_>, work: impl AsyncFnOnce(&Fleet) -> Result<T>) -> Result<T> {
    run_on(c, &c.scope.hosts_of(&c.loaded.config), work).await
}

/// [`run`] on `hosts` instead of the hosts of `c.scope` (accessories live
/// on hosts of their own).
pub async fn run_on<T>(
    c: &Change<'_>,
    hosts: &[String],
    work: impl AsyncFnOnce(&Fleet) -> Result<T>,
) -> Result<T> {
    let config = &c.loaded.config;
    let fleet = Arc::new(Fleet::connect(hosts, c.reach, config.concurrency()).await);
    let result = locked(c, &fleet, work).await;
    if let Ok(fleet) = Arc::try_unwrap(fleet) {
        fleet.close().await;
    }
    result
}

async fn locked<T>(
    c: &Change<'_>,
    fleet: &Arc<Fleet>,
    work: impl AsyncFnOnce(&Fleet) -> Result<T>,
) -> Result<T> {
    fleet.require_all("connect to the hosts")?;
    let service = &c.loaded.config.service;
    let info = LockInfo::new(&c.command, None)?;
    let hosts: Vec<String> = fleet.hosts.keys().cloned().collect();
    let lock = FleetLock::acquire(fleet, &hosts, service, info, fleet.concurrency).await?;
    let result = work(fleet).await;
    let record = AuditRecord {
        at: state::now_rfc3339(),
        who: state::whoami(),
        command: c.command.clone(),
        version: None,
        hosts: hosts.clone(),
        outcome: match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("failed: {e}"),
        },
        forced_unsafe: Vec::new(),
        skipped: Vec::new(),
        took_over: lock.takeovers().iter().map(|t| t.describe()).collect(),
    };
    fleet
        .each(|h: &Host| {
            let record = &record;
            async move { state::append_audit(h, service, record).await }
        })
        .await;
    let released = lock.release().await;
    let value = result?;
    released?;
    Ok(value)
}

/// Files each host's report under its name in `into`, and fails with the
/// first host's error (in host order) if any host failed: the reports
/// still say what every host did.
pub fn file_reports<R>(
    results: Vec<(String, R)>,
    error: impl Fn(&R) -> Option<&Error>,
    into: &std::sync::Mutex<std::collections::BTreeMap<String, R>>,
) -> Result<()> {
    let mut first = None;
    let mut reports = into.lock().unwrap_or_else(|e| e.into_inner());
    for (host, report) in results {
        if first.is_none() {
            first = error(&report).cloned();
        }
        reports.insert(host, report);
    }
    first.map_or(Ok(()), Err)
}

/// An error for a change asked of no host.
pub fn nothing_to_do(what: &str) -> Error {
    Error::input(what, "no host in scope runs a proxied role")
        .hint("check --hosts and --roles against the config's proxied roles")
}
