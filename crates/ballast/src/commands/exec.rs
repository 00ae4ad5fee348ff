//! `ballast exec ROLE -- COMMAND...`: picks the hosts and the role's
//! container there through [`ballast_core::exec`], wires the operator's
//! terminal for `-i` ([`terminal`]) and prints what the command prints.
//! On one host (without `--json`) the output passes through byte for
//! byte; with `--all` (or `--json`) it comes line by line, prefixed by host.

mod terminal;

use std::path::Path;

use ballast_core::exec::{self, Command, Io, Output};
use ballast_core::fleet::Fleet;
use ballast_core::host::Host;
use ballast_core::{Error, ErrorKind, Result};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::ExecArgs;
use crate::commands::service;
use crate::exit;
use crate::output::Printer;

/// How one host's command ended, for `--json` and the exit code.
#[derive(Debug, Serialize)]
struct Ended {
    host: String,
    /// The command's exit code, once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i64>,
    /// Why it did not run (or was stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The code this host gives ballast's exit code.
    #[serde(skip)]
    code: i32,
}

pub async fn run(config: &Path, accept_new: bool, args: ExecArgs, out: &Printer) -> Result<i32> {
    let loaded = service::load(config)?;
    let c = &loaded.config;
    let hosts = exec::hosts_for(c, &args.role, args.host.as_deref(), args.all)?;
    let reach = service::reach(&loaded, accept_new);
    let fleet = Fleet::connect(&hosts, &reach, service::concurrency(&loaded)).await;
    let result = if args.all {
        Ok(on_every_host(&fleet, &hosts, &c.service, &args, out).await)
    } else {
        on_one_host(&fleet, &c.service, &args, out, out.is_json()).await
    };
    fleet.close().await;
    result
}

/// The command on one host: its output as it comes, its code as ours.
async fn on_one_host(
    fleet: &Fleet,
    service: &str,
    args: &ExecArgs,
    out: &Printer,
    lines: bool,
) -> Result<i32> {
    fleet.require_all("connect to the host")?;
    let host = fleet.primary().expect("one host, connected");
    let container = exec::role_container(host, service, &args.role).await?;
    let tty = args.interactive && !lines && terminal::stdin_is_terminal();
    let command = Command {
        argv: args.command.clone(),
        stdin: args.interactive,
        tty: tty.then(|| terminal::size().unwrap_or(exec::TtySize { rows: 24, cols: 80 })),
    };
    let cancel = if tty {
        crate::signals::cancel_on_any_signal()
    } else {
        crate::signals::cancel_on_signals()
    };
    let mut split = LineSplit::default();
    let mut sink = |o: Output| {
        if lines {
            split.push(host.name(), o, out);
        } else {
            match o {
                Output::Stdout(b) => out.passthrough(false, &b),
                Output::Stderr(b) => out.passthrough(true, &b),
            }
        }
    };
    let io = Io {
        input: args.interactive.then(terminal::input),
        resizes: tty.then(terminal::sizes),
        output: &mut sink,
        cancel,
    };
    let raw = match tty {
        true => Some(terminal::RawMode::enable().map_err(|e| {
            Error::failed("put the terminal in raw mode", e)
                .hint("run without -i, or from a terminal")
        })?),
        false => None,
    };
    let ran = exec::run(host, &container, &command, io).await;
    drop(raw);
    split.finish(host.name(), out);
    let code = ran?;
    if lines {
        out.result(&ended(host.name(), Ok(code)), "");
    }
    Ok(exit::of_command(code))
}

/// The command on every host at once: lines prefixed by host; the code is
/// the first non-zero one in host order.
async fn on_every_host(
    fleet: &Fleet,
    hosts: &[String],
    service: &str,
    args: &ExecArgs,
    out: &Printer,
) -> i32 {
    let cancel = crate::signals::cancel_on_signals();
    let command = Command {
        argv: args.command.clone(),
        stdin: false,
        tty: None,
    };
    let ran = fleet
        .each(|host| {
            let (command, cancel) = (&command, cancel.clone());
            async move { one_of_many(host, service, &args.role, command, cancel, out).await }
        })
        .await;
    let mut all: Vec<Ended> = Vec::new();
    for name in hosts {
        let result = match ran.iter().find(|(h, _)| h == name) {
            Some((_, r)) => r.clone(),
            None => Err(fleet
                .unreachable
                .iter()
                .find(|e| e.host.as_deref() == Some(name))
                .cloned()
                .unwrap_or_else(|| {
                    Error::new(ErrorKind::Unreachable, "connect", "did not answer").on(name)
                })),
        };
        if let Err(e) = &result {
            out.progress(Some(name), &format!("{}: {}", e.step, e.cause));
        }
        all.push(ended(name, result));
    }
    let code = all.iter().map(|e| e.code).find(|c| *c != 0).unwrap_or(0);
    let failed: Vec<String> = all
        .iter()
        .filter(|e| e.code != 0)
        .map(|e| match e.exit_code {
            Some(c) => format!("{}: exit code {c}", e.host),
            None => format!("{}: did not run", e.host),
        })
        .collect();
    out.result(&serde_json::json!({ "hosts": all }), &failed.join("\n"));
    code
}

/// The command on one host of many, its lines printed as they come.
async fn one_of_many(
    host: &Host,
    service: &str,
    role: &str,
    command: &Command,
    cancel: CancellationToken,
    out: &Printer,
) -> Result<i64> {
    let container = exec::role_container(host, service, role).await?;
    let mut split = LineSplit::default();
    let mut sink = |o: Output| split.push(host.name(), o, out);
    let io = Io {
        input: None,
        resizes: None,
        output: &mut sink,
        cancel,
    };
    let ran = exec::run(host, &container, command, io).await;
    split.finish(host.name(), out);
    ran
}

fn ended(host: &str, result: Result<i64>) -> Ended {
    match result {
        Ok(c) => Ended {
            host: host.to_string(),
            exit_code: Some(c),
            error: None,
            code: exit::of_command(c),
        },
        Err(e) => Ended {
            host: host.to_string(),
            exit_code: None,
            error: Some(format!("{}: {}", e.step, e.cause)),
            code: exit::code(e.kind),
        },
    }
}

/// Output cut into lines for the printer, stdout and stderr apart; a last
/// line without a newline is printed at the end.
#[derive(Default)]
struct LineSplit {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl LineSplit {
    fn push(&mut self, host: &str, output: Output, out: &Printer) {
        let (buf, to_stderr, bytes) = match output {
            Output::Stdout(b) => (&mut self.stdout, false, b),
            Output::Stderr(b) => (&mut self.stderr, true, b),
        };
        buf.extend_from_slice(&bytes);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            out.exec_line(host, to_stderr, text.trim_end_matches('\r'));
        }
    }

    fn finish(&mut self, host: &str, out: &Printer) {
        for (buf, to_stderr) in [(&mut self.stdout, false), (&mut self.stderr, true)] {
            if !buf.is_empty() {
                out.exec_line(host, to_stderr, &String::from_utf8_lossy(buf));
                buf.clear();
            }
        }
    }
}
