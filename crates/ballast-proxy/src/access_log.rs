//! The access log: one JSON line per request.
//!
//! Lines go through a bounded queue to one writer task, so a slow stdout
//! never holds a request; when the queue is full, lines are dropped and
//! counted, and the count is written with the next line that gets through.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

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

/// One request as logged.
#[derive(Debug, Clone, Serialize)]
pub struct AccessEntry {
    /// When the request ended, RFC 3339 in UTC.
    pub time: String,
    /// The client's address (the TCP peer).
    pub client: IpAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `HTTP/1.1`, `HTTP/2.0`, …
    pub protocol: String,
    /// Request method.
    pub method: String,
    /// The Host the client asked for.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// The status sent to the client.
    pub status: u16,
    /// The service that answered (none when no route matched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The target the request went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
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

/// The current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Hands lines to the configured sink; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    sink: Sink,
    /// Lines dropped since the last one written.
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, Clone)]
enum Sink {
    Queue(mpsc::Sender<String>),
    Channel(mpsc::UnboundedSender<String>),
    Off,
}

/// How many lines may wait for the writer before new ones are dropped.
const QUEUE: usize = 8192;

impl AccessLogger {
    /// A logger for `target`; for stdout this spawns the writer task, which
    /// ends once every logger clone is dropped.
    pub fn start(target: &AccessLog) -> AccessLogger {
        let sink = match target {
            AccessLog::Off => Sink::Off,
            AccessLog::Channel(tx) => Sink::Channel(tx.clone()),
            AccessLog::Stdout => {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(write_lines(rx));
                Sink::Queue(tx)
            }
        };
        AccessLogger {
            sink,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Logs one request.
    pub fn log(&self, mut entry: AccessEntry) {
        if matches!(self.sink, Sink::Off) {
            return;
        }
        entry.dropped = self.dropped.swap(0, Ordering::Relaxed);
        let line = serde_json::to_string(&entry).expect("access entries always serialize");
        let sent = match &self.sink {
            Sink::Queue(tx) => tx.try_send(line).is_ok(),
            Sink::Channel(tx) => tx.send(line).is_ok(),
            Sink::Off => true,
        };
        if !sent {
            self.dropped.fetch_add(1 + entry.dropped, Ordering::Relaxed);
        }
    }
}

/// Writes queued lines to stdout, flushing whenever the queue runs empty.
async fn write_lines(mut rx: mpsc::Receiver<String>) {
    let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
    while let Some(line) = rx.recv().await {
        let mut next = Some(line);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).await.is_err() || out.write_all(b"\n").await.is_err()
            {
                return;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AccessEntry {
        AccessEntry {
            time: now_rfc3339(),
            client: "127.0.0.1".parse().unwrap(),
            scheme: "http",
            protocol: "HTTP/1.1".into(),
            method: "GET".into(),
            host: "shop.example.com".into(),
            path: "/cart?id=1".into(),
            status: 200,
            service: Some("shop".into()),
            target: Some("10.0.0.1:80".into()),
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
        assert_eq!(value["service"], "shop");
        assert_eq!(value["path"], "/cart?id=1");
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
}
