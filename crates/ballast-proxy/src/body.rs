//! The bodies the data path streams: the client's request body on its way
//! to the upstream ([`ClientBody`]), and the upstream's response body on its
//! way back ([`Tracked`]).
//!
//! Both keep to the route's size limit (`BodyLimits`) and to an idle
//! deadline: a body that has nothing to give while it is being read, for
//! longer than its deadline, is broken off. The deadline runs only while the
//! reader waits on the body, never while the other side is slow to take
//! what was read. Its timer lives inside the (already boxed) body and is
//! reset per wait, so streaming allocates nothing more per chunk or body.
//!
//! A broken-off request body fails the upstream request with a
//! [`BodyError`], which the data path answers with 413 (too large) or 408
//! (stalled). A broken-off response body aborts the response the client is
//! receiving (its status is already sent): the connection is closed (or the
//! HTTP/2 stream reset), and the access log records 502 (too large) or 504
//! (stalled) with the reason. A response cut off because its client stopped
//! reading (the send deadline, see `conn`) is recorded as 408.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::StatusCode;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::conn::Active;
use crate::proxy::Pending;
use crate::target::InFlight;
use crate::upstream::Lease;

/// The error type of every body the proxy sends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the proxy broke off a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More bytes than the route allows.
    #[error("the body is larger than the route's limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Nothing arrived for the idle deadline.
    #[error("no part of the body arrived for {} ms", idle.as_millis())]
    Stalled {
        /// The deadline.
        idle: Duration,
    },
}

pin_project! {
    /// The deadline between two chunks of a body. Its timer lives inline
    /// (the body is boxed already) and is reset, not made anew, per wait.
    struct IdleDeadline {
        idle: Duration,
        // The timer runs for the current wait.
        armed: bool,
        #[pin]
        sleep: Sleep,
    }
}

impl IdleDeadline {
    fn new(idle: Duration) -> IdleDeadline {
        IdleDeadline {
            idle,
            armed: false,
            // Registered with the timer only once polled.
            sleep: tokio::time::sleep(idle),
        }
    }

    /// A chunk arrived: the next wait starts afresh.
    fn progressed(self: Pin<&mut Self>) {
        *self.project().armed = false;
    }

    /// The body has nothing now: ready once it has had nothing for the
    /// whole deadline.
    fn poll_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BodyError> {
        let mut this = self.project();
        if !*this.armed {
            this.sleep.as_mut().reset(Instant::now() + *this.idle);
            *this.armed = true;
        }
        let idle = *this.idle;
        this.sleep.poll(cx).map(|()| BodyError::Stalled { idle })
    }
}

/// Counts a body's bytes against a limit.
struct Counter {
    limit: Option<u64>,
    seen: u64,
}

impl Counter {
    /// Counts `frame`; an error once past the limit.
    fn count(&mut self, frame: &Frame<Bytes>) -> Result<(), BodyError> {
        if let Some(data) = frame.data_ref() {
            self.seen = self.seen.saturating_add(data.len() as u64);
        }
        match self.limit {
            Some(limit) if self.seen > limit => Err(BodyError::TooLarge { limit }),
            _ => Ok(()),
        }
    }
}

pin_project! {
    /// The client's request body, as sent to the upstream.
    pub struct ClientBody {
        inner: Incoming,
        counter: Counter,
        #[pin]
        deadline: IdleDeadline,
    }
}

impl ClientBody {
    /// `inner`, at most `limit` bytes, with at most `idle` between chunks.
    pub fn new(inner: Incoming, limit: Option<u64>, idle: Duration) -> ClientBody {
        ClientBody {
            inner,
            counter: Counter { limit, seen: 0 },
            deadline: IdleDeadline::new(idle),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match Pin::new(this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline.as_mut().progressed();
                Poll::Ready(Some(match this.counter.count(&frame) {
                    Ok(()) => Ok(frame),
                    Err(e) => Err(e.into()),
                }))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => this
                .deadline
                .as_mut()
                .poll_expired(cx)
                .map(|e| Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a request holds until its response is finished.
pub struct Holds {
    /// Counts the request in flight to its target (what a drain waits for).
    pub in_flight: InFlight,
    /// Keeps the client connection busy (its idle timeout waits).
    pub active: Active,
    /// The access-log line, written at the end.
    pub pending: Pending,
}

pin_project! {
    /// An upstream body that keeps its request's [`Holds`] until it is
    /// finished, keeps to the route's limit and the idle deadline, writes
    /// the access-log line at the end, and gives its upstream connection
    /// back if it was read to the end.
    pub struct Tracked {
        inner: Incoming,
        // The status sent to the client.
        status: StatusCode,
        // The body was read to its end (a chunked body's length is never
        // known, so `is_end_stream` alone cannot tell).
        ended: bool,
        lease: Option<Lease>,
        counter: Counter,
        #[pin]
        deadline: IdleDeadline,
        // Why the proxy cut the body off, for the access log.
        cut: Option<BodyError>,
        holds: Option<Holds>,
    }

    impl PinnedDrop for Tracked {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(lease) = this.lease.take() {
                if this.cut.is_none() && (*this.ended || this.inner.is_end_stream()) {
                    lease.release();
                }
            }
            // The request stops counting in flight, and its connection is
            // idle, only once the line is written.
            if let Some(holds) = this.holds.take() {
                let status = *this.status;
                let unfinished = !*this.ended && !this.inner.is_end_stream();
                let stopped = holds.active.client_stopped_reading();
                match *this.cut {
                    None => match stopped.filter(|_| unfinished) {
                        None => holds.pending.finish(status, None),
                        Some(send) => {
                            let error = format!(
                                "response cut off: the client took nothing for {} ms",
                                send.as_millis()
                            );
                            holds.pending.finish(StatusCode::REQUEST_TIMEOUT, Some(error));
                        }
                    },
                    Some(e) => {
                        let status = match e {
                            BodyError::TooLarge { .. } => StatusCode::BAD_GATEWAY,
                            BodyError::Stalled { .. } => StatusCode::GATEWAY_TIMEOUT,
                        };
                        let error = format!("response cut off: {e}");
                        holds.pending.finish(status, Some(error));
                    }
                }
                drop((holds.in_flight, holds.active));
            }
        }
    }
}

impl Tracked {
    /// Tracks `inner`, the body of a response with `status`, read from the
    /// connection `lease`: at most `limit` bytes, `idle` between chunks.
    pub fn new(
        inner: Incoming,
        status: StatusCode,
        lease: Lease,
        limit: Option<u64>,
        idle: Duration,
        holds: Holds,
    ) -> Tracked {
        Tracked {
            inner,
            status,
            ended: false,
            lease: Some(lease),
            counter: Counter { limit, seen: 0 },
            deadline: IdleDeadline::new(idle),
            cut: None,
            holds: Some(holds),
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if this.cut.is_some() {
            return Poll::Ready(None);
        }
        let polled = match Pin::new(&mut *this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.deadline.as_mut().progressed();
                this.counter.count(&frame).map(|()| frame)
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                *this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => match this.deadline.as_mut().poll_expired(cx) {
                Poll::Ready(e) => Err(e),
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(Some(polled.map_err(|e| {
            *this.cut = Some(e);
            e.into()
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.cut.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
