//! The access log: one JSON line per request.
//!
//! Each lane serializes its lines into its own batch; the batch is handed to
//! one writer thread [`FLUSH_AFTER`] after its first line (or at once when it
//! grows large), so a lane pays for one hand-off per batch, not per request,
//! and a line reaches stdout at most that late.
//! The hand-off never waits: when the writer is behind (a slow stdout), the
//! batch is dropped and its lines counted, and the count is written with the
//! next line that gets through.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use hyper::header::HeaderValue;
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Version};
use serde::{Serialize, Serializer};
use tokio::sync::mpsc;

use crate::table::Service;
use crate::target::Target;

/// Where access-log lines go.
#[derive(Debug, Clone, Default)]
pub enum AccessLog {
    /// One JSON line per request on stdout (what runs in production).
    #[default]
    Stdout,
    /// Each line (without its newline) is sent here; tests read them.
    Channel(mpsc::UnboundedSender<String>),
    /// No access log.
    Off,
}

/// One request as logged. Fields hold what the request already had (shared
/// buffers, `Arc`s), so building an entry allocates nothing.
#[derive(Debug, Clone, Serialize)]
pub struct AccessEntry {
    /// When the request ended, RFC 3339 in UTC.
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// The client's address (the TCP peer).
    pub client: IpAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `HTTP/1.1`, `HTTP/2.0`, …
    #[serde(serialize_with = "version")]
    pub protocol: Version,
    /// Request method.
    #[serde(serialize_with = "method")]
    pub method: Method,
    /// The Host the client asked for.
    #[serde(serialize_with = "header_text")]
    pub host: HeaderValue,
    /// Path and query.
    #[serde(serialize_with = "path")]
    pub path: PathAndQuery,
    /// The status sent to the client; for a response the proxy cut off
    /// after its head was sent (see `body`), 502 (too large) or 504
    /// (stalled), with the reason in `error`.
    pub status: u16,
    /// The service that answered (none when no route matched).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "service_name"
    )]
    pub service: Option<Arc<Service>>,
    /// The target the request went to.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "target_addr"
    )]
    pub target: Option<Arc<Target>>,
    /// From the request's start to the end of its response (or tunnel).
    pub duration_ms: u64,
    /// What went wrong, when the proxy answered an error itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Lines dropped because the log could not keep up, since the last line.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn rfc3339<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

fn version<S: Serializer>(v: &Version, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:?}"))
}

fn method<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

fn header_text<S: Serializer>(v: &HeaderValue, s: S) -> Result<S::Ok, S::Error> {
    match v.to_str() {
        Ok(text) => s.serialize_str(text),
        Err(_) => s.serialize_str(&String::from_utf8_lossy(v.as_bytes())),
    }
}

fn path<S: Serializer>(p: &PathAndQuery, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

fn service_name<S: Serializer>(service: &Option<Arc<Service>>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(service.as_ref().map_or("", |svc| svc.name.as_str()))
}

fn target_addr<S: Serializer>(target: &Option<Arc<Target>>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(target.as_ref().map_or("", |t| t.addr()))
}

/// Hands lines to the configured sink; cheap to clone. Clones share one
/// batch; [`AccessLogger::lane`] makes a logger with a batch of its own.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    sink: Sink,
    /// Lines dropped since the last one written.
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, Clone)]
enum Sink {
    Batched {
        batch: Arc<Mutex<Batch>>,
        writer: SyncSender<Chunk>,
    },
    Channel(mpsc::UnboundedSender<String>),
    Off,
}

/// Lines serialized and not yet handed to the writer.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
    /// The drop counts these lines carry: lost again if the batch is.
    carried: u64,
    /// A task that will hand this batch over is already on its way.
    flush_pending: bool,
}

/// What the writer thread receives.
enum Chunk {
    /// Whole lines, newline-terminated.
    Lines(Vec<u8>),
    /// Answer once everything sent before is written.
    Sync(std::sync::mpsc::Sender<()>),
}

/// How many batches may wait for the writer before new ones are dropped.
const QUEUE: usize = 128;

/// A batch this large is handed over at once.
const BATCH_BYTES: usize = 64 * 1024;

/// How long a batch collects lines before it is handed over.
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// How long [`finish`] waits for the writer.
const FINISH_WAIT: Duration = Duration::from_secs(5);

impl AccessLogger {
    /// A logger for `target`; for stdout this starts the writer thread,
    /// which ends once every logger clone is dropped.
    pub fn start(target: &AccessLog) -> AccessLogger {
        let sink = match target {
            AccessLog::Off => Sink::Off,
            AccessLog::Channel(tx) => Sink::Channel(tx.clone()),
            AccessLog::Stdout => {
                let (writer, chunks) = sync_channel(QUEUE);
                let spawned = std::thread::Builder::new()
                    .name("access-log".into())
                    .spawn(move || write_chunks(chunks, std::io::stdout()));
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start the access-log writer; access log off");
                    return AccessLogger::off();
                }
                Sink::Batched {
                    batch: Arc::default(),
                    writer,
                }
            }
        };
        AccessLogger {
            sink,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    fn off() -> AccessLogger {
        AccessLogger {
            sink: Sink::Off,
            dropped: Arc::default(),
        }
    }

    /// A logger writing to the same place with a batch of its own (one per lane).
    pub fn lane(&self) -> AccessLogger {
        let sink = match &self.sink {
            Sink::Batched { writer, .. } => Sink::Batched {
                batch: Arc::default(),
                writer: writer.clone(),
            },
            other => other.clone(),
        };
        AccessLogger {
            sink,
            dropped: Arc::clone(&self.dropped),
        }
    }

    /// Logs one request.
    pub fn log(&self, mut entry: AccessEntry) {
        match &self.sink {
            Sink::Off => {}
            Sink::Channel(tx) => {
                entry.dropped = self.dropped.swap(0, Ordering::Relaxed);
                let line = serde_json::to_string(&entry).expect("access entries always serialize");
                if tx.send(line).is_err() {
                    self.dropped.fetch_add(1 + entry.dropped, Ordering::Relaxed);
                }
            }
            Sink::Batched { batch, .. } => {
                let mut b = lock(batch);
                entry.dropped = self.dropped.swap(0, Ordering::Relaxed);
                serde_json::to_writer(&mut b.bytes, &entry)
                    .expect("access entries always serialize");
                b.bytes.push(b'\n');
                b.lines += 1;
                b.carried += entry.dropped;
                if b.bytes.len() >= BATCH_BYTES {
                    drop(b);
                    self.ship();
                } else if !b.flush_pending {
                    b.flush_pending = true;
                    drop(b);
                    self.ship_soon();
                }
            }
        }
    }

    /// Hands the batch over [`FLUSH_AFTER`] from now, with whatever lines
    /// joined it meanwhile.
    fn ship_soon(&self) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let logger = self.clone();
                runtime.spawn(async move {
                    tokio::time::sleep(FLUSH_AFTER).await;
                    logger.ship();
                });
            }
            Err(_) => self.ship(),
        }
    }

    /// Hands the current batch to the writer now, or drops and counts it
    /// if the writer is behind.
    pub fn ship(&self) {
        self.ship_by(None);
    }

    /// Hands the current batch over, waiting for room in the writer's queue
    /// until `deadline` (`None`: not at all).
    fn ship_by(&self, deadline: Option<std::time::Instant>) {
        let Sink::Batched { batch, writer } = &self.sink else {
            return;
        };
        let (bytes, lines, carried) = {
            let mut b = lock(batch);
            b.flush_pending = false;
            let lines = std::mem::take(&mut b.lines);
            let carried = std::mem::take(&mut b.carried);
            let capacity = b.bytes.capacity().min(BATCH_BYTES);
            (
                std::mem::replace(&mut b.bytes, Vec::with_capacity(capacity)),
                lines,
                carried,
            )
        };
        if lines == 0 {
            return;
        }
        if send_by(writer, Chunk::Lines(bytes), deadline).is_err() {
            self.dropped.fetch_add(lines + carried, Ordering::Relaxed);
        }
    }
}

/// Hands over every logger's batch and waits until the writer has written
/// them, all within [`FINISH_WAIT`] (a stuck stdout must not hold the
/// shutdown). Blocks: call it at shutdown, outside the async workers.
pub fn finish(loggers: &[AccessLogger]) {
    finish_within(loggers, FINISH_WAIT);
}

fn finish_within(loggers: &[AccessLogger], wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    for logger in loggers {
        logger.ship_by(Some(deadline));
    }
    let Some(writer) = loggers.iter().find_map(|l| match &l.sink {
        Sink::Batched { writer, .. } => Some(writer),
        _ => None,
    }) else {
        return;
    };
    let (ack, acked) = std::sync::mpsc::channel();
    if send_by(writer, Chunk::Sync(ack), Some(deadline)).is_ok() {
        let _ = acked.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    }
}

/// Sends `chunk`, retrying while the queue is full until `deadline`.
fn send_by(
    writer: &SyncSender<Chunk>,
    mut chunk: Chunk,
    deadline: Option<std::time::Instant>,
) -> Result<(), ()> {
    loop {
        match writer.try_send(chunk) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err(()),
            Err(TrySendError::Full(back)) => {
                match deadline {
                    Some(at) if std::time::Instant::now() < at => {}
                    _ => return Err(()),
                }
                chunk = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// The batch, even if a thread panicked while holding it.
fn lock(batch: &Mutex<Batch>) -> MutexGuard<'_, Batch> {
    batch
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes chunks to `out` until every sender is gone. A broken `out` drops
/// what comes (senders must never block on a dead log).
fn write_chunks(chunks: Receiver<Chunk>, mut out: impl Write) {
    let mut broken = false;
    for chunk in chunks {
        match chunk {
            Chunk::Lines(bytes) if !broken => {
                broken = out.write_all(&bytes).and_then(|()| out.flush()).is_err();
            }
            Chunk::Lines(_) => {}
            Chunk::Sync(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
