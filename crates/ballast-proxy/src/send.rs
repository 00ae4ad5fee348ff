//! The send deadline's watch: when writes to a peer were refused (its
//! receive window and our send buffer are full) and not followed by
//! progress since.
//!
//! [`SendWatch`] is noted by the I/O wrappers that see a peer's writes:
//! `conn::Watched` for client connections, [`SendWatched`] for each side of
//! a tunnel. It only touches atomics; whoever enforces the deadline awaits
//! [`SendWatch::stalled`] in its own task (`conn::drive`, `tunnel::run`).
//! Why the writes are watched at the socket and what counts as progress is
//! in `conn`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// No time noted.
const NONE: u64 = u64::MAX;

/// When writes to one peer were refused and not yet followed by progress.
#[derive(Debug)]
pub struct SendWatch {
    start: Instant,
    /// When a write was first refused since the last progress (ms since
    /// `start`), or NONE.
    refused_since: AtomicU64,
    /// Woken when a write is refused after progress.
    refused: Notify,
}

impl SendWatch {
    /// Nothing refused yet.
    pub fn new() -> SendWatch {
        SendWatch {
            start: Instant::now(),
            refused_since: AtomicU64::new(NONE),
            refused: Notify::new(),
        }
    }

    /// Notes what a write (or flush, or shutdown) of the peer's I/O gave:
    /// `Pending` is a refusal; bytes written (or a flush done) are progress.
    pub fn note<T>(&self, polled: &Poll<std::io::Result<T>>, progressed: impl FnOnce(&T) -> bool) {
        match polled {
            Poll::Pending => {
                if self.refused_since.load(Ordering::Relaxed) == NONE {
                    let now = self.start.elapsed().as_millis() as u64;
                    self.refused_since.store(now, Ordering::Relaxed);
                    self.refused.notify_one();
                }
            }
            Poll::Ready(Ok(done)) if progressed(done) => {
                if self.refused_since.load(Ordering::Relaxed) != NONE {
                    self.refused_since.store(NONE, Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {}
        }
    }

    /// Resolves once a write has been refused, with no progress since, for
    /// `deadline`.
    pub async fn stalled(&self, deadline: Duration) {
        loop {
            let refused = self.refused.notified();
            match self.refused_since.load(Ordering::Relaxed) {
                NONE => refused.await,
                since => {
                    let at = self.start + Duration::from_millis(since) + deadline;
                    tokio::time::sleep_until(at).await;
                    // Progress since clears it (or moves it later).
                    if self.refused_since.load(Ordering::Relaxed) == since {
                        return;
                    }
                }
            }
        }
    }
}

impl Default for SendWatch {
    fn default() -> SendWatch {
        SendWatch::new()
    }
}

/// I/O whose writes are noted on a [`SendWatch`] (the tunnels' sides).
#[derive(Debug)]
pub struct SendWatched<I> {
    io: I,
    watch: Arc<SendWatch>,
}

impl<I> SendWatched<I> {
    /// Watches the writes to `io` on `watch`.
    pub fn new(io: I, watch: Arc<SendWatch>) -> SendWatched<I> {
        SendWatched { io, watch }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendWatched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendWatched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        write_noted(&this.watch, Pin::new(&mut this.io), cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        write_vectored_noted(&this.watch, Pin::new(&mut this.io), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        flush_noted(&this.watch, Pin::new(&mut this.io), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        shutdown_noted(&this.watch, Pin::new(&mut this.io), cx)
    }
}

/// `io.poll_write`, noted on `watch`.
pub fn write_noted<I: AsyncWrite>(
    watch: &SendWatch,
    io: Pin<&mut I>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<std::io::Result<usize>> {
    let polled = io.poll_write(cx, buf);
    watch.note(&polled, |n| *n > 0);
    polled
}

/// `io.poll_write_vectored`, noted on `watch`.
pub fn write_vectored_noted<I: AsyncWrite>(
    watch: &SendWatch,
    io: Pin<&mut I>,
    cx: &mut Context<'_>,
    bufs: &[std::io::IoSlice<'_>],
) -> Poll<std::io::Result<usize>> {
    let polled = io.poll_write_vectored(cx, bufs);
    watch.note(&polled, |n| *n > 0);
    polled
}

/// `io.poll_flush`, noted on `watch`: done, nothing waits to go out.
pub fn flush_noted<I: AsyncWrite>(
    watch: &SendWatch,
    io: Pin<&mut I>,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    let polled = io.poll_flush(cx);
    watch.note(&polled, |()| true);
    polled
}

/// `io.poll_shutdown`, noted on `watch`, as a flush.
pub fn shutdown_noted<I: AsyncWrite>(
    watch: &SendWatch,
    io: Pin<&mut I>,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    let polled = io.poll_shutdown(cx);
    watch.note(&polled, |()| true);
    polled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refused_write_must_progress_within_the_send_deadline() {
        let watch = Arc::new(SendWatch::new());
        let deadline = Duration::from_secs(60);
        let stalled = {
            let watch = Arc::clone(&watch);
            tokio::spawn(async move {
                let start = Instant::now();
                watch.stalled(deadline).await;
                start.elapsed()
            })
        };
        // Writes that go out, and a long quiet time: nothing runs.
        watch.note(&Poll::Ready(Ok(10_usize)), |n| *n > 0);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!stalled.is_finished(), "quiet: no deadline");
        // Refused, then progress every 50 s: never 60 s without it.
        for _ in 0..5 {
            watch.note(&Poll::<std::io::Result<usize>>::Pending, |n| *n > 0);
            tokio::time::sleep(Duration::from_secs(50)).await;
            watch.note(&Poll::Ready(Ok(())), |()| true);
        }
        assert!(!stalled.is_finished(), "progressing: no deadline");
        // Refused for good.
        watch.note(&Poll::<std::io::Result<usize>>::Pending, |n| *n > 0);
        watch.note(&Poll::<std::io::Result<usize>>::Pending, |n| *n > 0);
        assert_eq!(
            stalled.await.unwrap(),
            Duration::from_secs(600 + 5 * 50 + 60)
        );
    }
}
