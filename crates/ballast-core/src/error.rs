//! The one error type of ballast: which host, which step, what went wrong, and
//! what to do next. Every failure a user sees is one of these.

use std::fmt;

/// What kind of failure this is; the CLI maps kinds to exit codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The user asked for something invalid; nothing was changed.
    Input,
    /// The thing asked about does not exist.
    NotFound,
    /// The thing to create already exists, or someone else holds it.
    Conflict,
    /// A host or engine did not answer.
    Unreachable,
    /// A wait ran past its deadline.
    Timeout,
    /// An operation was attempted and failed.
    Failed,
    /// The user stopped the command (Ctrl-C); what it started was undone.
    Interrupted,
}

/// A failure with its host (if any), the step that failed, the cause, and a
/// hint saying what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// The host the step ran against; `None` for local-only steps.
    pub host: Option<String>,
    /// What ballast was doing, in a few words ("create network").
    pub step: String,
    /// What went wrong, as reported by the engine, SSH or the OS.
    pub cause: String,
    /// The next action for the user.
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, step: impl Into<String>, cause: impl fmt::Display) -> Error {
        Error {
            kind,
            host: None,
            step: step.into(),
            cause: cause.to_string(),
            hint: None,
        }
    }

    pub fn input(step: impl Into<String>, cause: impl fmt::Display) -> Error {
        Error::new(ErrorKind::Input, step, cause)
    }

    pub fn failed(step: impl Into<String>, cause: impl fmt::Display) -> Error {
        Error::new(ErrorKind::Failed, step, cause)
    }

    /// A deadline passed; says how long was waited.
    pub fn timeout(step: impl Into<String>, after: std::time::Duration) -> Error {
        Error::new(
            ErrorKind::Timeout,
            step,
            format_args!("no answer within {}", humanize(after)),
        )
    }

    /// Names the host this error happened on.
    pub fn on(mut self, host: impl Into<String>) -> Error {
        self.host = Some(host.into());
        self
    }

    /// Adds what the user should do next.
    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    pub fn kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "{host}: ")?;
        }
        write!(f, "{}: {}", self.step, self.cause)
    }
}

impl std::error::Error for Error {}

impl miette::Diagnostic for Error {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
}

/// "1.5s", "30s", "2m": durations as people write them in errors.
pub fn humanize(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn display_names_host_step_and_cause() {
        let e = Error::failed("start container", "port is taken").on("web-1");
        assert_eq!(e.to_string(), "web-1: start container: port is taken");
        let local = Error::input("read config", "no such file");
        assert_eq!(local.to_string(), "read config: no such file");
    }

    #[test]
    fn hint_is_the_diagnostic_help() {
        use miette::Diagnostic;
        let e = Error::input("x", "y").hint("do z");
        assert_eq!(e.help().unwrap().to_string(), "do z");
    }

    #[test]
    fn timeouts_say_how_long() {
        let e = Error::timeout("wait for sshd", Duration::from_secs(60));
        assert_eq!(e.cause, "no answer within 1m");
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert_eq!(humanize(Duration::from_millis(1500)), "1.5s");
        assert_eq!(humanize(Duration::from_millis(250)), "250ms");
        assert_eq!(humanize(Duration::from_secs(45)), "45s");
    }
}
