//! The deploy handoff under load: switch with no failed request, a version
//! that never becomes healthy never takes traffic, in-flight requests and
//! WebSockets finish on the old target while it drains.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ballast_proxy::{AdminError, AdminRequest};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Total requests of the load loop, spread over about 5 s.
const REQUESTS: u64 = 2000;
/// Concurrent clients of the load loop.
const CLIENTS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_a_switch_and_a_failed_deploy_has_no_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(dir.path()).await;
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let v3 = Upstream::start_with("v3", false).await;
    proxy
        .deploy("web", &[], None, &[&v1], 10_000, 10_000)
        .await
        .unwrap();

    let addr = proxy.addr();
    let sent = Arc::new(AtomicU64::new(0));
    let switched = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (sent, switched) = (Arc::clone(&sent), Arc::clone(&switched));
        clients.push(tokio::spawn(async move {
            let client = client();
            // (answered after the switch?, outcome)
            let mut seen = Vec::new();
            while sent.fetch_add(1, Ordering::SeqCst) < REQUESTS {
                let after_switch = switched.load(Ordering::SeqCst);
                let outcome = get(&client, addr, "shop.test", "/").await;
                seen.push((after_switch, outcome));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        }));
    }

    // v1 → v2 under load; then v1 is stopped, as ballast stops it.
    eventually("the load is running", || async {
        sent.load(Ordering::SeqCst) > 300
    })
    .await;
    let response = proxy
        .deploy("web", &[], None, &[&v2], 10_000, 10_000)
        .await
        .unwrap();
    switched.store(true, Ordering::SeqCst);
    v1.stop();
    let report = response.deploy.unwrap();
    assert_eq!(report.targets, [v2.target()]);
    assert_eq!(report.drain.drained, [v1.target()]);
    assert_eq!(report.drain.unfinished, 0);

    // v3 never becomes healthy: refused, and v2 keeps serving.
    let err = proxy
        .deploy("web", &[], None, &[&v3], 500, 10_000)
        .await
        .unwrap_err();
    let AdminError::Refused { message, .. } = err else {
        panic!("expected a refusal, got {err:?}");
    };
    assert!(
        message.contains(&format!("target {} did not become healthy", v3.target())),
        "{message}"
    );
    assert!(
        message.contains("answered 503 Service Unavailable"),
        "{message}"
    );
    assert!(
        message.contains(&format!("still routes to {}", v2.target())),
        "{message}"
    );
    assert_eq!(proxy.targets_of("web").await, [v2.target()]);

    let mut total = 0;
    let mut per_version = std::collections::BTreeMap::new();
    for client in clients {
        for (after_switch, outcome) in client.await.unwrap() {
            total += 1;
            let (status, body) = outcome.expect("no request may fail");
            assert_eq!(status, 200, "body: {body}");
            if after_switch {
                assert_eq!(body, "v2", "every answer after the switch comes from v2");
            }
            *per_version.entry(body).or_insert(0) += 1;
        }
    }
    assert_eq!(total, REQUESTS);
    assert!(
        per_version.contains_key("v1") && per_version.contains_key("v2"),
        "{per_version:?}"
    );
    assert!(!per_version.contains_key("v3"), "{per_version:?}");
    assert_eq!(v3.hits.load(Ordering::SeqCst), 0, "v3 never took traffic");
    proxy.started.stop().await;
}

#[tokio::test]
async fn a_slow_request_in_flight_at_the_switch_completes() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(dir.path()).await;
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    proxy
        .deploy("web", &[], None, &[&v1], 10_000, 10_000)
        .await
        .unwrap();

    let addr = proxy.addr();
    let slow =
        tokio::spawn(async move { get(&client(), addr, "shop.test", "/slow?ms=3000").await });
    eventually("the slow request reached v1", || async {
        v1.hits.load(Ordering::SeqCst) == 1
    })
    .await;
    let response = proxy
        .deploy("web", &[], None, &[&v2], 10_000, 20_000)
        .await
        .unwrap();
    let drain = response.deploy.unwrap().drain;
    assert_eq!(drain.unfinished, 0, "the drain waited for the slow request");
    assert_eq!(
        get(&client(), addr, "shop.test", "/").await.unwrap().1,
        "v2"
    );
    let (status, body) = slow.await.unwrap().unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "v1"));
    proxy.started.stop().await;
}

async fn open_websocket(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws
}

async fn echo(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    text: &str,
) -> String {
    ws.send(Message::text(text)).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(reply))) => reply.as_str().to_string(),
        other => panic!("expected a text reply, got {other:?}"),
    }
}

#[tokio::test]
async fn a_websocket_keeps_working_on_the_old_target_until_drained() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Arc::new(TestProxy::start(dir.path()).await);
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    proxy
        .deploy("web", &[], None, &[&v1], 10_000, 10_000)
        .await
        .unwrap();

    let mut ws = open_websocket(proxy.addr()).await;
    assert_eq!(echo(&mut ws, "a").await, "v1:a");
    let load = || proxy.started.open_connections().iter().sum::<usize>();
    assert_eq!(load(), 1, "an open tunnel counts in its lane's load");

    let deploy = {
        let proxy = Arc::clone(&proxy);
        let request = deploy_request("web", &[], None, &[&v2], 10_000, 60_000);
        tokio::spawn(async move { proxy.admin(AdminRequest::Deploy(request)).await })
    };
    let v2_target = v2.target();
    eventually("the proxy switched to v2", || {
        let (proxy, v2_target) = (Arc::clone(&proxy), v2_target.clone());
        async move { proxy.targets_of("web").await == [v2_target] }
    })
    .await;
    // New requests go to v2, the open WebSocket still talks to v1.
    assert_eq!(
        get(&client(), proxy.addr(), "shop.test", "/")
            .await
            .unwrap()
            .1,
        "v2"
    );
    assert_eq!(echo(&mut ws, "b").await, "v1:b");
    assert_eq!(echo(&mut ws, "c").await, "v1:c");
    assert!(!deploy.is_finished(), "the drain waits for the WebSocket");

    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    let response = deploy.await.unwrap().unwrap();
    eventually("the closed tunnel left its lane", || async { load() == 0 }).await;
    assert_eq!(response.deploy.unwrap().drain.unfinished, 0);
    let mut ws = open_websocket(proxy.addr()).await;
    assert_eq!(echo(&mut ws, "d").await, "v2:d");
}

#[tokio::test]
async fn a_websocket_outliving_the_drain_timeout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(dir.path()).await;
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    proxy
        .deploy("web", &[], None, &[&v1], 10_000, 10_000)
        .await
        .unwrap();
    let mut ws = open_websocket(proxy.addr()).await;
    assert_eq!(echo(&mut ws, "a").await, "v1:a");

    let response = proxy
        .deploy("web", &[], None, &[&v2], 10_000, 200)
        .await
        .unwrap();
    assert_eq!(response.deploy.unwrap().drain.unfinished, 1);
    // The tunnel was cut: the stream ends (or errors) instead of echoing.
    let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the cut tunnel ends the stream");
    assert!(!matches!(next, Some(Ok(Message::Text(_)))), "{next:?}");
    proxy.started.stop().await;
}
