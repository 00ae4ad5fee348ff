//! One host's machine as setup reaches it: an SSH session that needs no
//! Docker engine (setup may be what installs it), commands run as root
//! (through `sudo -n` when the SSH user is not root), and the engine,
//! asked for its version and Swarm state when it answers.

use std::time::{Duration, Instant};

use bollard::models::LocalNodeState;

use super::packaging::Command;
use super::plan::EngineSeen;
use crate::error::{Error, ErrorKind, Result};
use crate::host::{Host, Reach};
use crate::ssh::{CommandOutput, SshSession};

/// Deadline of a small command (reading a file, a process list).
pub const SMALL: Duration = Duration::from_secs(15);
/// How long a starting engine may take to answer.
pub const ENGINE_START: Duration = Duration::from_secs(90);

/// A host's machine, connected.
pub struct Machine {
    ssh: SshSession,
    /// Commands go through `sudo -n`: the SSH user is not root.
    sudo: bool,
    /// Whether systemd runs the host, once asked.
    systemd: std::sync::OnceLock<bool>,
    reach_target: crate::ssh::SshTarget,
    name: String,
}

impl Machine {
    /// Connects to `name` over SSH and finds out whether commands need sudo.
    pub async fn connect(name: &str, reach: &Reach) -> Result<Machine> {
        let target = reach.target(name);
        let ssh = SshSession::connect(&target).await?;
        let id = ssh.run("id", &["-u"], SMALL).await?;
        let sudo = id.stdout.trim() != "0";
        Ok(Machine {
            ssh,
            sudo,
            systemd: std::sync::OnceLock::new(),
            reach_target: target,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `program args` as the SSH user; what it printed, whatever its exit.
    pub async fn ask(&self, program: &str, args: &[&str]) -> Result<CommandOutput> {
        self.ssh.run(program, args, SMALL).await
    }

    /// Runs `program args` as root; what it printed, whatever its exit
    /// (reading what only root may read).
    pub async fn ask_root(&self, program: &str, args: &[&str]) -> Result<CommandOutput> {
        let (program, full) = self.as_root(program, args);
        self.ssh.run(program, &full, SMALL).await
    }

    /// `program args` as root: through `sudo -n` unless the SSH user is root.
    fn as_root<'a>(&self, program: &'a str, args: &[&'a str]) -> (&'a str, Vec<&'a str>) {
        if self.sudo {
            let mut full = vec!["-n", "--", program];
            full.extend(args);
            ("sudo", full)
        } else {
            (program, args.to_vec())
        }
    }

    /// Runs `command` as root; an error for `step` unless it succeeds.
    pub async fn change(&self, step: &str, command: &Command) -> Result<CommandOutput> {
        let args: Vec<&str> = command.args.iter().map(String::as_str).collect();
        self.root(step, command.program, &args, None, command.deadline)
            .await
    }

    /// Runs `program args` as root, feeding `stdin`; an error for `step`
    /// (with the program's last words) unless it succeeds.
    pub async fn root(
        &self,
        step: &str,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
        deadline: Duration,
    ) -> Result<CommandOutput> {
        let (program, full) = self.as_root(program, args);
        let out = match stdin {
            Some(input) => {
                self.ssh
                    .run_with_input(program, &full, input, deadline)
                    .await
            }
            None => self.ssh.run(program, &full, deadline).await,
        }
        .map_err(|e| Error {
            step: step.to_string(),
            ..e
        })?;
        if out.success() {
            return Ok(out);
        }
        let mut err = Error::failed(step, last_words(&out)).on(&self.name);
        if self.sudo && out.stderr.contains("a password is required") {
            err = err.hint("setup needs root: log in as root (`ssh: { user: root }`), or let the SSH user run sudo without a password");
        }
        Err(err)
    }

    /// The engine's version and Swarm state, if it answers within a few
    /// seconds.
    pub async fn engine(&self) -> Option<EngineSeen> {
        let host = tokio::time::timeout(SMALL, Host::connect(&self.name, &self.reach_target))
            .await
            .ok()?
            .ok()?;
        let info = host.engine().docker().info().await;
        host.close().await;
        let info = info.ok()?;
        Some(EngineSeen {
            version: info.server_version.unwrap_or_default(),
            swarm: info
                .swarm
                .and_then(|s| s.local_node_state)
                .is_some_and(|s| s == LocalNodeState::ACTIVE),
        })
    }

    /// Waits until the engine answers, within [`ENGINE_START`].
    pub async fn wait_for_engine(&self, step: &str) -> Result<EngineSeen> {
        let started = Instant::now();
        loop {
            if let Some(seen) = self.engine().await {
                return Ok(seen);
            }
            if let Some(e) = self.socket_refused(step).await {
                return Err(e);
            }
            if started.elapsed() > ENGINE_START {
                let log = self
                    .ask("tail", &["-n", "3", "/var/log/docker.log"])
                    .await
                    .map(|o| o.stdout.trim().to_string())
                    .unwrap_or_default();
                let mut cause = format!(
                    "the Docker engine did not answer within {} s",
                    ENGINE_START.as_secs()
                );
                if !log.is_empty() {
                    cause = format!("{cause}; its log ends: {log}");
                }
                return Err(Error::new(ErrorKind::Timeout, step, cause)
                    .on(&self.name)
                    .hint("look at `journalctl -u docker` (or /var/log/docker.log) on the host, then run setup again"));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// An error when dockerd runs but the SSH user may not use its socket
    /// (a sudo user outside the `docker` group): ballast reaches engines
    /// through that socket, so waiting longer would not help.
    async fn socket_refused(&self, step: &str) -> Option<Error> {
        if !self.sudo {
            return None;
        }
        let running = self
            .ask("ps", &["-o", "pid=", "-C", "dockerd"])
            .await
            .ok()?;
        let socket = self
            .ask("test", &["-S", "/var/run/docker.sock"])
            .await
            .ok()?;
        if running.stdout.trim().is_empty() || !socket.success() {
            return None;
        }
        let writable = self
            .ask("test", &["-w", "/var/run/docker.sock"])
            .await
            .ok()?;
        (!writable.success()).then(|| {
            Error::failed(step, "dockerd runs, but the SSH user may not use /var/run/docker.sock, through which ballast reaches the engine")
                .on(&self.name)
                .hint("add the SSH user to the `docker` group on the host (`usermod -aG docker USER`; it is as powerful as root), or log in as root; then run setup again")
        })
    }

    /// Whether systemd runs the host (else SysV init scripts start services).
    /// Asked once per connection: the init system does not change under
    /// a setup, and several steps need to know.
    pub async fn systemd(&self) -> bool {
        if let Some(known) = self.systemd.get() {
            return *known;
        }
        let found = self
            .ask("test", &["-d", "/run/systemd/system"])
            .await
            .is_ok_and(|o| o.success());
        *self.systemd.get_or_init(|| found)
    }

    pub async fn close(self) {
        let _ = self.ssh.close().await;
    }
}

/// The last lines of what a failed program printed, for an error's cause.
fn last_words(out: &CommandOutput) -> String {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    let lines: Vec<&str> = text.trim().lines().collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    if tail.is_empty() {
        format!("it exited with {:?}", out.status)
    } else {
        tail
    }
}
