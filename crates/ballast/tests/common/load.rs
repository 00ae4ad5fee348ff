//! A load client for zero-downtime tests: steady requests across several
//! URLs from several keep-alive connections, every response counted.

use std::collections::BTreeMap;
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
}

/// Sends `rate` requests per second spread over `urls` from `workers`
/// connections until `stop` turns true; each request has a 10 s deadline.
pub async fn run(
    urls: Vec<String>,
    rate: u32,
    workers: u32,
    mut stop: watch::Receiver<bool>,
) -> LoadReport {
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let started = Instant::now();
    let period = Duration::from_secs_f64(workers as f64 / rate as f64);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (urls, report, mut stop) = (urls.clone(), report.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client: Client<_, Empty<bytes::Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = w as usize;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                if *stop.borrow() {
                    break;
                }
                let url = &urls[n % urls.len()];
                n += 1;
                let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                    let resp = client
                        .get(url.parse().unwrap())
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = resp.status().as_u16();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    Ok::<_, String>((status, String::from_utf8_lossy(&body).trim().to_string()))
                })
                .await
                .unwrap_or_else(|_| Err("no answer within 10s".into()));
                let mut r = report.lock().unwrap();
                r.sent += 1;
                match outcome {
                    Ok((200, body)) => {
                        r.ok += 1;
                        *r.versions.entry(body).or_default() += 1;
                    }
                    other => {
                        r.failed += 1;
                        if r.failures.len() < 10 {
                            r.failures.push(format!("{url}: {other:?}"));
                        }
                    }
                }
            }
        }));
    }
    let _ = stop.changed().await;
    for t in tasks {
        let _ = t.await;
    }
    let mut r = report.lock().unwrap().clone();
    r.seconds = started.elapsed().as_secs_f64();
    r
}
