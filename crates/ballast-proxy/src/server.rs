//! The client-facing listeners: accept loops for plain HTTP, HTTPS and the
//! HTTP→HTTPS redirect, with graceful shutdown.
//!
//! Each accepted connection is handed to a lane (see `workers`) and speaks
//! HTTP/1.1 or HTTP/2 (prior knowledge on plain HTTP, ALPN over TLS), with
//! upgrades enabled. At shutdown the listeners
//! stop accepting, open connections are asked to finish their requests and
//! close, and are dropped after the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

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
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
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
        // Handed to a lane as a plain socket: it registers with that lane's
        // reactor there.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot hand the connection to a lane");
                continue;
            }
        };
        let (mode, watcher) = (mode.clone(), graceful.watcher());
        workers.spawn(move |data| async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot serve the connection");
                    return;
                }
            };
            match &mode {
                Mode::Https(acceptor) => {
                    let accepted =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match accepted {
                        Ok(Ok(tls)) => connection(tls, peer, &mode, data, watcher).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                _ => connection(stream, peer, &mode, data, watcher).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("shutdown grace over; closing the connections still open");
    }
}

/// Resolves once the shutdown signal turned `true` (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves one connection.
async fn connection<I>(io: I, peer: SocketAddr, mode: &Mode, data: Arc<DataPath>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(data.timeouts.client_header);
    builder.http2().timer(TokioTimer::new());
    let io = TokioIo::new(io);
    let result = match mode {
        Mode::Redirect { https_port } => {
            let port = *https_port;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, std::convert::Infallible>(tls::redirect(&req, port))
            });
            watcher
                .watch(builder.serve_connection(io, service).into_owned())
                .await
        }
        _ => {
            let scheme = mode.scheme();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                Arc::clone(&data).handle(req, peer, scheme)
            });
            watcher
                .watch(
                    builder
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                )
                .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
