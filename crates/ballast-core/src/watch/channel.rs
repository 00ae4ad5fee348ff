//! Delivering alerts: a `webhook` gets the alert's JSON in a POST, a
//! `slack` channel a Slack-compatible `{"text": ...}` payload, a `command`
//! channel runs its program (argument vector, no shell) with the JSON on
//! stdin. Each channel has its own queue and task, so one that fails holds
//! up no other nor the watcher: each alert is tried up to `attempts` times,
//! the waits doubling from 1s (at most a minute), every failure logged; then
//! it is given up, logged too. URLs are shown without their path, which
//! often holds a token.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::alert::Alert;
use crate::config::watch::{AlertChannel, AlertKind};

/// One channel, ready to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub kind: AlertKind,
    pub url: Option<String>,
    pub command: Vec<String>,
    /// Deadline of one delivery.
    pub timeout: Duration,
    /// Deliveries tried per alert.
    pub attempts: u32,
}

impl Channel {
    pub fn new(c: &AlertChannel, timeout: Duration, attempts: u32) -> Channel {
        Channel {
            kind: c.kind,
            url: c.url.clone(),
            command: c.command.clone().unwrap_or_default(),
            timeout,
            attempts: attempts.max(1),
        }
    }

    /// How logs name it: `webhook http://host:port/…`, `command /bin/page`.
    pub fn name(&self) -> String {
        match self.kind {
            AlertKind::Command => {
                format!(
                    "command {}",
                    self.command.first().map_or("?", String::as_str)
                )
            }
            kind => format!(
                "{} {}",
                kind.word(),
                self.url.as_deref().map_or_else(|| "?".into(), shown_url)
            ),
        }
    }

    /// One delivery of `alert`, within the deadline.
    pub async fn deliver(&self, alert: &Alert) -> Result<(), String> {
        let work = async {
            match self.kind {
                AlertKind::Webhook => post(self.url.as_deref().unwrap_or(""), alert.json()).await,
                AlertKind::Slack => post(self.url.as_deref().unwrap_or(""), alert.slack()).await,
                AlertKind::Command => run(&self.command, alert.json()).await,
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => Err(format!(
                "no answer within {}",
                crate::error::humanize(self.timeout)
            )),
            Ok(r) => r,
        }
    }
}

/// The URL up to its host and port: the path of a webhook URL is often
/// its secret.
pub fn shown_url(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => format!(
            "{}://{}/…",
            u.scheme_str().unwrap_or("http"),
            u.authority().map_or("?", |a| a.as_str())
        ),
        Err(_) => "(invalid URL)".into(),
    }
}

/// The wait before attempt `n + 1` after attempt `n` failed.
pub fn retry_wait(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

async fn post(url: &str, body: String) -> Result<(), String> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no root certificates to check the server with: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = hyper::Request::post(uri)
        .header("content-type", "application/json")
        .header("user-agent", "ballast-watch")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| {
        let mut text = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            text.push_str(&format!(": {source}"));
        }
        text
    })?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

async fn run(argv: &[String], input: String) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no program")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{program} exited with {}: {}",
            out.status,
            stderr.trim()
        ))
    }
}

/// What a channel's task reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A delivery failed; `retry_in` says when it is tried again, `None`
    /// when it was given up.
    Failed {
        channel: String,
        error: String,
        attempt: u32,
        retry_in: Option<Duration>,
    },
    Delivered {
        channel: String,
    },
}

/// One queue per channel.
pub struct Dispatcher {
    queues: Vec<mpsc::UnboundedSender<Alert>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Dispatcher {
    /// Starts a task per channel; what happens is reported on `reports`.
    pub fn start(channels: Vec<Channel>, reports: mpsc::UnboundedSender<Report>) -> Dispatcher {
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for channel in channels {
            let (tx, mut rx) = mpsc::unbounded_channel::<Alert>();
            let reports = reports.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(alert) = rx.recv().await {
                    for attempt in 1..=channel.attempts {
                        match channel.deliver(&alert).await {
                            Ok(()) => {
                                let _ = reports.send(Report::Delivered {
                                    channel: channel.name(),
                                });
                                break;
                            }
                            Err(error) => {
                                let retry_in =
                                    (attempt < channel.attempts).then(|| retry_wait(attempt));
                                let _ = reports.send(Report::Failed {
                                    channel: channel.name(),
                                    error: crate::redact::redact(&error).into_owned(),
                                    attempt,
                                    retry_in,
                                });
                                match retry_in {
                                    Some(wait) => tokio::time::sleep(wait).await,
                                    None => break,
                                }
                            }
                        }
                    }
                }
            }));
            queues.push(tx);
        }
        Dispatcher { queues, tasks }
    }

    /// Queues `alert` on every channel.
    pub fn send(&self, alert: &Alert) {
        for q in &self.queues {
            let _ = q.send(alert.clone());
        }
    }

    /// Lets the queues drain for at most `grace`, then stops.
    pub async fn finish(self, grace: Duration) {
        drop(self.queues);
        let all = futures_util::future::join_all(self.tasks);
        let _ = tokio::time::timeout(grace, all).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_path() {
        assert_eq!(
            shown_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            shown_url("http://127.0.0.1:9000/x?token=1"),
            "http://127.0.0.1:9000/…"
        );
    }

    #[test]
    fn retries_wait_longer_each_time_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_wait(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[tokio::test]
    async fn a_command_gets_the_alert_on_stdin_and_failures_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got.json");
        let alert = sample();
        let ok = Channel {
            kind: AlertKind::Command,
            url: None,
            command: vec!["tee".into(), out.display().to_string()],
            timeout: Duration::from_secs(5),
            attempts: 1,
        };
        ok.deliver(&alert).await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), alert.json());
        let failing = Channel {
            command: vec!["false".into()],
            ..ok.clone()
        };
        let e = failing.deliver(&alert).await.unwrap_err();
        assert!(e.starts_with("false exited with"), "{e}");
        let missing = Channel {
            command: vec!["/nonexistent/page".into()],
            ..ok
        };
        let e = missing.deliver(&alert).await.unwrap_err();
        assert!(e.starts_with("cannot run /nonexistent/page"), "{e}");
    }

    /// A webhook that answers 500 first: the failure is reported with
    /// the wait before the next attempt, which is delivered.
    #[tokio::test]
    async fn a_failing_webhook_is_retried_and_reported() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 65536];
                let _ = stream.read(&mut buf);
                let status = if n == 0 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let reply =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        let channel = Channel {
            kind: AlertKind::Webhook,
            url: Some(format!("http://127.0.0.1:{port}/hook/secret-token")),
            command: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 3,
        };
        let (tx, mut reports) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher::start(vec![channel], tx);
        dispatcher.send(&sample());
        let name = format!("webhook http://127.0.0.1:{port}/…");
        assert_eq!(
            reports.recv().await.unwrap(),
            Report::Failed {
                channel: name.clone(),
                error: "answered 500 Internal Server Error".into(),
                attempt: 1,
                retry_in: Some(Duration::from_secs(1)),
            }
        );
        assert_eq!(
            reports.recv().await.unwrap(),
            Report::Delivered { channel: name }
        );
        dispatcher.finish(Duration::from_secs(1)).await;
    }

    fn sample() -> Alert {
        use super::super::incident::{Event, Incident, Notice};
        use super::super::Key;
        let incident = Incident {
            alerted: true,
            ..Incident::new(Key::host_down("h1"), "does not answer", 0)
        };
        Alert::new(
            "shop",
            &Notice {
                event: Event::Opened,
                incident,
                at: 0,
            },
            vec![],
        )
    }
}
