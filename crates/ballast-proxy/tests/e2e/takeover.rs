//! A proxy replaced by a new process loses no request: the new process takes
//! the listening sockets over (see the `takeover` module), the old one
//! drains its requests and WebSockets and exits by itself. Failed
//! takeovers leave the old proxy serving. Every proxy here is a real child
//! process on loopback.

#![allow(clippy::print_stderr)] // tests report what they measure

use crate::common;
use crate::common::process;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use ballast_proxy::wire::StatusReport;
use ballast_proxy::{admin_request, AdminError, AdminRequest};
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
    first_proxy_with(Spec::new(state, &["127.0.0.1:0".parse().unwrap()]), up).await
}

/// The same, run as `spec` says (its address should be port 0).
async fn first_proxy_with(spec: Spec, up: &Upstream) -> (ProxyProcess, StatusReport) {
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
    // What it bound ahead of the confirmation went with it.
    assert!(!state.join("admin.sock.next").exists());
    assert!(!state.join("takeover.sock.next").exists());
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

/// The new process dies (`kill -9`, from a fail point) right after it sent
/// `accepting`: the old one cannot tell it `released`, so it does not let
/// go and keeps serving without a failed request; a later takeover works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_proxy_that_dies_after_accepting_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let up = Upstream::start("v1").await;
    let mut spec = Spec::new(&state, &["127.0.0.1:0".parse().unwrap()]);
    // The old process waits a little before it answers `released`, so the
    // new one is gone (its end of the socket closed) by then, rather than
    // only about to be.
    spec.failpoints = "takeover-before-released=sleep(1000)".into();
    let (mut a, first) = first_proxy_with(spec, &up).await;
    let addr = http_addr(&first);
    let load = Load::start(addr, 8, Duration::from_millis(20), KeepAlive);
    load.wait_for_more(300).await;

    let mut dying = Spec::new(&state, &[addr]);
    dying.failpoints = "takeover-after-accepting=return".into();
    let (exit, stderr) = ProxyProcess::spawn(&dying).exited().await;
    assert_eq!(exit.signal(), Some(9), "killed as by kill -9: {stderr}");
    // The old process did not let go: it still accepts (new connections
    // each time), answers the admin API and owns the routes.
    let fresh = Load::start(addr, 4, Duration::from_millis(20), OnePerRequest);
    load.wait_for_more(300).await;
    fresh.wait_for_more(100).await;
    assert!(a.running());
    let now = status_of(&dying.admin_socket()).await.unwrap();
    assert_eq!(now.instance, first.instance, "the old proxy still answers");
    let v2 = Upstream::start("v2").await;
    let deploy = deploy_request("app", &["app.test"], None, &[&v2], 5000, 1000);
    let answer = admin_request(
        &dying.admin_socket(),
        &AdminRequest::Deploy(deploy),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(answer.ok, "the old proxy still saves changes: {answer:?}");

    let mut b = ProxyProcess::spawn(&Spec::new(&state, &[addr]));
    let second = b.ready(Some(&first.instance)).await;
    assert_eq!(second.listeners, first.listeners);
    assert_eq!(second.services[0].targets[0].addr, v2.target());
    let (exit, stderr) = a.exited().await;
    assert!(exit.success(), "the old proxy exited with {exit}: {stderr}");
    load.wait_for_more(300).await;
    let (ok, failed, errors) = load.stop().await;
    assert_no_loss("keep-alive clients", ok, failed, &errors);
    let (ok, failed, errors) = fresh.stop().await;
    eprintln!("a connection per request: {ok} answered, {failed} failed");
    assert_eq!(failed, 0, "{errors:#?}");
    b.terminate();
    assert!(b.exited().await.0.success());
}

/// The new process cannot bind its admin socket (a fail point): it fails
/// before it confirms, so the old one never lets go and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_proxy_that_cannot_bind_its_admin_socket_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let up = Upstream::start("v1").await;
    let (mut a, first) = first_proxy(&state, &up).await;
    let addr = http_addr(&first);
    let load = Load::start(addr, 8, Duration::from_millis(20), KeepAlive);
    load.wait_for_more(300).await;

    let mut failing = Spec::new(&state, &[addr]);
    failing.failpoints = "admin-bind=return".into();
    let (exit, stderr) = ProxyProcess::spawn(&failing).exited().await;
    assert_eq!(exit.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot bind admin socket"), "{stderr}");

    load.wait_for_more(300).await;
    assert!(a.running());
    let now = status_of(&failing.admin_socket()).await.unwrap();
    assert_eq!(now.instance, first.instance, "the old proxy still answers");
    let (ok, failed, errors) = load.stop().await;
    eprintln!("failed admin bind: {ok} answered, {failed} failed");
    assert_eq!(failed, 0, "{errors:#?}");
    a.terminate();
    assert!(a.exited().await.0.success());
}

/// Another service's deploy is in its drain on the old process (a
/// WebSocket to the old target holds it) when a new process takes over:
/// the admin request still gets its answer (the switch was saved before
/// the release), and the new process routes to what was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_draining_across_a_takeover_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let v1 = Upstream::start("v1").await;
    let mut spec = Spec::new(&state, &["127.0.0.1:0".parse().unwrap()]);
    // Longer than the test: the WebSocket, not the grace, ends the drain.
    spec.drain = Duration::from_secs(60);
    let (a, first) = first_proxy_with(spec.clone(), &v1).await;
    let addr = http_addr(&first);
    let mut ws = open_websocket(addr).await;
    assert_eq!(echo(&mut ws, "before").await, "v1:before");

    let v2 = Upstream::start("v2").await;
    let deploy = deploy_request("app", &["app.test"], None, &[&v2], 5000, 60_000);
    let socket = spec.admin_socket();
    let deploying = tokio::spawn(async move {
        let request = AdminRequest::Deploy(deploy);
        admin_request(&socket, &request, Duration::from_secs(120)).await
    });
    let admin = spec.admin_socket();
    let switched = v2.target();
    common::eventually("the old proxy switched to v2", || {
        let (admin, switched) = (admin.clone(), switched.clone());
        async move {
            let status = status_of(&admin).await;
            status.is_some_and(|s| s.services[0].targets[0].addr == switched)
        }
    })
    .await;

    let mut b = ProxyProcess::spawn(&Spec::new(&state, &[addr]));
    let second = b.ready(Some(&first.instance)).await;
    assert_eq!(second.services[0].targets[0].addr, v2.target());
    assert!(
        !deploying.is_finished(),
        "the drain waits for the WebSocket"
    );
    assert_eq!(echo(&mut ws, "draining").await, "v1:draining");
    // Closed at both ends: the tunnel, and with it the drain, ends.
    ws.close(None).await.unwrap();
    until_closed(&mut ws).await;
    drop(ws);

    let answer = deploying.await.unwrap();
    let answer = answer.expect("the deploy's admin request was answered");
    assert!(answer.ok, "{answer:?}");
    let report = answer.deploy.unwrap();
    assert_eq!(report.targets, vec![v2.target()]);
    assert_eq!(report.drain.unfinished, 0, "{report:?}");
    let served = common::get(&common::client(), addr, "app.test", "/").await;
    assert_eq!(served.unwrap(), (hyper::StatusCode::OK, "v2".into()));
    let (exit, stderr) = a.exited().await;
    assert!(exit.success(), "the old proxy exited with {exit}: {stderr}");
    b.terminate();
    assert!(b.exited().await.0.success());
}

/// A deploy still checking its new target's health when a new process
/// takes over cannot switch any more (the new process read the routes):
/// the admin request gets the clear refusal, not a dropped connection, and
/// the new process routes as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_checking_health_across_a_takeover_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let v1 = Upstream::start("v1").await;
    let mut spec = Spec::new(&state, &["127.0.0.1:0".parse().unwrap()]);
    spec.drain = Duration::from_secs(60);
    let (a, first) = first_proxy_with(spec.clone(), &v1).await;
    let addr = http_addr(&first);

    // Unhealthy until the takeover is done.
    let v2 = Upstream::start_with("v2", false).await;
    let deploy = deploy_request("app", &["app.test"], None, &[&v2], 60_000, 1000);
    let socket = spec.admin_socket();
    let deploying = tokio::spawn(async move {
        let request = AdminRequest::Deploy(deploy);
        admin_request(&socket, &request, Duration::from_secs(120)).await
    });
    let checked = v2.hits.clone();
    let health_checks = v2.connections.clone();
    common::eventually("the old proxy checks v2", || {
        let seen = health_checks.load(std::sync::atomic::Ordering::SeqCst);
        async move { seen > 0 }
    })
    .await;

    let mut b = ProxyProcess::spawn(&Spec::new(&state, &[addr]));
    let second = b.ready(Some(&first.instance)).await;
    assert_eq!(second.services[0].targets[0].addr, v1.target());
    assert!(!deploying.is_finished(), "v2 is not healthy yet");
    v2.healthy.store(true, std::sync::atomic::Ordering::SeqCst);

    match deploying.await.unwrap() {
        Err(AdminError::Refused { message, .. }) => {
            assert!(message.contains("taken over by a newer one"), "{message}")
        }
        other => panic!("not the clear refusal: {other:?}"),
    }
    let served = common::get(&common::client(), addr, "app.test", "/").await;
    assert_eq!(served.unwrap(), (hyper::StatusCode::OK, "v1".into()));
    assert_eq!(checked.load(std::sync::atomic::Ordering::SeqCst), 0);
    let now = status_of(&spec.admin_socket()).await.unwrap();
    assert_eq!(now.instance, second.instance);
    assert_eq!(now.services[0].targets[0].addr, v1.target());
    let (exit, stderr) = a.exited().await;
    assert!(exit.success(), "the old proxy exited with {exit}: {stderr}");
    b.terminate();
    assert!(b.exited().await.0.success());
}
