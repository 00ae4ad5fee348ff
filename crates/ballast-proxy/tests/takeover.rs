//! A proxy replaced by a new process loses no request: the new process takes
//! the listening sockets over (see the `takeover` module), the old one
//! drains its requests and WebSockets and exits by itself. Failed
//! takeovers leave the old proxy serving. Every proxy here is a real child
//! process on loopback.

#![allow(clippy::print_stderr)] // tests report what they measure

mod common;
#[path = "common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use ballast_proxy::wire::StatusReport;
use ballast_proxy::{admin_request, AdminRequest};
use common::{deploy_request, Upstream};
use futures_util::{SinkExt, StreamExt};
use process::Connections::{KeepAlive, OnePerRequest};
use process::{listener_addr, status_of, Load, ProxyProcess, Spec};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Not a test: the body of every child proxy process (see `process`).
#[test]
#[ignore = "run by the takeover tests as a child process"]
fn child_proxy() {
    process::run_child_from_env();
}

/// Starts the first proxy on a free port and routes `app.test` to `up`;
/// returns it, its status and its address.
async fn first_proxy(state: &std::path::Path, up: &Upstream) -> (ProxyProcess, StatusReport) {
    let spec = Spec::new(state, &["127.0.0.1:0".parse().unwrap()]);
    let mut proxy = ProxyProcess::spawn(&spec);
    let status = proxy.ready(None).await;
    let deploy = deploy_request("app", &["app.test"], None, &[up], 5000, 1000);
    let answer = admin_request(
        &spec.admin_socket(),
        &AdminRequest::Deploy(deploy),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(answer.ok, "{answer:?}");
    (proxy, status)
}

fn http_addr(status: &StatusReport) -> SocketAddr {
    listener_addr(&status.listeners[0])
}

async fn open_websocket(addr: SocketAddr) -> Ws {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/ws");
    let request = tokio_tungstenite::tungstenite::http::Request::get(&url)
        .header("Host", "app.test")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    ws
}

async fn echo(ws: &mut Ws, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(answer))) => answer.to_string(),
        other => panic!("no echo: {other:?}"),
    }
}

/// Reads until the tunnel ends (a close frame, an error or the end).
async fn until_closed(ws: &mut Ws) {
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    });
    closed.await.expect("the tunnel was not closed");
}

fn assert_no_loss(clients: &str, ok: u64, failed: u64, errors: &[String]) {
    eprintln!("takeover under load, {clients}: {ok} requests answered 2xx, {failed} failed");
    assert_eq!(failed, 0, "failed requests, e.g. {errors:#?}");
    assert!(ok >= 900, "too little load to mean anything: {ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_under_load_loses_no_request_and_drains_websockets() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let up = Upstream::start("v1").await;
    let (mut a, first) = first_proxy(&state, &up).await;
    let addr = http_addr(&first);
    let mut ws = open_websocket(addr).await;
    assert_eq!(echo(&mut ws, "before").await, "v1:before");

    // 16 clients × 50 requests/s = 800 requests/s, half of them on a new
    // connection each time.
    let load = Load::start(addr, 8, Duration::from_millis(20), KeepAlive);
    let fresh = Load::start(addr, 8, Duration::from_millis(20), OnePerRequest);
    load.wait_for_more(300).await;

    let mut b = ProxyProcess::spawn(&Spec::new(&state, &[addr]));
    let second = b.ready(Some(&first.instance)).await;
    assert_eq!(second.listeners, first.listeners);
    assert_eq!(second.services.len(), 1, "the routes came along");
    // The WebSocket opened through the old process still answers there.
    assert_eq!(echo(&mut ws, "after").await, "v1:after");
    load.wait_for_more(300).await;
    assert_eq!(echo(&mut ws, "draining").await, "v1:draining");
    assert!(a.running(), "the old process waits for the WebSocket");

    // The old process drains: the tunnel is closed at the drain deadline,
    // then it exits by itself.
    until_closed(&mut ws).await;
    let (exit, stderr) = a.exited().await;
    assert!(exit.success(), "the old proxy exited with {exit}: {stderr}");

    // And once more: the new process serves takeovers itself.
    load.wait_for_more(300).await;
    let mut c = ProxyProcess::spawn(&Spec::new(&state, &[addr]));
    let third = c.ready(Some(&second.instance)).await;
    assert_eq!(third.listeners, first.listeners);
    let (exit, stderr) = b.exited().await;
    assert!(
        exit.success(),
        "the second proxy exited with {exit}: {stderr}"
    );
    load.wait_for_more(300).await;

    let (ok, failed, errors) = load.stop().await;
    assert_no_loss("keep-alive clients", ok, failed, &errors);
    let (ok, failed, errors) = fresh.stop().await;
    assert_no_loss("a connection per request", ok, failed, &errors);

    // An ordinary stop still works, and cleans up its sockets.
    c.terminate();
    let (exit, stderr) = c.exited().await;
    assert!(
        exit.success(),
        "the last proxy exited with {exit}: {stderr}"
    );
    assert!(!state.join("admin.sock").exists());
    assert!(!state.join("takeover.sock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_binds_fresh_the_addresses_the_old_proxy_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let up = Upstream::start("v1").await;
    let (a, first) = first_proxy(&state, &up).await;
    let addr = http_addr(&first);

    let extra = "127.0.0.1:0".parse().unwrap();
    let mut b = ProxyProcess::spawn(&Spec::new(&state, &[addr, extra]));
    let second = b.ready(Some(&first.instance)).await;
    assert_eq!(second.listeners.len(), 2);
    assert_eq!(second.listeners[0], first.listeners[0]);
    let fresh = listener_addr(&second.listeners[1]);
    assert_ne!(fresh.port(), addr.port());
    let client = common::client();
    for at in [addr, fresh] {
        let answer = common::get(&client, at, "app.test", "/").await.unwrap();
        assert_eq!(answer, (hyper::StatusCode::OK, "v1".into()), "via {at}");
    }
    let (exit, _) = a.exited().await;
    assert!(exit.success());
    b.terminate();
    assert!(b.exited().await.0.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_proxy_that_cannot_bind_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let up = Upstream::start("v1").await;
    let (mut a, first) = first_proxy(&state, &up).await;
    let addr = http_addr(&first);
    let load = Load::start(addr, 8, Duration::from_millis(20), KeepAlive);
    load.wait_for_more(300).await;

    // Someone else holds the second address the new proxy wants.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = Spec::new(&state, &[addr, taken.local_addr().unwrap()]);
    let (exit, stderr) = ProxyProcess::spawn(&spec).exited().await;
    assert_eq!(exit.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed while binding the addresses it does not listen on")
            && stderr.contains("it keeps serving"),
        "{stderr}"
    );

    load.wait_for_more(300).await;
    assert!(a.running());
    let now = status_of(&spec.admin_socket()).await.unwrap();
    assert_eq!(now.instance, first.instance);
    let (ok, failed, errors) = load.stop().await;
    eprintln!("refused takeover: {ok} answered, {failed} failed");
    assert_eq!(failed, 0, "{errors:#?}");
    a.terminate();
    assert!(a.exited().await.0.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_takeover_socket_is_refused_and_a_stale_socket_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let up = Upstream::start("v1").await;
    let (mut a, first) = first_proxy(&state, &up).await;
    let addr = http_addr(&first);

    let socket = state.join("takeover.sock");
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        stream.write_all(b"GET / HTTP/1.1\n").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    assert!(answer.contains("\"refused\""), "{answer}");
    let client = common::client();
    let served = common::get(&client, addr, "app.test", "/").await.unwrap();
    assert_eq!(served, (hyper::StatusCode::OK, "v1".into()));
    assert!(a.running());

    // A proxy that died leaves its sockets behind; the next one starts
    // fresh (same port, same routes) instead of failing.
    a.kill().await;
    assert!(state.join("takeover.sock").exists());
    let mut b = ProxyProcess::spawn(&Spec::new(&state, &[addr]));
    let second = b.ready(Some(&first.instance)).await;
    assert_eq!(second.services.len(), 1);
    let served = common::get(&common::client(), addr, "app.test", "/").await;
    assert_eq!(served.unwrap(), (hyper::StatusCode::OK, "v1".into()));
    b.terminate();
    assert!(b.exited().await.0.success());
}

/// The new process dies (`kill -9`, from a fail point) right after it
/// received the sockets, or hangs until the old one gave up: the old one
/// keeps serving without a failed request, and a later takeover works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_proxy_that_dies_or_hangs_mid_takeover_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let up = Upstream::start("v1").await;
    let (mut a, first) = first_proxy(&state, &up).await;
    let addr = http_addr(&first);
    let load = Load::start(addr, 8, Duration::from_millis(20), KeepAlive);
    load.wait_for_more(300).await;

    let mut dying = Spec::new(&state, &[addr]);
    dying.failpoints = "takeover-after-listeners=return".into();
    let (exit, stderr) = ProxyProcess::spawn(&dying).exited().await;
    assert_eq!(exit.signal(), Some(9), "killed as by kill -9: {stderr}");
    load.wait_for_more(300).await;

    let mut hanging = Spec::new(&state, &[addr]);
    hanging.failpoints = "takeover-before-confirm=sleep(7000)".into();
    let (exit, stderr) = ProxyProcess::spawn(&hanging).exited().await;
    assert_eq!(exit.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed while confirming the takeover"),
        "{stderr}"
    );
    load.wait_for_more(300).await;
    assert!(a.running());
    let now = status_of(&dying.admin_socket()).await.unwrap();
    assert_eq!(now.instance, first.instance, "the old proxy still answers");

    let mut b = ProxyProcess::spawn(&Spec::new(&state, &[addr]));
    b.ready(Some(&first.instance)).await;
    let (exit, _) = a.exited().await;
    assert!(exit.success());
    load.wait_for_more(300).await;
    let (ok, failed, errors) = load.stop().await;
    assert_no_loss("keep-alive clients", ok, failed, &errors);
    b.terminate();
    assert!(b.exited().await.0.success());
}

/// HTTPS listeners are handed over too, and the new process serves the
/// certificates the old one was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listeners_and_certificates_are_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let up = Upstream::start("v1").await;
    let mut spec = Spec::new(&state, &["127.0.0.1:0".parse().unwrap()]);
    spec.https = vec!["127.0.0.1:0".parse().unwrap()];
    let mut a = ProxyProcess::spawn(&spec);
    let first = a.ready(None).await;
    let deploy = deploy_request("app", &["app.test"], None, &[&up], 5000, 1000);
    let certificate = common::tls::issue(&["app.test"]);
    for request in [
        AdminRequest::Deploy(deploy),
        certificate.request("app", &["app.test"]),
    ] {
        let socket = spec.admin_socket();
        let answer = admin_request(&socket, &request, Duration::from_secs(30));
        let answer = answer.await.unwrap();
        assert!(answer.ok, "{answer:?}");
    }
    let https = listener_addr(&first.listeners[1]);
    assert!(first.listeners[1].starts_with("https://"), "{first:?}");
    let get = |addr| {
        let certificate = certificate.clone();
        async move {
            let tls = common::tls::connect(addr, Some("app.test"), &[&certificate]).await?;
            let served = common::tls::served(&tls);
            let mut sender = common::tls::http1(tls).await?;
            let answer = common::tls::send(&mut sender, "app.test", "/").await?;
            Ok::<_, String>((served, answer))
        }
    };
    let expected = (certificate.fingerprint(), (200, "v1".to_string()));
    assert_eq!(get(https).await.unwrap(), expected);

    let mut spec_b = spec.clone();
    spec_b.http = vec![http_addr(&first)];
    spec_b.https = vec![https];
    let mut b = ProxyProcess::spawn(&spec_b);
    let second = b.ready(Some(&first.instance)).await;
    assert_eq!(second.listeners, first.listeners);
    assert_eq!(get(https).await.unwrap(), expected);
    assert!(a.exited().await.0.success());
    assert_eq!(get(https).await.unwrap(), expected);
    b.terminate();
    assert!(b.exited().await.0.success());
}
