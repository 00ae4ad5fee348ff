//! ballast-proxy: the on-host HTTP reverse proxy that makes ballast's
//! deploys zero-downtime.
//!
//! It runs on each host as the container `ballast-proxy` (host networking,
//! listening on 80, and 443 with TLS), routes requests by Host and path
//! prefix to services, and hands a service over to a new container only
//! once that container is healthy: the old one keeps serving until then,
//! and is drained after. A new proxy process takes over from the running
//! one the same way: it receives its listening sockets, and the old one
//! drains (`takeover`). ballast drives it through an admin API on a unix
//! socket, over SSH.
//!
//! # Layout
//! - [`wire`]: the admin API's request and response types and its client
//!   ([`admin_request`]): the `ballast-proxy-wire` crate, shared with ballast.
//! - `table`: the routing table snapshot and route lookup; per-route body
//!   limits; pause gates and their bounded queues.
//! - `target`: one upstream and its in-flight count (what draining waits for).
//! - `counters`: each service's requests answered and 5xx answers, counted
//!   without a lock, reported by the admin `status`.
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
//! - `tls`: the rustls configuration; the command line's certificate; the
//!   HTTP→HTTPS redirect.
//! - `certs`: the certificates served by SNI (set, checked and reloaded
//!   through the admin API), ACME HTTP-01 challenges, and what plain HTTP
//!   answers before proxying.
//! - `server`: the client-facing accept loops, graceful shutdown and the
//!   drain after a takeover.
//! - `takeover`: replacing a running proxy by a new process without losing
//!   a connection: the old one passes its listening sockets (`SCM_RIGHTS`
//!   over `<state-dir>/takeover.sock`) to the new one, which accepts on the
//!   same kernel sockets, while the old one drains and exits. Why this and
//!   not Docker's published ports or `SO_REUSEPORT` is in its module doc.
//! - `conn`: one client connection's deadlines (request head, idle, send).
//! - `send`: the send deadline's watch on writes (connections, tunnels).
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
//! - hold a response (and its upstream), or a tunnel, by not reading: the
//!   send deadline ([`Timeouts::response_send`], `conn`, `tunnel`);
//! - exhaust connections: [`ProxyConfig::max_connections`] (`limit`);
//! - pile up requests behind a pause:
//!   [`ProxyConfig::max_held_requests`] (`table`, `proxy`);
//! - send or receive unbounded bodies: per-route limits in the deploy
//!   request (`body`);
//! - read the routes or a certificate's key: the state directory is
//!   `0700`, its files `0600` (`state`);
//! - take another service's host name: a route or certificate claiming a
//!   name (and path prefix) another service has is refused (`table`,
//!   `certs`).
//!
//! The defaults ([`ProxyConfig::new`], [`Timeouts::default`]): request head
//! 10 s, idle connection 75 s, 30 s of silence in a request body and 60 s
//! in a response body, 60 s for a client to take what is sent, HTTP/2 pings every 30 s answered within 20 s, 10,000
//! connections, 1,000 held requests per paused service, no trusted proxy,
//! no body limit.
//!
//! [`run`] runs the proxy until a shutdown future resolves or another
//! process takes it over; [`start`] takes over from a running proxy (or
//! binds everything) and hands back a [`Started`] handle with the bound
//! addresses (tests bind port 0).

mod access_log;
mod admin;
mod body;
mod certs;
mod cidr;
mod conn;
mod control;
mod counters;
mod headers;
mod health;
mod limit;
mod proxy;
mod send;
mod server;
mod state;
mod table;
mod takeover;
mod target;
mod tls;
mod tunnel;
mod upstream;
mod workers;

pub use ballast_proxy_wire as wire;

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use access_log::AccessLog;
pub use admin::AdminSocketError;
pub use cidr::Cidr;
pub use health::HealthError;
pub use proxy::Timeouts;
pub use state::{StateError, STATE_FILE};
pub use takeover::{
    Listener, ListenerKind, Step as TakeoverStep, TakeoverError, SOCKET_NAME as TAKEOVER_SOCKET,
};
pub use tls::{TlsError, TlsFiles};
pub use wire::{admin_request, AdminError, AdminRequest, AdminResponse};

/// Where the proxy listens and keeps its state.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Plain HTTP addresses (port 80 in production; port 0 picks a free
    /// one). With HTTPS on, they answer ACME challenges, redirect the host
    /// names a certificate covers to HTTPS (the first HTTPS port) and proxy
    /// the others.
    pub http: Vec<SocketAddr>,
    /// HTTPS addresses; required when `tls` is set. Without `tls`, they
    /// serve the certificates set through the admin API (chosen by SNI) and
    /// fail handshakes until one is set.
    pub https: Vec<SocketAddr>,
    /// Certificate and key served for names no other certificate is set for
    /// (and to clients without SNI).
    pub tls: Option<TlsFiles>,
    /// The admin API's unix socket (in a host directory, never TCP).
    pub admin_socket: PathBuf,
    /// Where the routes are saved, so they survive a restart.
    pub state_dir: PathBuf,
    /// Where a running proxy hands its listeners to a new one, and where
    /// this one answers the next (see `takeover`); in the state directory
    /// unless moved.
    pub takeover_socket: PathBuf,
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
    /// trusted proxy, the takeover socket in the state directory, and the
    /// access log on stdout.
    pub fn new(
        http_addr: SocketAddr,
        admin_socket: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> ProxyConfig {
        let state_dir = state_dir.into();
        ProxyConfig {
            http: vec![http_addr],
            https: Vec::new(),
            tls: None,
            admin_socket: admin_socket.into(),
            takeover_socket: state_dir.join(takeover::SOCKET_NAME),
            state_dir,
            timeouts: Timeouts::default(),
            access_log: AccessLog::Stdout,
            workers: 0,
            trusted_proxies: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_held_requests: DEFAULT_MAX_HELD_REQUESTS,
        }
    }

    /// Every address to listen on, plain HTTP first.
    pub fn listeners(&self) -> Vec<Listener> {
        let http = self.http.iter().map(|&addr| Listener {
            kind: ListenerKind::Http,
            addr,
        });
        let https = self.https.iter().map(|&addr| Listener {
            kind: ListenerKind::Https,
            addr,
        });
        http.chain(https).collect()
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
    /// Taking over from the running proxy failed (it keeps serving).
    #[error(transparent)]
    Takeover(#[from] TakeoverError),
}

/// A running proxy.
#[derive(Debug)]
pub struct Started {
    listeners: Vec<Listener>,
    admin_socket: PathBuf,
    instance: String,
    /// The admin and takeover sockets, removed at an ordinary stop (not
    /// after a takeover: they are the new process's then).
    sockets: Vec<takeover::SocketFile>,
    phase: Arc<watch::Sender<server::Phase>>,
    /// Turns `true` when tunnels must close.
    cut: watch::Sender<bool>,
    /// How long open requests and tunnels get at a stop or a drain.
    grace: Duration,
    tasks: JoinSet<()>,
    /// The admin server: after a takeover, it ends once the admin requests
    /// under way are answered (see `admin::serve`).
    admin: JoinSet<()>,
    workers: Arc<workers::Workers>,
    log: access_log::AccessLogger,
}

impl Started {
    /// The first bound plain-HTTP address (else the first listener's).
    pub fn http_addr(&self) -> SocketAddr {
        self.first(ListenerKind::Http)
            .unwrap_or_else(|| self.listeners[0].addr)
    }

    /// The first bound HTTPS address, when HTTPS is on.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.first(ListenerKind::Https)
    }

    fn first(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.kind == kind)
            .map(|l| l.addr)
    }

    /// Every bound listener, plain HTTP first.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// This process's random id (as the admin API's status reports it).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The admin socket's path.
    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// Resolves once another process took this one over; then [`stop`]
    /// drains it.
    ///
    /// [`stop`]: Started::stop
    pub async fn taken_over(&self) {
        let mut phase = self.phase.subscribe();
        let _ = phase.wait_for(|now| *now == server::Phase::Draining).await;
    }

    /// Stops. After a takeover: open requests, tunnels and admin requests
    /// finish up to the grace (the drain time) while the new process
    /// accepts, then whatever is still open is closed. Otherwise: stops accepting, lets open
    /// requests finish (up to the grace), closes tunnels at once and removes
    /// the admin and takeover sockets.
    pub async fn stop(mut self) {
        let taken_over = *self.phase.borrow() == server::Phase::Draining;
        let deadline = tokio::time::Instant::now() + self.grace;
        if taken_over {
            self.workers.until_idle(deadline).await;
            // An admin request under way (another service's deploy in its
            // drain) gets its answer too, within the same grace.
            let _ = tokio::time::timeout_at(deadline, self.admin.join_next()).await;
            self.phase.send_replace(server::Phase::Closing);
        } else {
            self.phase.send_replace(server::Phase::Closing);
            self.cut.send_replace(true);
            self.workers.until_idle(deadline).await;
        }
        self.cut.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        while self.admin.join_next().await.is_some() {}
        self.workers.stop().await;
        let mut loggers = self.workers.loggers();
        loggers.push(self.log.clone());
        let _ = tokio::task::spawn_blocking(move || access_log::finish(&loggers)).await;
        if !taken_over {
            self.sockets
                .iter()
                .for_each(takeover::SocketFile::remove_if_ours);
        }
        tracing::info!(instance = %self.instance, taken_over, "proxy stopped");
    }

    /// Connections open on each lane now.
    pub fn open_connections(&self) -> Vec<usize> {
        self.workers.open_connections()
    }
}

/// Runs the proxy until `shutdown` resolves (then stops it gracefully), or
/// until another process takes it over (then drains it); returns when it
/// has stopped.
pub async fn run(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let started = start(config).await?;
    tokio::select! {
        () = shutdown => {}
        () = started.taken_over() => {}
    }
    started.stop().await;
    Ok(())
}

/// Loads the saved routes, takes the listening sockets over from the proxy
/// answering at the takeover socket (if any) and binds the others, binds
/// the admin and takeover sockets, and starts serving.
pub async fn start(config: ProxyConfig) -> Result<Started, ProxyError> {
    let wanted = config.listeners();
    if wanted.is_empty() {
        return Err(ProxyError::Config(
            "no address to listen on; give at least one HTTP or HTTPS address".into(),
        ));
    }
    // HTTPS may start with no certificate: they come through the admin API.
    let fallback = match (&config.tls, config.https.first()) {
        (Some(files), Some(_)) => Some(tls::load_files(files)?),
        (None, _) => None,
        (Some(_), None) => {
            return Err(ProxyError::Config(
                "TLS files are given but no HTTPS address to listen on".into(),
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
    let certificates = Arc::new(certs::Certificates::new(fallback));
    certs::load_saved(&certificates, &store);
    let challenges = Arc::new(certs::Challenges::default());
    let tls = match config.https.first() {
        Some(_) => Some(tls::server_config(certificates.clone())?),
        None => None,
    };

    // Dropping `old` before `confirm` (any error below) leaves it serving.
    let mut old = takeover::connect(&config.takeover_socket).await?;
    if let Some(old) = &old {
        tracing::info!(from = old.instance(), "taking over from the running proxy");
    }
    let listening = takeover::listen(&wanted, old.as_mut()).await?;
    let listeners: Vec<Listener> = listening.iter().map(|(l, _)| *l).collect();
    let https_addr = listeners
        .iter()
        .find(|l| l.kind == ListenerKind::Https)
        .map(|l| l.addr);
    let offered = listening
        .iter()
        .map(|(l, socket)| socket.as_fd().try_clone_to_owned().map(|fd| (*l, fd)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProxyError::Config(format!("cannot keep a listening socket: {e}")))?;
    // Everything that can fail happens before `confirm`, while the old
    // process still serves: taken over, the admin and takeover sockets are
    // bound at staged paths next to theirs, and only moved into place once
    // this process is the one accepting.
    let (admin, takeover_server, staged) = match &old {
        None => (
            admin::bind(&config.admin_socket).await?,
            takeover::bind(&config.takeover_socket)?,
            None,
        ),
        Some(_) => {
            let mut staged = takeover::Staged::default();
            let admin_next = takeover::staged_path(&config.admin_socket);
            let admin = admin::bind(&admin_next).await?;
            staged.add(&admin_next, &config.admin_socket);
            let takeover_next = takeover::staged_path(&config.takeover_socket);
            let server = takeover::bind(&takeover_next)?;
            staged.add(&takeover_next, &config.takeover_socket);
            (admin, server, Some(staged))
        }
    };

    let (phase, shutdown) = watch::channel(server::Phase::Serving);
    let phase = Arc::new(phase);
    let (cut, tunnels_cut) = watch::channel(false);
    let timeouts = config.timeouts;
    let upstream = || proxy::upstream_client(timeouts.connect, timeouts.upstream_idle);
    let log = access_log::AccessLogger::start(&config.access_log);
    let lanes = workers::lane_count(config.workers);
    let connections = limit::ConnectionLimit::new(config.max_connections);
    let trusted = headers::TrustedProxies::new(config.trusted_proxies.clone());
    let plain = Arc::new(certs::PlainHttp {
        certificates: Arc::clone(&certificates),
        challenges: Arc::clone(&challenges),
        https_port: https_addr.map(|a| a.port()),
    });
    let workers = workers::Workers::start(lanes, |load| proxy::DataPath {
        table: Arc::clone(&table),
        upstreams: upstream::Upstreams::new(timeouts.connect, timeouts.upstream_idle),
        log: log.lane(),
        load,
        timeouts,
        shutdown: tunnels_cut.clone(),
        trusted: trusted.clone(),
        connections: Arc::clone(&connections),
        max_held_requests: config.max_held_requests,
        plain: Arc::clone(&plain),
    })
    .map_err(ProxyError::Workers)?;
    let workers = Arc::new(workers);
    if let Some(old) = old {
        old.confirm().await?;
        // The old process wrote its last change before it let go. From here
        // on this process is the only one accepting: it serves whatever
        // happens, with the routes read at the start if need be.
        match store.load() {
            Ok(latest) => table.store(Arc::new(latest)),
            Err(e) => {
                tracing::error!(error = %e, "cannot reload the routes after the takeover; serving those read at the start")
            }
        }
        certs::load_saved(&certificates, &store);
    }
    // Nothing here may fail any more (see `Staged::install`).
    let sockets = match staged {
        Some(staged) => staged.install(),
        None => vec![
            takeover::SocketFile::new(&config.admin_socket),
            takeover::SocketFile::new(&config.takeover_socket),
        ],
    };
    let instance = takeover::new_instance();
    let control = control::Control::new(table, store, upstream(), certificates, challenges)
        .describe_process(
            instance.clone(),
            listeners.iter().map(ToString::to_string).collect(),
        )
        .owning_state_while(Arc::clone(&phase));
    let control = Arc::new(control);
    let releasing = Arc::clone(&control);
    let release: takeover::Release = Arc::new(move |tell| releasing.release_state(tell));

    let mut tasks = JoinSet::new();
    let mut admin_task = JoinSet::new();
    admin_task.spawn(admin::serve(admin, control, shutdown.clone()));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    for (listener, socket) in listening {
        let mode = match (listener.kind, &acceptor) {
            (ListenerKind::Https, Some(acceptor)) => server::Mode::Https(acceptor.clone()),
            _ => server::Mode::Http,
        };
        tasks.spawn(server::serve(
            socket,
            mode,
            Arc::clone(&workers),
            Arc::clone(&connections),
            shutdown.clone(),
        ));
    }
    let offer = takeover::Offer {
        instance: instance.clone(),
        listeners: offered,
    };
    tasks.spawn(takeover::serve(
        takeover_server,
        offer,
        Arc::clone(&phase),
        release,
    ));
    let addrs: Vec<String> = listeners.iter().map(ToString::to_string).collect();
    tracing::info!(%instance, listeners = ?addrs, lanes, admin = %config.admin_socket.display(), "proxy started");
    Ok(Started {
        listeners,
        admin_socket: config.admin_socket,
        instance,
        sockets,
        phase,
        cut,
        grace: timeouts.shutdown_grace,
        tasks,
        admin: admin_task,
        workers,
        log,
    })
}
