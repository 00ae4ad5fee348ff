//! The rollback guard of `watch.auto_rollback`: a task beside the watch
//! loop that reads each status it publishes, and when a role's new
//! release crash-loops on every one of its hosts (see [`rollback`]) within
//! `watch.rollback_window` of its deploy, rolls the role back under the
//! deploy lock, remembers it in the state file (once per release, even
//! across restarts of watch), and alerts what was done or why it failed,
//! as an update of the role's incident. One rollback at a time; a look
//! that arrives meanwhile is read afterwards.
//!
//! [`rollback`]: super::rollback

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::alert::Alert;
use super::channel::{self, Channel, Dispatcher};
use super::incident::{Event, Incident, Notice};
use super::rollback::{self, Blame, Outcome, RolledBack, Suspect};
use super::status::Status;
use super::watcher::Topology;
use super::{execute, persist, Key, Say, Subject};
use crate::config::Loaded;
use crate::error::{ErrorKind, Result};
use crate::host::Reach;

/// Guards the service of `loaded` from the statuses on `status` until
/// `stop` is cancelled (which also interrupts a rollback under way: it
/// undoes what is half done and releases the lock).
pub async fn guard(
    loaded: Loaded,
    reach: Reach,
    state_file: PathBuf,
    mut status: watch::Receiver<Status>,
    stop: CancellationToken,
    say: Say,
) -> Result<()> {
    let config = &loaded.config;
    let service = config.service.clone();
    let w = &config.watch;
    let topology = Topology::from_config(config);
    let mut done = persist::rollbacks(&state_file, &service)?;
    let tell = |text: String| {
        let _ = say.send((None, text));
    };
    tell(format!(
        "auto rollback on: a release crash-looping on every host of its role within {} of its deploy is rolled back ({} done before)",
        crate::error::humanize(w.rollback_window),
        done.len()
    ));
    let channels: Vec<Channel> = w
        .alerts
        .iter()
        .map(|c| Channel::new(c, w.alert_timeout, w.alert_attempts))
        .collect();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher::start(channels, reports_tx);
    // Releases found crash-looping too long after their deploy: not the
    // deploy's fault, and never going to be.
    let mut old = BTreeSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = status.changed() => if changed.is_err() { break },
            Some(report) = reports.recv() => {
                if let channel::Report::Failed { channel, error, retry_in: None, .. } = report {
                    tell(format!("alert to {channel} failed: {error}; given up"));
                }
                continue;
            }
        }
        let seen = status.borrow_and_update().clone();
        for suspect in rollback::suspects(&seen, &topology, &done) {
            let key = (suspect.role.clone(), suspect.version.clone());
            if old.contains(&key) {
                continue;
            }
            let deployed = execute::deployed_at(&loaded, &reach, &suspect).await;
            match rollback::blame(&deployed, w.rollback_window, super::now()) {
                Blame::Deploy => {}
                Blame::Unknown => continue,
                Blame::Old => {
                    tell(format!(
                        "role {}: release {} crash-loops on every host, but was deployed more than {} ago: not rolled back",
                        suspect.role,
                        suspect.version,
                        crate::error::humanize(w.rollback_window)
                    ));
                    old.insert(key);
                    continue;
                }
            }
            let Some(record) = roll_back(&loaded, &reach, &suspect, &stop, &tell).await else {
                continue;
            };
            tell(record.describe());
            if let Err(e) = persist::note_rollback(&state_file, &service, &record) {
                tell(format!("{e}"));
            }
            dispatcher.send(&alert(&service, &seen, &suspect, &record));
            done.push(record);
        }
    }
    dispatcher.finish(Duration::from_secs(5)).await;
    Ok(())
}

/// Makes the rollback and says how it went; `None` when it was not made
/// because the lock is someone else's (a human deploys: tried again on a
/// later look, if the release is still there).
async fn roll_back(
    loaded: &Loaded,
    reach: &Reach,
    suspect: &Suspect,
    stop: &CancellationToken,
    tell: &(dyn Fn(String) + Sync),
) -> Option<RolledBack> {
    tell(format!(
        "role {}: release {} crash-loops on every host ({}) right after its deploy: rolling back",
        suspect.role,
        suspect.version,
        suspect.hosts.join(", ")
    ));
    let on_event = |e: crate::deploy::Event| {
        let at = e.host.map(|h| format!("{h}: ")).unwrap_or_default();
        tell(format!("rollback of {}: {at}{}", suspect.role, e.message));
    };
    let outcome = execute::rollback(loaded, reach, suspect, stop.child_token(), &on_event).await;
    let outcome = match outcome {
        Ok(to) => Outcome::RolledBack { to },
        Err(e) if e.kind == ErrorKind::Conflict => {
            tell(format!("role {}: not rolled back now: {e}", suspect.role));
            return None;
        }
        Err(e) => Outcome::Failed {
            why: format!("{}: {}", e.step, e.cause),
        },
    };
    Some(RolledBack {
        role: suspect.role.clone(),
        version: suspect.version.clone(),
        at: super::now(),
        outcome,
    })
}

/// The alert saying what was done, as an update of the incident that
/// speaks for the role (down everywhere, or its one host's container).
fn alert(service: &str, seen: &Status, suspect: &Suspect, record: &RolledBack) -> Alert {
    let subject = Subject::Role(suspect.role.clone());
    let keys = [
        Key::role_down(&suspect.role),
        Key::container(&suspect.hosts[0], &subject),
    ];
    let mut incident = keys
        .iter()
        .find_map(|k| seen.incidents.iter().find(|i| &i.key == k))
        .cloned()
        .unwrap_or_else(|| {
            let cause = format!("release {} crash-loops on every host", suspect.version);
            Incident::new(keys[0].clone(), &cause, record.at)
        });
    let what = record.describe();
    incident
        .tried
        .push(format!("{}: {what}", super::rfc3339(record.at)));
    let (event, hint) = match &record.outcome {
        Outcome::RolledBack { .. } => (
            Event::RolledBack,
            format!(
                "fix release {} before deploying it again; `ballast releases` shows what runs",
                record.version
            ),
        ),
        Outcome::Failed { .. } => (
            Event::RollbackFailed,
            format!("run `ballast rollback --roles {}`", suspect.role),
        ),
    };
    incident.hint = Some(hint);
    // An automatic change to the fleet is for a human to know now, as an
    // event of its own that a receiver can route.
    let notice = Notice {
        event,
        incident,
        at: record.at,
    };
    let mut alert = Alert::new(service, &notice, Vec::new());
    alert.text = crate::redact::redact(&format!("[{service}] {what}")).into_owned();
    alert
}
