//! ballast-proxy: the on-host HTTP reverse proxy that makes ballast's
//! deploys zero-downtime.
//!
//! It runs on each host as the container `ballast-proxy` (publishing 80, and
//! 443 with TLS), routes requests by Host and path prefix to services, and
//! hands a service over to a new container only once that container is
//! healthy: the old one keeps serving until then, and is drained after.
//! ballast drives it through an admin API on a unix socket, over SSH.
//!
//! # Layout
//! - [`wire`]: the admin API's request and response types and its client
//!   ([`admin_request`]): the `ballast-proxy-wire` crate, shared with ballast.
//! - `table`: the routing table snapshot and route lookup; per-route body
//!   limits; pause gates and their bounded queues.
//! - `target`: one upstream and its in-flight count (what draining waits for).
//! - `proxy`: the data path: route, wait out pauses, forward, answer errors.
//! - `body`: the streamed request and response bodies: size limits, idle
//!   deadlines, in-flight tracking.
//! - `upstream`: each lane's keep-alive connections to targets.
//! - `headers`: hop-by-hop and forwarding (`X-Forwarded-*`, `Forwarded`,
//!   `X-Real-IP`) header rewriting; trusted proxies.
//! - `cidr`: address ranges, for the trusted proxies.
//! - `tunnel`: WebSocket (and other upgrade) pass-through.
//! - `health`: health checks of candidate targets.
//! - `control`: the control path: commands → new table → save → swap; the
//!   deploy handoff (check, switch, drain).
//! - `admin`: the admin API server on a unix socket.
//! - `state`: saving and loading the table (routes survive restarts), kept
//!   from other users.
//! - `tls`: rustls configuration from PEM files; the HTTP→HTTPS redirect.
//! - `server`: the client-facing accept loops and graceful shutdown.
//! - `conn`: one client connection's deadlines (request head, idle).
//! - `limit`: the cap on open client connections and the 503 past it.
//! - `workers`: the data path's lanes, one single-threaded runtime per core.
//! - `access_log`: one JSON line per request.
//!
//! # Hardening
//! What a client (or an upstream) cannot do, and the setting that says so:
//! - pass itself off as someone else: forwarding headers it sends are
//!   replaced unless it is in [`ProxyConfig::trusted_proxies`] (`headers`);
//! - hold a connection by sending slowly or not at all: the request-head
//!   deadline, the idle timeout and HTTP/2 pings ([`Timeouts`], `conn`);
//! - stall a body: idle deadlines between chunks, both ways ([`Timeouts`],
//!   `body`);
//! - exhaust connections: [`ProxyConfig::max_connections`] (`limit`);
//! - pile up requests behind a pause:
//!   [`ProxyConfig::max_held_requests`] (`table`, `proxy`);
//! - send or receive unbounded bodies: per-route limits in the deploy
//!   request (`body`);
//! - read the routes: the state directory is `0700`, its file `0600`
//!   (`state`).
//!
//! The defaults ([`ProxyConfig::new`], [`Timeouts::default`]): request head
//! 10 s, idle connection 75 s, 30 s of silence in a request body and 60 s
//! in a response body, HTTP/2 pings every 30 s answered within 20 s, 10,000
//! connections, 1,000 held requests per paused service, no trusted proxy,
//! no body limit.
//!
//! [`run`] runs the proxy until a shutdown future resolves; [`start`] binds
//! everything and hands back a [`Started`] handle with the bound addresses
//! (tests bind port 0).

mod access_log;
mod admin;
mod body;
mod cidr;
mod conn;
mod control;
mod headers;
mod health;
mod limit;
mod proxy;
mod server;
mod state;
mod table;
mod target;
mod tls;
mod tunnel;
mod upstream;
mod workers;

pub use ballast_proxy_wire as wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use access_log::AccessLog;
pub use admin::AdminSocketError;
pub use cidr::Cidr;
pub use health::HealthError;
pub use proxy::Timeouts;
pub use state::{StateError, STATE_FILE};
pub use tls::{TlsError, TlsFiles};
pub use wire::{admin_request, AdminError, AdminRequest, AdminResponse};

/// Where the proxy listens and keeps its state.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Plain HTTP (port 80 in production; port 0 picks a free one). With TLS
    /// on, it only redirects to HTTPS.
    pub http_addr: SocketAddr,
    /// HTTPS; required exactly when `tls` is set.
    pub https_addr: Option<SocketAddr>,
    /// Certificate and key; `None` serves plain HTTP only.
    pub tls: Option<TlsFiles>,
    /// The admin API's unix socket (in a host directory, never TCP).
    pub admin_socket: PathBuf,
    /// Where the routes are saved, so they survive a restart.
    pub state_dir: PathBuf,
    /// Time limits of the data path.
    pub timeouts: Timeouts,
    /// Where the access log goes.
    pub access_log: AccessLog,
    /// Threads serving requests; 0 is one per core.
    pub workers: usize,
    /// Clients whose `X-Forwarded-For`, `Forwarded`, `X-Real-IP`,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` are believed (load
    /// balancers in front); from anyone else they are replaced. Empty: the
    /// proxy is the edge.
    pub trusted_proxies: Vec<Cidr>,
    /// Client connections open at most (tunnels count); past it, new ones
    /// are answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
    /// Requests a paused service holds at most; past it, new ones are
    /// answered 503 at once instead of piling up.
    pub max_held_requests: usize,
}

/// The default of [`ProxyConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default of [`ProxyConfig::max_held_requests`].
pub const DEFAULT_MAX_HELD_REQUESTS: usize = 1_000;

impl ProxyConfig {
    /// Plain HTTP on `http_addr` with default timeouts and limits, no
    /// trusted proxy, and the access log on stdout.
    pub fn new(
        http_addr: SocketAddr,
        admin_socket: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> ProxyConfig {
        ProxyConfig {
            http_addr,
            https_addr: None,
            tls: None,
            admin_socket: admin_socket.into(),
            state_dir: state_dir.into(),
            timeouts: Timeouts::default(),
            access_log: AccessLog::Stdout,
            workers: 0,
            trusted_proxies: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_held_requests: DEFAULT_MAX_HELD_REQUESTS,
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration contradicts itself.
    #[error("invalid proxy configuration: {0}")]
    Config(String),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The saved routes could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {source}; hint: is another proxy or web server using it?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The admin socket could not be opened.
    #[error(transparent)]
    Admin(#[from] AdminSocketError),
    /// The threads serving requests could not be started.
    #[error("cannot start the proxy's worker threads: {0}")]
    Workers(std::io::Error),
}

/// A running proxy.
#[derive(Debug)]
pub struct Started {
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    admin_socket: PathBuf,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    workers: Arc<workers::Workers>,
    log: access_log::AccessLogger,
}

impl Started {
    /// The bound plain-HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound HTTPS address, when TLS is on.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The admin socket's path.
    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// Stops accepting, lets open requests finish (up to the shutdown
    /// grace), closes tunnels and removes the admin socket.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        self.workers.stop().await;
        let mut loggers = self.workers.loggers();
        loggers.push(self.log.clone());
        let _ = tokio::task::spawn_blocking(move || access_log::finish(&loggers)).await;
        let _ = std::fs::remove_file(&self.admin_socket);
    }

    /// Connections open on each lane now.
    pub fn open_connections(&self) -> Vec<usize> {
        self.workers.open_connections()
    }
}

/// Runs the proxy until `shutdown` resolves.
pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let started = start(config).await?;
    shutdown.await;
    started.stop().await;
    Ok(())
}

/// Loads the saved routes, binds every listener and the admin socket, and
/// starts serving.
pub async fn start(config: ProxyConfig) -> Result<Started, ProxyError> {
    let tls = match (&config.tls, config.https_addr) {
        (Some(files), Some(_)) => Some(tls::server_config(files)?),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ProxyError::Config(
                "TLS files are given but no HTTPS address to listen on".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(ProxyError::Config(
                "an HTTPS address is given but no certificate and key".into(),
            ))
        }
    };
    if config.max_connections == 0 {
        return Err(ProxyError::Config(
            "max_connections must be above 0 (no connection could be served)".into(),
        ));
    }
    let store = state::StateStore::new(&config.state_dir);
    store.secure()?;
    let table = Arc::new(ArcSwap::from_pointee(store.load()?));

    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Bind { addr, source })
    };
    let http = bind(config.http_addr).await?;
    let https = match config.https_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let local = |l: &TcpListener, addr| {
        l.local_addr()
            .map_err(|source| ProxyError::Bind { addr, source })
    };
    let http_addr = local(&http, config.http_addr)?;
    let https_addr = match (&https, config.https_addr) {
        (Some(l), Some(addr)) => Some(local(l, addr)?),
        _ => None,
    };
    let admin = admin::bind(&config.admin_socket).await?;

    let (stop, shutdown) = watch::channel(false);
    let timeouts = config.timeouts;
    let upstream = || proxy::upstream_client(timeouts.connect, timeouts.upstream_idle);
    let log = access_log::AccessLogger::start(&config.access_log);
    let lanes = workers::lane_count(config.workers);
    let connections = limit::ConnectionLimit::new(config.max_connections);
    let trusted = headers::TrustedProxies::new(config.trusted_proxies.clone());
    let workers = workers::Workers::start(lanes, |load| proxy::DataPath {
        table: Arc::clone(&table),
        upstreams: upstream::Upstreams::new(timeouts.connect, timeouts.upstream_idle),
        log: log.lane(),
        load,
        timeouts,
        shutdown: shutdown.clone(),
        trusted: trusted.clone(),
        connections: Arc::clone(&connections),
        max_held_requests: config.max_held_requests,
    })
    .map_err(ProxyError::Workers)?;
    let workers = Arc::new(workers);
    let control = Arc::new(control::Control::new(table, store, upstream()));
    let grace = timeouts.shutdown_grace;

    let mut tasks = JoinSet::new();
    tasks.spawn(admin::serve(admin, control, shutdown.clone()));
    match (tls, https, https_addr) {
        (Some(tls), Some(https), Some(https_addr)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let redirect = server::Mode::Redirect {
                https_port: https_addr.port(),
            };
            tasks.spawn(server::serve(
                http,
                redirect,
                Arc::clone(&workers),
                Arc::clone(&connections),
                grace,
                shutdown.clone(),
            ));
            tasks.spawn(server::serve(
                https,
                server::Mode::Https(acceptor),
                Arc::clone(&workers),
                connections,
                grace,
                shutdown,
            ));
        }
        _ => {
            let mode = server::Mode::Http;
            tasks.spawn(server::serve(
                http,
                mode,
                Arc::clone(&workers),
                connections,
                grace,
                shutdown,
            ));
        }
    }
    tracing::info!(%http_addr, ?https_addr, lanes, admin = %config.admin_socket.display(), "proxy started");
    Ok(Started {
        http_addr,
        https_addr,
        admin_socket: config.admin_socket,
        stop,
        tasks,
        workers,
        log,
    })
}
