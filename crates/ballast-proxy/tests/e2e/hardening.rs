//! What misbehaving clients and upstreams cannot do: hold connections by
//! sending slowly or nothing (request-head deadline, idle timeout, HTTP/2
//! pings), stall bodies, exceed the connection cap, pile up requests behind
//! a pause, or send bodies over a route's limits; and the state kept from
//! other users. Short deadlines, loopback only.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ballast_proxy::wire::{PauseRequest, ResumeRequest};
use ballast_proxy::AdminRequest;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::{header, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Reads from `stream` until it closes (or fails); how long that took.
/// Panics if it stays open for `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection was still open after {within:?}"
    );
    start.elapsed()
}

#[tokio::test]
async fn a_client_slow_with_its_request_head_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.timeouts.client_header = Duration::from_millis(400);
    let (proxy, v1) = proxy_serving_v1(config).await;

    // Connects and sends nothing at all.
    let mut silent = TcpStream::connect(proxy.addr()).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");

    // Starts an HTTP/2 preface and stops halfway.
    let mut half = TcpStream::connect(proxy.addr()).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    closed_within(&mut half, Duration::from_secs(5)).await;

    // Trickles one header line every 100 ms, forever.
    let mut trickle = TcpStream::connect(proxy.addr()).await.unwrap();
    trickle
        .write_all(b"GET / HTTP/1.1\r\nHost: x.test\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(5) {
        if trickle.write_all(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), trickle.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("a response to an unfinished request head"),
            Err(_) => {}
        }
    }
    assert!(closed, "a trickling client was never cut off");
    assert_eq!(v1.hits.load(Ordering::SeqCst), 0);
    proxy.started.stop().await;
}

#[tokio::test]
async fn idle_connections_stay_past_the_head_deadline_and_close_at_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.timeouts.client_header = Duration::from_millis(300);
    config.timeouts.client_idle = Duration::from_millis(2000);
    let (proxy, _v1) = proxy_serving_v1(config).await;
    let get = || {
        Request::get("http://x.test/")
            .header(header::HOST, "x.test")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    // HTTP/1.1 keep-alive.
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender.send_request(get()).await.unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "v1"
    );
    // Idle longer than the head deadline: still open for the next request.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let response = sender.send_request(get()).await.unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "v1"
    );
    let idle = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), connection)
        .await
        .expect("an idle HTTP/1.1 connection is closed")
        .unwrap()
        .unwrap();
    assert!(
        idle.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        idle.elapsed()
    );

    // HTTP/2: closed gracefully (GOAWAY) once idle.
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender.send_request(get()).await.unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "v1"
    );
    let idle = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(6), connection)
        .await
        .expect("an idle HTTP/2 connection is closed");
    assert!(
        idle.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        idle.elapsed()
    );
    proxy.started.stop().await;
}

/// The HTTP/2 frame types read from `stream` until it closes.
async fn h2_frames_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<(u8, u8)> {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut bytes)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {within:?}"
    );
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 9 {
        let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        frames.push((rest[3], rest[4])); // (type, flags)
        rest = &rest[(9 + length).min(rest.len())..];
    }
    frames
}

#[tokio::test]
async fn http2_clients_are_pinged_and_dropped_when_they_stop_answering() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.timeouts.h2_keep_alive_interval = Some(Duration::from_millis(200));
    config.timeouts.h2_keep_alive_timeout = Duration::from_millis(1000);
    config.timeouts.client_header = Duration::from_secs(30);
    let (proxy, _v1) = proxy_serving_v1(config).await;

    // A client that answers pings (hyper's does) keeps its connection.
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let get = || {
        Request::get("http://x.test/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    assert_eq!(sender.send_request(get()).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sender.send_request(get()).await.unwrap().status(), 200);

    // One that opens HTTP/2 and then goes silent is pinged, then dropped.
    let mut silent = TcpStream::connect(proxy.addr()).await.unwrap();
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let frames = h2_frames_until_closed(&mut silent, Duration::from_secs(5)).await;
    const PING: u8 = 0x6;
    assert!(
        frames
            .iter()
            .any(|&(kind, flags)| kind == PING && flags & 1 == 0),
        "no ping among {frames:?}"
    );
    proxy.started.stop().await;
}

#[tokio::test]
async fn a_stalled_request_body_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.timeouts.client_body = Duration::from_millis(300);
    let (proxy, _v1) = proxy_serving_v1(config).await;
    let start = Instant::now();
    let answer = raw_exchange(
        proxy.addr(),
        b"POST /echo HTTP/1.1\r\nHost: x.test\r\nContent-Length: 100\r\n\r\n0123456789",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.ends_with("request body sent nothing for 300 ms\n"),
        "{answer}"
    );
    assert!(start.elapsed() >= Duration::from_millis(250));
    proxy.started.stop().await;
}

#[tokio::test]
async fn a_stalled_response_body_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, mut lines) = TestProxy::config_logging(dir.path());
    config.timeouts.upstream_body = Duration::from_millis(300);
    let proxy = TestProxy::start_with(config).await;
    let stalling = StallingUpstream::start().await;
    let mut request = deploy_request("web", &[], None, &[], 5000, 1000);
    request.targets = vec![stalling.addr.to_string()];
    proxy.admin(AdminRequest::Deploy(request)).await.unwrap();

    let fetched = tokio::time::timeout(
        Duration::from_secs(5),
        get(&client(), proxy.addr(), "x.test", "/"),
    )
    .await
    .expect("the stalled body is cut off in time");
    assert!(fetched.is_err(), "{fetched:?}");
    let line: serde_json::Value = serde_json::from_str(&lines.recv().await.unwrap()).unwrap();
    assert_eq!(line["status"], 504);
    assert_eq!(
        line["error"],
        "response cut off: no part of the body arrived for 300 ms"
    );
    // The request no longer counts in flight: a drain would not wait for it.
    let status = proxy.admin(AdminRequest::Status).await.unwrap();
    assert_eq!(status.status.unwrap().services[0].targets[0].in_flight, 0);
    proxy.started.stop().await;
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_get_503_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.max_connections = 2;
    let (proxy, _v1) = proxy_serving_v1(config).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::get("/")
            .header(header::HOST, "x.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
        open.push(sender);
    }

    let answer = raw_exchange(
        proxy.addr(),
        b"GET / HTTP/1.1\r\nHost: x.test\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nretry-after: 5\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nthe proxy has too many open connections; try again shortly\n"),
        "{answer}"
    );

    // The connections already open are served as before.
    for sender in &mut open {
        let request = Request::get("/")
            .header(header::HOST, "x.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "v1"
        );
    }
    // Once one closes, a new connection is served again.
    drop(open.pop());
    let addr = proxy.addr();
    eventually("a place came free", || async move {
        matches!(
            get(&client(), addr, "x.test", "/").await,
            Ok((StatusCode::OK, _))
        )
    })
    .await;
    proxy.started.stop().await;
}

#[tokio::test]
async fn a_pause_holds_a_bounded_queue_and_refuses_the_rest_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.max_held_requests = 2;
    let (proxy, v1) = proxy_serving_v1(config).await;
    proxy
        .admin(AdminRequest::Pause(PauseRequest {
            service: "web".into(),
            max_ms: 60_000,
        }))
        .await
        .unwrap();
    let addr = proxy.addr();
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(&client(), addr, "x.test", "/").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(held.iter().all(|h| !h.is_finished()), "both are held");

    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        get_full(&client(), addr, "x.test", "/"),
    )
    .await
    .expect("the third request is answered at once");
    let (status, headers, body) = refused;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(
        body,
        "the service is paused and already holds 2 requests; try again shortly\n"
    );
    assert_eq!(v1.hits.load(Ordering::SeqCst), 0);

    proxy
        .admin(AdminRequest::Resume(ResumeRequest {
            service: "web".into(),
        }))
        .await
        .unwrap();
    for h in held {
        assert_eq!(h.await.unwrap().unwrap(), (StatusCode::OK, "v1".into()));
    }
    proxy.started.stop().await;
}

#[tokio::test]
async fn bodies_over_a_routes_limits_get_413_and_502() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut lines) = TestProxy::config_logging(dir.path());
    let proxy = TestProxy::start_with(config).await;
    let v1 = Upstream::start("v1").await;
    let mut request = deploy_request("web", &[], None, &[&v1], 5000, 1000);
    request.max_request_body_bytes = Some(16);
    request.max_response_body_bytes = Some(1000);
    proxy.admin(AdminRequest::Deploy(request)).await.unwrap();
    let addr = proxy.addr();
    let within = Duration::from_secs(10);

    // Within the limits, both ways.
    let answer = raw_exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
        within,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("\r\n\r\n0123456789"), "{answer}");
    let (status, body) = get(&client(), addr, "x.test", "/bytes?n=1000")
        .await
        .unwrap();
    assert_eq!((status, body.len()), (StatusCode::OK, 1000));

    // A declared request body over the limit: refused before forwarding.
    let hits = v1.hits.load(Ordering::SeqCst);
    let answer = raw_exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x.test\r\nContent-Length: 17\r\n\r\n01234567890123456",
        within,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.ends_with("request body is larger than the route's limit of 16 bytes\n"),
        "{answer}"
    );
    assert_eq!(v1.hits.load(Ordering::SeqCst), hits, "never forwarded");

    // A streamed (chunked) one: refused once past the limit.
    let answer = raw_exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          a\r\n0123456789\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
        within,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");

    // A declared response body over the limit: 502.
    let (status, body) = get(&client(), addr, "x.test", "/bytes?n=1001")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body,
        "upstream response body of 1001 bytes is larger than the route's limit of 1000 bytes\n"
    );
    // A streamed one: cut off, and logged as 502.
    let fetched = get(&client(), addr, "x.test", "/bytes-chunked?n=5000").await;
    assert!(fetched.is_err(), "{fetched:?}");
    let line = loop {
        let line: serde_json::Value = serde_json::from_str(&lines.recv().await.unwrap()).unwrap();
        if line["path"] == "/bytes-chunked?n=5000" {
            break line;
        }
    };
    assert_eq!(line["status"], 502);
    assert_eq!(
        line["error"],
        "response cut off: the body is larger than the route's limit of 1000 bytes"
    );
    proxy.started.stop().await;
}

#[tokio::test]
async fn a_world_readable_state_directory_is_restricted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let routes = state.join(ballast_proxy::STATE_FILE);
    std::fs::write(&routes, br#"{"format":1,"services":[]}"#).unwrap();
    let mode = |path: &std::path::Path, m| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&state, 0o755);
    mode(&routes, 0o644);
    let proxy = TestProxy::start(dir.path()).await;
    let mode_of =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_of(&state), 0o700);
    assert_eq!(mode_of(&routes), 0o600);
    proxy.started.stop().await;
}
