//! A load client for zero-downtime tests: steady requests across several
//! URLs from several keep-alive connections, every response counted.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

/// What the load saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub sent: usize,
    pub ok: usize,
    /// The first failures, with why (status or error).
    pub failures: Vec<String>,
    pub failed: usize,
    /// How many 200 answers each body (version) got.
    pub versions: BTreeMap<String, usize>,
    pub seconds: f64,
}

impl LoadReport {
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
                    self.failures.push(format!("{what}: {other:?}"));
                }
            }
        }
    }
}

/// What one request got: its status and trimmed body, or why none.
pub type Outcome = Result<(u16, String), String>;

/// `request`'s outcome, or a failure when it takes more than 10 s.
pub async fn within_deadline(request: impl Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .unwrap_or_else(|_| Err("no answer within 10s".into()))
}

/// The status and trimmed body of `resp`.
pub async fn status_and_body(resp: hyper::Response<hyper::body::Incoming>) -> Outcome {
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
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
    let period = Duration::from_secs_f64(workers as f64 / rate as f64);
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
    let mut r = report.lock().unwrap().clone();
    r.seconds = started.elapsed().as_secs_f64();
    r
}

/// Sends `rate` requests per second spread over `urls` from `workers`
/// connections until `stop` turns true; each request has a 10 s deadline.
pub async fn run(
    urls: Vec<String>,
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
                        .get(url.parse().unwrap())
                        .await
                        .map_err(|e| e.to_string())?;
                    status_and_body(resp).await
                })
                .await;
                report.lock().unwrap().count(url, outcome);
            }
        }
    })
    .await
}

/// A load started on a runtime from synchronous test code, until stopped.
pub struct Running {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<LoadReport>,
}

impl Running {
    /// Starts [`run`] on `rt` against `urls`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        urls: Vec<String>,
        rate: u32,
        workers: u32,
    ) -> Running {
        let (stop, stopped) = watch::channel(false);
        let handle = rt.spawn(run(urls, rate, workers, stopped));
        Running { stop, handle }
    }

    /// Lets the last requests land (300 ms), stops, and reports.
    pub fn stop(self, rt: &tokio::runtime::Runtime) -> LoadReport {
        std::thread::sleep(Duration::from_millis(300));
        self.stop.send(true).unwrap();
        rt.block_on(self.handle).unwrap()
    }
}
