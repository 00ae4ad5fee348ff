//! A load client for zero-downtime proofs: steady requests at a fixed rate
//! across several URLs from several keep-alive connections, with every
//! request counted, connection errors and timeouts included. The quickstart
//! (`ballast lab load`) and the end-to-end tests both drive it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::watch;

use ballast_core::{Error, Result};

/// How long one request may take before it counts as failed.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// What the load saw.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LoadReport {
    /// Requests sent, whatever became of them.
    pub sent: usize,
    /// Requests answered 200.
    pub ok: usize,
    /// Requests that got another status, a connection error or no answer.
    pub failed: usize,
    /// The first failures, with why (status or error).
    pub failures: Vec<String>,
    /// How many 200 answers each body (the app's version) got.
    pub versions: BTreeMap<String, usize>,
    /// How long the load ran.
    pub seconds: f64,
}

impl LoadReport {
    /// Requests per second actually sent.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.seconds.max(0.001)
    }

    /// Counts one request to `what`: a 200 by its body (the version), any
    /// other outcome as a failure (the first ten kept, with why).
    pub fn count(&mut self, what: impl std::fmt::Display, outcome: Outcome) {
        self.sent += 1;
        match outcome {
            Ok((200, body)) => {
                self.ok += 1;
                *self.versions.entry(body).or_default() += 1;
            }
            other => {
                self.failed += 1;
                if self.failures.len() < 10 {
                    let why = match other {
                        Ok((status, _)) => format!("status {status}"),
                        Err(e) => e,
                    };
                    self.failures.push(format!("{what}: {why}"));
                }
            }
        }
    }
}

/// What one request got: its status and trimmed body, or why none.
pub type Outcome = std::result::Result<(u16, String), String>;

/// `request`'s outcome, or a failure when it takes longer than
/// [`REQUEST_DEADLINE`].
pub async fn within_deadline(request: impl Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(REQUEST_DEADLINE, request)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", REQUEST_DEADLINE.as_secs())))
}

/// The status and trimmed body of `resp`.
pub async fn status_and_body(resp: hyper::Response<hyper::body::Incoming>) -> Outcome {
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).trim().to_string()))
}

/// One worker's pace: a tick at its share of the rate, until the load stops.
pub struct Pace {
    tick: tokio::time::Interval,
    stop: watch::Receiver<bool>,
}

impl Pace {
    /// Waits for the next tick; false once the load is to stop.
    pub async fn next_tick(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => {}
            _ = self.stop.changed() => return false,
        }
        !*self.stop.borrow()
    }
}

/// Runs `workers` tasks made by `worker` (given its index, its pace for
/// `rate` requests per second in all, and the shared report) until `stop`
/// turns true; returns the report with the time taken.
pub async fn drive<F, Fut>(
    rate: u32,
    workers: u32,
    mut stop: watch::Receiver<bool>,
    worker: F,
) -> LoadReport
where
    F: Fn(u32, Pace, Arc<Mutex<LoadReport>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let started = Instant::now();
    let workers = workers.max(1);
    let period = Duration::from_secs_f64(workers as f64 / rate.max(1) as f64);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let pace = Pace {
            tick,
            stop: stop.clone(),
        };
        tasks.push(tokio::spawn(worker(w, pace, report.clone())));
    }
    let _ = stop.changed().await;
    for t in tasks {
        let _ = t.await;
    }
    let mut r = report.lock().unwrap_or_else(|e| e.into_inner()).clone();
    r.seconds = started.elapsed().as_secs_f64();
    r
}

/// Checks that every URL is a plain `http://` URL before any request goes.
pub fn parse_urls(urls: &[String]) -> Result<Vec<hyper::Uri>> {
    let step = "read the load's URLs";
    if urls.is_empty() {
        return Err(Error::input(step, "no URL given").hint("give at least one http:// URL"));
    }
    urls.iter()
        .map(|u| {
            let uri: hyper::Uri = u
                .parse()
                .map_err(|e| Error::input(step, format_args!("'{u}' is not a URL: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(Error::input(
                    step,
                    format_args!("'{u}' is not an http:// URL with a host"),
                ));
            }
            Ok(uri)
        })
        .collect()
}

/// Sends `rate` requests per second spread over `urls` from `workers`
/// keep-alive connections until `stop` turns true.
pub async fn run(
    urls: Vec<hyper::Uri>,
    rate: u32,
    workers: u32,
    stop: watch::Receiver<bool>,
) -> LoadReport {
    drive(rate, workers, stop, move |w, mut pace, report| {
        let urls = urls.clone();
        async move {
            let client: Client<_, Empty<bytes::Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let mut n = w as usize;
            while pace.next_tick().await {
                let url = &urls[n % urls.len()];
                n += 1;
                let outcome = within_deadline(async {
                    let resp = client
                        .get(url.clone())
                        .await
                        .map_err(|e| connection_error(&e))?;
                    status_and_body(resp).await
                })
                .await;
                report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .count(url, outcome);
            }
        }
    })
    .await
}

/// A connection error in words: hyper's message with its cause (refused,
/// reset), which its Display alone leaves out.
fn connection_error(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host_are_taken() {
        assert!(parse_urls(&["http://127.0.0.1:8080/".into()]).is_ok());
        for bad in ["https://x/", "127.0.0.1:80", "http:///x", "not a url"] {
            let err = parse_urls(&[bad.into()]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(parse_urls(&[]).is_err());
    }

    #[test]
    fn every_request_is_counted_and_failures_say_why() {
        let mut r = LoadReport::default();
        r.count("a", Ok((200, "v1".into())));
        r.count("a", Ok((200, "v2".into())));
        r.count("a", Ok((502, "bad".into())));
        r.count("a", Err("connection refused".into()));
        assert_eq!((r.sent, r.ok, r.failed), (4, 2, 2));
        assert_eq!(r.versions.len(), 2);
        assert_eq!(r.failures, ["a: status 502", "a: connection refused"]);
    }

    /// A real server that answers, then goes away: the load counts the
    /// answers and the refused connections alike.
    #[tokio::test]
    async fn refused_connections_count_as_failures() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let urls = parse_urls(&[format!("http://{addr}/")]).unwrap();
        let (stop, stopped) = watch::channel(false);
        let load = tokio::spawn(run(urls, 50, 2, stopped));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(true).unwrap();
        let report = load.await.unwrap();
        assert!(report.sent > 0);
        assert_eq!(report.failed, report.sent, "{report:?}");
        assert!(report.failures[0].contains("refused"), "{report:?}");
    }
}
