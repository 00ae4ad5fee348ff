//! The send deadline: a client (or a tunnel's side) that stops reading
//! what the proxy sends is cut off once nothing could be written to it for
//! `Timeouts::response_send`, and the upstream with it; a slow client that
//! keeps reading, and a quiet tunnel, are not. Loopback only.

use crate::common;

use std::time::Duration;

use ballast_proxy::AdminRequest;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The size of what [`StreamingUpstream`] writes at a time.
const CHUNK: usize = 64 * 1024;

/// An upstream that answers `/up` with 200 and anything else with a body of
/// `total` bytes, written a chunk at a time as fast as it is taken; each
/// answer reports on `outcomes` the bytes it wrote, `Err` if the connection
/// broke first.
struct StreamingUpstream {
    target: String,
    outcomes: mpsc::UnboundedReceiver<Result<u64, u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl StreamingUpstream {
    async fn start(total: u64) -> StreamingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let (tx, outcomes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
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
                    let start = format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n");
                    if stream.write_all(start.as_bytes()).await.is_err() {
                        let _ = tx.send(Err(0));
                        return;
                    }
                    let chunk = vec![b'x'; CHUNK];
                    let mut sent = 0;
                    while sent < total {
                        let n = (total - sent).min(CHUNK as u64) as usize;
                        if stream.write_all(&chunk[..n]).await.is_err() {
                            let _ = tx.send(Err(sent));
                            return;
                        }
                        sent += n as u64;
                    }
                    let _ = tx.send(Ok(sent));
                    // Keeps the connection, as a keep-alive upstream does.
                    let _ = stream.read(&mut byte).await;
                });
            }
        });
        StreamingUpstream {
            target,
            outcomes,
            task,
        }
    }
}

impl Drop for StreamingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A proxy whose service `web` routes to `upstream`, with `send` as its
/// send deadline and its access log on the returned channel.
async fn proxy_to(
    dir: &std::path::Path,
    target: String,
    send: Duration,
) -> (TestProxy, mpsc::UnboundedReceiver<String>) {
    let (mut config, lines) = TestProxy::config_logging(dir);
    config.timeouts.response_send = send;
    let proxy = TestProxy::start_with(config).await;
    let mut request = deploy_request("web", &[], None, &[], 5000, 1000);
    request.targets = vec![target];
    proxy.admin(AdminRequest::Deploy(request)).await.unwrap();
    (proxy, lines)
}

/// A connection to `addr` with a small receive buffer, so that what the
/// proxy sends waits on the client's reading soon.
async fn small_window_connection(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

/// The next access-log line, as JSON.
async fn next_line(lines: &mut mpsc::UnboundedReceiver<String>) -> serde_json::Value {
    let line = tokio::time::timeout(Duration::from_secs(20), lines.recv())
        .await
        .expect("an access-log line")
        .unwrap();
    serde_json::from_str(&line).unwrap()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_upstream_with_it() {
    const TOTAL: u64 = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = StreamingUpstream::start(TOTAL).await;
    let send = Duration::from_millis(500);
    let (proxy, mut lines) = proxy_to(dir.path(), upstream.target.clone(), send).await;

    let mut client = small_window_connection(proxy.addr()).await;
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut received = 0;
    while received < 4096 {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the body began");
        received += n;
    }
    // Reads nothing more, and does not close.

    let outcome = tokio::time::timeout(Duration::from_secs(20), upstream.outcomes.recv())
        .await
        .expect("the upstream connection is dropped while the client holds its own")
        .unwrap();
    let sent = outcome.expect_err("the upstream could not send its whole body");
    assert!(sent < TOTAL, "{sent}");

    let line = next_line(&mut lines).await;
    assert_eq!(line["path"], "/big");
    assert_eq!(line["status"], 408);
    assert_eq!(
        line["error"],
        "response cut off: the client took nothing for 500 ms"
    );

    // The proxy closed the client connection: what it had sent is all there
    // is to read.
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        let mut rest = 0;
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return rest,
                Ok(n) => rest += n,
            }
        }
    })
    .await
    .expect("the proxy closed the client connection");
    assert!(((received + rest) as u64) < TOTAL, "{}", received + rest);
    proxy.started.stop().await;
}

#[tokio::test]
async fn a_slow_client_that_keeps_reading_gets_the_whole_body() {
    // Over three times what the sockets between proxy and client hold
    // (about 3.6 MB on loopback, as the client above gets), so that for
    // most of the 5 s it takes the proxy's writes wait on this client.
    const TOTAL: u64 = 12 << 20;
    const READ: usize = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = StreamingUpstream::start(TOTAL).await;
    let (proxy, mut lines) =
        proxy_to(dir.path(), upstream.target.clone(), Duration::from_secs(2)).await;

    let mut client = small_window_connection(proxy.addr()).await;
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x.test\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut body = 0u64;
    let mut buf = vec![0u8; READ];
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        while body < TOTAL {
            // 256 KB every 100 ms: the writes wait longer than the deadline
            // in all, never that long without progress. (The kernel wakes a
            // waiting writer only once a third of its send buffer is free,
            // about every 0.5 s here; see `conn`.)
            let mut taken = 0;
            while taken < READ && body < TOTAL {
                let n = client.read(&mut buf[..READ - taken]).await.unwrap();
                assert!(n > 0, "closed after {body} bytes of the body");
                taken += n;
                let mut bytes = &buf[..n];
                if !head.ends_with(b"\r\n\r\n") {
                    let end = bytes
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(bytes.len(), |at| at + 4);
                    head.extend_from_slice(&bytes[..end]);
                    bytes = &bytes[end..];
                }
                body += bytes.len() as u64;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(read.is_ok(), "read {body} bytes of the body");
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(body, TOTAL);
    let outcome = upstream.outcomes.recv().await.unwrap();
    assert_eq!(outcome, Ok(TOTAL));
    let line = next_line(&mut lines).await;
    assert_eq!(
        (line["status"].as_u64(), &line["error"]),
        (Some(200), &serde_json::Value::Null)
    );
    proxy.started.stop().await;
}

#[tokio::test]
async fn a_quiet_tunnel_stays_and_one_whose_client_stops_reading_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = Upstream::start("v1").await;
    let (proxy, mut lines) = proxy_to(dir.path(), v1.target(), Duration::from_millis(500)).await;
    let addr = proxy.addr();
    let open = || async move {
        let stream = small_window_connection(addr).await;
        let (ws, response) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        ws
    };

    // Quiet for three deadlines: nothing was waiting to be written.
    let mut quiet = open().await;
    quiet.send(Message::text("a")).await.unwrap();
    assert_eq!(quiet.next().await.unwrap().unwrap(), Message::text("v1:a"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    quiet.send(Message::text("b")).await.unwrap();
    assert_eq!(quiet.next().await.unwrap().unwrap(), Message::text("v1:b"));

    // Sends and never reads the echoes: once they fill every buffer on the
    // way back, the tunnel is closed, and this client's sending fails.
    let mut deaf = open().await;
    let text = "x".repeat(CHUNK);
    let failed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if deaf.send(Message::text(text.clone())).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(failed.is_ok(), "the tunnel is still open");
    let line = next_line(&mut lines).await;
    assert_eq!(line["path"], "/ws");
    // The echoes back up first; the upstream then stops reading too, so
    // either side may be the one named.
    let error = line["error"].as_str().unwrap();
    assert!(
        error.starts_with("tunnel closed: the ") && error.ends_with(" took nothing for 500 ms"),
        "{error}"
    );

    // The quiet one is still open.
    quiet.send(Message::text("c")).await.unwrap();
    assert_eq!(quiet.next().await.unwrap().unwrap(), Message::text("v1:c"));
    proxy.started.stop().await;
}
