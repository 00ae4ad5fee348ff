//! What the watch tests need around `ballast watch`: a webhook receiver on
//! loopback that keeps the alerts it gets (and can answer 500 to the first
//! few, as a failing channel), the events of one incident among them, a
//! wait on a condition with a deadline, and plain `GET`s to watch's own
//! server (`/metrics`, `/`, `/healthz`).
//!
//! Used by the watch tests (`common::webhook`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Alerts the receiver accepted, in order.
pub type Got = Arc<Mutex<Vec<Value>>>;

/// A webhook receiver run by a test.
pub struct Receiver {
    pub port: u16,
    /// The alerts it answered 200 to.
    pub got: Got,
    /// Every POST it read, those it answered 500 to included.
    pub requests: Arc<AtomicUsize>,
}

impl Receiver {
    /// Starts a receiver on loopback that answers 500 to the first
    /// `fail_first` POSTs, then 200 to every one, keeping its JSON body.
    pub fn start(fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Got = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (keep, count) = (got.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream);
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let status = if count.fetch_add(1, Ordering::SeqCst) < fail_first {
                    "500 Internal Server Error"
                } else {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        keep.lock().unwrap().push(v);
                    }
                    "200 OK"
                };
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = reader.get_mut().write_all(answer.as_bytes());
            }
        });
        Receiver {
            port,
            got,
            requests,
        }
    }

    /// POSTs read so far, answered 500 or 200.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A receiver that answers 200 to every POST: `(port, alerts)`.
pub fn receiver() -> (u16, Got) {
    let r = Receiver::start(0);
    (r.port, r.got)
}

/// The events (`opened`, `escalated`, `recovered`, `rolled_back`...) of the alerts about
/// the incident of `kind` on `host` for `role`.
pub fn events(got: &Got, kind: &str, host: Option<&str>, role: Option<&str>) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|a| {
            let key = &a["incident"]["key"];
            key["kind"] == kind
                && key["host"].as_str() == host
                && key["subject"]["role"].as_str() == role
        })
        .map(|a| a["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Waits until `done` holds, at most `within`; fails naming `what` and
/// showing every alert received.
pub fn wait(got: &Got, what: &str, within: Duration, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > within {
            let all: Vec<String> = got
                .lock()
                .unwrap()
                .iter()
                .map(|a| a["text"].to_string())
                .collect();
            panic!(
                "{what}: not within {within:?}; alerts so far:\n{}",
                all.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// `(status code, body)` of `GET path` from watch's server on `port`.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: watch\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head[9..12].parse().unwrap(), body.to_string())
}

/// The value of the metric line that starts with `series` (`name{labels}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A free port on loopback for watch's server.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
