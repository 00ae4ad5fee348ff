//! Replacing a running proxy by a new process without losing a connection:
//! the old process hands its listening sockets to the new one.
//!
//! # Why fd passing over host networking
//! Docker's published ports belong to one container: a new container can
//! only publish port 80 once the old one is gone, so a replacement is always
//! stop-then-start, and connections are refused in between. The proxy
//! container therefore runs with host networking, so two proxy processes
//! coexist on a host and share the state directory (bind-mounted in both).
//! `SO_REUSEPORT` would let both bind port 80, but each socket then has its
//! own accept queue, and closing the old one resets the connections still
//! queued on it. Instead, as nginx's binary upgrade and Envoy's hot restart
//! do, the old process passes its listening sockets themselves (`SCM_RIGHTS`
//! over `<state-dir>/takeover.sock`, mode 0600): the new process accepts from
//! the *same* kernel sockets and queue, so no connection is refused or reset
//! at any point, whichever process accepts it.
//!
//! # The exchange
//! One JSON message per line; every step has a deadline ([`STEP_TIMEOUT`]).
//! 1. new → old `listeners`; old → new its listeners (kind and address) with
//!    their descriptors attached, or `refused` when it is shutting down.
//! 2. The new process reuses the sockets whose address it is configured for
//!    and binds the rest fresh (those it does not want are not taken). It
//!    also binds its admin and takeover sockets, at staged paths next to
//!    the old process's (`admin.sock.next`): everything that can fail is
//!    done before step 3.
//! 3. new → old `accepting`; under its control's write lock, the old one
//!    answers `released` and, only if that went out, stops accepting,
//!    answering new admin connections (the admin requests under way get
//!    their answer) and answering takeovers (it never unlinks their paths);
//!    then it drains: open requests and tunnels finish up to the drain
//!    time, and it exits by itself. If `released` cannot be sent (the new
//!    process died after `accepting`, or gave up), the old one keeps
//!    serving.
//! 4. Only then does the new process accept: it reloads the routes (the old
//!    one no longer writes them: the release happens under its control's
//!    write lock, and a change still under way there, such as a switch an
//!    interrupted deploy left running, is refused afterwards rather than
//!    saved behind the new process's back), renames its admin and takeover
//!    sockets into place (atomic: the path always answers or queues) and
//!    serves takeovers itself, for the next one. A rename that fails is
//!    logged, not fatal: the process keeps serving its listeners.
//!
//! The old process accepts until step 3, so a failed exchange (a new process
//! that dies, hangs, sends garbage or cannot bind) leaves it serving as
//! before; the new one exits with an error naming the failed step. A stale
//! `takeover.sock` (its process died) refuses connections: the new process
//! then binds everything fresh, as on a first start. What is left is a new
//! process that dies between the kernel taking `released` and its reading
//! it: the old one cannot tell that from one that reads it.
//!
//! Between the old process stopping and the new one accepting, connections
//! wait in the shared accept queue. A SIGTERM to the old process during an
//! exchange makes it refuse the confirmation (the new one exits with an
//! error, the old one stops as usual); one during its drain changes
//! nothing, the drain ends at its deadline anyway. A SIGTERM to the new
//! process during the exchange is acted on once it has taken over
//! (`ballast proxy run` catches it from the start).
//!
//! Here: the new process's side and the listeners; `server`: the old
//! process's side; `channel`: the messages and how they travel.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

mod channel;
mod server;

pub use server::{bind, serve, Offer, Release};

use channel::{receive, send, Reply, Request};

/// How long each step of the exchange may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// The takeover socket's name in the state directory.
pub const SOCKET_NAME: &str = "takeover.sock";

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

/// One listening address and what it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// What it serves.
    pub kind: ListenerKind,
    /// Where it listens (the bound address, never port 0).
    pub addr: SocketAddr,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ListenerKind::Http => "http",
            ListenerKind::Https => "https",
        };
        write!(f, "{scheme}://{}", self.addr)
    }
}

/// A step of the exchange, as the new process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Connecting to the takeover socket.
    Connect,
    /// Asking for the listeners and receiving them.
    ReceiveListeners,
    /// Binding the addresses the old process does not have.
    BindFresh,
    /// Telling the old process this one accepts, and waiting for it to let go.
    Confirm,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Connect => "connecting",
            Step::ReceiveListeners => "receiving its listening sockets",
            Step::BindFresh => "binding the addresses it does not listen on",
            Step::Confirm => "confirming the takeover",
        })
    }
}

/// Why a takeover failed (the running proxy keeps serving) or its socket
/// could not be served.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// The exchange with the running proxy failed.
    #[error(
        "taking over from the running proxy at {} failed while {step}: {reason}; it keeps \
         serving; hint: see its log, then start this proxy again",
        socket.display()
    )]
    Exchange {
        /// The takeover socket.
        socket: PathBuf,
        /// Where it failed.
        step: Step,
        /// What happened.
        reason: String,
    },
    /// The takeover socket could not be replaced or bound.
    #[error("cannot {action} takeover socket {}: {source}", path.display())]
    Socket {
        /// What was being done.
        action: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// The old process's listeners, received and not yet confirmed. Dropping it
/// abandons the takeover: the old process keeps serving.
pub struct Handover {
    socket: PathBuf,
    stream: UnixStream,
    instance: String,
    offered: Vec<(Listener, OwnedFd)>,
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handover")
            .field("socket", &self.socket)
            .field("instance", &self.instance)
            .field("offered", &self.offered.len())
            .finish()
    }
}

/// Asks the proxy answering at `socket` for its listeners; `None` when none
/// answers (first start, or a stale socket left by a process that died).
pub async fn connect(socket: &Path) -> Result<Option<Handover>, TakeoverError> {
    let failed = |reason: String| exchange_error(socket, Step::Connect, reason);
    // Not a blocking connect: one to a process that is alive but stuck
    // (not accepting, its backlog full) would hang this one for good.
    let connecting = tokio::net::UnixStream::connect(socket);
    let stream = match tokio::time::timeout(STEP_TIMEOUT, connecting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Err(_) => return Err(failed(format!("no answer within {STEP_TIMEOUT:?}"))),
    };
    // The exchange itself is blocking, each step within its deadline.
    let stream = stream
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .map_err(|e| failed(e.to_string()))?;
    let path = socket.to_path_buf();
    tokio::task::spawn_blocking(move || exchange_listeners(path, stream))
        .await
        .map_err(|e| failed(e.to_string()))?
}

fn exchange_listeners(
    socket: PathBuf,
    stream: UnixStream,
) -> Result<Option<Handover>, TakeoverError> {
    let failed = |reason: String| exchange_error(&socket, Step::ReceiveListeners, reason);
    let deadline = Instant::now() + STEP_TIMEOUT;
    send(&stream, &Request::Listeners, &[], deadline).map_err(failed)?;
    let (reply, fds) = receive::<Reply>(&stream, deadline).map_err(failed)?;
    let (instance, listeners) = match reply {
        Reply::Listeners {
            instance,
            listeners,
        } => (instance, listeners),
        Reply::Refused { reason } => return Err(failed(format!("it refused: {reason}"))),
        Reply::Released => return Err(failed("it answered `released` out of turn".into())),
    };
    if listeners.len() != fds.len() {
        return Err(failed(format!(
            "it described {} listeners but passed {} sockets",
            listeners.len(),
            fds.len()
        )));
    }
    for (listener, fd) in listeners.iter().zip(&fds) {
        check_listening(fd, listener.addr).map_err(|e| failed(format!("{listener}: {e}")))?;
    }
    fault("takeover-after-listeners");
    Ok(Some(Handover {
        socket,
        stream,
        instance,
        offered: listeners.into_iter().zip(fds).collect(),
    }))
}

impl Handover {
    /// The old process's instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The old process's socket listening on `addr`, if it has one.
    pub fn take(&mut self, addr: SocketAddr) -> Option<std::net::TcpListener> {
        let at = self.offered.iter().position(|(l, _)| l.addr == addr)?;
        let (_, fd) = self.offered.swap_remove(at);
        Some(std::net::TcpListener::from(fd))
    }

    /// Tells the old process this one accepts, and waits until it stopped
    /// accepting and answering. Only after this may this process accept.
    pub async fn confirm(self) -> Result<(), TakeoverError> {
        let socket = self.socket.clone();
        let stream = self.stream;
        let confirmed = tokio::task::spawn_blocking(move || {
            fault("takeover-before-confirm");
            let deadline = Instant::now() + STEP_TIMEOUT;
            send(&stream, &Request::Accepting, &[], deadline)?;
            fault("takeover-after-accepting");
            // The old process lets go only if `released` went out, which it
            // tries until its own deadline (STEP_TIMEOUT after it sent the
            // listeners, so before this one's). Waiting a step longer here
            // means a `released` it sent is read, not given up on with the
            // old process already draining.
            match receive::<Reply>(&stream, deadline + STEP_TIMEOUT)?.0 {
                Reply::Released => Ok(()),
                Reply::Refused { reason } => Err(format!("it refused: {reason}")),
                Reply::Listeners { .. } => Err("it sent its listeners again".into()),
            }
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|answer| answer);
        confirmed.map_err(|reason| exchange_error(&socket, Step::Confirm, reason))
    }

    /// The error for a failed step, naming this takeover's socket.
    pub fn error(&self, step: Step, reason: String) -> TakeoverError {
        exchange_error(&self.socket, step, reason)
    }
}

fn exchange_error(socket: &Path, step: Step, reason: String) -> TakeoverError {
    TakeoverError::Exchange {
        socket: socket.to_path_buf(),
        step,
        reason,
    }
}

/// A received descriptor must be a listening TCP socket on the address it
/// was described with: anything else would be served as if it were one.
fn check_listening(fd: &OwnedFd, addr: SocketAddr) -> Result<(), String> {
    use rustix::net::sockopt;
    let stream = sockopt::socket_type(fd).map_err(|e| e.to_string())?;
    let listening = sockopt::socket_acceptconn(fd).map_err(|e| e.to_string())?;
    if stream != rustix::net::SocketType::STREAM || !listening {
        return Err("the passed descriptor is not a listening socket".into());
    }
    let local = rustix::net::getsockname(fd).map_err(|e| e.to_string())?;
    let local = SocketAddr::try_from(local)
        .map_err(|_| "the passed socket is not a TCP socket".to_string())?;
    if local != addr {
        return Err(format!("the passed socket listens on {local}"));
    }
    Ok(())
}

/// A test hook (see `BALLAST_FAILPOINTS`): a new process armed at `point`
/// dies there as `kill -9` would, with no goodbye to the old one.
fn fault(point: &str) {
    if fail::eval(point, |_| ()).is_some() {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// A new random id for this process (8 random bytes, hex).
pub fn new_instance() -> String {
    let mut bytes = [0u8; 8];
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).is_err() {
        // Never fails on Linux ≥ 3.17; the pid and time still tell
        // processes apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
        bytes[4..].copy_from_slice(&nanos.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Listens on every wanted address: on the old process's socket when it
/// has one there, else on a fresh one. Returns each listener with its bound
/// address.
pub async fn listen(
    wanted: &[Listener],
    mut old: Option<&mut Handover>,
) -> Result<Vec<(Listener, TcpListener)>, crate::ProxyError> {
    let mut listening = Vec::with_capacity(wanted.len());
    for want in wanted {
        let adopted = old.as_deref_mut().and_then(|h| h.take(want.addr));
        let listener = match adopted {
            Some(socket) => {
                let adopt = socket
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(socket));
                adopt.map_err(|e| match old.as_deref() {
                    Some(h) => h
                        .error(Step::ReceiveListeners, format!("{want}: {e}"))
                        .into(),
                    None => crate::ProxyError::Config(e.to_string()),
                })?
            }
            None => match TcpListener::bind(want.addr).await {
                Ok(listener) => listener,
                Err(source) => {
                    return Err(match old.as_deref() {
                        Some(h) => h
                            .error(
                                Step::BindFresh,
                                format!("cannot listen on {want}: {source}"),
                            )
                            .into(),
                        None => crate::ProxyError::Bind {
                            addr: want.addr,
                            source,
                        },
                    })
                }
            },
        };
        let addr = listener
            .local_addr()
            .map_err(|source| crate::ProxyError::Bind {
                addr: want.addr,
                source,
            })?;
        listening.push((
            Listener {
                kind: want.kind,
                addr,
            },
            listener,
        ));
    }
    Ok(listening)
}

/// A socket file this process bound, removed at the end only if it is still
/// this one's (a process that took over replaced it with its own).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    inode: Option<(u64, u64)>,
}

impl SocketFile {
    /// Remembers which file is at `path` now.
    pub fn new(path: &Path) -> SocketFile {
        let inode = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        SocketFile {
            path: path.to_path_buf(),
            inode,
        }
    }

    /// Removes the file if it is still the one remembered.
    pub fn remove_if_ours(&self) {
        let now = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now.is_some() && now == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where a socket is bound before a takeover is confirmed: next to its
/// final path (`admin.sock.next`), in the same directory so that moving it
/// into place is one atomic rename.
pub fn staged_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

/// Sockets bound at their staged paths while the takeover is not confirmed
/// yet: binding can fail, and must fail while the old process still serves
/// (after the confirmation, failing would leave nobody serving). Dropped
/// before [`Staged::install`] (the takeover failed), they are removed.
#[derive(Debug, Default)]
pub struct Staged {
    sockets: Vec<(SocketFile, PathBuf)>,
}

impl Staged {
    /// Remembers the socket just bound at `staged`, to be moved to `path`.
    pub fn add(&mut self, staged: &Path, path: &Path) {
        self.sockets
            .push((SocketFile::new(staged), path.to_path_buf()));
    }

    /// Moves every socket to its final path, replacing the old process's
    /// (which no longer answers). A rename that fails is logged and the
    /// socket stays where it is: the listeners are what matter, and this
    /// process serves them whatever happens from here on.
    pub fn install(mut self) -> Vec<SocketFile> {
        let sockets = std::mem::take(&mut self.sockets);
        sockets
            .into_iter()
            .map(
                |(staged, path)| match std::fs::rename(&staged.path, &path) {
                    // A rename keeps the inode: the file is still this one's.
                    Ok(()) => SocketFile {
                        path,
                        inode: staged.inode,
                    },
                    Err(e) => {
                        tracing::error!(
                            error = %e,
                            socket = %path.display(),
                            staged = %staged.path.display(),
                            "cannot move a socket into place after the takeover; it answers at \
                             its staged path meanwhile: restart the proxy to fix it"
                        );
                        staged
                    }
                },
            )
            .collect()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (staged, _) in &self.sockets {
            staged.remove_if_ours();
        }
    }
}
