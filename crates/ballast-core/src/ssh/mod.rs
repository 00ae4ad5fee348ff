//! Remote hosts reached with the system's OpenSSH (through the openssh crate):
//! one multiplexed master connection per host, the remote Docker socket
//! forwarded to a private local socket, and an [`Engine`] on top of it.
//! `~/.ssh/config`, agents, ProxyJump and known_hosts behave as users expect.
//! Masters are kept for the next command for a while (see `persist`).

mod fingerprint;
mod persist;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use openssh::{ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder, Socket};

use fingerprint::with_fingerprint;

use crate::engine::{rerun_hint, Engine};
use crate::error::{Error, ErrorKind, Result};

/// Where dockerd listens on a remote host unless told otherwise.
pub const REMOTE_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How to treat a host key that is not in known_hosts yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (the default).
    #[default]
    Strict,
    /// Record keys of hosts never seen before; still refuse changed keys.
    AcceptNew,
}

/// Everything needed to open an SSH connection to one host.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// What ssh connects to: an address or a `Host` alias of the ssh config.
    pub destination: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Private key to offer; otherwise the agent and ssh config decide.
    pub identity: Option<PathBuf>,
    /// known_hosts file to check against instead of `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// ssh config file to read instead of `~/.ssh/config`.
    pub config: Option<PathBuf>,
    /// Jump host(s), as for `ssh -J`.
    pub jump: Option<String>,
    pub host_keys: HostKeyPolicy,
    /// Deadline for the whole connection (TCP, handshake, authentication).
    pub connect_timeout: Duration,
    pub remote_docker_socket: PathBuf,
    /// How long an idle master connection is kept for the next command
    /// (`ssh.persist`); `None` or zero: closed with this one.
    pub persist: Option<Duration>,
}

impl SshTarget {
    pub fn new(destination: impl Into<String>) -> SshTarget {
        SshTarget {
            destination: destination.into(),
            user: None,
            port: None,
            identity: None,
            known_hosts: None,
            config: None,
            jump: None,
            host_keys: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            remote_docker_socket: PathBuf::from(REMOTE_DOCKER_SOCKET),
            persist: None,
        }
    }
}

/// A live connection to a remote host, with its engine ready to use.
pub struct SshHost {
    name: String,
    session: Session,
    engine: Engine,
    /// The master is kept for the next command: closing closes this
    /// command's forwards only.
    kept: bool,
    /// Local forwards this command opened (listen, connect).
    forwards: Mutex<Vec<(Socket<'static>, Socket<'static>)>>,
    /// Holds the forwarded socket; removed when the host is dropped.
    _socket_dir: tempfile::TempDir,
}

/// What a command run on the host printed, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

impl SshHost {
    /// Opens the master connection, forwards the Docker socket and connects
    /// to the engine behind it, all within the target's deadline.
    pub async fn connect(target: &SshTarget) -> Result<SshHost> {
        let name = target.destination.clone();
        let deadline = target.connect_timeout + Duration::from_secs(5);
        match tokio::time::timeout(deadline, SshHost::open(target)).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout("connect over SSH", deadline)
                .on(&name)
                .kind(ErrorKind::Unreachable)
                .hint("check that the host is up and reachable on its SSH port")),
        }
    }

    async fn open(target: &SshTarget) -> Result<SshHost> {
        let store = persist::Store::of(target);
        if let Some(store) = &store {
            if let Some(session) = store.resume().await {
                let ctl = session.control_socket().to_path_buf();
                // A kept master may not have noticed yet that its host
                // went away: give it a short while, then connect afresh.
                match tokio::time::timeout(RESUMED, SshHost::on(target, session, true)).await {
                    Ok(Ok(host)) => return Ok(host),
                    Ok(Err(e)) => {
                        tracing::debug!(host = %target.destination, "kept SSH master unusable: {e}")
                    }
                    Err(_) => {
                        tracing::debug!(host = %target.destination, "kept SSH master did not answer")
                    }
                }
                store
                    .discard(Session::resume_mux(ctl.into_boxed_path(), None))
                    .await;
            }
        }
        let session = open_session(target, store.as_ref()).await?;
        SshHost::on(target, session, store.is_some()).await
    }

    /// Forwards the Docker socket over `session` and connects to the engine.
    async fn on(target: &SshTarget, session: Session, kept: bool) -> Result<SshHost> {
        let name = target.destination.clone();
        let socket_dir = tempfile::Builder::new()
            .prefix("ballast-ssh-")
            .tempdir()
            .map_err(|e| Error::failed("create a local socket directory", e).on(&name))?;
        let local = socket_dir.path().join("docker.sock");
        let listen = Socket::UnixSocket {
            path: local.clone().into(),
        };
        let connect = Socket::UnixSocket {
            path: target.remote_docker_socket.clone().into(),
        };
        session
            .request_port_forward(ForwardType::Local, listen.clone(), connect.clone())
            .await
            .map_err(|e| ssh_error(&name, "forward the Docker socket", e))?;
        let engine = Engine::forwarded(&name, &local).await?;
        Ok(SshHost {
            name,
            session,
            engine,
            kept,
            forwards: Mutex::new(vec![(listen, connect)]),
            _socket_dir: socket_dir,
        })
    }

    /// Opens a local forward from `listen` to `connect` on the host,
    /// closed again with the host.
    pub async fn forward(
        &self,
        listen: Socket<'static>,
        connect: Socket<'static>,
    ) -> std::result::Result<(), openssh::Error> {
        self.session
            .request_port_forward(ForwardType::Local, listen.clone(), connect.clone())
            .await?;
        self.forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((listen, connect));
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The SSH session, for forwards beyond the Docker socket.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Runs a program on the host with arguments passed as data: each one is
    /// quoted for the remote shell, never pasted into a command string.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        deadline: Duration,
    ) -> Result<CommandOutput> {
        run_within(&self.session, &self.name, program, args, deadline).await
    }

    /// Like [`SshHost::run`] without a deadline of its own, feeding `stdin`.
    pub async fn run_with_input(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<CommandOutput> {
        run_on(&self.session, &self.name, program, args, stdin).await
    }

    /// Closes the master connection and the forwarded socket; a kept
    /// master only loses this command's forwards.
    pub async fn close(self) -> Result<()> {
        let name = self.name.clone();
        if self.kept {
            let forwards =
                std::mem::take(&mut *self.forwards.lock().unwrap_or_else(|e| e.into_inner()));
            for (listen, connect) in forwards {
                let closing = self
                    .session
                    .close_port_forward(ForwardType::Local, listen, connect);
                // Best effort: the master drops them when it exits anyway.
                let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
            }
            return Ok(());
        }
        self.session
            .close()
            .await
            .map_err(|e| ssh_error(&name, "close the SSH connection", e))
    }
}

/// How long a kept master gets to reach its host's engine before a fresh
/// connection is made instead.
const RESUMED: Duration = Duration::from_secs(4);

/// Opens the multiplexed master connection (kept in `store` for the next
/// command, if given), adding the presented key's fingerprint to a
/// host-key refusal.
async fn open_session(target: &SshTarget, store: Option<&persist::Store>) -> Result<Session> {
    let name = &target.destination;
    let mut builder = builder(target)?;
    if let Some(store) = store {
        let idle = target.persist.map_or(1, |d| d.as_secs().max(1));
        let idle = std::num::NonZeroUsize::new(usize::try_from(idle).unwrap_or(usize::MAX))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        builder
            .control_directory(&store.dir)
            .control_persist(ControlPersist::IdleFor(idle));
    }
    match builder.connect_mux(&target.destination).await {
        Ok(s) => Ok(match store {
            Some(store) => store.keep(s),
            None => s,
        }),
        Err(e) => Err(with_fingerprint(ssh_error(name, "connect over SSH", e), target).await),
    }
}

/// An SSH connection without the Docker engine, for hosts whose engine is
/// down or not installed yet: commands only.
pub struct SshSession {
    name: String,
    session: Session,
}

impl SshSession {
    /// Connects within the target's deadline.
    pub async fn connect(target: &SshTarget) -> Result<SshSession> {
        let deadline = target.connect_timeout + Duration::from_secs(5);
        match tokio::time::timeout(deadline, open_session(target, None)).await {
            Ok(session) => Ok(SshSession {
                name: target.destination.clone(),
                session: session?,
            }),
            Err(_) => Err(Error::timeout("connect over SSH", deadline)
                .on(&target.destination)
                .kind(ErrorKind::Unreachable)
                .hint("check that the host is up and reachable on its SSH port")),
        }
    }

    /// Runs a program with arguments passed as data, within `deadline`.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        deadline: Duration,
    ) -> Result<CommandOutput> {
        run_within(&self.session, &self.name, program, args, deadline).await
    }

    /// Like [`SshSession::run`], feeding `stdin` to the program.
    pub async fn run_with_input(
        &self,
        program: &str,
        args: &[&str],
        stdin: &[u8],
        deadline: Duration,
    ) -> Result<CommandOutput> {
        let work = run_on(&self.session, &self.name, program, args, Some(stdin));
        match tokio::time::timeout(deadline, work).await {
            Err(_) => Err(Error::timeout(format!("run {program}"), deadline).on(&self.name)),
            Ok(r) => r,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn close(self) -> Result<()> {
        let name = self.name.clone();
        self.session
            .close()
            .await
            .map_err(|e| ssh_error(&name, "close the SSH connection", e))
    }
}

fn builder(target: &SshTarget) -> Result<SessionBuilder> {
    let mut b = SessionBuilder::default();
    b.known_hosts_check(match target.host_keys {
        HostKeyPolicy::Strict => KnownHosts::Strict,
        HostKeyPolicy::AcceptNew => KnownHosts::Add,
    })
    .connect_timeout(target.connect_timeout)
    .server_alive_interval(Duration::from_secs(5))
    // The crate's default is the state dir or the current directory; keep
    // control sockets out of the user's project.
    .control_directory(std::env::temp_dir());
    if let Some(user) = &target.user {
        b.user(user.clone());
    }
    if let Some(port) = target.port {
        b.port(port);
    }
    if let Some(key) = &target.identity {
        must_exist(&target.destination, "identity file", key)?;
        b.keyfile(key);
    }
    if let Some(kh) = &target.known_hosts {
        b.user_known_hosts_file(kh);
    }
    if let Some(jump) = &target.jump {
        b.jump_hosts(jump.split(',').map(str::trim).filter(|j| !j.is_empty()));
    }
    if let Some(config) = &target.config {
        must_exist(&target.destination, "ssh config file", config)?;
        b.config_file(config);
    }
    Ok(b)
}

fn must_exist(host: &str, what: &str, path: &Path) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(Error::input(
            "connect over SSH",
            format_args!("{what} {} does not exist", path.display()),
        )
        .on(host)
        .hint(format!("check the path of the {what}")))
    }
}

/// Maps an openssh error to ours; a refused host key gets its own hint because
/// it is the one failure users must act on by hand.
fn ssh_error(host: &str, step: &str, e: openssh::Error) -> Error {
    match &e {
        openssh::Error::Disconnected => return lost_ssh(host, step, None),
        openssh::Error::Master(io) => return lost_ssh(host, step, Some(&io.to_string())),
        openssh::Error::SshMux(_) if mux_connection_dropped(&e) => {
            return lost_ssh(host, step, None)
        }
        openssh::Error::RemoteProcessTerminated => {
            return Error::failed(
                step,
                "the program ended without an exit status: it was killed on the host, or the SSH connection went away",
            )
            .on(host)
            .hint(rerun_hint(&format!("ssh {host} true")))
        }
        _ => {}
    }
    let text = error_chain(&e);
    if is_host_key_failure(&text) {
        return Error::new(
            ErrorKind::Failed,
            step,
            "host key verification failed: the host's key is not the one in known_hosts",
        )
        .on(host)
        .hint("if the host was reinstalled, check its new key fingerprint out of band, then remove the old entry with `ssh-keygen -R HOST`; for a host never seen before, use --accept-new-host-keys");
    }
    let unreachable = [
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Could not resolve hostname",
        "Network is unreachable",
        "Connection closed",
        "Disconnected",
    ];
    let kind = if unreachable.iter().any(|s| text.contains(s)) {
        ErrorKind::Unreachable
    } else {
        ErrorKind::Failed
    };
    let mut err = Error::new(kind, step, text).on(host);
    if text_mentions_auth(&err.cause) {
        err = err.hint("the host refused the key: check the user, the identity file and the host's authorized_keys");
    }
    err
}

/// The master connection to `host` is gone: the host, its sshd or the
/// network went away. `detail` is kept in parentheses when it adds something.
fn lost_ssh(host: &str, step: &str, detail: Option<&str>) -> Error {
    let mut cause =
        "lost the SSH connection to the host: the host or the network went away".to_string();
    if let Some(d) = detail.map(str::trim).filter(|d| !d.is_empty()) {
        cause = format!("{cause} ({d})");
    }
    Error::new(ErrorKind::Unreachable, step, cause)
        .on(host)
        .hint(rerun_hint(&format!("ssh {host} true")))
}

/// Whether the connection to the master's control socket broke, which the
/// openssh crate reports as a multiplexing error rather than `Disconnected`.
fn mux_connection_dropped(e: &openssh::Error) -> bool {
    use std::io::ErrorKind as Io;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                Io::NotFound
                    | Io::ConnectionRefused
                    | Io::ConnectionReset
                    | Io::ConnectionAborted
                    | Io::BrokenPipe
                    | Io::UnexpectedEof
                    | Io::NotConnected
            );
        }
        source = s.source();
    }
    false
}

/// Refines an error of a program run on the host: when the master
/// connection no longer answers, the SSH connection was lost, whatever the
/// program's pipes said.
async fn lost_or(session: &Session, host: &str, step: &str, otherwise: Error) -> Error {
    // The master closes its clients' sockets as it exits: let it finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match session.check().await {
        Ok(()) => otherwise,
        Err(_) => lost_ssh(host, step, None),
    }
}

/// [`run_on`] within `deadline`, without input.
async fn run_within(
    session: &Session,
    name: &str,
    program: &str,
    args: &[&str],
    deadline: Duration,
) -> Result<CommandOutput> {
    match tokio::time::timeout(deadline, run_on(session, name, program, args, None)).await {
        Err(_) => Err(Error::timeout(format!("run {program}"), deadline).on(name)),
        Ok(r) => r,
    }
}

/// Runs `program` over `session`: each argument quoted for the remote shell
/// by the openssh crate, never pasted into a command string.
async fn run_on(
    session: &Session,
    name: &str,
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<CommandOutput> {
    use tokio::io::AsyncWriteExt;
    let step = format!("run {program}");
    let mut cmd = session.command(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            openssh::Stdio::piped()
        } else {
            openssh::Stdio::null()
        })
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped());
    let mut child = cmd.spawn().await.map_err(|e| ssh_error(name, &step, e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin().take()) {
        if let Err(e) = pipe.write_all(input).await {
            let failed = Error::failed(&step, format_args!("writing its input: {e}")).on(name);
            return Err(lost_or(session, name, &step, failed).await);
        }
        drop(pipe);
    }
    let output = match child.wait_with_output().await {
        Ok(output) => output,
        // The mux protocol reports a lost master like a killed program.
        Err(openssh::Error::RemoteProcessTerminated) => {
            let killed =
                Error::failed(&step, "the program was killed on the host before it exited")
                    .on(name);
            return Err(lost_or(session, name, &step, killed).await);
        }
        Err(e) => return Err(ssh_error(name, &step, e)),
    };
    Ok(CommandOutput {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn is_host_key_failure(text: &str) -> bool {
    text.contains("Host key verification failed")
        || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
}

fn text_mentions_auth(text: &str) -> bool {
    text.contains("Permission denied")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let line = s.to_string();
        if !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
        source = s.source();
    }
    parts.join(": ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RERUN: &str = "check that the host is up and answers SSH (`ssh web-1 true`), then run the same command again: ballast picks up where it stopped";

    #[test]
    fn a_dead_master_is_a_lost_connection_in_our_words() {
        let e = ssh_error("web-1", "run docker", openssh::Error::Disconnected);
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.to_string(),
            "web-1: run docker: lost the SSH connection to the host: the host or the network went away"
        );
        assert_eq!(e.hint.as_deref(), Some(RERUN));
        let master = openssh::Error::Master(std::io::Error::other("master exited"));
        let e = ssh_error("web-1", "run docker", master);
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.cause,
            "lost the SSH connection to the host: the host or the network went away (master exited)"
        );
        assert_eq!(e.hint.as_deref(), Some(RERUN));
    }

    #[test]
    fn a_program_ended_without_status_says_both_readings() {
        let e = ssh_error(
            "web-1",
            "run docker",
            openssh::Error::RemoteProcessTerminated,
        );
        assert_eq!(e.kind, ErrorKind::Failed);
        assert_eq!(
            e.cause,
            "the program ended without an exit status: it was killed on the host, or the SSH connection went away"
        );
        assert_eq!(e.hint.as_deref(), Some(RERUN));
    }

    /// A session whose master is gone: its control socket is missing, or
    /// still there and closing every connection.
    #[tokio::test]
    async fn running_a_program_without_a_master_names_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.ctl");
        let session = Session::resume_mux(missing.into_boxed_path(), None);
        let e = run_on(&session, "web-1", "docker", &["ps"], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.to_string(),
            "web-1: run docker: lost the SSH connection to the host: the host or the network went away"
        );
        assert_eq!(e.hint.as_deref(), Some(RERUN));

        let closing = dir.path().join("closing.ctl");
        let listener = tokio::net::UnixListener::bind(&closing).unwrap();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let session = Session::resume_mux(closing.into_boxed_path(), None);
        let e = run_on(&session, "web-1", "docker", &["ps"], None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable, "{e}");
        assert_eq!(
            e.cause,
            "lost the SSH connection to the host: the host or the network went away"
        );
        server.abort();
    }
}
