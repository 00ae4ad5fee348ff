//! A host: a machine with a Docker engine, reached locally or over SSH. The
//! rest of ballast sees one type whatever the path: its engine, commands run
//! on it (arguments as data, never a pasted shell string), and TCP streams to
//! addresses only the host can reach (containers' health checks).

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use openssh::Socket;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::ssh::{CommandOutput, SshHost, SshTarget};

/// The host name that means "this machine's engine, no SSH".
pub const LOCAL: &str = "local";

/// A byte stream to something the host can reach.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

enum Path {
    Local,
    Ssh(Box<SshHost>),
}

/// A connected host.
pub struct Host {
    name: String,
    engine: Engine,
    path: Path,
    /// Keeps forwarded sockets for tunnels; removed with the host.
    tunnels: tempfile::TempDir,
}

impl Host {
    /// Connects to `name`: the local engine for [`LOCAL`], else over SSH with
    /// `target` (whose destination is `name`).
    pub async fn connect(name: &str, target: &SshTarget) -> Result<Host> {
        let tunnels = tempfile::Builder::new()
            .prefix("ballast-tunnels-")
            .tempdir()
            .map_err(|e| Error::failed("make a tunnel directory", e).on(name))?;
        if name == LOCAL {
            let engine = Engine::local().await?;
            return Ok(Host {
                name: name.to_string(),
                engine,
                path: Path::Local,
                tunnels,
            });
        }
        let ssh = SshHost::connect(target).await?;
        Ok(Host {
            name: name.to_string(),
            engine: ssh.engine().clone(),
            path: Path::Ssh(Box::new(ssh)),
            tunnels,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs `program` with `args` on the host, feeding `stdin` if given.
    pub async fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        deadline: Duration,
    ) -> Result<CommandOutput> {
        let step = format!("run {program} on the host");
        let work = async {
            match &self.path {
                Path::Local => run_local(program, args, stdin).await,
                Path::Ssh(ssh) => ssh.run_with_input(program, args, stdin).await,
            }
        };
        match tokio::time::timeout(deadline, work).await {
            Err(_) => Err(Error::timeout(step, deadline).on(&self.name)),
            Ok(r) => r.map_err(|e| e.on(&self.name)),
        }
    }

    /// Runs `program` like [`Host::run`]; unless it exits with success, an
    /// error for `step` whose cause is the program's stderr.
    pub async fn run_checked(
        &self,
        step: &str,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        deadline: Duration,
    ) -> Result<()> {
        let out = self.run(program, args, stdin, deadline).await?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::failed(step, out.stderr.trim()).on(&self.name))
        }
    }

    /// Opens a TCP stream to `ip:port` as seen from the host: directly for
    /// the local host, through an SSH forward otherwise.
    pub async fn tcp(
        &self,
        ip: &str,
        port: u16,
        deadline: Duration,
    ) -> Result<Pin<Box<dyn Stream>>> {
        let step = format!("connect to {ip}:{port} from the host");
        let work = async {
            match &self.path {
                Path::Local => tokio::net::TcpStream::connect((ip, port))
                    .await
                    .map(|s| Box::pin(s) as Pin<Box<dyn Stream>>)
                    .map_err(|e| Error::failed(&step, e)),
                Path::Ssh(ssh) => {
                    let local = self.tunnels.path().join(format!("{ip}-{port}.sock"));
                    if !local.exists() {
                        ssh.forward(
                            Socket::UnixSocket {
                                path: local.clone().into(),
                            },
                            Socket::TcpSocket {
                                host: ip.to_string().into(),
                                port,
                            },
                        )
                        .await
                        .map_err(|e| Error::failed(&step, e))?;
                    }
                    tokio::net::UnixStream::connect(&local)
                        .await
                        .map(|s| Box::pin(s) as Pin<Box<dyn Stream>>)
                        .map_err(|e| Error::failed(&step, e))
                }
            }
        };
        match tokio::time::timeout(deadline, work).await {
            Err(_) => Err(Error::timeout(&step, deadline).on(&self.name)),
            Ok(r) => r.map_err(|e| e.on(&self.name)),
        }
    }

    /// A local path that reaches the unix socket `remote` on the host: the
    /// socket itself for the local host, an SSH forward otherwise.
    pub async fn unix(&self, remote: &str, deadline: Duration) -> Result<PathBuf> {
        let ssh = match &self.path {
            Path::Local => return Ok(PathBuf::from(remote)),
            Path::Ssh(ssh) => ssh,
        };
        let local = self.tunnels.path().join(format!(
            "{}.sock",
            remote.trim_start_matches('/').replace('/', "_")
        ));
        if local.exists() {
            return Ok(local);
        }
        let step = format!("forward {remote} from the host");
        let forward = ssh.forward(
            Socket::UnixSocket {
                path: local.clone().into(),
            },
            Socket::UnixSocket {
                path: PathBuf::from(remote).into(),
            },
        );
        match tokio::time::timeout(deadline, forward).await {
            Err(_) => Err(Error::timeout(&step, deadline).on(&self.name)),
            Ok(Err(e)) => Err(Error::failed(&step, e).on(&self.name)),
            Ok(Ok(())) => Ok(local),
        }
    }

    /// Closes the SSH connection, if any.
    pub async fn close(self) {
        if let Path::Ssh(ssh) = self.path {
            let _ = ssh.close().await;
        }
    }
}

async fn run_local(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<CommandOutput> {
    let step = format!("run {program}");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| Error::failed(&step, e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .await
            .map_err(|e| Error::failed(&step, e))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::failed(&step, e))?;
    Ok(CommandOutput {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// How to reach hosts: the SSH settings shared by all of them.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub proxy_jump: Option<String>,
    pub accept_new_host_keys: bool,
    pub connect_timeout: Option<Duration>,
    /// How long idle master connections are kept for the next command.
    pub persist: Option<Duration>,
}

impl Reach {
    /// The SSH target of one host.
    pub fn target(&self, host: &str) -> SshTarget {
        let mut t = SshTarget::new(host);
        t.user = self.user.clone();
        t.port = self.port;
        t.identity = self.identity.clone();
        t.known_hosts = self.known_hosts.clone();
        t.config = self.config.clone();
        t.jump = self.proxy_jump.clone();
        if self.accept_new_host_keys {
            t.host_keys = crate::ssh::HostKeyPolicy::AcceptNew;
        }
        if let Some(d) = self.connect_timeout {
            t.connect_timeout = d;
        }
        t.persist = self.persist;
        t
    }
}
