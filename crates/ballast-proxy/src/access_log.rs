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
    /// The status sent to the client.
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

/// How long [`AccessLogger::finish`] waits for the writer.
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

    /// Hands the current batch to the writer now.
    pub fn ship(&self) {
        let Sink::Batched { batch, writer } = &self.sink else {
            return;
        };
        let (bytes, lines, carried) = {
            let mut b = lock(batch);
            b.flush_pending = false;
            let lines = std::mem::take(&mut b.lines);
            let carried = std::mem::take(&mut b.carried);
            (std::mem::take(&mut b.bytes), lines, carried)
        };
        if lines == 0 {
            return;
        }
        match writer.try_send(Chunk::Lines(bytes)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(lines + carried, Ordering::Relaxed);
            }
        }
    }

    /// Hands over this logger's batch and waits (a bounded time) until the
    /// writer has written everything handed to it so far. Blocks: call it
    /// at shutdown, outside the async workers.
    pub fn finish(&self) {
        self.ship();
        let Sink::Batched { writer, .. } = &self.sink else {
            return;
        };
        let (ack, acked) = std::sync::mpsc::channel();
        if writer.send(Chunk::Sync(ack)).is_ok() {
            let _ = acked.recv_timeout(FINISH_WAIT);
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
mod tests {
    use super::*;

    fn entry() -> AccessEntry {
        AccessEntry {
            time: SystemTime::now(),
            client: "127.0.0.1".parse().unwrap(),
            scheme: "http",
            protocol: Version::HTTP_11,
            method: Method::GET,
            host: HeaderValue::from_static("shop.example.com"),
            path: PathAndQuery::from_static("/cart?id=1"),
            status: 200,
            service: None,
            target: Some(Target::new("10.0.0.1:80")),
            duration_ms: 3,
            error: None,
            dropped: 0,
        }
    }

    #[tokio::test]
    async fn each_request_is_one_json_line() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let logger = AccessLogger::start(&AccessLog::Channel(tx));
        logger.log(entry());
        let line = rx.recv().await.unwrap();
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["status"], 200);
        assert_eq!(value["protocol"], "HTTP/1.1");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["host"], "shop.example.com");
        assert_eq!(value["target"], "10.0.0.1:80");
        assert_eq!(value["path"], "/cart?id=1");
        assert!(value.get("service").is_none());
        assert!(value.get("error").is_none());
        assert!(value.get("dropped").is_none());
        assert!(value["time"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn lines_that_cannot_be_sent_are_counted_on_the_next() {
        let (tx, rx) = mpsc::unbounded_channel();
        let logger = AccessLogger::start(&AccessLog::Channel(tx));
        drop(rx);
        logger.log(entry());
        logger.log(entry());
        assert_eq!(logger.dropped.load(Ordering::Relaxed), 2);
    }

    /// A logger batching into a writer thread that writes to `out`.
    fn batched(out: impl Write + Send + 'static, queue: usize) -> AccessLogger {
        let (writer, chunks) = sync_channel(queue);
        std::thread::spawn(move || write_chunks(chunks, out));
        AccessLogger {
            sink: Sink::Batched {
                batch: Arc::default(),
                writer,
            },
            dropped: Arc::default(),
        }
    }

    /// A `Write` whose bytes tests can read, that can be made to stall,
    /// and that says when a write begins.
    #[derive(Clone)]
    struct Shared {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
        began: std::sync::mpsc::Sender<()>,
    }

    impl Shared {
        fn new() -> (Shared, Receiver<()>) {
            let (began, writes) = std::sync::mpsc::channel();
            let shared = Shared {
                bytes: Arc::default(),
                gate: Arc::default(),
                began,
            };
            (shared, writes)
        }

        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.began.send(());
            let _open = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lines_travel_in_batches_and_finish_waits_for_them() {
        let (out, _writes) = Shared::new();
        let logger = batched(out.clone(), QUEUE);
        for _ in 0..3 {
            logger.log(entry());
        }
        let waiting = || match &logger.sink {
            Sink::Batched { batch, .. } => lock(batch).lines,
            _ => unreachable!(),
        };
        assert_eq!(waiting(), 3, "lines wait for the batch to be handed over");
        tokio::time::sleep(FLUSH_AFTER * 2).await;
        assert_eq!(waiting(), 0, "handed over after FLUSH_AFTER");
        let lane = logger.lane();
        lane.log(entry());
        tokio::task::spawn_blocking(move || lane.finish())
            .await
            .unwrap();
        let text = out.text();
        assert_eq!(text.lines().count(), 4, "{text}");
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    #[tokio::test]
    async fn a_stalled_writer_drops_batches_and_counts_their_lines() {
        let (out, writes) = Shared::new();
        let stall = out.gate.lock().unwrap();
        let logger = batched(out.clone(), 1);
        let log_now = |logger: &AccessLogger| {
            logger.log(entry());
            logger.ship();
        };
        log_now(&logger);
        writes.recv().unwrap(); // the writer holds line 1, stalled
        log_now(&logger); // line 2 waits in the queue
        for _ in 0..3 {
            log_now(&logger); // lines 3 to 5 find the queue full
        }
        drop(stall);
        let finisher = logger.clone();
        tokio::task::spawn_blocking(move || finisher.finish())
            .await
            .unwrap();
        logger.log(entry());
        let finisher = logger.clone();
        tokio::task::spawn_blocking(move || finisher.finish())
            .await
            .unwrap();
        let lines: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[..2].iter().all(|l| l.get("dropped").is_none()));
        assert_eq!(lines[2]["dropped"], 3, "the last line counts lines 3 to 5");
    }
}
