//! The one printer: every line ballast shows goes through here. On a terminal,
//! long phases get a spinner; elsewhere, plain timestamped lines; with
//! `--json`, one JSON object per line on stdout. Progress goes to stderr and
//! results to stdout, so `ballast ... > file` keeps only the result.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_core::redact::redact;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

pub struct Printer {
    json: bool,
    tty: bool,
    /// The spinner of the phase under way, on a terminal only.
    spinner: Mutex<Option<ProgressBar>>,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            tty: !json && std::io::stderr().is_terminal(),
            spinner: Mutex::new(None),
        }
    }

    /// Whether output is JSON lines (`--json`).
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// A phase that may take a while begins ("building the host image").
    pub fn phase(&self, message: &str) {
        if self.tty {
            self.finish();
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                    .expect("static template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_message(redact(message).into_owned());
            *self.spinner.lock().expect("printer lock") = Some(bar);
        } else {
            self.line(None, message);
        }
    }

    /// A step of progress, optionally about one host.
    pub fn progress(&self, host: Option<&str>, message: &str) {
        let spinner = self.spinner.lock().expect("printer lock");
        match spinner.as_ref() {
            Some(bar) if host.is_none() => bar.set_message(redact(message).into_owned()),
            Some(bar) => bar.println(redact(&prefixed(host, message))),
            None => {
                drop(spinner);
                self.line(host, message)
            }
        }
    }

    /// Ends the phase under way, if any.
    pub fn finish(&self) {
        if let Some(bar) = self.spinner.lock().expect("printer lock").take() {
            bar.finish_and_clear();
        }
    }

    fn line(&self, host: Option<&str>, message: &str) {
        if self.json {
            stdout(
                &json!({"type": "progress", "time": now_utc(), "host": host, "message": message})
                    .to_string(),
            );
        } else if self.tty {
            eprintln!("{}", redact(&prefixed(host, message)));
        } else {
            eprintln!("{} {}", now_utc(), redact(&prefixed(host, message)));
        }
    }

    /// The outcome of a command: `human` as text, or `value` as JSON.
    pub fn result<T: Serialize>(&self, value: &T, human: &str) {
        self.finish();
        if self.json {
            stdout(&result_json(value).to_string());
        } else if !human.is_empty() {
            stdout(human.trim_end());
        }
    }

    /// Like [`Printer::result`], but what it prints is not redacted: the one
    /// way a secret value reaches any output, used only by `ballast secrets
    /// print --reveal`, where the operator asked for the values. Progress
    /// and errors stay redacted.
    pub fn reveal_result<T: Serialize>(&self, value: &T, human: &str) {
        self.finish();
        if self.json {
            write_line(&result_json(value).to_string());
        } else if !human.is_empty() {
            write_line(human.trim_end());
        }
    }

    /// One line of a container's log, prefixed by where it came from.
    pub fn log(&self, host: &str, role: &str, time: &str, text: &str) {
        if self.json {
            stdout(
                &json!({"type": "log", "host": host, "role": role, "time": time, "line": text})
                    .to_string(),
            );
        } else {
            stdout(&format!("{host} {role} | {text}"));
        }
    }

    /// Output of a command run in a container (`ballast exec`), passed on
    /// as it came, on stdout or stderr as the command wrote it: text with
    /// secret values redacted like every output, anything else (binary
    /// output) byte for byte.
    pub fn passthrough(&self, to_stderr: bool, bytes: &[u8]) {
        use std::io::Write;
        let redacted = std::str::from_utf8(bytes).ok().map(redact);
        let bytes = redacted.as_deref().map_or(bytes, str::as_bytes);
        let written = if to_stderr {
            let mut err = std::io::stderr().lock();
            err.write_all(bytes).and_then(|()| err.flush())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        };
        if written.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            std::process::exit(0);
        }
    }

    /// One line a command printed on `host` (`ballast exec --all`),
    /// prefixed by the host, on stdout or stderr as the command wrote it.
    pub fn exec_line(&self, host: &str, to_stderr: bool, text: &str) {
        if self.json {
            let stream = if to_stderr { "stderr" } else { "stdout" };
            stdout(
                &json!({"type": "output", "host": host, "stream": stream, "line": text})
                    .to_string(),
            );
        } else if to_stderr {
            eprintln!("{}", redact(&prefixed(Some(host), text)));
        } else {
            stdout(&prefixed(Some(host), text));
        }
    }

    /// An error, with its hint, the way miette draws it (and as JSON too).
    pub fn error(&self, err: &ballast_core::Error) {
        self.finish();
        if self.json {
            stdout(&error_json(err).to_string());
        }
        eprintln!(
            "{}",
            redact(&format!("{:?}", miette::Report::new(err.clone())))
        );
    }
}

/// A result as `--json` prints it: the value's fields and `"type": "result"`
/// (a value that is not an object comes as `"value"`).
pub fn result_json<T: Serialize>(value: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(value).expect("results serialize");
    if let Some(obj) = v.as_object_mut() {
        obj.insert("type".into(), "result".into());
    } else {
        v = json!({"type": "result", "value": v});
    }
    v
}

/// An error as `--json` prints it on stdout (stderr still shows it drawn).
pub fn error_json(err: &ballast_core::Error) -> serde_json::Value {
    json!({"type": "error", "kind": err.kind, "host": err.host, "step": err.step,
           "cause": err.cause, "hint": err.hint})
}

/// An error drawn as stderr shows it when it is not a terminal (as in CI,
/// or `2> file`): what `main`'s miette hook draws there, with no colour.
#[cfg(test)]
pub fn error_text(err: &ballast_core::Error) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(80)
            .with_links(false)
            .with_wrap_lines(false);
    let mut text = String::new();
    handler
        .render_report(&mut text, err)
        .expect("errors render");
    text
}

/// One line on stdout, redacted.
fn stdout(line: &str) {
    write_line(&redact(line));
}

/// One line on stdout as it is. A reader that went away (`ballast logs |
/// head`) ends the command quietly, as it would end `cat`.
fn write_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

fn prefixed(host: Option<&str>, message: &str) -> String {
    match host {
        Some(h) => format!("{h} | {message}"),
        None => message.to_string(),
    }
}

/// Wall-clock UTC time as HH:MM:SS, for plain (non-terminal) output.
fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}
