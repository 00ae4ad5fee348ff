//! The cap on open client connections, and the answer past it.
//!
//! Every accepted connection (HTTP, HTTPS and the HTTPS redirect alike)
//! takes a [`Place`] before it is handed to a lane and keeps it until it
//! closes; an upgraded connection (a WebSocket tunnel) keeps one too. Past
//! `ProxyConfig::max_connections`, a new connection is answered
//! `503 Service Unavailable` with `Retry-After` and a one-line body, then
//! closed; the connections already open are not disturbed. Answering costs
//! a little, so at most [`MAX_ANSWERING`] of those answers are under way at
//! once, each for at most [`ANSWER_WITHIN`]; past that, a new connection is
//! closed at once.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::proxy::{full, ProxyBody};

/// Connections past the cap being answered 503 at once, at most.
pub const MAX_ANSWERING: usize = 256;

/// How long answering a connection past the cap may take (TLS included).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// What `Retry-After` asks of a client turned away.
const RETRY_AFTER_SECS: &str = "5";

/// The count of open client connections against the cap.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
    answering: AtomicUsize,
    /// Set while connections are being turned away, so the log says so
    /// once per episode, not once per connection.
    full: AtomicBool,
}

impl ConnectionLimit {
    /// A cap of `max` open connections.
    pub fn new(max: usize) -> Arc<ConnectionLimit> {
        Arc::new(ConnectionLimit {
            max,
            open: AtomicUsize::new(0),
            answering: AtomicUsize::new(0),
            full: AtomicBool::new(false),
        })
    }

    /// A place for a new connection, unless the cap is reached.
    pub fn admit(self: &Arc<Self>) -> Option<Place> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max = self.max,
                    "connection limit reached; new connections are answered 503"
                );
            }
            return None;
        }
        if self.full.load(Ordering::Relaxed) {
            self.full.store(false, Ordering::Relaxed);
        }
        Some(Place(Arc::clone(self)))
    }

    /// A place for a connection that stays open in another form (an
    /// upgraded one), even past the cap: it is open already.
    pub fn keep(self: &Arc<Self>) -> Place {
        self.open.fetch_add(1, Ordering::Relaxed);
        Place(Arc::clone(self))
    }

    /// A turn to answer a connection past the cap, unless too many are
    /// being answered already.
    pub fn answer(self: &Arc<Self>) -> Option<Answering> {
        if self.answering.fetch_add(1, Ordering::Relaxed) >= MAX_ANSWERING {
            self.answering.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Answering(Arc::clone(self)))
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One open connection counted against the cap, until dropped.
#[derive(Debug)]
pub struct Place(Arc<ConnectionLimit>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection past the cap being answered, until dropped.
#[derive(Debug)]
pub struct Answering(Arc<ConnectionLimit>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers every request on `io` with [`busy`] and closes it, all within
/// [`ANSWER_WITHIN`].
pub async fn turn_away<I>(io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(ANSWER_WITHIN);
    builder.http2().timer(TokioTimer::new());
    let service =
        hyper::service::service_fn(|_req: Request<Incoming>| async { Ok::<_, Infallible>(busy()) });
    let served = builder.serve_connection(TokioIo::new(io), service);
    let _ = tokio::time::timeout(ANSWER_WITHIN, served).await;
}

/// The answer past the cap.
pub fn busy() -> Response<ProxyBody> {
    let mut response = Response::new(full(
        "the proxy has too many open connections; try again shortly\n",
    ));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_up_to_the_cap_and_freed_on_drop() {
        let limit = ConnectionLimit::new(2);
        let a = limit.admit().unwrap();
        let b = limit.admit().unwrap();
        assert!(limit.admit().is_none());
        assert_eq!(limit.open(), 2);
        // A tunnel keeps its place past the cap.
        let tunnel = limit.keep();
        assert_eq!(limit.open(), 3);
        drop(a);
        assert!(limit.admit().is_none(), "the tunnel still holds a place");
        drop(tunnel);
        let c = limit.admit().unwrap();
        assert_eq!(limit.open(), 2);
        drop((b, c));
        assert_eq!(limit.open(), 0);
    }

    #[test]
    fn answers_past_the_cap_are_bounded() {
        let limit = ConnectionLimit::new(0);
        let turns: Vec<_> = (0..MAX_ANSWERING)
            .map(|_| limit.answer().unwrap())
            .collect();
        assert!(limit.answer().is_none());
        drop(turns);
        assert!(limit.answer().is_some());
    }
}
