//! The data path: route each request, forward it, answer errors.
//!
//! On plain HTTP, ACME challenges and the host names served over HTTPS are
//! answered first, by the proxy itself (see `certs::PlainHttp`). Then a
//! request reads the current [`Table`] snapshot (an `ArcSwap` load: no
//! lock), finds its service, waits at the service's pause gate if any (at
//! most `max_held_requests` per service wait; past that a request is
//! answered 503 with `Retry-After` at once), picks a target round robin and
//! enters it (counting itself in flight until its response body or tunnel
//! ends), and is forwarded with a pooled keep-alive client. The forwarding
//! headers are set as `headers` says. Bodies keep to the route's size limits
//! and to idle deadlines (see `body`): a request body declared larger than
//! its limit is answered 413 before anything is forwarded (over HTTP/2 the
//! rest of it is then read and thrown away, within bounds: see `discard`),
//! a response body declared larger than its limit 502. Failures remember
//! their side: the upstream's (502, or 504 on a timeout) or the client's
//! (400; 408 for a stalled body or a client that stopped reading its
//! response, 413 for a body too large). Every answered request of a
//! service, the proxy's own answers included, counts in its counters when
//! its access-log line is written (see `counters`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::access_log::{AccessEntry, AccessLogger};
use crate::body::{BodyError, BoxError, ClientBody, Holds, Tracked};
use crate::certs::PlainHttp;
use crate::conn::Active;
use crate::headers::{self, TrustedProxies};
use crate::limit::ConnectionLimit;
use crate::table::{Service, Table};
use crate::target::{InFlight, Target};
use crate::tunnel;
use crate::upstream::{Lease, UpstreamError, Upstreams};
use crate::workers::Load;

/// Every body the proxy sends: upstream bodies and its own short answers.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// The pooled keep-alive HTTP/1.1 client to upstreams.
pub type UpstreamClient = Client<HttpConnector, ProxyBody>;

/// The proxy's time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a connection to an upstream may take to open.
    pub connect: Duration,
    /// How long an upstream may take to send its response headers.
    pub request: Duration,
    /// How long an idle keep-alive connection to an upstream is kept.
    pub upstream_idle: Duration,
    /// How long a client may take to send a request head: from connecting
    /// to its first request, and (HTTP/1) from the first byte of each later
    /// one. Slower clients (slowloris) are cut off.
    pub client_header: Duration,
    /// How long a client connection with no request under way stays open.
    pub client_idle: Duration,
    /// The longest a client's request body may send nothing while the
    /// proxy waits on it; then the request is answered 408.
    pub client_body: Duration,
    /// The longest an upstream's response body may send nothing while the
    /// proxy waits on it; then the response is cut off.
    pub upstream_body: Duration,
    /// The longest a client may take none of what the proxy sends it (a
    /// refused write, see `conn`); then its connection is closed and its
    /// unfinished response dropped. In a tunnel, the longest either side
    /// may take nothing the other sent.
    pub response_send: Duration,
    /// How often an HTTP/2 client connection is pinged (`None`: never).
    pub h2_keep_alive_interval: Option<Duration>,
    /// How long an HTTP/2 ping may go unanswered before the connection is
    /// closed.
    pub h2_keep_alive_timeout: Duration,
    /// At shutdown, how long open requests get to finish.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(60),
            upstream_idle: Duration::from_secs(60),
            client_header: Duration::from_secs(10),
            client_idle: Duration::from_secs(75),
            client_body: Duration::from_secs(30),
            upstream_body: Duration::from_secs(60),
            response_send: Duration::from_secs(60),
            h2_keep_alive_interval: Some(Duration::from_secs(30)),
            h2_keep_alive_timeout: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A pooled keep-alive client that gives up connecting after
/// `connect_timeout` and closes connections idle for `idle`.
pub fn upstream_client(connect_timeout: Duration, idle: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of `text`.
pub fn full(text: impl Into<Bytes>) -> ProxyBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

/// What every connection's requests share.
#[derive(Debug)]
pub struct DataPath {
    /// The current routes; the control path swaps in new snapshots.
    pub table: Arc<ArcSwap<Table>>,
    /// This lane's keep-alive connections to targets.
    pub upstreams: Arc<Upstreams>,
    /// Where access-log lines go.
    pub log: AccessLogger,
    /// This lane's connections and tunnels (tunnels outlive their connection).
    pub load: Load,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Turns `true` at shutdown, so connections and tunnels close.
    pub shutdown: watch::Receiver<bool>,
    /// Clients whose forwarding headers are kept.
    pub trusted: TrustedProxies,
    /// The cap on open client connections (tunnels count).
    pub connections: Arc<ConnectionLimit>,
    /// Requests a paused service holds at most; more are answered 503.
    pub max_held_requests: usize,
    /// What plain HTTP answers itself: ACME challenges, redirects to HTTPS.
    pub plain: Arc<PlainHttp>,
}

/// Why a request was not forwarded, and on which side it went wrong.
#[derive(Debug)]
enum ForwardError {
    /// No service answers this host and path.
    NoRoute,
    /// The service has no target that accepts requests.
    NoTarget,
    /// The service is paused and holds as many requests as it may.
    PauseFull(usize),
    /// The upstream could not be reached or broke off.
    Upstream(String),
    /// The upstream sent no response headers in time.
    UpstreamTimeout(Duration),
    /// The upstream's response body is declared larger than the route's
    /// limit.
    ResponseTooLarge { length: u64, limit: u64 },
    /// The client's request could not be forwarded (bad URI, aborted body).
    Downstream(String),
    /// The client's request body is larger than the route's limit.
    RequestTooLarge(u64),
    /// The client's request body sent nothing for this long.
    RequestStalled(Duration),
}

impl ForwardError {
    fn status(&self) -> StatusCode {
        match self {
            ForwardError::NoRoute => StatusCode::NOT_FOUND,
            ForwardError::NoTarget | ForwardError::PauseFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Upstream(_) | ForwardError::ResponseTooLarge { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ForwardError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ForwardError::Downstream(_) => StatusCode::BAD_REQUEST,
            ForwardError::RequestTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ForwardError::RequestStalled(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn detail(&self) -> String {
        match self {
            ForwardError::NoRoute => "no service answers this host and path".into(),
            ForwardError::NoTarget => "the service has no target".into(),
            ForwardError::PauseFull(max) => {
                format!("the service is paused and already holds {max} requests; try again shortly")
            }
            ForwardError::Upstream(e) => format!("upstream failed: {e}"),
            ForwardError::UpstreamTimeout(d) => {
                format!("upstream sent no answer within {} ms", d.as_millis())
            }
            ForwardError::ResponseTooLarge { length, limit } => format!(
                "upstream response body of {length} bytes is larger than the route's limit \
                 of {limit} bytes"
            ),
            ForwardError::Downstream(e) => format!("bad request: {e}"),
            ForwardError::RequestTooLarge(limit) => {
                format!("request body is larger than the route's limit of {limit} bytes")
            }
            ForwardError::RequestStalled(d) => {
                format!("request body sent nothing for {} ms", d.as_millis())
            }
        }
    }

    /// Whether the client connection is closed after the answer: the
    /// client may still be sending a body no one will read.
    fn closes_connection(&self) -> bool {
        matches!(
            self,
            ForwardError::RequestTooLarge(_) | ForwardError::RequestStalled(_)
        )
    }

    /// `Retry-After` for answers that a later try may not get.
    fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            ForwardError::PauseFull(_) => Some(HeaderValue::from_static("1")),
            _ => None,
        }
    }
}

/// What was known about a request when it was accepted, for the access log.
pub struct Pending {
    entry: AccessEntry,
    start: Instant,
    log: AccessLogger,
}

impl Pending {
    /// Counts the request in its service's counters (if a service
    /// answered it) and writes its access-log line.
    pub fn finish(mut self, status: StatusCode, error: Option<String>) {
        if let Some(service) = &self.entry.service {
            service.counters.record(status);
        }
        self.entry.status = status.as_u16();
        self.entry.error = error;
        self.entry.duration_ms = self.start.elapsed().as_millis() as u64;
        self.entry.time = SystemTime::now();
        self.log.log(self.entry);
    }
}

impl DataPath {
    /// Answers one request from `peer`, received over `scheme` on a
    /// connection that counts it busy while `active` lives.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        scheme: &'static str,
        active: Active,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let host = request_host(&req);
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut pending = Pending {
            entry: AccessEntry {
                time: SystemTime::UNIX_EPOCH,
                client: peer.ip(),
                scheme,
                protocol: req.version(),
                method: req.method().clone(),
                host: host.clone(),
                path: path.clone(),
                status: 0,
                service: None,
                target: None,
                duration_ms: 0,
                error: None,
                dropped: 0,
            },
            start: Instant::now(),
            log: self.log.clone(),
        };
        if scheme == "http" {
            if let Some(response) = self.plain.answer(&req) {
                pending.finish(response.status(), None);
                return Ok(response);
            }
        }
        let host_text = host.to_str().unwrap_or_default();
        let (service, in_flight) = match self.admit(host_text, path.path()).await {
            Ok(Admitted::Forward(service, in_flight)) => (service, in_flight),
            Ok(Admitted::Maintenance(service)) => {
                pending.entry.service = Some(service);
                pending.finish(StatusCode::SERVICE_UNAVAILABLE, None);
                return Ok(maintenance_page());
            }
            Err((service, e)) => {
                pending.entry.service = service;
                return Ok(local_error(pending, e));
            }
        };
        pending.entry.service = Some(Arc::clone(&service));
        let limits = service.body_limits;
        if let Some(limit) = limits.request {
            // A declared length (Content-Length) is known before the body.
            if req.body().size_hint().lower() > limit {
                let response = local_error(pending, ForwardError::RequestTooLarge(limit));
                if req.version() == Version::HTTP_2 {
                    discard(req.into_body(), self.timeouts.client_body);
                }
                return Ok(response);
            }
        }
        let target = Arc::clone(in_flight.target());
        pending.entry.target = Some(Arc::clone(&target));
        let to = Destination {
            target: &target,
            host: &host,
            path,
            peer,
            scheme,
            service: &service,
        };
        match self.forward(req, to).await {
            Ok(Forwarded::Response(response, lease)) => {
                let (parts, body) = response.into_parts();
                let holds = Holds {
                    in_flight,
                    active,
                    pending,
                };
                let (limit, idle) = (limits.response, self.timeouts.upstream_body);
                let body = Tracked::new(body, parts.status, lease, limit, idle, holds);
                Ok(Response::from_parts(parts, body.boxed()))
            }
            Ok(Forwarded::Upgrade(response, client, upstream)) => {
                let target = Arc::clone(in_flight.target());
                let shutdown = self.shutdown.clone();
                let status = response.status();
                let send = self.timeouts.response_send;
                // The tunnel outlives its connection (and `active`): it
                // counts in its lane and against the connection cap itself.
                let counted = (self.load.count(), self.connections.keep());
                tokio::spawn(async move {
                    let _counted = counted;
                    let outcome = tunnel::run(client, upstream, &target, send, shutdown).await;
                    drop(in_flight);
                    pending.finish(status, outcome.err());
                });
                Ok(response)
            }
            Err(e) => Ok(local_error(pending, e)),
        }
    }

    /// Finds the request's service, waits out a pause, enters a target.
    async fn admit(
        &self,
        host: &str,
        path: &str,
    ) -> Result<Admitted, (Option<Arc<Service>>, ForwardError)> {
        // A target retired between the load and the enter makes us pick
        // again from the new table; a few rounds always suffice.
        let mut retired = 0;
        while retired < 8 {
            let service = match self.table.load().route(host, path) {
                Some(service) => Arc::clone(service),
                None => return Err((None, ForwardError::NoRoute)),
            };
            if service.maintenance {
                return Ok(Admitted::Maintenance(service));
            }
            if let Some(gate) = service.pause.as_ref().filter(|g| g.is_holding()) {
                let max = self.max_held_requests;
                let Some(held) = gate.hold(max) else {
                    return Err((Some(service), ForwardError::PauseFull(max)));
                };
                gate.wait().await;
                drop(held);
                continue; // the table may have changed while we waited
            }
            let Some(target) = service.pick() else {
                return Err((Some(service), ForwardError::NoTarget));
            };
            match target.enter() {
                Some(in_flight) => return Ok(Admitted::Forward(service, in_flight)),
                None => retired += 1,
            }
        }
        Err((None, ForwardError::NoTarget))
    }

    /// Sends the request to its target and waits for the response headers.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        to: Destination<'_>,
    ) -> Result<Forwarded, ForwardError> {
        let protocol = headers::upgrade_protocol(req.headers());
        let client_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // Origin form: the connection already goes to the target.
        parts.uri = Uri::from(to.path);
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = protocol {
            headers::restore_upgrade(&mut parts.headers, protocol);
        }
        let seen = headers::Seen {
            client: to.peer.ip(),
            host: to.host,
            scheme: to.scheme,
            trusted: self.trusted.contains(to.peer.ip()),
        };
        headers::set_forwarded(&mut parts.headers, seen);
        if !parts.headers.contains_key(header::HOST) {
            // HTTP/2 carries the host in the URI's authority; an HTTP/1.0
            // request may have none, and HTTP/1.1 upstreams require one.
            let host = match to.host.is_empty() {
                false => Some(to.host.clone()),
                true => HeaderValue::from_str(to.target.addr()).ok(),
            };
            if let Some(host) = host {
                parts.headers.insert(header::HOST, host);
            }
        }
        parts.version = Version::HTTP_11;
        let limits = to.service.body_limits;
        let body = ClientBody::new(body, limits.request, self.timeouts.client_body);
        let request = Request::from_parts(parts, body.boxed());
        let sent = self.upstreams.send(to.target, request);
        let (mut response, lease) = match tokio::time::timeout(self.timeouts.request, sent).await {
            Err(_) => return Err(ForwardError::UpstreamTimeout(self.timeouts.request)),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(answer)) => answer,
        };
        if let Some(limit) = limits.response {
            // A declared length; none for HEAD, 204 and 304 answers.
            let length = response.body().size_hint().lower();
            if length > limit {
                return Err(ForwardError::ResponseTooLarge { length, limit });
            }
        }
        if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, response.status())
        {
            let upstream = hyper::upgrade::on(&mut response);
            let (mut parts, _) = response.into_parts();
            let protocol = headers::upgrade_protocol(&parts.headers);
            headers::strip_hop_by_hop(&mut parts.headers);
            if let Some(protocol) = protocol {
                headers::restore_upgrade(&mut parts.headers, protocol);
            }
            // The connection now belongs to the tunnel: `lease` is dropped.
            return Ok(Forwarded::Upgrade(
                Response::from_parts(parts, empty()),
                client,
                upstream,
            ));
        }
        headers::strip_hop_by_hop(response.headers_mut());
        Ok(Forwarded::Response(response, lease))
    }
}

/// Where an admitted request goes, and what the proxy saw of it.
struct Destination<'a> {
    target: &'a Arc<Target>,
    /// The Host the client asked for (empty: none).
    host: &'a HeaderValue,
    path: PathAndQuery,
    peer: SocketAddr,
    scheme: &'static str,
    service: &'a Service,
}

/// Where a request was admitted to.
enum Admitted {
    /// Forward to this service's entered target.
    Forward(Arc<Service>, InFlight),
    /// The service is in maintenance.
    Maintenance(Arc<Service>),
}

/// What the upstream answered.
enum Forwarded {
    /// A response whose body is still to come, and its connection.
    Response(Response<Incoming>, Lease),
    /// `101 Switching Protocols`: the response for the client and both
    /// sides' upgrades, to be joined into a tunnel.
    Upgrade(
        Response<ProxyBody>,
        hyper::upgrade::OnUpgrade,
        hyper::upgrade::OnUpgrade,
    ),
}

/// Sorts an upstream error into the side that failed.
fn classify(e: UpstreamError) -> ForwardError {
    if let UpstreamError::Request(e) = &e {
        // The client's body, broken off by the proxy.
        match body_error(e) {
            Some(BodyError::TooLarge { limit }) => return ForwardError::RequestTooLarge(limit),
            Some(BodyError::Stalled { idle }) => return ForwardError::RequestStalled(idle),
            None => {}
        }
    }
    let text = e.to_string();
    match e {
        // An error reading the client's request body is the client's.
        UpstreamError::Request(e) if e.is_user() || e.is_body_write_aborted() => {
            ForwardError::Downstream(text)
        }
        _ => ForwardError::Upstream(text),
    }
}

/// The [`BodyError`] among the causes of `e`, if any.
fn body_error(e: &hyper::Error) -> Option<BodyError> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(found) = c.downcast_ref::<BodyError>() {
            return Some(*found);
        }
        cause = c.source();
    }
    None
}

/// The host a request is for: its Host header, else its URI's authority.
fn request_host<B>(req: &Request<B>) -> HeaderValue {
    if let Some(host) = req.headers().get(header::HOST) {
        return host.clone();
    }
    req.uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .unwrap_or_else(|| HeaderValue::from_static(""))
}

/// The proxy's own short answer to a failed request.
fn local_error(pending: Pending, e: ForwardError) -> Response<ProxyBody> {
    let status = e.status();
    let detail = e.detail();
    // HTTP/2 has no `Connection` header: a stream ends alone.
    let close = e.closes_connection() && pending.entry.protocol < Version::HTTP_2;
    pending.finish(status, Some(detail.clone()));
    let mut response = Response::new(full(format!("{detail}\n")));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(after) = e.retry_after() {
        h.insert(header::RETRY_AFTER, after);
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The most of a refused HTTP/2 request body [`discard`] reads.
const DISCARD_AT_MOST: u64 = 16 << 20;

/// The longest [`discard`] reads a refused HTTP/2 request body.
const DISCARD_WITHIN: Duration = Duration::from_secs(10);

/// Reads and throws away the rest of an HTTP/2 request body answered
/// before it was read, up to [`DISCARD_AT_MOST`] bytes, within
/// [`DISCARD_WITHIN`] and with at most `idle` between chunks; then drops it.
///
/// Dropped at once instead, h2 ends the stream as RFC 9113 §8.1 says: the
/// whole answer, then RST_STREAM(NO_ERROR). But clients still uploading
/// take that reset for a failure and lose the answer: curl 7.88 failed
/// every oversized upload with "Stream error in the HTTP/2 framing layer"
/// and never showed the 413 (`tests/e2e/early_answers.rs`). Read to its end,
/// the stream closes cleanly and the client reads the answer; past the
/// bounds, the reset still comes. HTTP/1 needs none of this: the answer
/// says `Connection: close`, and curl, waiting on `Expect: 100-continue`,
/// sends no body at all.
fn discard(body: Incoming, idle: Duration) {
    tokio::spawn(async move {
        let mut body = std::pin::pin!(ClientBody::new(body, Some(DISCARD_AT_MOST), idle));
        let read = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(DISCARD_WITHIN, read).await;
    });
}

/// The page a service in maintenance answers with.
fn maintenance_page() -> Response<ProxyBody> {
    const PAGE: &str = "<!doctype html>\n<html><head><title>Down for maintenance</title></head>\n\
        <body><h1>Down for maintenance</h1><p>This service is being maintained and will be \
        back shortly.</p></body></html>\n";
    let mut response = Response::new(full(PAGE));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
