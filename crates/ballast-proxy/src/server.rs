//! The client-facing listeners: accept loops for plain HTTP and HTTPS, with
//! graceful shutdown.
//!
//! Each accepted connection takes a place under the connection cap (see
//! `limit`; past it, it is answered 503 and closed), is handed to a lane
//! (see `workers`) and speaks HTTP/1.1 or HTTP/2 (prior knowledge on plain
//! HTTP, ALPN over TLS), with upgrades enabled. Its deadlines (request
//! head, idle, HTTP/2 pings) are kept as `conn` says.
//!
//! The process goes through [`Phase`]s. At an ordinary stop the listeners
//! stop accepting and open connections are asked to finish their requests
//! and close (`Closing`). Taken over by a new process (see `takeover`), it
//! first drains (`Draining`): the listeners stop accepting (the new process
//! accepts on the same sockets), answers on HTTP/1 carry `Connection: close`
//! so clients reconnect (to the new process) instead of reusing a
//! connection that is about to close, HTTP/2 connections get a GOAWAY,
//! and tunnels keep going; idle keep-alive connections are only closed when
//! the drain ends, since closing one while the client sends would fail its
//! request. Likewise a connection accepted just before the takeover, whose
//! request is not read yet, is served: asking it to close at once lost
//! about 1 request in 250 at 1,800 new connections/s (`tests/e2e/takeover.rs`
//! with one connection per request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::conn::{self, Clock, Deadlines, Watched};
use crate::limit::{self, ConnectionLimit};
use crate::proxy::DataPath;
use crate::workers::Workers;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener does with its connections.
#[derive(Clone)]
pub enum Mode {
    /// Proxy plain HTTP (HTTP/1.1 and h2c); with HTTPS on, the data path
    /// first answers ACME challenges and redirects the host names a
    /// certificate covers (see `certs::PlainHttp`).
    Http,
    /// Proxy HTTPS with this acceptor.
    Https(TlsAcceptor),
}

impl Mode {
    fn scheme(&self) -> &'static str {
        match self {
            Mode::Https(_) => "https",
            _ => "http",
        }
    }
}

/// Where the process is in its life; every connection watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving.
    Serving,
    /// Taken over: not accepting; open requests and tunnels finish (see the
    /// module doc).
    Draining,
    /// Stopping: every connection is closed gracefully within the grace.
    Closing,
}

/// Accepts connections on `listener` until the process leaves
/// [`Phase::Serving`]; the connections themselves are waited for by the
/// caller (they live on the lanes).
pub async fn serve(
    listener: TcpListener,
    mode: Mode,
    workers: Arc<Workers>,
    cap: Arc<ConnectionLimit>,
    phase: watch::Receiver<Phase>,
) {
    let mut shutdown = phase.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = left_serving(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let place = match cap.admit() {
            Some(place) => Ok(place),
            None => match cap.answer() {
                Some(answering) => Err(answering),
                None => continue, // dropped: closed at once
            },
        };
        // Handed to a lane as a plain socket: it registers with that lane's
        // reactor there.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot hand the connection to a lane");
                continue;
            }
        };
        let (mode, phase) = (mode.clone(), phase.clone());
        workers.spawn(move |data| async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot serve the connection");
                    return;
                }
            };
            match place {
                Ok(_place) => accepted(stream, peer, &mode, data, phase).await,
                Err(_answering) => {
                    let turned_away = turn_away(stream, &mode);
                    let _ = tokio::time::timeout(limit::ANSWER_WITHIN, turned_away).await;
                }
            }
        });
    }
}

/// Resolves once the process left [`Phase::Serving`] (or the sender is gone).
pub async fn left_serving(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|now| *now != Phase::Serving).await;
}

/// Resolves once the shutdown signal turned `true` (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves an accepted connection (after its TLS handshake, for HTTPS).
async fn accepted(
    stream: TcpStream,
    peer: SocketAddr,
    mode: &Mode,
    data: Arc<DataPath>,
    phase: watch::Receiver<Phase>,
) {
    let clock = Clock::new();
    match mode {
        Mode::Https(acceptor) => {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(tls)) => {
                    connection(
                        Watched::new(tls, Arc::clone(&clock)),
                        peer,
                        mode,
                        data,
                        clock,
                        phase,
                    )
                    .await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        _ => {
            connection(
                Watched::new(stream, Arc::clone(&clock)),
                peer,
                mode,
                data,
                clock,
                phase,
            )
            .await
        }
    }
}

/// Answers a connection past the cap with 503 (after TLS, for HTTPS).
async fn turn_away(stream: TcpStream, mode: &Mode) {
    match mode {
        Mode::Https(acceptor) => {
            if let Ok(tls) = acceptor.accept(stream).await {
                limit::turn_away(tls).await;
            }
        }
        _ => limit::turn_away(stream).await,
    }
}

/// Serves one connection.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    mode: &Mode,
    data: Arc<DataPath>,
    clock: Arc<Clock>,
    phase: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let t = data.timeouts;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The request-head deadline is the connection's clock (`conn`), which
    // also covers the first bytes and tells idle connections from slow ones.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(t.h2_keep_alive_interval)
        .keep_alive_timeout(t.h2_keep_alive_timeout);
    let deadlines = Deadlines {
        header: t.client_header,
        idle: t.client_idle,
        close: t.shutdown_grace,
        send: t.response_send,
    };
    let closer = Arc::new(Closer::new());
    let shutdown = closer.signal.subscribe();
    let _watching = AbortOnDrop(tokio::spawn(Arc::clone(&closer).watch(phase.clone())));
    let io = TokioIo::new(io);
    let scheme = mode.scheme();
    let requests = Arc::clone(&clock);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let version = req.version();
        let active = requests.start_request(version);
        if version == Version::HTTP_2 {
            closer.saw_http2(&phase);
        }
        let draining = *phase.borrow() != Phase::Serving;
        let answered = Arc::clone(&data).handle(req, peer, scheme, active);
        let phase = phase.clone();
        async move {
            let mut response = answered.await?;
            // Checked again at the answer: the drain may have begun meanwhile.
            let draining = draining || *phase.borrow() != Phase::Serving;
            if draining
                && version < Version::HTTP_2
                && response.status() != StatusCode::SWITCHING_PROTOCOLS
            {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let served = builder.serve_connection_with_upgrades(io, service);
    let result = conn::drive(served, &clock, deadlines, shutdown).await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Decides when one connection is asked to close: at [`Phase::Closing`],
/// or as soon as a drain begins if it speaks HTTP/2 (a GOAWAY moves its
/// client without failing a stream). HTTP/1 connections are moved by
/// `Connection: close` on their next answer instead.
struct Closer {
    signal: watch::Sender<bool>,
    http2: AtomicBool,
}

impl Closer {
    fn new() -> Closer {
        Closer {
            signal: watch::channel(false).0,
            http2: AtomicBool::new(false),
        }
    }

    fn saw_http2(&self, phase: &watch::Receiver<Phase>) {
        // Flag first, phase second: with `watch` doing the reverse, one of
        // the two always sees the other.
        self.http2.store(true, Ordering::SeqCst);
        if *phase.borrow() != Phase::Serving {
            self.signal.send_replace(true);
        }
    }

    async fn watch(self: Arc<Self>, mut phase: watch::Receiver<Phase>) {
        let _ = phase
            .wait_for(|now| match now {
                Phase::Serving => false,
                Phase::Draining => self.http2.load(Ordering::SeqCst),
                Phase::Closing => true,
            })
            .await;
        self.signal.send_replace(true);
    }
}

/// Ends a connection's watcher with the connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
