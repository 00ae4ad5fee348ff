//! A command run inside a running container, as `ballast exec` (and
//! `ballast accessory exec`) do: which hosts of a role it runs on, which
//! container there, and the session itself through the engine's exec API
//! (create, start attached, resize, inspect) over the host's one
//! connection. The command is an argument vector handed to the engine as
//! is: no shell, on the host or in the container.
//!
//! Reaching the engine and starting the command have deadlines; the
//! command then runs as long as it wants. When the caller cancels (Ctrl-C,
//! SIGTERM), the command's process is signalled on the host (SIGINT, or
//! SIGHUP for a terminal session, then SIGKILL after [`STOP_GRACE`]), and
//! waited for [`STOP_GRACE`] more at most.

use std::time::Duration;

use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ExecInspectResponse;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::CALL_DEADLINE;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;

/// How long a cancelled command gets to end after its first signal,
/// before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the engine may take to record the exit code of a command
/// whose output has ended.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// The size of a terminal, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

/// What to run, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The program and its arguments, as given; never joined into a
    /// shell line.
    pub argv: Vec<String>,
    /// Forward input to the command's stdin ([`Io::input`]).
    pub stdin: bool,
    /// Give the command a terminal of this size: its output comes back as
    /// one stream, and control keys (Ctrl-C) reach it as input.
    pub tty: Option<TtySize>,
}

/// Output of the command, as it comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Bytes),
    /// With a terminal, everything comes as [`Output::Stdout`].
    Stderr(Bytes),
}

/// The session's ends on the caller's side.
pub struct Io<'a> {
    /// Chunks for the command's stdin; the channel closing is end of
    /// input. Unused unless [`Command::stdin`].
    pub input: Option<mpsc::Receiver<Bytes>>,
    /// New sizes of the caller's terminal. Unused without a terminal.
    pub resizes: Option<mpsc::Receiver<TtySize>>,
    /// Called with every chunk of output, in order.
    pub output: &'a mut (dyn FnMut(Output) + Send),
    /// Cancelled to end the command before it ends by itself.
    pub cancel: CancellationToken,
}

/// The hosts `role` runs the command on: `host` if given (one of the
/// role's), every host of the role with `all`, else the role's first.
pub fn hosts_for(
    config: &Config,
    role: &str,
    host: Option<&str>,
    all: bool,
) -> Result<Vec<String>> {
    let Some(r) = config.roles.get(role) else {
        let known: Vec<&str> = config.roles.keys().map(String::as_str).collect();
        return Err(Error::input(
            "choose the role",
            format_args!("no role `{role}` in the config"),
        )
        .hint(format!("the config's roles: {}", known.join(", "))));
    };
    let hosts: Vec<String> = r.hosts.iter().map(|h| h.address().to_string()).collect();
    match host {
        Some(h) if hosts.iter().any(|x| x == h) => Ok(vec![h.to_string()]),
        Some(h) => Err(Error::input(
            "choose the host",
            format_args!("`{h}` is not a host of role `{role}`"),
        )
        .hint(format!("the hosts of `{role}`: {}", hosts.join(", ")))),
        None if all => Ok(hosts),
        None => Ok(hosts.into_iter().take(1).collect()),
    }
}

/// The running container of `role` of `service` on `host` (the newest,
/// should a deploy be under way); an error naming host and role when none
/// runs.
pub async fn role_container(host: &Host, service: &str, role: &str) -> Result<String> {
    let found = crate::release::observe(host.engine(), service).await?;
    found
        .into_iter()
        .find(|c| c.running && c.role == role)
        .map(|c| c.name)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("find the running container of role {role}"),
                format_args!("no container of role `{role}` runs on this host"),
            )
            .on(host.name())
            .hint("`ballast status` shows what each host runs; `ballast deploy` starts the role again")
        })
}

/// Runs `command` in `container` on `host`, handing its output to `io`
/// until it ends; returns its exit code. Cancelled through
/// [`Io::cancel`], it is stopped (see the module's doc) and the result is
/// an [`ErrorKind::Interrupted`] error.
pub async fn run(host: &Host, container: &str, command: &Command, io: Io<'_>) -> Result<i64> {
    let engine = host.engine();
    let docker = engine.docker();
    let step = format!("start {:?} in {container}", command.argv.join(" "));
    if command.argv.is_empty() {
        return Err(Error::input(&step, "no command given")
            .hint("give it after `--`: `ballast exec web -- ls -l`"));
    }
    let tty = command.tty.is_some();
    let created = engine
        .call(
            &step,
            docker.create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(command.argv.clone()),
                    attach_stdin: Some(command.stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    ..Default::default()
                },
            ),
        )
        .await
        .map_err(|e| not_running(e, container))?;
    let options = StartExecOptions {
        detach: false,
        tty,
        output_capacity: None,
    };
    let started = engine
        .call(&step, docker.start_exec(&created.id, Some(options)))
        .await?;
    let StartExecResults::Attached { mut output, input } = started else {
        return Err(Error::failed(&step, "the engine did not attach the command").on(host.name()));
    };
    if let Some(size) = command.tty {
        resize(host, &created.id, size).await;
    }
    let feeding = tokio::spawn(feed(input, io.input.filter(|_| command.stdin)));
    let mut resizes = io.resizes.filter(|_| tty);
    let cancel = io.cancel;
    let sink = io.output;
    // Once cancelled: when to escalate, and to what (SIGKILL, then giving
    // up on an engine that never ends the output).
    let mut stopping: Option<(tokio::time::Instant, Escalation)> = None;
    loop {
        let escalate = async {
            match stopping {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            chunk = output.next() => match chunk {
                None => break,
                Some(Ok(chunk)) => sink(match chunk {
                    bollard::container::LogOutput::StdErr { message } => Output::Stderr(message),
                    other => Output::Stdout(other.into_bytes()),
                }),
                Some(Err(e)) if stopping.is_some() => {
                    tracing::debug!("output of a stopped command: {e}");
                    break;
                }
                Some(Err(e)) => {
                    feeding.abort();
                    return Err(engine.error(&format!("read the output of {container}"), e));
                }
            },
            size = next_size(&mut resizes) => match size {
                Some(size) => resize(host, &created.id, size).await,
                None => resizes = None,
            },
            () = cancel.cancelled(), if stopping.is_none() => {
                let first = if tty { "HUP" } else { "INT" };
                signal(host, &created.id, first).await;
                stopping = Some((tokio::time::Instant::now() + STOP_GRACE, Escalation::Kill));
            }
            () = escalate => match stopping {
                Some((_, Escalation::Kill)) => {
                    signal(host, &created.id, "KILL").await;
                    stopping = Some((tokio::time::Instant::now() + STOP_GRACE, Escalation::GiveUp));
                }
                _ => break,
            },
        }
    }
    feeding.abort();
    if stopping.is_some() {
        return Err(Error::new(
            ErrorKind::Interrupted,
            format!("run {:?} in {container}", command.argv.join(" ")),
            "interrupted: the command was stopped",
        )
        .on(host.name()));
    }
    exit_code(host, &created.id, container).await
}

/// What a cancelled command gets next if it has not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escalation {
    /// SIGKILL.
    Kill,
    /// Nothing more: stop waiting for its output.
    GiveUp,
}

/// Copies `input` to the command's stdin, then closes it (end of input).
async fn feed(
    mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    input: Option<mpsc::Receiver<Bytes>>,
) {
    if let Some(mut input) = input {
        while let Some(chunk) = input.recv().await {
            if stdin.write_all(&chunk).await.is_err() || stdin.flush().await.is_err() {
                return;
            }
        }
    }
    let _ = stdin.shutdown().await;
}

async fn next_size(resizes: &mut Option<mpsc::Receiver<TtySize>>) -> Option<TtySize> {
    match resizes {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Sets the command's terminal size; a failure only costs the layout.
async fn resize(host: &Host, exec: &str, size: TtySize) {
    let engine = host.engine();
    let options = ResizeExecOptions {
        height: size.rows,
        width: size.cols,
    };
    let result = engine
        .call(
            "resize the terminal",
            engine.docker().resize_exec(exec, options),
        )
        .await;
    if let Err(e) = result {
        tracing::debug!("{e}");
    }
}

/// Sends `signal` (`INT`, `HUP`, `KILL`) to the command's process on its
/// host, where the engine reports its PID; best effort.
async fn signal(host: &Host, exec: &str, signal: &str) {
    let Ok(inspected) = inspect(host, exec).await else {
        return;
    };
    let Some(pid) = inspected
        .pid
        .filter(|p| *p > 0 && inspected.running == Some(true))
    else {
        return;
    };
    let pid = pid.to_string();
    let sent = host
        .run("kill", &["-s", signal, &pid], None, CALL_DEADLINE)
        .await;
    match sent {
        Ok(out) if out.success() => {}
        Ok(out) => tracing::warn!(
            "kill -s {signal} {pid} on {}: {}",
            host.name(),
            out.stderr.trim()
        ),
        Err(e) => tracing::warn!("{e}"),
    }
}

async fn inspect(host: &Host, exec: &str) -> Result<ExecInspectResponse> {
    let engine = host.engine();
    engine
        .call("inspect the command", engine.docker().inspect_exec(exec))
        .await
}

/// The exit code of an ended command, once the engine has recorded it.
async fn exit_code(host: &Host, exec: &str, container: &str) -> Result<i64> {
    let step = format!("read the exit code of the command in {container}");
    let until = tokio::time::Instant::now() + EXIT_DEADLINE;
    loop {
        let inspected = inspect(host, exec).await?;
        if inspected.running != Some(true) {
            if let Some(code) = inspected.exit_code {
                return Ok(code);
            }
        }
        if tokio::time::Instant::now() >= until {
            return Err(Error::timeout(step, EXIT_DEADLINE).on(host.name()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A container that stopped between being found and the exec, in words.
fn not_running(e: Error, container: &str) -> Error {
    if e.kind == ErrorKind::Conflict || e.cause.contains("is not running") {
        let hint = "`ballast status` shows what each host runs";
        return Error {
            cause: format!("{container} is not running"),
            hint: Some(hint.into()),
            ..e
        };
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a, b]\n  worker:\n    hosts: [c]\n";
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_first_host_of_the_role_unless_told() {
        let c = config();
        assert_eq!(hosts_for(&c, "web", None, false).unwrap(), ["a"]);
        assert_eq!(hosts_for(&c, "web", None, true).unwrap(), ["a", "b"]);
        assert_eq!(hosts_for(&c, "web", Some("b"), false).unwrap(), ["b"]);
        assert_eq!(hosts_for(&c, "worker", None, true).unwrap(), ["c"]);
    }

    #[test]
    fn a_host_or_role_not_in_the_config_is_refused_with_the_choices() {
        let c = config();
        let e = hosts_for(&c, "web", Some("c"), false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Input);
        assert_eq!(
            e.to_string(),
            "choose the host: `c` is not a host of role `web`"
        );
        assert_eq!(e.hint.as_deref(), Some("the hosts of `web`: a, b"));
        let e = hosts_for(&c, "db", None, false).unwrap_err();
        assert_eq!(e.to_string(), "choose the role: no role `db` in the config");
        assert_eq!(e.hint.as_deref(), Some("the config's roles: web, worker"));
    }
}
