//! The loop of `ballast watch`: look, judge (the [`Watcher`]), carry out
//! the restarts (each on its own task, so a slow stop holds up no look),
//! send the notices, keep the state file and the status; until the
//! shutdown future resolves. Every host is looked at each tick, each
//! host's look beside the others' and gathered into a round (see
//! [`super::batch`]); the loop never waits on a look, so a silent host
//! holds up neither the events meanwhile nor the next ticks' looks at the
//! others (it is left out of them until its own look ends). A host whose
//! Docker events say one of the service's containers changed is looked at
//! again at once (see [`super::events`]), and so is one whose look went
//! unanswered but not yet `watch.failures` times in a row (so a silent
//! host is called down after that many deadlines, not intervals), and one
//! whose doctor's rules changed their verdict (run on their own task, see
//! [`super::checkup`]). Every action and every notice is told through
//! `say`.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::alert::{self, Alert};
use super::batch::Batches;
use super::channel::{self, Channel, Dispatcher};
use super::checkup::{self, Checkup};
use super::events::{Followers, Nudge};
use super::heal::Restart;
use super::incident::Event;
use super::observe::{Connections, HostLook, Observation};
use super::status::Status;
use super::watcher::{Settings, Topology, Watcher};
use super::{execute, persist};
use crate::config::{watch::Watch, Loaded};
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

/// How long after an event its host is looked at: the events of one
/// change (`kill`, `die`, `stop`) come together, and make one look.
const SETTLE: Duration = Duration::from_millis(100);
/// The least time between two looks brought forward by events, so a
/// container that Docker restarts in a tight loop costs a look per
/// `GAP` at most.
const GAP: Duration = Duration::from_millis(500);

/// What a round waits for its hosts beyond their deadline: the look's own
/// timer fires at the deadline, and its answer has to reach the loop.
const MARGIN: Duration = Duration::from_millis(500);

/// A restart's outcome, as its task reports it.
type Done = (Restart, std::result::Result<(), String>);

/// A host's look under way, with the number of its batch.
type Looking<'a> = Pin<Box<dyn Future<Output = (u64, HostLook)> + 'a>>;

/// How long a round of `hosts` waits for them before it judges those that
/// answered: every look ends by its deadline, in as many waves as
/// `concurrency` makes, so all of them are in it, slow ones and silent
/// ones included.
fn batch_wait(w: &Watch, hosts: usize, concurrency: usize) -> Duration {
    let waves = u32::try_from(hosts.div_ceil(concurrency.max(1))).unwrap_or(u32::MAX);
    w.deadline.saturating_mul(waves) + MARGIN
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
    let (done_tx, mut done) = mpsc::unbounded_channel::<Done>();
    let (nudge_tx, mut nudges) = mpsc::unbounded_channel();
    let mut followers = Followers::new(&service, nudge_tx);
    let mut checkups = checkup::start(
        w.doctor_every,
        topology.hosts.clone(),
        reach.clone(),
        options.concurrency,
    )
    .map_err(|e| crate::error::Error::failed("start running doctor's rules", e))?;
    let mut l = Looker {
        watcher: Watcher::new(Settings::from_config(w), topology.clone(), saved),
        topology: &topology,
        reach: &reach,
        w,
        options: &options,
        service: &service,
        dispatcher: &dispatcher,
        done_tx,
        tell: &tell,
        conns: Connections::default(),
        looks: FuturesUnordered::new(),
        looking: BTreeSet::new(),
        batches: Batches::default(),
        permits: Arc::new(Semaphore::new(options.concurrency.max(1))),
        busy: BTreeSet::new(),
        was_locked: None,
        kept: None,
    };
    tokio::pin!(shutdown);
    let mut next = Instant::now();
    // Hosts to look at soon (events came from them, or they must be
    // asked again), and when.
    let mut soon = BTreeSet::new();
    let mut soon_at: Option<Instant> = None;
    let mut last_soon = Instant::now() - GAP;
    let everyone: BTreeSet<String> = topology.hosts.iter().cloned().collect();
    loop {
        let far = Instant::now() + Duration::from_secs(3600);
        let batch_due = l.batches.next_due();
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep_until(next) => {
                l.begin(&everyone);
                next += w.interval;
                if next < Instant::now() {
                    next = Instant::now();
                }
            }
            () = tokio::time::sleep_until(soon_at.unwrap_or(far)), if soon_at.is_some() => {
                // A host still being looked at stays due: its look began
                // before what made it due.
                let started = l.begin(&soon);
                soon.retain(|h| !started.contains(h));
                soon_at = (!soon.is_empty()).then(|| Instant::now() + GAP);
                last_soon = Instant::now();
            }
            Some((id, mut look)) = l.looks.next(), if !l.looks.is_empty() => {
                l.looking.remove(&look.name);
                l.conns.keep(&mut look);
                followers.sync(&l.conns);
                let name = look.name.clone();
                if let Some(ready) = l.batches.arrived(id, &name, look) {
                    let again = l.judge(ready).await;
                    if !again.is_empty() {
                        soon.extend(again);
                        soon_at = Some(Instant::now());
                    }
                }
            }
            () = tokio::time::sleep_until(batch_due.unwrap_or(far)), if batch_due.is_some() => {
                for ready in l.batches.expired(Instant::now()) {
                    let again = l.judge(ready).await;
                    if !again.is_empty() {
                        soon.extend(again);
                        soon_at = Some(Instant::now());
                    }
                }
            }
            Some(nudge) = nudges.recv() => match nudge {
                Nudge::Changed { host, action, container } => {
                    l.watcher.nudged();
                    tell(Some(&host), format!("docker event: {action} of {container}"));
                    soon.insert(host);
                    soon_at.get_or_insert((Instant::now() + SETTLE).max(last_soon + GAP));
                }
                // Not a look brought forward: an engine restarting drops
                // the stream too, and a restart of a few seconds is no
                // incident.
                Nudge::Dropped { host, why } => {
                    tell(Some(&host), format!("docker events stopped ({why}); looking every {} meanwhile", crate::error::humanize(w.interval)));
                }
            },
            Some(c) = checkups.recv() => {
                for (host, checkup) in &c {
                    if let Checkup::Unchecked(why) = checkup {
                        tell(Some(host), format!("doctor's rules could not run: {why}"));
                    }
                }
                let changed = l.watcher.checked(c);
                if !changed.is_empty() {
                    soon.extend(changed);
                    soon_at.get_or_insert(Instant::now());
                }
            }
            Some((r, outcome)) = done.recv() => l.restarted(r, outcome),
            Some(report) = reports.recv() => l.reported(report),
        }
    }
    // Dropping the receiver stops the rules' thread.
    drop(checkups);
    followers.stop();
    tell(
        None,
        "stopping: finishing restarts under way and alerts".into(),
    );
    let until = Instant::now() + Duration::from_secs(30);
    while !l.busy.is_empty() {
        match tokio::time::timeout_at(until, done.recv()).await {
            Ok(Some((r, outcome))) => {
                l.busy.remove(&r.key());
                l.watcher.done(&r, &outcome, super::now());
            }
            _ => break,
        }
    }
    l.keep();
    let Looker {
        watcher,
        conns,
        looks,
        ..
    } = l;
    // Looks under way hold connections: dropped first, so all close.
    drop(looks);
    dispatcher.finish(Duration::from_secs(5)).await;
    conns.close().await;
    Ok(watcher.status.clone())
}

/// What a look, and what comes of it, works with.
struct Looker<'a, 'f> {
    watcher: Watcher,
    topology: &'f Topology,
    reach: &'f Reach,
    w: &'a Watch,
    options: &'a Options,
    service: &'a str,
    dispatcher: &'a Dispatcher,
    done_tx: mpsc::UnboundedSender<Done>,
    tell: &'a dyn Fn(Option<&str>, String),
    conns: Connections,
    /// Looks under way, one per host at most.
    looks: FuturesUnordered<Looking<'f>>,
    /// The hosts of `looks`.
    looking: BTreeSet<String>,
    /// Looks waiting to be judged together.
    batches: Batches<HostLook>,
    /// Bounds the hosts looked at at once (`ssh.concurrency`).
    permits: Arc<Semaphore>,
    /// Containers with a restart under way.
    busy: BTreeSet<super::Key>,
    /// Who held the lock at the last look.
    was_locked: Option<String>,
    /// What the state file holds.
    kept: Option<super::watcher::Saved>,
}

impl<'f> Looker<'_, 'f> {
    /// Starts a look at each of `hosts` not being looked at already, as
    /// one batch; returns the hosts started.
    fn begin(&mut self, hosts: &BTreeSet<String>) -> BTreeSet<String> {
        let start: BTreeSet<String> = hosts.difference(&self.looking).cloned().collect();
        if start.is_empty() {
            return start;
        }
        let wait = batch_wait(self.w, start.len(), self.options.concurrency);
        let id = self.batches.open(&start, Instant::now() + wait);
        for name in &start {
            let look = self
                .conns
                .look(name, self.topology, self.reach, self.w.deadline);
            let permits = self.permits.clone();
            self.looks.push(Box::pin(async move {
                // Closed only when the loop ends, and then nobody waits.
                let _permit = permits.acquire_owned().await;
                (id, look.await)
            }));
        }
        self.looking.extend(start.iter().cloned());
        start
    }

    /// Judges looks gathered in a round, and carries out what the watcher
    /// decides: notices sent, restarts started, state kept. Returns the
    /// hosts to ask again at once: those whose look went unanswered, but
    /// not yet enough times in a row to be called down. (A look refused at
    /// once, as while an engine restarts, waits for the next tick: the
    /// failures in a row then span an interval.)
    async fn judge(&mut self, looks: Vec<HostLook>) -> BTreeSet<String> {
        let w = self.w;
        let obs = Observation::of(&looks, super::now());
        let round = self.watcher.round(&obs, &self.busy);
        match (&self.was_locked, &self.watcher.status.locked) {
            (None, Some(holder)) => {
                (self.tell)(None, format!("standing aside: the deploy lock is {holder}"))
            }
            (Some(_), None) => (self.tell)(None, "the lock is free again: watching".into()),
            _ => {}
        }
        self.was_locked = self.watcher.status.locked.clone();
        for notice in &round.notices {
            let i = &notice.incident;
            let log = match (&i.key.host, &i.container) {
                (Some(host), Some(container))
                    if notice.event == Event::Escalated && alert::wants_log(&i.key) =>
                {
                    match self.conns.get(host) {
                        Some(h) => execute::log_lines(&h, container, w.deadline).await,
                        None => vec!["(the host does not answer: no log lines)".into()],
                    }
                }
                _ => Vec::new(),
            };
            let alert = Alert::new(self.service, notice, log);
            (self.tell)(
                i.key.host.as_deref(),
                format!("incident {}: {}", notice.event.word(), alert.text),
            );
            self.dispatcher.send(&alert);
        }
        for r in round.restarts {
            self.start(r);
        }
        self.keep();
        looks
            .iter()
            .filter(|l| l.silent && self.watcher.confirming(&l.name))
            .map(|l| l.name.clone())
            .collect()
    }

    /// Starts `r` on a task of its own.
    fn start(&mut self, r: Restart) {
        let Some(host) = self.conns.get(&r.host) else {
            return;
        };
        self.busy.insert(r.key());
        (self.tell)(
            Some(&r.host),
            format!("{} {} ({}: {})", r.verb(), r.container, r.subject, r.why),
        );
        let (service, done_tx) = (self.service.to_string(), self.done_tx.clone());
        tokio::spawn(async move {
            let outcome = execute::restart(&host, &service, &r)
                .await
                .map_err(|e| format!("{}: {}", e.step, e.cause));
            // The audit log is best effort: the restart is what counts.
            let _ = execute::audit(&host, &service, &r, &outcome).await;
            let _ = done_tx.send((r, outcome));
        });
    }

    /// Takes in what came of a restart.
    fn restarted(&mut self, r: Restart, outcome: std::result::Result<(), String>) {
        self.busy.remove(&r.key());
        match &outcome {
            Ok(()) => (self.tell)(Some(&r.host), format!("{} {}: done", r.verb(), r.container)),
            Err(e) => (self.tell)(
                Some(&r.host),
                format!("{} {} failed: {e}", r.verb(), r.container),
            ),
        }
        self.watcher.done(&r, &outcome, super::now());
        self.keep();
    }

    /// Takes in what came of a delivery.
    fn reported(&mut self, report: channel::Report) {
        let channel::Report::Failed {
            channel,
            error,
            attempt,
            retry_in,
        } = report
        else {
            return;
        };
        match retry_in {
            Some(wait) => (self.tell)(
                None,
                format!(
                    "alert to {channel} failed (attempt {attempt}): {error}; trying again in {}",
                    crate::error::humanize(wait)
                ),
            ),
            None => {
                self.watcher.delivery_failed();
                (self.tell)(
                    None,
                    format!("alert to {channel} failed (attempt {attempt}): {error}; given up"),
                );
            }
        }
    }

    /// Writes the state file if it changed since it was last written, and
    /// publishes the status.
    fn keep(&mut self) {
        let saved = self.watcher.saved();
        if self.kept.as_ref() != Some(&saved) {
            match persist::save(&self.options.state_file, self.service, &saved) {
                Ok(()) => self.kept = Some(saved),
                Err(e) => (self.tell)(None, format!("{e}")),
            }
        }
        if let Some(tx) = &self.options.status {
            let _ = tx.send(self.watcher.status.clone());
        }
    }
}
