//! Secret values that are commands: a secrets-file value written
//! `$(op read op://vault/db/password)` is run on this machine and what it
//! prints is the value. This module owns the grammar of such a value (the
//! words, split as a POSIX shell would but with no shell: pipes, `;`, `&&`,
//! redirections, `$VAR`, `~` and the like are refused), running the
//! commands (in parallel, stdin closed, stderr discarded, with a deadline)
//! and the words of their errors, which name the secret, the file and the
//! line but never quote the line or anything the command printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::error::ConfigError;
use crate::error::humanize;

/// How long a command may run unless [`DEADLINE_VAR`] says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// The environment variable that sets another deadline (`30s`, `2m`).
pub const DEADLINE_VAR: &str = "BALLAST_SECRET_TIMEOUT";

/// The least and most [`DEADLINE_VAR`] may say: a shorter deadline would
/// stop a password manager mid-answer, a longer one would hide a hang.
pub const DEADLINE_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

/// How many commands run at once: enough for a config's secrets, few
/// enough not to flood a password manager with sign-in prompts.
const PARALLEL: usize = 8;

/// The most a command may print: a secret is not a megabyte.
const MAX_OUTPUT: usize = 1 << 20;

/// Whether a value (as dotenv unquoted it) is a command: it starts with `$(`.
pub(crate) fn is_command(value: &str) -> bool {
    value.starts_with("$(")
}

/// Why a `$(...)` value cannot be run, found before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The value starts with `$(` but does not end with `)`.
    Unclosed,
    /// `$()`: no command inside.
    Empty,
    /// A quote opened and never closed.
    UnclosedQuote,
    /// Something only a shell would do, in words (`a pipe (`|`)`).
    ShellFeature(&'static str),
}

/// The words of the command a `$(...)` value holds, split as a POSIX shell
/// would (quotes and backslashes), refusing what only a shell could run.
pub(crate) fn words(value: &str) -> Result<Vec<String>, Refusal> {
    let inner = value
        .strip_prefix("$(")
        .and_then(|v| v.strip_suffix(')'))
        .ok_or(Refusal::Unclosed)?;
    if let Some(feature) = shell_feature(inner) {
        return Err(Refusal::ShellFeature(feature));
    }
    let words = shlex::split(inner).ok_or(Refusal::UnclosedQuote)?;
    match words.first() {
        None => Err(Refusal::Empty),
        Some(first) if first.contains('=') => Err(Refusal::ShellFeature(
            "a variable assignment (`NAME=value command`)",
        )),
        Some(_) => Ok(words),
    }
}

/// The first shell feature `text` uses, read with a shell's quoting rules:
/// nothing is special in single quotes, `$` and `` ` `` still are in double
/// quotes, a backslash takes the next character as it is.
fn shell_feature(text: &str) -> Option<&'static str> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut word_start = true;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Quote::Single => {
                if c == '\'' {
                    quote = Quote::None;
                }
            }
            Quote::Double => match c {
                '\\' => {
                    chars.next();
                }
                '"' => quote = Quote::None,
                '$' => return Some("a variable or substitution (`$`)"),
                '`' => return Some("a command substitution (`` ` ``)"),
                _ => {}
            },
            Quote::None => {
                let feature = match c {
                    '\\' => {
                        chars.next();
                        None
                    }
                    '\'' => {
                        quote = Quote::Single;
                        None
                    }
                    '"' => {
                        quote = Quote::Double;
                        None
                    }
                    '|' => Some("a pipe (`|`)"),
                    ';' => Some("a command separator (`;`)"),
                    '&' => Some("`&` (`&&` or a background job)"),
                    '<' | '>' => Some("a redirection (`<` or `>`)"),
                    '$' => Some("a variable or substitution (`$`)"),
                    '`' => Some("a command substitution (`` ` ``)"),
                    '(' | ')' => Some("a subshell or group (`(` `)`)"),
                    '\n' | '\r' => Some("a line break"),
                    '~' if word_start => Some("a home directory (`~`)"),
                    '#' if word_start => Some("a comment (`#`)"),
                    _ => None,
                };
                if feature.is_some() {
                    return feature;
                }
                word_start = c == ' ' || c == '\t';
            }
        }
    }
    None
}

/// The deadline [`DEADLINE_VAR`] sets (`var` is its value, if set): a
/// duration like `30s` or `2m`, or a number of seconds, within
/// [`DEADLINE_RANGE`].
pub(crate) fn deadline(var: Option<&str>) -> Result<Duration, ConfigError> {
    let Some(text) = var.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(DEFAULT_DEADLINE);
    };
    let (least, most) = DEADLINE_RANGE;
    let parsed = match text.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text).ok(),
    };
    match parsed {
        Some(d) if (least..=most).contains(&d) => Ok(d),
        _ => Err(ConfigError::whole_file(
            Path::new(DEADLINE_VAR),
            format!(
                "`{text}` is not a deadline between {} and {}",
                humanize(least),
                humanize(most)
            ),
        )
        .with_hint(format!(
            "write it like 30s or 2m, or unset {DEADLINE_VAR} for the default of {}",
            humanize(DEFAULT_DEADLINE)
        ))),
    }
}

/// Why a command gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// It could not be started (not found, not executable).
    NotStarted(std::io::ErrorKind),
    /// It exited unsuccessfully: with this status, or (`None`) by a signal.
    Exited(Option<i32>),
    /// It was still running at the deadline, and was stopped.
    TimedOut(Duration),
    /// It succeeded but printed nothing on stdout.
    PrintedNothing,
    /// What it printed is not UTF-8 text.
    NotText,
    /// It printed more than [`MAX_OUTPUT`] bytes.
    TooLong,
    /// Its output or its end could not be read.
    Lost(std::io::ErrorKind),
}

/// Runs each command of `commands` (the words of one) with `dir` as its
/// working directory, up to [`PARALLEL`] at a time, each within `deadline`;
/// the results come in the order of `commands`.
pub(crate) fn run_all(
    commands: &[Vec<String>],
    dir: &Path,
    deadline: Duration,
) -> Vec<Result<String, Failure>> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..commands.len().min(PARALLEL) {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(words) = commands.get(i) else { break };
                let _ = tx.send((i, run(words, dir, deadline)));
            });
        }
    });
    drop(tx);
    let mut results: Vec<(usize, Result<String, Failure>)> = rx.into_iter().collect();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Runs one command: stdin closed, stderr discarded (it may hold the
/// secret), stdout read whole; its value is stdout less one trailing
/// newline. A relative program path (`.ballast/bin/x`) is taken from `dir`.
pub(crate) fn run(words: &[String], dir: &Path, deadline: Duration) -> Result<String, Failure> {
    let started = Instant::now();
    let (program, args) = words
        .split_first()
        .ok_or(Failure::NotStarted(std::io::ErrorKind::InvalidInput))?;
    let program = if program.contains('/') {
        dir.join(program)
    } else {
        PathBuf::from(program)
    };
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Failure::NotStarted(e.kind()))?;
    let Some(mut stdout) = child.stdout.take() else {
        stop(&mut child);
        return Err(Failure::Lost(std::io::ErrorKind::BrokenPipe));
    };
    // Read on a thread of its own, so the deadline holds even when the
    // command (or a process it started) keeps its stdout open.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = (&mut stdout)
            .take(MAX_OUTPUT as u64 + 1)
            .read_to_end(&mut out);
        let _ = tx.send(read.map(|_| out));
    });
    let out = match rx.recv_timeout(deadline) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            stop(&mut child);
            return Err(Failure::Lost(e.kind()));
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            stop(&mut child);
            return Err(Failure::TimedOut(deadline));
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            stop(&mut child);
            return Err(Failure::Lost(std::io::ErrorKind::BrokenPipe));
        }
    };
    if out.len() > MAX_OUTPUT {
        stop(&mut child);
        return Err(Failure::TooLong);
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                stop(&mut child);
                return Err(Failure::TimedOut(deadline));
            }
            Err(e) => {
                stop(&mut child);
                return Err(Failure::Lost(e.kind()));
            }
        }
    };
    if !status.success() {
        return Err(Failure::Exited(status.code()));
    }
    let mut value = String::from_utf8(out).map_err(|_| Failure::NotText)?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(Failure::PrintedNothing);
    }
    Ok(value)
}

/// Kills a command still running and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What went wrong with the command of secret `name`, at `line` of the
/// secrets file `path`: named, located, never quoting the line or output.
pub(crate) struct Problem<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub line: usize,
}

impl Problem<'_> {
    /// The error for a command refused before running.
    pub(crate) fn refused(&self, refusal: &Refusal) -> ConfigError {
        let name = self.name;
        let (what, hint) = match refusal {
            Refusal::Unclosed => (
                "its value starts with `$(` but does not end with `)`".to_string(),
                format!(
                    "write the command as the whole value: {name}=$(command arguments); a value that really starts with `$(` can come from the environment instead"
                ),
            ),
            Refusal::Empty => (
                "its value `$()` names no command".to_string(),
                format!("write the command inside: {name}=$(op read op://vault/item/field)"),
            ),
            Refusal::UnclosedQuote => (
                "its command has a quote that is never closed".to_string(),
                "close the quote; the command is split into words as a shell would, but no shell runs it".to_string(),
            ),
            Refusal::ShellFeature(feature) => (
                format!("its command uses {feature}, which needs a shell; ballast runs the command itself, without one"),
                self.script_hint(),
            ),
        };
        self.error(&what).with_hint(hint)
    }

    /// The error for a command that ran and gave no value.
    pub(crate) fn failed(&self, failure: &Failure) -> ConfigError {
        let by_hand = self.by_hand();
        let (what, hint) = match failure {
            Failure::NotStarted(kind) if *kind == std::io::ErrorKind::NotFound => (
                "its command could not be started: the program was not found".to_string(),
                "install the program or put it on PATH; a relative path such as .ballast/bin/NAME is taken from the config's directory".to_string(),
            ),
            Failure::NotStarted(kind) => (
                format!("its command could not be started ({kind})"),
                "check that the program is an executable file (chmod +x)".to_string(),
            ),
            Failure::Exited(Some(code)) => (
                format!("its command exited with status {code}"),
                by_hand,
            ),
            Failure::Exited(None) => ("its command was killed by a signal".to_string(), by_hand),
            Failure::TimedOut(d) => (
                format!("its command did not finish within {} (it was stopped)", humanize(*d)),
                format!(
                    "{by_hand}; it gets no input, so a command that asks for a password waits forever: sign in first (e.g. `op signin`); if it needs longer, set {DEADLINE_VAR} (e.g. 30s, at most {})",
                    humanize(DEADLINE_RANGE.1)
                ),
            ),
            Failure::PrintedNothing => (
                "its command printed nothing".to_string(),
                format!("{by_hand}; the value is what it prints on stdout"),
            ),
            Failure::NotText => (
                "its command printed something that is not UTF-8 text".to_string(),
                "a secret must be text; encode binary values (base64) in the command".to_string(),
            ),
            Failure::TooLong => (
                format!("its command printed more than {} KiB", MAX_OUTPUT / 1024),
                format!("{by_hand}; the value is all it prints on stdout"),
            ),
            Failure::Lost(kind) => (
                format!("its command's output could not be read ({kind})"),
                by_hand,
            ),
        };
        self.error(&format!(
            "{what} (what it printed is not shown: it may be secret)"
        ))
        .with_hint(hint)
    }

    fn error(&self, what: &str) -> ConfigError {
        ConfigError::at_line(
            self.path,
            self.line,
            format!("secret `{}`: {what}", self.name),
        )
    }

    fn by_hand(&self) -> String {
        format!(
            "run the command on line {} of {} by hand to see its error output",
            self.line,
            self.path.display()
        )
    }

    fn script_hint(&self) -> String {
        let script = format!(
            ".ballast/bin/{}",
            self.name.to_lowercase().replace('_', "-")
        );
        format!(
            "wrap it in a script ({script}, made executable) and write {}=$({script})",
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_command_is_split_into_words_without_a_shell() {
        assert_eq!(
            words("$(op read op://vault/db/password)"),
            Ok(w(&["op", "read", "op://vault/db/password"]))
        );
        // Quotes group words and keep what only a shell would treat.
        assert_eq!(
            words(r#"$(vault kv get -field="pass word" 'secret/a|b;c$d')"#),
            Ok(w(&[
                "vault",
                "kv",
                "get",
                "-field=pass word",
                "secret/a|b;c$d"
            ]))
        );
        assert_eq!(words(r"$(echo a\|b)"), Ok(w(&["echo", "a|b"])));
        assert_eq!(words("$(op read x#y)"), Ok(w(&["op", "read", "x#y"])));
    }

    #[test]
    fn shell_features_are_refused_by_name() {
        for (value, feature) in [
            ("$(op read x | base64 -d)", "a pipe (`|`)"),
            ("$(op signin; op read x)", "a command separator (`;`)"),
            (
                "$(op signin && op read x)",
                "`&` (`&&` or a background job)",
            ),
            ("$(cat x > y)", "a redirection (`<` or `>`)"),
            ("$(cat < y)", "a redirection (`<` or `>`)"),
            ("$(op read $VAULT/x)", "a variable or substitution (`$`)"),
            (r#"$(op read "$VAULT")"#, "a variable or substitution (`$`)"),
            ("$(op read `cat f`)", "a command substitution (`` ` ``)"),
            ("$(cat ~/.db-password)", "a home directory (`~`)"),
            ("$((cat x))", "a subshell or group (`(` `)`)"),
            ("$(op read x # note)", "a comment (`#`)"),
            ("$(op read x\nrm y)", "a line break"),
            (
                "$(OP_ACCOUNT=me op read x)",
                "a variable assignment (`NAME=value command`)",
            ),
        ] {
            assert_eq!(words(value), Err(Refusal::ShellFeature(feature)), "{value}");
        }
        assert_eq!(words("$(op read x"), Err(Refusal::Unclosed));
        assert_eq!(words("$(  )"), Err(Refusal::Empty));
        assert_eq!(words("$(op read 'x)"), Err(Refusal::UnclosedQuote));
    }

    #[test]
    fn the_deadline_comes_from_the_variable_within_bounds() {
        assert_eq!(deadline(None).unwrap(), Duration::from_secs(10));
        assert_eq!(deadline(Some("")).unwrap(), Duration::from_secs(10));
        assert_eq!(deadline(Some("30s")).unwrap(), Duration::from_secs(30));
        assert_eq!(deadline(Some("2m")).unwrap(), Duration::from_secs(120));
        assert_eq!(deadline(Some("45")).unwrap(), Duration::from_secs(45));
        for bad in ["0", "500ms", "6m", "soon"] {
            let e = deadline(Some(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("BALLAST_SECRET_TIMEOUT: `{bad}` is not a deadline between 1s and 5m")
            );
            assert!(e.hint().unwrap().contains("30s or 2m"));
        }
    }

    #[test]
    fn a_command_that_succeeds_gives_its_stdout_less_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let run = |words: &[&str]| run(&w(words), dir.path(), DEFAULT_DEADLINE);
        assert_eq!(run(&["echo", "s3cr3t"]), Ok("s3cr3t".to_string()));
        assert_eq!(
            run(&["printf", "two\\nlines\\n\\n"]),
            Ok("two\nlines\n".to_string())
        );
        assert_eq!(run(&["printf", "crlf\\r\\n"]), Ok("crlf".to_string()));
        // Stdin is closed and stderr is not part of the value.
        assert_eq!(
            run(&["sh", "-c", "cat; echo noise >&2; echo value"]),
            Ok("value".to_string())
        );
        // A relative program is taken from the config's directory.
        std::fs::create_dir_all(dir.path().join(".ballast/bin")).unwrap();
        let script = dir.path().join(".ballast/bin/get");
        std::fs::write(&script, "#!/bin/sh\necho from-script\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(run(&[".ballast/bin/get"]), Ok("from-script".to_string()));
    }

    #[test]
    fn a_command_that_fails_says_how() {
        let dir = tempfile::tempdir().unwrap();
        let run = |words: &[&str]| run(&w(words), dir.path(), DEFAULT_DEADLINE);
        assert_eq!(
            run(&["sh", "-c", "echo s3cr3t-out; exit 3"]),
            Err(Failure::Exited(Some(3)))
        );
        assert_eq!(run(&["true"]), Err(Failure::PrintedNothing));
        assert_eq!(run(&["echo"]), Err(Failure::PrintedNothing));
        assert_eq!(
            run(&["ballast-no-such-program-7f3a"]),
            Err(Failure::NotStarted(std::io::ErrorKind::NotFound))
        );
        assert_eq!(run(&["sh", "-c", "printf '\\377'"]), Err(Failure::NotText));
        assert_eq!(
            run(&["head", "-c", "1048577", "/dev/zero"]),
            Err(Failure::TooLong)
        );
    }

    #[test]
    fn a_command_that_hangs_is_stopped_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let deadline = Duration::from_millis(300);
        assert_eq!(
            run(&w(&["sleep", "30"]), dir.path(), deadline),
            Err(Failure::TimedOut(deadline))
        );
        // Also when it closed its stdout and only its end is awaited.
        assert_eq!(
            run(
                &w(&["sh", "-c", "exec >&-; sleep 30"]),
                dir.path(),
                deadline
            ),
            Err(Failure::TimedOut(deadline))
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn commands_run_in_parallel_in_order() {
        let dir = tempfile::tempdir().unwrap();
        // The first waits for what the second does: one at a time, it
        // would wait until the deadline.
        let first = w(&["sh", "-c", "while [ ! -e b ]; do sleep 0.05; done; echo a"]);
        let second = w(&["sh", "-c", "touch b; echo b"]);
        let results = run_all(
            &[first, second, w(&["false"])],
            dir.path(),
            DEFAULT_DEADLINE,
        );
        assert_eq!(
            results,
            [
                Ok("a".to_string()),
                Ok("b".to_string()),
                Err(Failure::Exited(Some(1)))
            ]
        );
    }

    #[test]
    fn errors_name_the_secret_file_and_line_but_never_the_output() {
        let path = Path::new("/srv/shop/.ballast/secrets");
        let p = Problem {
            name: "DB_PASSWORD",
            path,
            line: 3,
        };
        let e = p.failed(&Failure::Exited(Some(1)));
        assert_eq!(
            e.to_string(),
            "/srv/shop/.ballast/secrets:3:1: secret `DB_PASSWORD`: its command exited with status 1 (what it printed is not shown: it may be secret)"
        );
        assert_eq!(
            e.hint(),
            Some("run the command on line 3 of /srv/shop/.ballast/secrets by hand to see its error output")
        );
        let e = p.failed(&Failure::TimedOut(DEFAULT_DEADLINE));
        assert!(e
            .message()
            .contains("did not finish within 10s (it was stopped)"));
        assert!(e.hint().unwrap().contains("BALLAST_SECRET_TIMEOUT"));
        let e = p.refused(&Refusal::ShellFeature("a pipe (`|`)"));
        assert_eq!(
            e.message(),
            "secret `DB_PASSWORD`: its command uses a pipe (`|`), which needs a shell; ballast runs the command itself, without one"
        );
        assert_eq!(
            e.hint(),
            Some("wrap it in a script (.ballast/bin/db-password, made executable) and write DB_PASSWORD=$(.ballast/bin/db-password)")
        );
    }
}
