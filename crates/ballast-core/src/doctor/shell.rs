//! Running commands on a host for doctor: through its connected [`Host`], or,
//! when SSH works but the engine does not (so the fleet has no `Host` for
//! it), through an SSH session of its own. Arguments are data, never a
//! pasted shell string. Every command has a deadline; a failure is a
//! missing fact, not an error.

use std::time::Duration;

use crate::host::{Host, Reach};
use crate::ssh::{CommandOutput, SshSession};

/// Deadline of one command run for facts.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(10);

/// Somewhere to run commands.
pub enum Shell<'a> {
    /// A host the fleet connected, engine and all.
    Host(&'a Host),
    /// A bare SSH session to a host whose engine does not answer.
    Ssh(SshSession),
}

impl Shell<'_> {
    /// Runs `program args`; `Err` says why there is no output.
    pub async fn run(&self, program: &str, args: &[&str]) -> Result<CommandOutput, String> {
        let out = match self {
            Shell::Host(h) => h.run(program, args, None, COMMAND_DEADLINE).await,
            Shell::Ssh(session) => session.run(program, args, COMMAND_DEADLINE).await,
        };
        out.map_err(|e| e.cause)
    }

    /// The standard output of a command that succeeded.
    pub async fn output(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let out = self.run(program, args).await?;
        if out.success() {
            Ok(out.stdout)
        } else {
            let why = out.stderr.trim();
            Err(if why.is_empty() {
                format!("{program} exited with {:?}", out.status)
            } else {
                why.lines().next().unwrap_or(why).to_string()
            })
        }
    }

    pub async fn close(self) {
        if let Shell::Ssh(session) = self {
            let _ = session.close().await;
        }
    }
}

/// Opens an SSH session to `name` alone, without the Docker socket, with
/// the same settings the fleet uses.
pub async fn ssh_only(name: &str, reach: &Reach) -> Result<Shell<'static>, String> {
    SshSession::connect(&reach.target(name))
        .await
        .map(Shell::Ssh)
        .map_err(|e| e.cause)
}
