//! The client-facing listeners: accept loops for plain HTTP, HTTPS and the
//! HTTP→HTTPS redirect, with graceful shutdown.
//!
//! Each accepted connection takes a place under the connection cap (see
//! `limit`; past it, it is answered 503 and closed), is handed to a lane
//! (see `workers`) and speaks HTTP/1.1 or HTTP/2 (prior knowledge on plain
//! HTTP, ALPN over TLS), with upgrades enabled. Its deadlines (request
//! head, idle, HTTP/2 pings) are kept as `conn` says. At shutdown the
//! listeners stop accepting, open connections are asked to finish their
//! requests and close, and are dropped after the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::conn::{self, Clock, Deadlines, Watched};
use crate::limit::{self, ConnectionLimit};
use crate::proxy::DataPath;
use crate::tls;
use crate::workers::Workers;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener does with its connections.
#[derive(Clone)]
pub enum Mode {
    /// Proxy plain HTTP (HTTP/1.1 and h2c).
    Http,
    /// Proxy HTTPS with this acceptor.
    Https(TlsAcceptor),
    /// Redirect everything to HTTPS on this port.
    Redirect {
        /// The port HTTPS listens on (omitted from the URL when 443).
        https_port: u16,
    },
}

impl Mode {
    fn scheme(&self) -> &'static str {
        match self {
            Mode::Https(_) => "https",
            _ => "http",
        }
    }
}

/// Accepts connections on `listener` until `shutdown` turns `true`, then
/// waits up to the data path's shutdown grace for them to finish.
pub async fn serve(
    listener: TcpListener,
    mode: Mode,
    workers: Arc<Workers>,
    cap: Arc<ConnectionLimit>,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Every connection task holds a receiver; once all are dropped, every
    // connection has ended.
    let (open, _) = watch::channel(());
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
            () = crate::server::stopped(&mut shutdown) => break,
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
        let (mode, alive) = (mode.clone(), open.subscribe());
        workers.spawn(move |data| async move {
            let _alive = alive;
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot serve the connection");
                    return;
                }
            };
            match place {
                Ok(_place) => accepted(stream, peer, &mode, data).await,
                Err(_answering) => {
                    let turned_away = turn_away(stream, &mode);
                    let _ = tokio::time::timeout(limit::ANSWER_WITHIN, turned_away).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, open.closed()).await.is_err() {
        tracing::info!("shutdown grace over; closing the connections still open");
    }
}

/// Resolves once the shutdown signal turned `true` (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves an accepted connection (after its TLS handshake, for HTTPS).
async fn accepted(stream: TcpStream, peer: SocketAddr, mode: &Mode, data: Arc<DataPath>) {
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
async fn connection<I>(io: I, peer: SocketAddr, mode: &Mode, data: Arc<DataPath>, clock: Arc<Clock>)
where
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
    };
    let shutdown = data.shutdown.clone();
    let io = TokioIo::new(io);
    let result = match mode {
        Mode::Redirect { https_port } => {
            let port = *https_port;
            let requests = Arc::clone(&clock);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let _active = requests.start_request(req.version());
                let response = tls::redirect(&req, port);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let served = builder.serve_connection(io, service);
            conn::drive(served, &clock, deadlines, shutdown).await
        }
        _ => {
            let scheme = mode.scheme();
            let requests = Arc::clone(&clock);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let active = requests.start_request(req.version());
                Arc::clone(&data).handle(req, peer, scheme, active)
            });
            let served = builder.serve_connection_with_upgrades(io, service);
            conn::drive(served, &clock, deadlines, shutdown).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
