//! Shared harness of the integration tests: tiny upstream servers (v1, v2,
//! …), a proxy on loopback port 0, an HTTP client and admin helpers.
//! Everything listens on 127.0.0.1 only.

#![allow(dead_code)]

pub mod process;
pub mod tls;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ballast_proxy::wire::{DeployRequest, HealthSpec};
use ballast_proxy::{
    admin_request, AccessLog, AdminError, AdminRequest, AdminResponse, ProxyConfig, Started,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, Message};
use tokio_tungstenite::WebSocketStream;

/// A tiny upstream: answers its name, `/up` (200 when healthy, else 503),
/// `/slow?ms=N`, `/chunked` (its name, chunked), `/headers` (the request's
/// headers as JSON), `/echo` (the request body, read to its end),
/// `/bytes?n=N` (N bytes, sized), `/bytes-chunked?n=N` (N bytes, chunked)
/// and `/ws` (a WebSocket echoing `name:message`).
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    /// Whether `/up` answers 200.
    pub healthy: Arc<AtomicBool>,
    /// Requests seen, `/up` excluded.
    pub hits: Arc<AtomicU64>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// A healthy upstream.
    pub async fn start(name: &str) -> Upstream {
        Upstream::start_with(name, true).await
    }

    /// An upstream whose `/up` answers `healthy ? 200 : 503`.
    pub async fn start_with(name: &str, healthy: bool) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(healthy));
        let hits = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let accepted = Arc::clone(&connections);
        let (n, h, c) = (name.to_string(), Arc::clone(&healthy), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            // Dropping this set (when the task is aborted) ends every
            // connection: the upstream is gone, as a stopped container.
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let (n, h, c) = (n.clone(), Arc::clone(&h), Arc::clone(&c));
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        answer(req, n.clone(), Arc::clone(&h), Arc::clone(&c))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Upstream {
            name: name.to_string(),
            addr,
            healthy,
            hits,
            connections,
            task,
        }
    }

    /// `ip:port`, as a deploy names it.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the upstream like a stopped container: no listener, no
    /// connection left.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut req: Request<Incoming>,
    name: String,
    healthy: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: u16, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(response)
    };
    let path = req.uri().path().to_string();
    if path == "/up" {
        return if healthy.load(Ordering::SeqCst) {
            text(200, "ok".into())
        } else {
            text(503, "starting".into())
        };
    }
    hits.fetch_add(1, Ordering::SeqCst);
    match path.as_str() {
        "/slow" => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(200, name)
        }
        "/chunked" => {
            let mut response = Response::new(Full::new(Bytes::from(name)));
            response.headers_mut().insert(
                header::TRANSFER_ENCODING,
                header::HeaderValue::from_static("chunked"),
            );
            Ok(response)
        }
        "/echo" => match req.into_body().collect().await {
            Ok(body) => {
                let body = body.to_bytes();
                Ok(Response::new(Full::new(body)))
            }
            Err(e) => text(400, format!("broken body: {e}")),
        },
        "/bytes" | "/bytes-chunked" => {
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut response = Response::new(Full::new(Bytes::from(vec![b'x'; n])));
            if path == "/bytes-chunked" {
                response.headers_mut().insert(
                    header::TRANSFER_ENCODING,
                    header::HeaderValue::from_static("chunked"),
                );
            }
            Ok(response)
        }
        "/headers" => {
            let mut seen: BTreeMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
                .collect();
            seen.insert(":version".into(), format!("{:?}", req.version()));
            seen.insert(":uri".into(), req.uri().to_string());
            text(200, serde_json::to_string(&seen).unwrap())
        }
        "/ws" => {
            let Some(key) = req.headers().get("sec-websocket-key") else {
                return text(400, "not a websocket request".into());
            };
            let accept = derive_accept_key(key.as_bytes());
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let upgraded = upgrade.await.unwrap();
                let mut ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                while let Some(Ok(message)) = ws.next().await {
                    match message {
                        Message::Text(t) => {
                            let reply = format!("{name}:{}", t.as_str());
                            if ws.send(Message::text(reply)).await.is_err() {
                                break;
                            }
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
            });
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = response.headers_mut();
            h.insert(header::CONNECTION, "upgrade".parse().unwrap());
            h.insert(header::UPGRADE, "websocket".parse().unwrap());
            h.insert("sec-websocket-accept", accept.parse().unwrap());
            Ok(response)
        }
        "/fail" => text(500, format!("{name} failed")),
        _ => text(200, name),
    }
}

/// An upstream that answers `/up` with 200, and anything else with a
/// response head and the start of a 1000-byte body, then nothing more while
/// holding the connection open. Stops when dropped.
pub struct StallingUpstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl StallingUpstream {
    pub async fn start() -> StallingUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                connections.spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    if head.starts_with(b"GET /up ") {
                        let ok =
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                        let _ = stream.write_all(ok).await;
                        return;
                    }
                    let start = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial";
                    let _ = stream.write_all(start).await;
                    std::future::pending::<()>().await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        StallingUpstream { addr, task }
    }
}

impl Drop for StallingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `request` (raw bytes) on a new connection to `addr` and reads the
/// answer until the proxy closes the connection (at most `within`).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the proxy did not answer and close within {within:?}"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// A proxy on loopback with its admin socket and state in `dir`.
pub struct TestProxy {
    pub started: Started,
    pub dir: PathBuf,
}

impl TestProxy {
    pub fn config(dir: &Path) -> ProxyConfig {
        let mut config = ProxyConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.join("admin/proxy.sock"),
            dir.join("state"),
        );
        config.access_log = AccessLog::Off;
        config.timeouts.shutdown_grace = Duration::from_secs(5);
        config
    }

    /// [`TestProxy::config`] with the access log sent to the returned
    /// channel, one line per request.
    pub fn config_logging(
        dir: &Path,
    ) -> (ProxyConfig, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let mut config = Self::config(dir);
        config.access_log = AccessLog::Channel(tx);
        (config, lines)
    }

    pub async fn start(dir: &Path) -> TestProxy {
        TestProxy::start_with(Self::config(dir)).await
    }

    pub async fn start_with(config: ProxyConfig) -> TestProxy {
        let dir = config.state_dir.parent().unwrap().to_path_buf();
        let started = ballast_proxy::start(config).await.unwrap();
        TestProxy { started, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.started.http_addr()
    }

    pub fn socket(&self) -> PathBuf {
        self.started.admin_socket().to_path_buf()
    }

    pub async fn admin(&self, request: AdminRequest) -> Result<AdminResponse, AdminError> {
        admin_request(&self.socket(), &request, Duration::from_secs(60)).await
    }

    /// Deploys `targets` as `service`; health every 20 ms.
    pub async fn deploy(
        &self,
        service: &str,
        hosts: &[&str],
        prefix: Option<&str>,
        targets: &[&Upstream],
        deploy_timeout_ms: u64,
        drain_timeout_ms: u64,
    ) -> Result<AdminResponse, AdminError> {
        self.admin(AdminRequest::Deploy(deploy_request(
            service,
            hosts,
            prefix,
            targets,
            deploy_timeout_ms,
            drain_timeout_ms,
        )))
        .await
    }

    /// The targets the proxy routes `service` to now.
    pub async fn targets_of(&self, service: &str) -> Vec<String> {
        let status = self
            .admin(AdminRequest::Status)
            .await
            .unwrap()
            .status
            .unwrap();
        status
            .services
            .into_iter()
            .find(|s| s.name == service)
            .map(|s| s.targets.into_iter().map(|t| t.addr).collect())
            .unwrap_or_default()
    }
}

/// A proxy started with `config` whose default service `web` routes to a
/// fresh upstream `v1`.
pub async fn proxy_serving_v1(config: ProxyConfig) -> (TestProxy, Upstream) {
    let proxy = TestProxy::start_with(config).await;
    let v1 = Upstream::start("v1").await;
    proxy
        .deploy("web", &[], None, &[&v1], 5000, 1000)
        .await
        .unwrap();
    (proxy, v1)
}

pub fn deploy_request(
    service: &str,
    hosts: &[&str],
    prefix: Option<&str>,
    targets: &[&Upstream],
    deploy_timeout_ms: u64,
    drain_timeout_ms: u64,
) -> DeployRequest {
    DeployRequest {
        service: service.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        path_prefix: prefix.map(str::to_string),
        targets: targets.iter().map(|t| t.target()).collect(),
        health: HealthSpec {
            path: "/up".into(),
            interval_ms: 20,
            timeout_ms: 1000,
        },
        deploy_timeout_ms,
        max_request_body_bytes: None,
        max_response_body_bytes: None,
        drain_timeout_ms,
    }
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A pooled keep-alive HTTP/1.1 client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// `GET http://proxy/path` with `Host: host`; the status and body.
pub async fn get(
    client: &HttpClient,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(StatusCode, String), String> {
    let request = Request::get(format!("http://{proxy}{path}"))
        .header(header::HOST, host)
        .body(Empty::new())
        .unwrap();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Same, with the response headers.
pub async fn get_full(
    client: &HttpClient,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> (StatusCode, hyper::HeaderMap, String) {
    let request = Request::get(format!("http://{proxy}{path}"))
        .header(header::HOST, host)
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Polls `probe` every 10 ms until it holds (at most 20 s, then panics).
pub async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..2000 {
        if probe().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}
