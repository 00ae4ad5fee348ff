//! The data path: route each request, forward it, answer errors.
//!
//! A request reads the current [`Table`] snapshot (an `ArcSwap` load: no
//! lock), finds its service, waits at the service's pause gate if any, picks
//! a target round robin and enters it (counting itself in flight until its
//! response body or tunnel ends), and is forwarded with a pooled keep-alive
//! client. Failures remember their side: the upstream's (502, or 504 on a
//! timeout) or the client's (400).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::access_log::{AccessEntry, AccessLogger};
use crate::headers;
use crate::table::{Service, Table};
use crate::target::{InFlight, Target};
use crate::tunnel;
use crate::upstream::{Lease, UpstreamError, Upstreams};
use crate::workers::Load;

/// Every body the proxy sends: upstream bodies and its own short answers.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

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
    /// How long a client may take to send its request headers.
    pub client_header: Duration,
    /// At shutdown, how long open requests get to finish.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(60),
            upstream_idle: Duration::from_secs(60),
            client_header: Duration::from_secs(30),
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
    /// Turns `true` at shutdown, so upgraded tunnels close.
    pub shutdown: watch::Receiver<bool>,
}

/// Why a request was not forwarded, and on which side it went wrong.
#[derive(Debug)]
enum ForwardError {
    /// No service answers this host and path.
    NoRoute,
    /// The service has no target that accepts requests.
    NoTarget,
    /// The upstream could not be reached or broke off.
    Upstream(String),
    /// The upstream sent no response headers in time.
    UpstreamTimeout(Duration),
    /// The client's request could not be forwarded (bad URI, aborted body).
    Downstream(String),
}

impl ForwardError {
    fn status(&self) -> StatusCode {
        match self {
            ForwardError::NoRoute => StatusCode::NOT_FOUND,
            ForwardError::NoTarget => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ForwardError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ForwardError::Downstream(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn detail(&self) -> String {
        match self {
            ForwardError::NoRoute => "no service answers this host and path".into(),
            ForwardError::NoTarget => "the service has no target".into(),
            ForwardError::Upstream(e) => format!("upstream failed: {e}"),
            ForwardError::UpstreamTimeout(d) => {
                format!("upstream sent no answer within {} ms", d.as_millis())
            }
            ForwardError::Downstream(e) => format!("bad request: {e}"),
        }
    }
}

/// What was known about a request when it was accepted, for the access log.
struct Pending {
    entry: AccessEntry,
    start: Instant,
    log: AccessLogger,
}

impl Pending {
    fn finish(mut self, status: StatusCode, error: Option<String>) {
        self.entry.status = status.as_u16();
        self.entry.error = error;
        self.entry.duration_ms = self.start.elapsed().as_millis() as u64;
        self.entry.time = SystemTime::now();
        self.log.log(self.entry);
    }
}

impl DataPath {
    /// Answers one request from `peer`, received over `scheme`.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        scheme: &'static str,
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
        pending.entry.service = Some(service);
        let target = Arc::clone(in_flight.target());
        pending.entry.target = Some(Arc::clone(&target));
        match self.forward(req, &target, &host, path, peer, scheme).await {
            Ok(Forwarded::Response(response, lease)) => {
                let (parts, body) = response.into_parts();
                let status = parts.status;
                let body = Tracked {
                    inner: body,
                    ended: false,
                    lease: Some(lease),
                    _in_flight: in_flight,
                    pending: Some((pending, status)),
                };
                Ok(Response::from_parts(parts, body.boxed()))
            }
            Ok(Forwarded::Upgrade(response, client, upstream)) => {
                let target = Arc::clone(in_flight.target());
                let shutdown = self.shutdown.clone();
                let status = response.status();
                let counted = self.load.count();
                tokio::spawn(async move {
                    let _counted = counted;
                    let outcome = tunnel::run(client, upstream, &target, shutdown).await;
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
                gate.wait().await;
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

    /// Sends the request to `target` and waits for the response headers.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        target: &Arc<Target>,
        host: &HeaderValue,
        path: PathAndQuery,
        peer: SocketAddr,
        scheme: &'static str,
    ) -> Result<Forwarded, ForwardError> {
        let protocol = headers::upgrade_protocol(req.headers());
        let client_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // Origin form: the connection already goes to the target.
        parts.uri = Uri::from(path);
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = protocol {
            headers::restore_upgrade(&mut parts.headers, protocol);
        }
        headers::add_forwarded(&mut parts.headers, peer.ip(), host, scheme);
        if !parts.headers.contains_key(header::HOST) {
            // HTTP/2 carries the host in the URI's authority; an HTTP/1.0
            // request may have none, and HTTP/1.1 upstreams require one.
            let host = match host.is_empty() {
                false => Some(host.clone()),
                true => HeaderValue::from_str(target.addr()).ok(),
            };
            if let Some(host) = host {
                parts.headers.insert(header::HOST, host);
            }
        }
        parts.version = Version::HTTP_11;
        let request = Request::from_parts(parts, body.boxed());
        let sent = self.upstreams.send(target, request);
        let (mut response, lease) = match tokio::time::timeout(self.timeouts.request, sent).await {
            Err(_) => return Err(ForwardError::UpstreamTimeout(self.timeouts.request)),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(answer)) => answer,
        };
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
    let text = e.to_string();
    match e {
        // An error reading the client's request body is the client's.
        UpstreamError::Request(e) if e.is_user() || e.is_body_write_aborted() => {
            ForwardError::Downstream(text)
        }
        _ => ForwardError::Upstream(text),
    }
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
    pending.finish(status, Some(detail.clone()));
    let mut response = Response::new(full(format!("{detail}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
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

/// An upstream body that keeps its request in flight until it is finished,
/// writes the access-log line then, and gives its connection back if it was
/// read to the end.
struct Tracked {
    inner: Incoming,
    /// The body was read to its end (a chunked body's length is never
    /// known, so `is_end_stream` alone cannot tell).
    ended: bool,
    lease: Option<Lease>,
    _in_flight: InFlight,
    pending: Option<(Pending, StatusCode)>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            if self.ended || self.inner.is_end_stream() {
                lease.release();
            }
        }
        if let Some((pending, status)) = self.pending.take() {
            pending.finish(status, None);
        }
    }
}
