//! Keep-alive HTTP/1.1 connections from one lane to its targets.
//!
//! Each lane keeps its own idle connections, so a request and the upstream
//! connection it uses stay on one thread, and taking a connection is one
//! lookup in a small map rather than a trip through a shared pool. A
//! connection goes back to the idle list only once its response was read to
//! the end (a [`Lease`] released by the response body); one the target
//! closed while idle is discarded; a request that an idle connection
//! refused before sending anything is sent again on a fresh one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy::ProxyBody;
use crate::target::Target;

/// Idle connections kept per target and lane; more are closed.
const MAX_IDLE_PER_TARGET: usize = 256;

/// Why a request got no response from its target.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be opened (refused, unreachable, timed out).
    Connect(String),
    /// The connection broke while sending or before the response head.
    Request(hyper::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "cannot connect: {e}"),
            UpstreamError::Request(e) => {
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// One lane's connections to every target.
#[derive(Debug)]
pub struct Upstreams {
    idle: Mutex<Pool>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

#[derive(Default)]
struct Pool {
    by_target: HashMap<String, Vec<Idle>>,
    last_sweep: Option<Instant>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle: usize = self.by_target.values().map(Vec::len).sum();
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

/// A connection lent to one request; [`Lease::release`] gives it back.
pub struct Lease {
    sender: SendRequest<ProxyBody>,
    target: Arc<Target>,
    upstreams: Arc<Upstreams>,
}

impl Lease {
    /// Returns the connection to the idle list: call once the response was
    /// read to its end (dropping the lease instead closes the connection).
    /// A connection still busy (sending a request body the target answered
    /// early, say) joins the list only once it is ready, so no request ever
    /// waits on a pooled connection.
    pub fn release(self) {
        let Lease {
            mut sender,
            target,
            upstreams,
        } = self;
        if sender.is_ready() {
            upstreams.put_back(target.addr(), sender);
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let wait = upstreams.idle_timeout;
            runtime.spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(wait, sender.ready()).await {
                    upstreams.put_back(target.addr(), sender);
                }
            });
        }
    }
}

impl Upstreams {
    /// Connections that give up opening after `connect_timeout` and are
    /// closed after `idle_timeout` unused.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Arc<Upstreams> {
        Arc::new(Upstreams {
            idle: Mutex::default(),
            connect_timeout,
            idle_timeout,
        })
    }

    /// Sends `req` (origin-form URI, Host set) to `target` and waits for
    /// the response head.
    pub async fn send(
        self: &Arc<Self>,
        target: &Arc<Target>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        loop {
            let (mut sender, reused) = self.checkout(target.addr()).await?;
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        target: Arc::clone(target),
                        upstreams: Arc::clone(self),
                    };
                    return Ok((response, lease));
                }
                Err(mut e) => match e.take_message() {
                    // An idle connection the target had just closed:
                    // nothing was sent, so a fresh connection may try.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
    }

    /// An idle connection ready for a request, else a new one. Says
    /// whether it was reused.
    async fn checkout(
        &self,
        target: &str,
    ) -> Result<(SendRequest<ProxyBody>, bool), UpstreamError> {
        // Only ready connections are put back, so one not ready now was
        // closed by the target since.
        while let Some(sender) = self.take_idle(target) {
            if sender.is_ready() {
                return Ok((sender, true));
            }
        }
        Ok((self.connect(target).await?, false))
    }

    fn take_idle(&self, target: &str) -> Option<SendRequest<ProxyBody>> {
        let mut pool = self.lock();
        let list = pool.by_target.get_mut(target)?;
        while let Some(idle) = list.pop() {
            if !idle.sender.is_closed() && idle.since.elapsed() < self.idle_timeout {
                return Some(idle.sender);
            }
        }
        None
    }

    async fn connect(&self, target: &str) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let timeout = self.connect_timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Err(_) => {
                return Err(UpstreamError::Connect(format!(
                    "no connection within {} ms",
                    timeout.as_millis()
                )))
            }
            Ok(Err(e)) => return Err(UpstreamError::Connect(e.to_string())),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Request)?;
        let target = target.to_string();
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(%target, error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn put_back(&self, target: &str, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut pool = self.lock();
        if pool
            .last_sweep
            .is_none_or(|at| now.duration_since(at) > self.idle_timeout / 2)
        {
            let timeout = self.idle_timeout;
            pool.by_target.retain(|_, list| {
                list.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < timeout);
                !list.is_empty()
            });
            pool.last_sweep = Some(now);
        }
        let idle = Idle { sender, since: now };
        match pool.by_target.get_mut(target) {
            Some(list) if list.len() < MAX_IDLE_PER_TARGET => list.push(idle),
            Some(_) => {}
            None => {
                pool.by_target.insert(target.to_string(), vec![idle]);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Idle connections kept for `target` now.
    #[cfg(test)]
    fn idle_count(&self, target: &str) -> usize {
        self.lock().by_target.get(target).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{empty, full};
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A keep-alive server counting the connections it accepted; it closes
    /// each connection after `per_connection` requests (0: never).
    async fn server(per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let served = Arc::new(AtomicUsize::new(0));
                    let service = hyper::service::service_fn(move |_req| {
                        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            let mut response = Response::new(full("ok"));
                            if per_connection > 0 && n >= per_connection {
                                response
                                    .headers_mut()
                                    .insert("connection", "close".parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<ProxyBody> {
        Request::builder()
            .uri("/")
            .header("host", "test")
            .body(empty())
            .unwrap()
    }

    async fn fetch(upstreams: &Arc<Upstreams>, target: &str) -> String {
        let (response, lease) = upstreams.send(&Target::new(target), get()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        lease.release();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_released_connection_carries_the_next_request() {
        let (addr, accepted) = server(0).await;
        let upstreams = Upstreams::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..5 {
            assert_eq!(fetch(&upstreams, &addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(upstreams.idle_count(&addr), 1);
    }

    #[tokio::test]
    async fn a_dropped_lease_closes_its_connection() {
        let (addr, accepted) = server(0).await;
        let upstreams = Upstreams::new(Duration::from_secs(1), Duration::from_secs(60));
        let (_response, lease) = upstreams
            .send(&Target::new(addr.as_str()), get())
            .await
            .unwrap();
        drop(lease);
        assert_eq!(upstreams.idle_count(&addr), 0);
        assert_eq!(fetch(&upstreams, &addr).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connections_the_target_closed_are_not_reused() {
        let (addr, accepted) = server(1).await;
        let upstreams = Upstreams::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(fetch(&upstreams, &addr).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, accepted) = server(0).await;
        let upstreams = Upstreams::new(Duration::from_secs(1), Duration::from_millis(200));
        assert_eq!(fetch(&upstreams, &addr).await, "ok");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fetch(&upstreams, &addr).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let upstreams = Upstreams::new(Duration::from_secs(1), Duration::from_secs(5));
        let err = upstreams
            .send(&Target::new(addr.as_str()), get())
            .await
            .err()
            .unwrap();
        assert!(matches!(err, UpstreamError::Connect(_)), "{err}");
    }
}
