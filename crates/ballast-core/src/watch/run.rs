//! The loop of `ballast watch`: look, judge (the [`Watcher`]), carry out
//! the restarts (each on its own task, so a slow stop holds up no look),
//! send the notices, keep the state file and the status, wait for the next
//! tick; until the shutdown future resolves. Every action and every notice
//! is told through `say`.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::alert::{self, Alert};
use super::channel::{self, Channel, Dispatcher};
use super::heal::Restart;
use super::incident::Event;
use super::observe::{self, Connections};
use super::status::Status;
use super::watcher::{Settings, Topology, Watcher};
use super::{execute, persist};
use crate::config::Loaded;
use crate::error::Result;
use crate::host::Reach;

/// A line for the operator: the host it is about, if any, and the text.
pub type Say = mpsc::UnboundedSender<(Option<String>, String)>;

/// How to run, besides the config's `watch:`.
pub struct Options {
    /// The state file.
    pub state_file: PathBuf,
    /// Hosts looked at at once (`ssh.concurrency`).
    pub concurrency: usize,
    /// Where the status is published after each look and restart.
    pub status: Option<tokio::sync::watch::Sender<Status>>,
}

/// Watches the service of `loaded` until `shutdown` resolves; returns the
/// last status.
pub async fn run(
    loaded: &Loaded,
    reach: Reach,
    options: Options,
    shutdown: impl Future<Output = ()>,
    say: Say,
) -> Result<Status> {
    let config = &loaded.config;
    let w = &config.watch;
    let service = config.service.clone();
    let topology = Topology::from_config(config);
    let saved = persist::load(&options.state_file, &service)?;
    let reopened = saved.book.open.len();
    let mut watcher = Watcher::new(Settings::from_config(w), topology.clone(), saved);
    let tell = |host: Option<&str>, text: String| {
        let _ = say.send((host.map(str::to_string), text));
    };
    let channels: Vec<Channel> = w
        .alerts
        .iter()
        .map(|c| Channel::new(c, w.alert_timeout, w.alert_attempts))
        .collect();
    tell(
        None,
        format!(
            "watching {} hosts of {service} every {} ({} open incidents from {}); alerts to {}",
            topology.hosts.len(),
            crate::error::humanize(w.interval),
            reopened,
            options.state_file.display(),
            match channels.is_empty() {
                true => "no channel (only printed)".to_string(),
                false => channels
                    .iter()
                    .map(Channel::name)
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        ),
    );
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let dispatcher = Dispatcher::start(channels, reports_tx);
    let (done_tx, mut done) =
        mpsc::unbounded_channel::<(Restart, std::result::Result<(), String>)>();
    let mut busy = BTreeSet::new();
    let mut conns = Connections::default();
    let mut was_locked: Option<String> = None;
    let mut kept = None;
    tokio::pin!(shutdown);
    let mut next = Instant::now();
    'watching: loop {
        let obs = tokio::select! {
            () = &mut shutdown => break 'watching,
            obs = observe::look(&mut conns, &topology, &reach, w.deadline, options.concurrency) => obs,
        };
        let round = watcher.round(&obs, &busy);
        match (&was_locked, &watcher.status.locked) {
            (None, Some(holder)) => {
                tell(None, format!("standing aside: the deploy lock is {holder}"))
            }
            (Some(_), None) => tell(None, "the lock is free again: watching".into()),
            _ => {}
        }
        was_locked = watcher.status.locked.clone();
        for notice in &round.notices {
            let i = &notice.incident;
            let log = match (&i.key.host, &i.container) {
                (Some(host), Some(container))
                    if notice.event == Event::Escalated && alert::wants_log(&i.key) =>
                {
                    match conns.get(host) {
                        Some(h) => execute::log_lines(&h, container, w.deadline).await,
                        None => vec!["(the host does not answer: no log lines)".into()],
                    }
                }
                _ => Vec::new(),
            };
            let alert = Alert::new(&service, notice, log);
            tell(
                i.key.host.as_deref(),
                format!("incident {}: {}", notice.event.word(), alert.text),
            );
            dispatcher.send(&alert);
        }
        for r in round.restarts {
            let Some(host) = conns.get(&r.host) else {
                continue;
            };
            busy.insert(r.key());
            tell(
                Some(&r.host),
                format!("{} {} ({}: {})", r.verb(), r.container, r.subject, r.why),
            );
            let (service, done_tx) = (service.clone(), done_tx.clone());
            tokio::spawn(async move {
                let outcome = execute::restart(&host, &service, &r)
                    .await
                    .map_err(|e| format!("{}: {}", e.step, e.cause));
                // The audit log is best effort: the restart is what counts.
                let _ = execute::audit(&host, &service, &r, &outcome).await;
                let _ = done_tx.send((r, outcome));
            });
        }
        keep(&options, &service, &watcher, &mut kept, &tell);
        next += w.interval;
        if next < Instant::now() {
            next = Instant::now();
        }
        loop {
            tokio::select! {
                () = &mut shutdown => break 'watching,
                () = tokio::time::sleep_until(next) => break,
                Some((r, outcome)) = done.recv() => {
                    busy.remove(&r.key());
                    match &outcome {
                        Ok(()) => tell(Some(&r.host), format!("{} {}: done", r.verb(), r.container)),
                        Err(e) => tell(Some(&r.host), format!("{} {} failed: {e}", r.verb(), r.container)),
                    }
                    watcher.done(&r, &outcome, super::now());
                    keep(&options, &service, &watcher, &mut kept, &tell);
                }
                Some(report) = reports.recv() => {
                    match report {
                        channel::Report::Delivered { .. } => {}
                        channel::Report::Failed { channel, error, attempt, retry_in } => {
                            match retry_in {
                                Some(wait) => tell(None, format!("alert to {channel} failed (attempt {attempt}): {error}; trying again in {}", crate::error::humanize(wait))),
                                None => {
                                    watcher.delivery_failed();
                                    tell(None, format!("alert to {channel} failed (attempt {attempt}): {error}; given up"));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    tell(
        None,
        "stopping: finishing restarts under way and alerts".into(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    while !busy.is_empty() {
        match tokio::time::timeout_at(until, done.recv()).await {
            Ok(Some((r, outcome))) => {
                busy.remove(&r.key());
                watcher.done(&r, &outcome, super::now());
            }
            _ => break,
        }
    }
    keep(&options, &service, &watcher, &mut kept, &tell);
    dispatcher.finish(Duration::from_secs(5)).await;
    conns.close().await;
    Ok(watcher.status.clone())
}

/// Writes the state file if it changed since `kept`, and publishes the
/// status.
fn keep(
    options: &Options,
    service: &str,
    watcher: &Watcher,
    kept: &mut Option<super::watcher::Saved>,
    tell: &dyn Fn(Option<&str>, String),
) {
    let saved = watcher.saved();
    if kept.as_ref() != Some(&saved) {
        match persist::save(&options.state_file, service, &saved) {
            Ok(()) => *kept = Some(saved),
            Err(e) => tell(None, format!("{e}")),
        }
    }
    if let Some(tx) = &options.status {
        let _ = tx.send(watcher.status.clone());
    }
}
