//! The HTTP side of `ballast watch`: on one address (`watch.listen`,
//! loopback unless allowed otherwise), from the latest published
//! [`Status`], it serves
//! - `GET /metrics`: Prometheus text ([`metrics`]);
//! - `GET /`: the status page, HTML without JavaScript ([`page`]);
//! - `GET /healthz`: watch's own health: 200 while looks keep completing,
//!   503 once none has for three intervals ([`healthy`]).
//!
//! Requests only read the status; the watcher's loop publishes it. A
//! bounded number of connections at a time, each within a deadline.

pub mod metrics;
pub mod page;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::status::Status;
use super::Millis;
use crate::error::{Error, Result};

/// Connections served at once; the next ones wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request's head.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Time a connection may stay open, keep-alive included.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Time answers under way get to finish when the server stops.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

/// A running server; [`Server::stop`] ends it.
pub struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// What answers read.
#[derive(Clone)]
struct Shared {
    status: watch::Receiver<Status>,
    /// When the last look was seen completed (a status with a new `at`).
    looked: Arc<Mutex<Option<Millis>>>,
    interval: Duration,
    deadline: Duration,
}

impl Server {
    /// Listens on `addr` and serves from `status` until stopped. `interval`
    /// and `deadline` are `watch.interval` and `watch.deadline`: the page
    /// refreshes on the first, the health check allows for both.
    pub async fn start(
        addr: SocketAddr,
        status: watch::Receiver<Status>,
        interval: Duration,
        deadline: Duration,
    ) -> Result<Server> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::failed("serve metrics and the status page", format!("listen on {addr}: {e}"))
                .hint("another process has this port? Choose another with `--listen 127.0.0.1:PORT` or `watch.listen`")
        })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let shared = Shared {
            status,
            looked: Arc::new(Mutex::new(None)),
            interval,
            deadline,
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, shared, stopped));
        Ok(Server { addr, stop, task })
    }

    /// The address it listens on (the port chosen, for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets answers under way finish (briefly), and ends.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Whether watch is healthy: a look completed at `looked` no longer ago
/// than three intervals (three deadlines, if longer: a look waits that
/// long for a host that does not answer).
pub fn healthy(
    looked: Option<Millis>,
    now: Millis,
    interval: Duration,
    deadline: Duration,
) -> bool {
    let allowed = super::backoff::millis(interval.max(deadline)).saturating_mul(3);
    looked.is_some_and(|at| now.saturating_sub(at) <= allowed)
}

async fn serve(listener: TcpListener, mut shared: Shared, mut stopped: oneshot::Receiver<()>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    let mut last = shared.status.borrow().at;
    let mut publishing = true;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            changed = shared.status.changed(), if publishing => match changed {
                Ok(()) => {
                    let at = shared.status.borrow_and_update().at;
                    if at != last {
                        last = at;
                        *lock(&shared.looked) = Some(super::now());
                    }
                }
                // The watcher ended: its last status stays served.
                Err(_) => publishing = false,
            },
            accepted = accept(&listener, &permits) => {
                while conns.try_join_next().is_some() {}
                let Some((stream, permit)) = accepted else { continue };
                conns.spawn(connection(stream, permit, shared.clone()));
            }
        }
    }
    drop(listener);
    let finishing = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(STOP_DEADLINE, finishing).await;
    conns.abort_all();
}

/// The next connection, once one of the permits is free; `None` after a
/// failed accept (a file descriptor limit): tried again a little later.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, permit)),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

async fn connection(stream: TcpStream, permit: OwnedSemaphorePermit, shared: Shared) {
    let _permit = permit;
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = answer(&shared, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
}

fn lock(looked: &Mutex<Option<Millis>>) -> std::sync::MutexGuard<'_, Option<Millis>> {
    looked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn answer<B>(shared: &Shared, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/" | "/metrics" | "/healthz") {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /, /metrics or /healthz\n".into(),
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let now = super::now();
    match path {
        "/metrics" => {
            let text = metrics::render(&shared.status.borrow());
            reply(StatusCode::OK, metrics::CONTENT_TYPE, text)
        }
        "/healthz" => {
            let looked = *lock(&shared.looked);
            let (code, text) = match (
                healthy(looked, now, shared.interval, shared.deadline),
                looked,
            ) {
                (true, Some(at)) => (
                    StatusCode::OK,
                    format!(
                        "ok: last look completed {} ago\n",
                        page::ago(now.saturating_sub(at))
                    ),
                ),
                (_, Some(at)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "stuck: last look completed {} ago\n",
                        page::ago(now.saturating_sub(at))
                    ),
                ),
                (_, None) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no look completed yet\n".into(),
                ),
            };
            reply(code, "text/plain; charset=utf-8", text)
        }
        _ => {
            let refresh = shared.interval.max(Duration::from_secs(5));
            let html = page::render(&shared.status.borrow(), now, refresh);
            let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", html);
            r.headers_mut().insert(
                "content-security-policy",
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            r
        }
    }
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A small status for the tests of the server, the metrics and the page.
#[cfg(test)]
fn sample() -> Status {
    use super::assess::{Cause, Condition};
    use super::incident::Incident;
    use super::proxy_look::RouteCounts;
    use super::status::{ContainerStatus, HostStatus, ProxyStatus};
    use super::{Key, Subject};
    use crate::release::ContainerState;
    use std::collections::BTreeMap;
    let at: Millis = 1_700_000_000_000;
    let incident = |key: Key, since: Millis, cause: &str| Incident {
        alerted: true,
        ..Incident::new(key, cause, at - since)
    };
    let db = Subject::Accessory("db".into());
    let mut s = Status {
        service: "shop".into(),
        at,
        ..Status::default()
    };
    s.hosts.insert(
        "a".into(),
        HostStatus {
            up: true,
            error: None,
            latency_ms: Some(120),
            disk_used_percent: Some(42),
        },
    );
    s.hosts.insert(
        "b".into(),
        HostStatus {
            up: false,
            error: Some("ssh: <refused> & \"gone\"".into()),
            latency_ms: Some(3000),
            disk_used_percent: None,
        },
    );
    s.proxies.insert(
        "a".into(),
        ProxyStatus {
            up: true,
            error: None,
            routes: BTreeMap::from([(
                "web".into(),
                RouteCounts {
                    requests: 1_200,
                    responses_5xx: 3,
                },
            )]),
        },
    );
    s.containers.push(ContainerStatus {
        host: "a".into(),
        subject: Subject::Role("web".into()),
        name: Some("shop-web-v1".into()),
        version: Some("v1".into()),
        state: Some(ContainerState::Running),
        condition: Condition::Healthy,
        restarts: 1,
        breaker_open: false,
        started_at: Some(at - 3_660_000),
    });
    s.containers.push(ContainerStatus {
        host: "a".into(),
        subject: db.clone(),
        name: Some("shop-db".into()),
        version: None,
        state: Some(ContainerState::Exited),
        condition: Condition::Failing(Cause::Exited { code: Some(137) }),
        restarts: 3,
        breaker_open: true,
        started_at: Some(at - 60_000),
    });
    s.incidents.push(incident(
        Key::host_down("b"),
        120_000,
        "no answer within 3s",
    ));
    s.incidents.push(incident(
        Key::container("a", &db),
        30_000,
        "exited with code 137",
    ));
    s.counters.looks = 10;
    s.counters.restarts = 2;
    s.counters
        .restarts_of
        .insert(Subject::Role("web".into()), 2);
    s.counters.docker_restarts = 1;
    s.counters.incidents_opened = 3;
    s.counters.notices = 4;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn healthy_while_looks_complete_within_three_intervals() {
        let (interval, deadline) = (Duration::from_secs(5), Duration::from_secs(3));
        assert!(!healthy(None, 100_000, interval, deadline), "no look yet");
        assert!(healthy(Some(100_000), 100_000, interval, deadline));
        assert!(healthy(Some(100_000), 115_000, interval, deadline));
        assert!(!healthy(Some(100_000), 115_001, interval, deadline));
        // A deadline longer than the interval: a look may take that long.
        assert!(healthy(Some(100_000), 130_000, interval, 10 * S));
        assert!(!healthy(Some(100_000), 130_001, interval, 10 * S));
        // A clock that went back is not a stuck watcher.
        assert!(healthy(Some(100_000), 90_000, interval, deadline));
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let code = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
        (code, body)
    }

    #[tokio::test]
    async fn serves_the_latest_status_and_its_health() {
        let (tx, rx) = watch::channel(Status::default());
        let any = "127.0.0.1:0".parse().unwrap();
        let server = Server::start(any, rx, S, S).await.unwrap();
        let addr = server.addr();
        assert_eq!(get(addr, "/healthz").await.0, 503);
        let mut status = sample();
        status.at = super::super::now();
        tx.send(status).unwrap();
        let until = tokio::time::Instant::now() + 5 * S;
        while get(addr, "/healthz").await.0 != 200 {
            assert!(tokio::time::Instant::now() < until, "never healthy");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (code, metrics) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(
            metrics.contains("ballast_watch_host_up{service=\"shop\",host=\"b\"} 0\n"),
            "{metrics}"
        );
        let (code, html) = get(addr, "/").await;
        assert_eq!(code, 200);
        assert!(html.contains("host b down"), "{html}");
        assert_eq!(get(addr, "/nothing").await.0, 404);
        server.stop().await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_with_a_hint() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (_tx, rx) = watch::channel(Status::default());
        let e = Server::start(taken.local_addr().unwrap(), rx, S, S)
            .await
            .err()
            .unwrap();
        assert!(e.cause.starts_with("listen on 127.0.0.1:"), "{e}");
        assert!(e.hint.unwrap().contains("--listen"));
    }
}
