//! One client connection's clocks: the header deadline, the idle timeout,
//! the send deadline, and closing gracefully.
//!
//! A connection is *busy* while any of its requests has not finished its
//! response, and *idle* otherwise. While idle it must, within
//! `Timeouts::client_header`, deliver a whole request head, counted from
//! the connection's start for its first request and, with HTTP/1, from the
//! first byte of each later one (a slowloris client trickling headers, or
//! one that connects and sends nothing, is cut off then). An idle
//! connection whose client sends nothing more is closed gracefully after
//! `Timeouts::client_idle`; with HTTP/2 only requests count, not the pings
//! and settings in between. A busy connection has no deadline of its own:
//! the bodies it streams have theirs (see `body`), and the upstream's answer
//! has the request timeout. HTTP/2 connections are also pinged
//! (`Timeouts::h2_keep_alive_interval`) and closed when a ping goes
//! unanswered.
//!
//! Busy or idle, a client that stops reading what the proxy sends is cut
//! off: once a write to it is refused (its receive window and the socket's
//! send buffer are full), some byte must go out within
//! `Timeouts::response_send`, or the connection is closed at once. Its
//! unfinished response is dropped, and with it the upstream request (whose
//! connection is then closed, not reused); the access log records 408 with
//! the reason (see `body`). Progress resets the deadline, so a slow client
//! that keeps reading is never cut; a quiet connection has no write pending
//! and no send deadline. HTTP/2 included: a connection whose writes are
//! refused cannot serve any of its streams. (A stream the client stops
//! granting flow-control window, while reading the others, refuses no write;
//! it waits like any slow stream.)
//!
//! Progress is what the socket accepts, as with nginx's `send_timeout`, and
//! the kernel wakes a refused writer only once about a third of the send
//! buffer is free again: a client must take that much (about 1.3 MB of a
//! 4 MB loopback buffer, far less on most links) within the deadline. At
//! the default of 60 s, that is a few KB/s at worst.
//!
//! The I/O of a connection is watched through [`Watched`], which notes
//! when bytes arrive while it is idle, and when a write is refused or goes
//! out (a `send::SendWatch`); its requests take an [`Active`] guard for as long
//! as they are busy. Both only touch atomics: the clock's timers live in the
//! connection's own task ([`drive`]), which also closes the connection
//! gracefully at shutdown. Watching the writes below hyper, rather than the
//! response bodies above it, is what sees every byte hyper sends (heads,
//! the end of a body already handed over, HTTP/2 frames) and nothing else;
//! the same watch bounds tunnels (see `tunnel`).

use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Version;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::body::BoxError;
use crate::send::{flush_noted, shutdown_noted, write_noted, write_vectored_noted, SendWatch};

/// No time noted.
const NONE: u64 = u64::MAX;

/// The deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For a request head, once one is due (see the module doc).
    pub header: Duration,
    /// For an idle connection to start another request.
    pub idle: Duration,
    /// For the requests of a connection being closed gracefully to finish.
    pub close: Duration,
    /// For a refused write to make progress (see the module doc).
    pub send: Duration,
}

/// What one connection's requests and reads note, for its deadlines.
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    /// Requests whose response has not finished.
    active: AtomicUsize,
    /// When the connection last became idle (ms since `start`).
    idle_since: AtomicU64,
    /// When the next request head became due (ms since `start`), or NONE.
    header_since: AtomicU64,
    /// HTTP/2: bytes between requests are pings and settings, not a head.
    multiplexed: AtomicBool,
    /// The writes to the client.
    send: SendWatch,
    /// The send deadline ran out (ms), so the connection is being cut; 0
    /// while not.
    send_expired: AtomicU64,
    /// Woken when a deadline may have moved earlier or appeared.
    changed: Notify,
}

/// Why a connection's clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request head did not arrive in time.
    Header,
    /// The connection stayed idle too long.
    Idle,
}

impl Clock {
    /// The clock of a connection accepted now: its first request is due.
    pub fn new() -> Arc<Clock> {
        Arc::new(Clock {
            start: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            header_since: AtomicU64::new(0),
            multiplexed: AtomicBool::new(false),
            send: SendWatch::new(),
            send_expired: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A request (its head complete) starts; busy until the guard drops.
    pub fn start_request(self: &Arc<Self>, version: Version) -> Active {
        if version == Version::HTTP_2 {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        self.header_since.store(NONE, Ordering::Relaxed);
        Active(Arc::clone(self))
    }

    /// Bytes arrived: while idle (HTTP/1), the next head is due from now.
    fn bytes_arrived(&self) {
        if self.active.load(Ordering::Relaxed) == 0
            && !self.multiplexed.load(Ordering::Relaxed)
            && self.header_since.load(Ordering::Relaxed) == NONE
        {
            self.header_since.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// The next deadline and what it is for; `None` while busy.
    fn next(&self, deadlines: &Deadlines) -> Option<(Instant, Expiry)> {
        if self.active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64, after: Duration| self.start + Duration::from_millis(ms) + after;
        match self.header_since.load(Ordering::Relaxed) {
            NONE => Some((
                at(self.idle_since.load(Ordering::Relaxed), deadlines.idle),
                Expiry::Idle,
            )),
            since => Some((at(since, deadlines.header), Expiry::Header)),
        }
    }

    /// Resolves when a deadline passes.
    pub async fn expired(&self, deadlines: Deadlines) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match self.next(&deadlines) {
                None => changed.await,
                Some((at, expiry)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            // Still the deadline (not moved by a request)?
                            if self.next(&deadlines).is_some_and(|(now, _)| now <= Instant::now()) {
                                return expiry;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// One busy request of a connection; dropping it ends it.
#[derive(Debug)]
pub struct Active(Arc<Clock>);

impl Active {
    /// The send deadline, if its connection is being cut because the
    /// client took nothing for that long.
    pub fn client_stopped_reading(&self) -> Option<Duration> {
        match self.0.send_expired.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let clock = &self.0;
        if clock.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            clock.idle_since.store(clock.now_ms(), Ordering::Relaxed);
            clock.changed.notify_one();
        }
    }
}

/// A client connection's I/O, noting on its [`Clock`] when bytes arrive
/// and how its writes fare.
#[derive(Debug)]
pub struct Watched<I> {
    io: I,
    clock: Arc<Clock>,
}

impl<I> Watched<I> {
    /// Watches `io` for `clock`.
    pub fn new(io: I, clock: Arc<Clock>) -> Watched<I> {
        Watched { io, clock }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_arrived();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        write_noted(&this.clock.send, Pin::new(&mut this.io), cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        write_vectored_noted(&this.clock.send, Pin::new(&mut this.io), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        flush_noted(&this.clock.send, Pin::new(&mut this.io), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        shutdown_noted(&this.clock.send, Pin::new(&mut this.io), cx)
    }
}

/// Why [`drive`] ended a connection itself.
#[derive(Debug, thiserror::Error)]
pub enum Closed {
    /// The client was too slow with a request head.
    #[error("no complete request head within {} ms", .0.as_millis())]
    HeaderTimeout(Duration),
    /// The client took nothing of what was sent to it for this long.
    #[error("the client took nothing for {} ms", .0.as_millis())]
    SendTimeout(Duration),
    /// A graceful close (idle or shutdown) did not finish in time.
    #[error("requests still open {} ms after the connection began to close", .0.as_millis())]
    CloseTimeout(Duration),
    /// The connection itself failed.
    #[error("{0}")]
    Connection(BoxError),
}

/// Serves `conn` until it ends, its clock runs out, or `shutdown` turns
/// `true`; a close for idleness or shutdown is graceful, within
/// `deadlines.close`, and one for the send deadline is not (nothing more
/// could be sent).
pub async fn drive<C>(
    conn: C,
    clock: &Clock,
    deadlines: Deadlines,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Closed>
where
    C: GracefulConnection<Error = BoxError>,
{
    let mut conn = pin!(conn);
    let mut expired = pin!(clock.expired(deadlines));
    let mut stalled = pin!(clock.send.stalled(deadlines.send));
    let mut closing: Option<Instant> = None;
    loop {
        let close_by = closing.unwrap_or_else(Instant::now);
        tokio::select! {
            served = conn.as_mut() => return served.map_err(Closed::Connection),
            expiry = expired.as_mut(), if closing.is_none() => match expiry {
                Expiry::Header => return Err(Closed::HeaderTimeout(deadlines.header)),
                Expiry::Idle => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + deadlines.close);
                }
            },
            () = stalled.as_mut() => {
                // Read by the cut responses' access-log lines, as `conn` drops.
                let ms = deadlines.send.as_millis().max(1) as u64;
                clock.send_expired.store(ms, Ordering::Relaxed);
                return Err(Closed::SendTimeout(deadlines.send));
            }
            () = crate::server::stopped(&mut shutdown), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + deadlines.close);
            }
            () = tokio::time::sleep_until(close_by), if closing.is_some() => {
                return Err(Closed::CloseTimeout(deadlines.close));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINES: Deadlines = Deadlines {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        close: Duration::from_secs(5),
        send: Duration::from_secs(60),
    };

    async fn expiry_after(clock: &Clock) -> (Expiry, Duration) {
        let start = Instant::now();
        let expiry = clock.expired(DEADLINES).await;
        (expiry, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_is_due_within_the_header_deadline() {
        let clock = Clock::new();
        assert_eq!(
            expiry_after(&clock).await,
            (Expiry::Header, Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_http1_connection_gets_the_idle_timeout_until_bytes_arrive() {
        let clock = Clock::new();
        drop(clock.start_request(Version::HTTP_11));
        assert_eq!(
            expiry_after(&clock).await,
            (Expiry::Idle, Duration::from_secs(60))
        );

        let clock = Clock::new();
        drop(clock.start_request(Version::HTTP_11));
        tokio::time::sleep(Duration::from_secs(30)).await;
        clock.bytes_arrived(); // a head begins: due within 10 s
        assert_eq!(
            expiry_after(&clock).await,
            (Expiry::Header, Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_has_no_deadline_and_http2_bytes_are_no_head() {
        let clock = Clock::new();
        let active = clock.start_request(Version::HTTP_2);
        let waited = tokio::time::timeout(Duration::from_secs(3600), clock.expired(DEADLINES));
        assert!(waited.await.is_err(), "busy: nothing expires");
        clock.bytes_arrived();
        let ended = Instant::now();
        drop(active);
        clock.bytes_arrived(); // a ping: not a request head
        let (expiry, _) = expiry_after(&clock).await;
        assert_eq!(expiry, Expiry::Idle);
        assert_eq!(ended.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_moves_the_deadline() {
        let clock = Clock::new();
        let waiter = {
            let clock = Arc::clone(&clock);
            tokio::spawn(async move { expiry_after(&clock).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let active = clock.start_request(Version::HTTP_11);
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!waiter.is_finished(), "busy for 100 s: still open");
        drop(active);
        let (expiry, elapsed) = waiter.await.unwrap();
        assert_eq!(expiry, Expiry::Idle);
        assert_eq!(elapsed, Duration::from_secs(165));
    }
}
