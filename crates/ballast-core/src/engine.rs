//! A Docker engine ballast talks to: the local one, or a remote one whose
//! socket is forwarded over SSH. Both are bollard over a unix socket, so every
//! caller uses the same code whatever the host (DESIGN principle 2).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

use crate::error::{Error, ErrorKind, Result};

/// Deadline for one short API call (inspect, create, list...).
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// Deadline for reaching an engine and agreeing on an API version.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// Upper bound bollard puts on any request before its response starts. Long
/// streams (image load, build) are bounded by their callers' own deadlines.
const REQUEST_TIMEOUT_SECS: u64 = 3600;
/// The step of every error about reaching an engine: callers tell "the host
/// answers but its engine does not" by it.
pub const CONNECT_STEP: &str = "connect to the Docker engine";
/// Where the engine listens unless `DOCKER_HOST` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// One Docker engine, named after its host for every error it reports.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The host's name as the user wrote it, shared by every clone.
    host: Arc<str>,
    /// Whether a lost connection means dockerd stopped or SSH went away.
    reach: Reach,
    docker: Docker,
}

/// How ballast reaches an engine: it decides what a lost connection means
/// and what the user should check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// A socket of this machine's dockerd.
    Local,
    /// A socket forwarded by an SSH master connection: while the master
    /// lives it accepts, even when the remote engine does not answer.
    Ssh,
}

/// What a command run inside a container printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

impl Engine {
    /// The engine of this machine: `DOCKER_HOST` if it names a unix socket,
    /// else `/var/run/docker.sock`.
    pub async fn local() -> Result<Engine> {
        let socket = local_socket(std::env::var("DOCKER_HOST").ok().as_deref())?;
        Engine::unix(crate::host::LOCAL, &socket).await
    }

    /// An engine behind a unix socket of this machine, reported as `host` in
    /// errors.
    pub async fn unix(host: &str, socket: &Path) -> Result<Engine> {
        Engine::open(host, socket, Reach::Local).await
    }

    /// An engine behind a socket that an SSH connection forwards from
    /// `host`: errors about losing it speak of the SSH connection.
    pub async fn forwarded(host: &str, socket: &Path) -> Result<Engine> {
        Engine::open(host, socket, Reach::Ssh).await
    }

    async fn open(host: &str, socket: &Path, reach: Reach) -> Result<Engine> {
        let step = CONNECT_STEP;
        let path = socket.to_string_lossy();
        let docker =
            Docker::connect_with_unix(&path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| classify(host, reach, step, e))?;
        // Engines here speak older API versions than bollard's default.
        let docker = match tokio::time::timeout(CONNECT_DEADLINE, docker.negotiate_version()).await
        {
            Err(_) => return Err(Error::timeout(step, CONNECT_DEADLINE).on(host)),
            Ok(Err(e)) => return Err(classify(host, reach, step, e)),
            Ok(Ok(d)) => d,
        };
        Ok(Engine {
            host: host.into(),
            reach,
            docker,
        })
    }

    /// The host this engine runs on, as the user named it.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Runs one short API call under [`CALL_DEADLINE`], naming host and step
    /// on failure.
    pub async fn call<T>(
        &self,
        step: &str,
        call: impl Future<Output = Result<T, DockerError>>,
    ) -> Result<T> {
        match tokio::time::timeout(CALL_DEADLINE, call).await {
            Err(_) => Err(Error::timeout(step, CALL_DEADLINE).on(self.host())),
            Ok(Err(e)) => Err(self.error(step, e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Turns a bollard error into ours, naming this host and the step.
    pub fn error(&self, step: &str, e: DockerError) -> Error {
        classify(&self.host, self.reach, step, e)
    }

    /// Runs `argv` inside a running container and collects its output, all
    /// within `deadline`. No shell is involved: `argv` is passed as is.
    pub async fn exec(
        &self,
        container: &str,
        argv: &[&str],
        deadline: Duration,
    ) -> Result<ExecOutput> {
        let step = format!("run {:?} in container {container}", argv.join(" "));
        let work = async {
            let created = self
                .docker
                .create_exec(
                    container,
                    CreateExecOptions {
                        cmd: Some(argv.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await?;
            let mut out = ExecOutput {
                exit_code: -1,
                stdout: String::new(),
                stderr: String::new(),
            };
            if let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&created.id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    match chunk? {
                        bollard::container::LogOutput::StdErr { message } => {
                            out.stderr.push_str(&String::from_utf8_lossy(&message))
                        }
                        other => out
                            .stdout
                            .push_str(&String::from_utf8_lossy(other.as_ref())),
                    }
                }
            }
            let inspected = self.docker.inspect_exec(&created.id).await?;
            out.exit_code = inspected.exit_code.unwrap_or(-1);
            Ok::<_, DockerError>(out)
        };
        match tokio::time::timeout(deadline, work).await {
            Err(_) => Err(Error::timeout(step, deadline).on(self.host())),
            Ok(Err(e)) => Err(self.error(&step, e)),
            Ok(Ok(out)) => Ok(out),
        }
    }

    /// The last `lines` lines a container printed (stdout and stderr), for
    /// errors that must show why a container failed.
    pub async fn log_tail(&self, container: &str, lines: usize) -> Result<String> {
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let work = async {
            let mut out = String::new();
            let mut stream = self.docker.logs(container, Some(options));
            while let Some(chunk) = stream.next().await {
                out.push_str(&chunk?.to_string());
            }
            Ok::<_, DockerError>(out)
        };
        self.call("read container logs", work).await
    }

    /// The ID of a local image, or `None` if this engine does not have it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self
            .call("inspect image", self.docker.inspect_image(reference))
            .await
        {
            Ok(image) => Ok(image.id),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The reference this engine holds the image of config digest `id` by
    /// (ballast names releases by config digest, the same on every store):
    /// `id` itself on the classic image store; on the containerd store,
    /// which names images by manifest, the [`config_tag`] delivery put on
    /// it. `None`: the engine does not have it.
    pub async fn resolve_image(&self, id: &str) -> Result<Option<String>> {
        if self.image_id(id).await?.is_some() {
            return Ok(Some(id.to_string()));
        }
        match config_tag(id) {
            Some(tag) if self.image_id(&tag).await?.is_some() => Ok(Some(tag)),
            _ => Ok(None),
        }
    }
}

/// The repository of the tags that name images by config digest on
/// engines using the containerd image store.
pub const CONFIG_TAG_REPO: &str = "ballast-image";

/// `ballast-image:sha256-<hex>`: the tag naming the image of config digest
/// `id` (`sha256:<hex>`) on the containerd store; `None` for anything that
/// is not a config digest.
pub fn config_tag(id: &str) -> Option<String> {
    let hex = id.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{CONFIG_TAG_REPO}:sha256-{hex}"))
}

/// The config digest a [`config_tag`] names.
pub fn config_of_tag(tag: &str) -> Option<String> {
    let hex = tag
        .strip_prefix(CONFIG_TAG_REPO)?
        .strip_prefix(":sha256-")?;
    let id = format!("sha256:{hex}");
    config_tag(&id).map(|_| id)
}

/// Reads `DOCKER_HOST`: only unix sockets are supported, because every engine
/// ballast uses, local or remote, is reached through one.
pub fn local_socket(docker_host: Option<&str>) -> Result<PathBuf> {
    match docker_host.map(str::trim).filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(h) => match h.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(Error::input(
                "read DOCKER_HOST",
                format_args!("{h:?} is not a unix socket"),
            )
            .hint("set DOCKER_HOST=unix:///var/run/docker.sock, or unset it")),
        },
    }
}

/// Turns a bollard error into ours. A failure below HTTP (socket, SSH
/// forward, connection) is told in the user's words by [`lost_engine`]; an
/// answer of the engine keeps its status and message.
fn classify(host: &str, reach: Reach, step: &str, e: DockerError) -> Error {
    if let Some(lost) = Lost::of(&e) {
        return lost_engine(host, reach, step, &lost);
    }
    let (kind, cause, hint) = match e {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                400 => ErrorKind::Input,
                _ => ErrorKind::Failed,
            };
            (kind, message, None)
        }
        DockerError::SocketNotFoundError(_) if reach == Reach::Ssh => {
            return lost_engine(host, reach, step, &Lost::SocketGone);
        }
        DockerError::SocketNotFoundError(path) => (
            ErrorKind::Unreachable,
            format!("no Docker socket at {path}"),
            Some("start dockerd, or point DOCKER_HOST at its socket"),
        ),
        DockerError::DockerStreamError { error } => (ErrorKind::Failed, error, None),
        other => (ErrorKind::Failed, describe(&other), None),
    };
    let mut err = Error::new(kind, step, cause).on(host);
    if let Some(h) = hint {
        err = err.hint(h);
    }
    err
}

/// What broke below HTTP when a request to an engine failed: never an answer
/// of the engine, always the way to it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lost {
    /// Connecting found no socket file.
    SocketGone,
    /// The socket file is there but nothing listens on it.
    Refused,
    /// This user may not open the socket.
    Denied,
    /// The connection closed before the answer was complete.
    Dropped,
    /// No answer within bollard's request timeout.
    TimedOut,
    /// Another failure on the way; the library's innermost text, kept as a
    /// detail.
    Other(String),
}

impl Lost {
    /// Reads a bollard error by its types and I/O error kinds, not by its
    /// wording; `None` when the engine answered.
    fn of(e: &DockerError) -> Option<Lost> {
        let root: &(dyn std::error::Error + 'static) = match e {
            DockerError::RequestTimeoutError => return Some(Lost::TimedOut),
            DockerError::HyperLegacyError { err } => err,
            DockerError::HyperResponseError { err } => err,
            DockerError::IOError { err } => err,
            _ => return None,
        };
        let chain = sources(root);
        let hyper = chain.iter().find_map(|c| c.downcast_ref::<hyper::Error>());
        // Our own request body failed, or the answer was not HTTP: the way
        // to the engine worked.
        if hyper.is_some_and(|h| h.is_user() || h.is_parse()) {
            return None;
        }
        let connecting = chain.iter().any(|c| {
            c.downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some_and(|l| l.is_connect())
        });
        let by_io = chain.iter().find_map(|c| {
            let kind = c.downcast_ref::<std::io::Error>()?.kind();
            Lost::of_io(kind, connecting)
        });
        if let Some(lost) = by_io {
            return Some(lost);
        }
        if let Some(h) = hyper {
            return Some(if h.is_timeout() {
                Lost::TimedOut
            } else {
                Lost::Dropped
            });
        }
        if !connecting && matches!(e, DockerError::HyperLegacyError { .. }) {
            return Some(Lost::Dropped);
        }
        let innermost = chain
            .last()
            .map_or_else(|| e.to_string(), |c| c.to_string());
        Some(Lost::Other(if connecting {
            format!("connect: {innermost}")
        } else {
            innermost
        }))
    }

    /// What an I/O error kind says about the way to the engine. A missing
    /// file, a refusal or a denial only speak of the socket while connecting.
    fn of_io(kind: std::io::ErrorKind, connecting: bool) -> Option<Lost> {
        use std::io::ErrorKind as Io;
        match kind {
            Io::NotFound if connecting => Some(Lost::SocketGone),
            Io::ConnectionRefused if connecting => Some(Lost::Refused),
            Io::PermissionDenied if connecting => Some(Lost::Denied),
            Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::NotConnected => Some(Lost::Dropped),
            Io::TimedOut => Some(Lost::TimedOut),
            _ => None,
        }
    }

    /// The short detail that ends the cause, in parentheses.
    fn detail(&self) -> String {
        match self {
            Lost::SocketGone => "its socket file is gone".into(),
            Lost::Refused => "nothing listens on its socket".into(),
            Lost::Denied => "permission denied on its socket".into(),
            Lost::Dropped => "the connection closed mid-request".into(),
            Lost::TimedOut => format!(
                "no answer within {}",
                crate::error::humanize(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            ),
            Lost::Other(text) => text.clone(),
        }
    }
}

/// An error and the errors under it, looking inside I/O errors too (their
/// `source()` skips the error they wrap).
fn sources<'a>(
    root: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut chain = vec![root];
    while chain.len() < 16 {
        let last = chain[chain.len() - 1];
        let wrapped = last
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        match wrapped.or_else(|| last.source()) {
            Some(next) => chain.push(next),
            None => break,
        }
    }
    chain
}

/// An error and what it wraps, for failures with no words of our own.
fn describe(e: &DockerError) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in sources(e) {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The hint for a host lost mid-run: `check` shows whether it is back, and
/// running again is safe because ballast plans from what it finds.
pub(crate) fn rerun_hint(check: &str) -> String {
    format!(
        "check that the host is up and answers SSH (`{check}`), then run the same command again: ballast picks up where it stopped"
    )
}

/// The error for an engine ballast could not reach or lost, in the user's
/// words: which side went away, and what to check.
fn lost_engine(host: &str, reach: Reach, step: &str, lost: &Lost) -> Error {
    let connecting = step == CONNECT_STEP;
    let detail = lost.detail();
    let (cause, hint) = match reach {
        Reach::Ssh => {
            let head = if connecting {
                "cannot reach the host's Docker engine"
            } else {
                "lost the connection to the host's Docker engine"
            };
            let rerun = rerun_hint(&format!("ssh {host} docker info"));
            match lost {
                // The master serves the forwarded socket: without it, nothing
                // listens there, whatever the engine does.
                Lost::SocketGone | Lost::Refused => (
                    format!("{head}: the SSH connection went away ({detail})"),
                    rerun,
                ),
                // SSH has just been opened: the engine behind it is the problem.
                _ if connecting => (
                    format!(
                        "{head}: SSH works, but the engine does not answer on the host's Docker socket ({detail})"
                    ),
                    format!(
                        "check that dockerd runs on the host and that the SSH user may use its socket (`ssh {host} docker info`)"
                    ),
                ),
                Lost::TimedOut => (
                    format!("{head}: the SSH connection or the engine stopped answering ({detail})"),
                    rerun,
                ),
                _ => (
                    format!("{head}: the SSH connection or the engine went away ({detail})"),
                    rerun,
                ),
            }
        }
        Reach::Local => {
            let head = if connecting {
                "cannot reach the local Docker engine"
            } else {
                "lost the connection to the local Docker engine"
            };
            match lost {
                Lost::Denied => (
                    format!("{head}: permission denied on its socket"),
                    "add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again), or run ballast as root".to_string(),
                ),
                _ if connecting => (
                    format!("{head}: dockerd does not answer ({detail})"),
                    "start dockerd (`sudo systemctl start docker`), or point DOCKER_HOST at its socket".to_string(),
                ),
                Lost::TimedOut => (
                    format!("{head}: dockerd stopped answering ({detail})"),
                    "check that dockerd is healthy (`docker info`), then run the same command again: ballast picks up where it stopped".to_string(),
                ),
                _ => (
                    format!("{head}: dockerd stopped or restarted ({detail})"),
                    "check that dockerd is running (`docker info`), then run the same command again: ballast picks up where it stopped".to_string(),
                ),
            }
        }
    };
    Error::new(ErrorKind::Unreachable, step, cause)
        .on(host)
        .hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn config_tags_name_config_digests_and_nothing_else() {
        let id = format!("sha256:{}", "ab12".repeat(16));
        let tag = config_tag(&id).unwrap();
        assert_eq!(tag, format!("ballast-image:sha256-{}", "ab12".repeat(16)));
        assert_eq!(config_of_tag(&tag), Some(id));
        assert_eq!(config_tag("sha256:abc"), None);
        assert_eq!(config_tag("hello:v1"), None);
        assert_eq!(config_tag(&format!("sha256:{}", "zz".repeat(32))), None);
        assert_eq!(config_of_tag("hello:v1"), None);
        assert_eq!(config_of_tag("ballast-image:latest"), None);
    }

    #[test]
    fn docker_host_defaults_to_the_standard_socket() {
        assert_eq!(local_socket(None).unwrap(), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(
            local_socket(Some("")).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(
            local_socket(Some("unix:///run/user/1000/docker.sock")).unwrap(),
            PathBuf::from("/run/user/1000/docker.sock")
        );
    }

    #[test]
    fn docker_host_over_tcp_is_refused_with_a_hint() {
        let e = local_socket(Some("tcp://10.0.0.1:2375")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert!(e.cause.contains("tcp://10.0.0.1:2375"));
        assert!(e.hint.unwrap().contains("unix://"));
    }

    #[test]
    fn server_errors_keep_their_meaning() {
        let e = classify(
            "h1",
            Reach::Ssh,
            "inspect image",
            DockerError::DockerResponseServerError {
                status_code: 404,
                message: "No such image: x".into(),
            },
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.to_string(), "h1: inspect image: No such image: x");
    }

    fn io(kind: std::io::ErrorKind) -> DockerError {
        DockerError::IOError {
            err: std::io::Error::from(kind),
        }
    }

    const SSH_RERUN: &str = "check that the host is up and answers SSH (`ssh h1 docker info`), then run the same command again: ballast picks up where it stopped";
    const LOCAL_RERUN: &str = "check that dockerd is running (`docker info`), then run the same command again: ballast picks up where it stopped";

    #[test]
    fn a_connection_dropped_mid_run_names_ssh_and_the_engine() {
        use std::io::ErrorKind as Io;
        for kind in [
            Io::BrokenPipe,
            Io::ConnectionReset,
            Io::ConnectionAborted,
            Io::UnexpectedEof,
            Io::NotConnected,
        ] {
            let e = classify("h1", Reach::Ssh, "remove web-v1", io(kind));
            assert_eq!(e.kind, ErrorKind::Unreachable, "{kind:?}");
            assert_eq!(
                e.to_string(),
                "h1: remove web-v1: lost the connection to the host's Docker engine: the SSH connection or the engine went away (the connection closed mid-request)",
                "{kind:?}"
            );
            assert_eq!(e.hint.as_deref(), Some(SSH_RERUN));
        }
    }

    #[test]
    fn a_lost_local_engine_means_dockerd_stopped() {
        let e = classify(
            "local",
            Reach::Local,
            "load image",
            io(std::io::ErrorKind::BrokenPipe),
        );
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.cause,
            "lost the connection to the local Docker engine: dockerd stopped or restarted (the connection closed mid-request)"
        );
        assert_eq!(e.hint.as_deref(), Some(LOCAL_RERUN));
    }

    #[test]
    fn request_timeouts_are_unreachable_and_say_how_long() {
        let e = classify(
            "h1",
            Reach::Ssh,
            "load image",
            DockerError::RequestTimeoutError,
        );
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.cause,
            "lost the connection to the host's Docker engine: the SSH connection or the engine stopped answering (no answer within 60m)"
        );
        assert_eq!(e.hint.as_deref(), Some(SSH_RERUN));
    }

    /// An I/O error of another kind keeps the library's text, but only as
    /// the detail after our words.
    #[test]
    fn other_io_errors_keep_their_text_as_a_detail_only() {
        let e = classify(
            "h1",
            Reach::Ssh,
            "remove web-v1",
            DockerError::IOError {
                err: std::io::Error::other("frobnicated"),
            },
        );
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.cause,
            "lost the connection to the host's Docker engine: the SSH connection or the engine went away (frobnicated)"
        );
    }

    #[test]
    fn a_forwarded_socket_missing_at_connect_means_ssh_went_away() {
        let e = classify(
            "h1",
            Reach::Ssh,
            CONNECT_STEP,
            DockerError::SocketNotFoundError("/tmp/x/docker.sock".into()),
        );
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.cause,
            "cannot reach the host's Docker engine: the SSH connection went away (its socket file is gone)"
        );
        assert_eq!(e.hint.as_deref(), Some(SSH_RERUN));
        let local = classify(
            "local",
            Reach::Local,
            CONNECT_STEP,
            DockerError::SocketNotFoundError("/run/docker.sock".into()),
        );
        assert_eq!(local.kind, ErrorKind::Unreachable);
        assert_eq!(local.cause, "no Docker socket at /run/docker.sock");
    }

    #[test]
    fn answers_of_the_engine_are_not_transport_failures() {
        let conflict = classify(
            "h1",
            Reach::Ssh,
            "rename web",
            DockerError::DockerResponseServerError {
                status_code: 409,
                message: "name in use".into(),
            },
        );
        assert_eq!(conflict.kind, ErrorKind::Conflict);
        assert_eq!(conflict.cause, "name in use");
        let broken = classify(
            "h1",
            Reach::Ssh,
            "inspect image",
            DockerError::JsonDataError {
                message: "expected value".into(),
                column: 1,
            },
        );
        assert_eq!(broken.kind, ErrorKind::Failed);
    }

    /// A stand-in for an engine behind a unix socket: answers `/version`
    /// while `answer` is set, else accepts and drops every connection, as
    /// an SSH master does when the remote engine is gone.
    async fn fake_engine(path: &Path, answer: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                if !answer.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"ApiVersion":"1.41","Version":"20.10.24"}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        })
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_refused_in_our_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        // Binding leaves the file behind, with nobody listening.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let e = Engine::unix("local", &path).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.cause,
            "cannot reach the local Docker engine: dockerd does not answer (nothing listens on its socket)"
        );
        let e = Engine::forwarded("h1", &path).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "h1: connect to the Docker engine: cannot reach the host's Docker engine: the SSH connection went away (nothing listens on its socket)"
        );
        assert_eq!(e.hint.as_deref(), Some(SSH_RERUN));
    }

    #[tokio::test]
    async fn a_missing_socket_is_named() {
        let e = Engine::unix("h", Path::new("/tmp/ballast-no-such-dir/docker.sock"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(e.step, CONNECT_STEP);
        assert!(e.hint.is_some());
    }

    /// SSH works but the engine behind it does not: the master accepts the
    /// forwarded connection, then closes it.
    #[tokio::test]
    async fn an_engine_that_drops_connections_at_connect_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let server = fake_engine(&path, Arc::new(AtomicBool::new(false))).await;
        let e = Engine::forwarded("h1", &path).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.cause,
            "cannot reach the host's Docker engine: SSH works, but the engine does not answer on the host's Docker socket (the connection closed mid-request)"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("check that dockerd runs on the host and that the SSH user may use its socket (`ssh h1 docker info`)")
        );
        server.abort();
    }

    /// The host is lost after connecting: first the engine behind the
    /// forward goes away, then the SSH master and its socket.
    #[tokio::test]
    async fn a_host_lost_mid_run_is_named_in_our_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let answer = Arc::new(AtomicBool::new(true));
        let server = fake_engine(&path, answer.clone()).await;
        let engine = Engine::forwarded("h1", &path).await.unwrap();

        answer.store(false, Ordering::SeqCst);
        let e = engine
            .call("remove web-v1", engine.docker().ping())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.to_string(),
            "h1: remove web-v1: lost the connection to the host's Docker engine: the SSH connection or the engine went away (the connection closed mid-request)"
        );
        assert_eq!(e.hint.as_deref(), Some(SSH_RERUN));

        server.abort();
        let _ = server.await;
        std::fs::remove_file(&path).unwrap();
        let e = engine
            .call("remove web-v1", engine.docker().ping())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unreachable);
        assert_eq!(
            e.cause,
            "lost the connection to the host's Docker engine: the SSH connection went away (its socket file is gone)"
        );
        assert_eq!(e.hint.as_deref(), Some(SSH_RERUN));
    }
}
