//! A Docker engine ballast talks to: the local one, or a remote one whose
//! socket is forwarded over SSH. Both are bollard over a unix socket, so every
//! caller uses the same code whatever the host (DESIGN principle 2).

use std::future::Future;
use std::path::{Path, PathBuf};
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
    host: String,
    docker: Docker,
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
        Engine::unix("local", &socket).await
    }

    /// An engine behind a unix socket, reported as `host` in errors.
    pub async fn unix(host: &str, socket: &Path) -> Result<Engine> {
        let step = CONNECT_STEP;
        let path = socket.to_string_lossy();
        let docker =
            Docker::connect_with_unix(&path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(|e| classify(host, step, e))?;
        // Engines here speak older API versions than bollard's default.
        let docker = match tokio::time::timeout(CONNECT_DEADLINE, docker.negotiate_version()).await
        {
            Err(_) => return Err(Error::timeout(step, CONNECT_DEADLINE).on(host)),
            Ok(Err(e)) => return Err(classify(host, step, e)),
            Ok(Ok(d)) => d,
        };
        Ok(Engine {
            host: host.to_string(),
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
            Err(_) => Err(Error::timeout(step, CALL_DEADLINE).on(&self.host)),
            Ok(Err(e)) => Err(self.error(step, e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Turns a bollard error into ours, naming this host and the step.
    pub fn error(&self, step: &str, e: DockerError) -> Error {
        classify(&self.host, step, e)
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
            Err(_) => Err(Error::timeout(step, deadline).on(&self.host)),
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

fn classify(host: &str, step: &str, e: DockerError) -> Error {
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
        DockerError::RequestTimeoutError => (
            ErrorKind::Timeout,
            "the engine did not answer in time".to_string(),
            Some("check that dockerd on this host is healthy (`docker info`)"),
        ),
        DockerError::SocketNotFoundError(path) => (
            ErrorKind::Unreachable,
            format!("no Docker socket at {path}"),
            Some("start dockerd, or point DOCKER_HOST at its socket"),
        ),
        DockerError::DockerStreamError { error } => (ErrorKind::Failed, error, None),
        other => {
            let text = other.to_string();
            let unreachable = ["Connection refused", "No such file", "connection closed"]
                .iter()
                .any(|s| text.contains(s));
            if unreachable {
                (
                    ErrorKind::Unreachable,
                    text,
                    Some("is dockerd running on this host? (`systemctl status docker`)"),
                )
            } else {
                (ErrorKind::Failed, text, None)
            }
        }
    };
    let mut err = Error::new(kind, step, cause).on(host);
    if let Some(h) = hint {
        err = err.hint(h);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "inspect image",
            DockerError::DockerResponseServerError {
                status_code: 404,
                message: "No such image: x".into(),
            },
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.to_string(), "h1: inspect image: No such image: x");
    }
}
