//! Routing and the proxy's other behaviour: Host and path-prefix routing,
//! round robin, connections spread over lanes, forwarding headers (replaced
//! from clients, kept from trusted proxies), HTTP/2
//! (h2c), maintenance, pause/resume, upstream errors, the access log, the
//! admin socket's refusals, and routes surviving a restart.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use ballast_proxy::wire::{MaintenanceRequest, PauseRequest, RemoveRequest, ResumeRequest};
use ballast_proxy::{AdminError, AdminRequest};
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{header, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn host_and_path_prefix_pick_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(dir.path()).await;
    let (shop, api, blog) = (
        Upstream::start("shop").await,
        Upstream::start("api").await,
        Upstream::start("blog").await,
    );
    proxy
        .deploy("shop", &["shop.test"], None, &[&shop], 5000, 1000)
        .await
        .unwrap();
    proxy
        .deploy(
            "shop-api",
            &["shop.test"],
            Some("/api"),
            &[&api],
            5000,
            1000,
        )
        .await
        .unwrap();
    proxy
        .deploy(
            "blog",
            &["blog.test", "www.blog.test"],
            None,
            &[&blog],
            5000,
            1000,
        )
        .await
        .unwrap();

    let c = client();
    let addr = proxy.addr();
    for (host, path, expected) in [
        ("shop.test", "/", "shop"),
        ("shop.test", "/cart", "shop"),
        ("shop.test", "/api", "api"),
        ("shop.test", "/api/orders?id=1", "api"),
        ("shop.test", "/apix", "shop"),
        ("SHOP.test:80", "/api/x", "api"),
        ("www.blog.test", "/post", "blog"),
    ] {
        let (status, body) = get(&c, addr, host, path).await.unwrap();
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, expected),
            "{host}{path}"
        );
    }
    // No default service: an unknown host finds nothing.
    let (status, body) = get(&c, addr, "other.test", "/").await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "no service answers this host and path\n");

    // A second service may not claim the same host and prefix.
    let err = proxy
        .deploy("shop2", &["shop.test"], None, &[&shop], 5000, 1000)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "host name shop.test with path prefix / is already served by service `shop`; \
             give one of them another host name or path_prefix"
        ),
        "{err}"
    );

    // The request reached the upstream under its own path, not rewritten.
    let (_, _, seen) = get_full(&c, addr, "shop.test", "/api/headers").await;
    assert_eq!(
        seen, "api",
        "the prefix is not stripped: /api/headers is a plain hit"
    );
    proxy.started.stop().await;
}

#[tokio::test]
async fn several_targets_share_the_traffic_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(dir.path()).await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    proxy
        .deploy("web", &[], None, &[&a, &b], 5000, 1000)
        .await
        .unwrap();
    let c = client();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        bodies.push(get(&c, proxy.addr(), "x.test", "/").await.unwrap().1);
    }
    bodies.sort();
    assert_eq!(bodies, ["a", "a", "b", "b"]);
    proxy.started.stop().await;
}

#[tokio::test]
async fn connections_are_spread_over_the_lanes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.workers = 2;
    let (proxy, _v1) = proxy_serving_v1(config).await;
    // Four clients, four kept-alive connections, each served by a lane.
    let clients: Vec<_> = (0..4).map(|_| client()).collect();
    for c in &clients {
        assert_eq!(get(c, proxy.addr(), "x.test", "/").await.unwrap().1, "v1");
    }
    assert_eq!(proxy.started.open_connections(), [2, 2]);
    drop(clients);
    eventually("closed connections leave their lanes", || async {
        proxy.started.open_connections() == [0, 0]
    })
    .await;
    proxy.started.stop().await;
}

#[tokio::test]
async fn upstream_connections_are_reused_after_sized_and_chunked_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.workers = 1;
    let (proxy, v1) = proxy_serving_v1(config).await;
    let after_health_checks = v1.connections.load(Ordering::SeqCst);
    let c = client();
    for path in ["/", "/chunked", "/", "/chunked", "/"] {
        assert_eq!(get(&c, proxy.addr(), "x.test", path).await.unwrap().1, "v1");
    }
    let used = v1.connections.load(Ordering::SeqCst) - after_health_checks;
    assert_eq!(used, 1, "one upstream connection carries every request");
    proxy.started.stop().await;
}

#[tokio::test]
async fn an_http_1_0_request_without_host_reaches_the_upstream_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, v1) = proxy_serving_v1(TestProxy::config(dir.path())).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    stream
        .write_all(b"GET /headers HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["host"], v1.target(), "{seen}");
    proxy.started.stop().await;
}

/// What the upstream saw of a request through the proxy that claims to
/// come from 203.0.113.9 over HTTPS for another host.
async fn headers_seen_through(proxy: &TestProxy) -> serde_json::Value {
    let request = Request::get(format!("http://{}/headers", proxy.addr()))
        .header(header::HOST, "shop.test")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-real-ip", "203.0.113.9")
        .header("forwarded", "for=203.0.113.9;proto=https")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.test")
        .header(header::CONNECTION, "keep-alive, x-hop")
        .header("x-hop", "must not pass")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = client().request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_client_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(dir.path()).await;
    let v1 = Upstream::start("v1").await;
    proxy
        .deploy("web", &["shop.test"], None, &[&v1], 5000, 1000)
        .await
        .unwrap();
    let seen = headers_seen_through(&proxy).await;
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(
        seen["forwarded"],
        "for=127.0.0.1;host=\"shop.test\";proto=http"
    );
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "shop.test");
    assert_eq!(seen["host"], "shop.test");
    assert!(seen.get("x-hop").is_none(), "{seen}");
    assert_eq!(seen[":uri"], "/headers");
    proxy.started.stop().await;
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_are_kept_and_extended() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let proxy = TestProxy::start_with(config).await;
    let v1 = Upstream::start("v1").await;
    proxy
        .deploy("web", &["shop.test"], None, &[&v1], 5000, 1000)
        .await
        .unwrap();
    let seen = headers_seen_through(&proxy).await;
    assert_eq!(seen["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(seen["x-real-ip"], "203.0.113.9");
    assert_eq!(
        seen["forwarded"],
        "for=203.0.113.9;proto=https, for=127.0.0.1;host=\"shop.test\";proto=http"
    );
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "evil.test");
    assert!(seen.get("x-hop").is_none(), "{seen}");
    proxy.started.stop().await;
}

#[tokio::test]
async fn http2_without_tls_is_proxied() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(dir.path()).await;
    let v1 = Upstream::start("v1").await;
    proxy
        .deploy("web", &["shop.test"], None, &[&v1], 5000, 1000)
        .await
        .unwrap();
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("http://shop.test/headers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        seen[":version"], "HTTP/1.1",
        "upstreams are spoken to in HTTP/1.1"
    );
    assert_eq!(seen["host"], "shop.test");
    proxy.started.stop().await;
}

#[tokio::test]
async fn maintenance_answers_503_until_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, v1) = proxy_serving_v1(TestProxy::config(dir.path())).await;
    let maintenance = |on| {
        AdminRequest::Maintenance(MaintenanceRequest {
            service: "web".into(),
            on,
        })
    };
    proxy.admin(maintenance(true)).await.unwrap();
    let c = client();
    let (status, headers, body) = get_full(&c, proxy.addr(), "x.test", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "60");
    assert!(body.contains("Down for maintenance"), "{body}");
    assert_eq!(v1.hits.load(Ordering::SeqCst), 0);
    proxy.admin(maintenance(false)).await.unwrap();
    assert_eq!(get(&c, proxy.addr(), "x.test", "/").await.unwrap().1, "v1");
    proxy.started.stop().await;
}

#[tokio::test]
async fn pause_holds_requests_until_resume_or_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, v1) = proxy_serving_v1(TestProxy::config(dir.path())).await;
    let pause = |max_ms| {
        AdminRequest::Pause(PauseRequest {
            service: "web".into(),
            max_ms,
        })
    };
    proxy.admin(pause(60_000)).await.unwrap();
    let addr = proxy.addr();
    let held = tokio::spawn(async move { get(&client(), addr, "x.test", "/").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a paused service holds its requests");
    assert_eq!(v1.hits.load(Ordering::SeqCst), 0);
    let status = proxy
        .admin(AdminRequest::Status)
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(status.services[0].paused);
    proxy
        .admin(AdminRequest::Resume(ResumeRequest {
            service: "web".into(),
        }))
        .await
        .unwrap();
    assert_eq!(held.await.unwrap().unwrap().1, "v1");

    // Without a resume, the limit releases them.
    proxy.admin(pause(200)).await.unwrap();
    assert_eq!(get(&client(), addr, "x.test", "/").await.unwrap().1, "v1");
    proxy.started.stop().await;
}

#[tokio::test]
async fn upstream_failures_answer_502_and_504() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestProxy::config(dir.path());
    config.timeouts.request = Duration::from_millis(300);
    let (proxy, v1) = proxy_serving_v1(config).await;
    let c = client();
    let (status, body) = get(&c, proxy.addr(), "x.test", "/slow?ms=5000")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body, "upstream sent no answer within 300 ms\n");
    v1.stop();
    let (status, body) = get(&c, proxy.addr(), "x.test", "/").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.starts_with("upstream failed:"), "{body}");
    proxy.started.stop().await;
}

#[tokio::test]
async fn each_request_writes_one_json_access_line() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut lines) = TestProxy::config_logging(dir.path());
    let proxy = TestProxy::start_with(config).await;
    let v1 = Upstream::start("v1").await;
    proxy
        .deploy("web", &["shop.test"], None, &[&v1], 5000, 1000)
        .await
        .unwrap();
    let c = client();
    get(&c, proxy.addr(), "shop.test", "/cart?x=1")
        .await
        .unwrap();
    get(&c, proxy.addr(), "nowhere.test", "/").await.unwrap();
    let first: serde_json::Value = serde_json::from_str(&lines.recv().await.unwrap()).unwrap();
    assert_eq!(first["status"], 200);
    assert_eq!(first["service"], "web");
    assert_eq!(first["target"], v1.target());
    assert_eq!(first["path"], "/cart?x=1");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["client"], "127.0.0.1");
    let second: serde_json::Value = serde_json::from_str(&lines.recv().await.unwrap()).unwrap();
    assert_eq!(second["status"], 404);
    assert_eq!(second["error"], "no service answers this host and path");
    proxy.started.stop().await;
}

/// Sends raw HTTP to the admin socket; the status and JSON answer.
async fn raw_admin(
    proxy: &TestProxy,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let stream = tokio::net::UnixStream::connect(proxy.socket())
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "ballast-proxy")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn malformed_admin_requests_are_refused_and_the_proxy_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let (proxy, v1) = proxy_serving_v1(TestProxy::config(dir.path())).await;

    let (status, answer) = raw_admin(&proxy, "POST", "/v1/deploy", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["ok"], false);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("malformed `deploy` request"));

    let (status, answer) = raw_admin(&proxy, "POST", "/v1/explode", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .starts_with("unknown command `explode`"));

    let (status, answer) = raw_admin(&proxy, "GET", "/v1/deploy", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer["error"], "`deploy` takes POST, not GET");

    let (status, answer) = raw_admin(&proxy, "POST", "/v1/pause", r#"{"service":"web"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("missing field `max_ms`"),
        "{answer}"
    );

    let (status, answer) = raw_admin(&proxy, "POST", "/", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"].as_str().unwrap().contains("/v1/<command>"),
        "{answer}"
    );

    // Not HTTP at all: hyper answers 400 and closes; the socket keeps serving.
    let mut garbage = tokio::net::UnixStream::connect(proxy.socket())
        .await
        .unwrap();
    garbage.write_all(b"\x00\x01 hello\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = garbage.read_to_end(&mut reply).await;

    // A refused command through the client carries the proxy's reason.
    let err = proxy
        .admin(AdminRequest::Remove(RemoveRequest {
            service: "nope".into(),
            drain_timeout_ms: 10,
        }))
        .await
        .unwrap_err();
    let AdminError::Refused { message, .. } = err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert_eq!(message, "no service named `nope`; the proxy routes: web");

    assert_eq!(proxy.targets_of("web").await, [v1.target()]);
    assert_eq!(
        get(&client(), proxy.addr(), "x.test", "/").await.unwrap().1,
        "v1"
    );
    proxy.started.stop().await;
}

#[tokio::test]
async fn routes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = Upstream::start("v1").await;
    let proxy = TestProxy::start(dir.path()).await;
    proxy
        .deploy("web", &["shop.test"], Some("/shop"), &[&v1], 5000, 1000)
        .await
        .unwrap();
    proxy
        .admin(AdminRequest::Maintenance(MaintenanceRequest {
            service: "web".into(),
            on: false,
        }))
        .await
        .unwrap();
    let socket = proxy.socket();
    proxy.started.stop().await;
    assert!(!socket.exists(), "the admin socket is removed at stop");

    let proxy = TestProxy::start(dir.path()).await;
    let (status, body) = get(&client(), proxy.addr(), "shop.test", "/shop/cart")
        .await
        .unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "v1"));
    assert_eq!(proxy.targets_of("web").await, [v1.target()]);
    proxy.started.stop().await;
}

#[tokio::test]
async fn a_second_proxy_on_the_same_admin_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(dir.path()).await;
    // Not through the takeover socket (that would take the first one over).
    let mut second = TestProxy::config(dir.path());
    second.takeover_socket = dir.path().join("no-takeover.sock");
    let err = ballast_proxy::start(second).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("another proxy is already listening on"),
        "{err}"
    );
    proxy.started.stop().await;
}
