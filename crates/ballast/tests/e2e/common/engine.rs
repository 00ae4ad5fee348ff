//! Whether a Docker engine answers here, asked once per test process, so
//! that tests needing one are skipped with a clear message where none does
//! (and fail in CI, which sets `BALLAST_REQUIRE_ENGINE=1`). See
//! [`require_engine!`](crate::require_engine).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// How long the engine has for each of connect, send and answer.
const DEADLINE: Duration = Duration::from_secs(2);

/// The socket the engine is looked for at, by ballast's own rule:
/// `DOCKER_HOST=unix://PATH`, else `/var/run/docker.sock`. Any other
/// `DOCKER_HOST` is shown as it is (and no engine answers there).
pub fn endpoint() -> Result<PathBuf, String> {
    let host = std::env::var("DOCKER_HOST").ok();
    ballast_core::engine::local_socket(host.as_deref()).map_err(|_| host.unwrap_or_default())
}

/// Whether the engine at [`endpoint`] answers `GET /_ping` with 200 within
/// a short deadline; asked once per test process.
pub fn engine_answers() -> bool {
    static ANSWERS: OnceLock<bool> = OnceLock::new();
    *ANSWERS.get_or_init(|| endpoint().is_ok_and(|socket| ping(&socket).is_ok()))
}

/// Whether tests that need an engine must fail rather than skip without one.
pub fn required() -> bool {
    std::env::var("BALLAST_REQUIRE_ENGINE").is_ok_and(|v| v == "1")
}

/// Why the test at `path` (`deploy::its_name::here`, from the macro) cannot
/// run, or `None` when an engine answers.
pub fn missing(path: &str) -> Option<String> {
    if engine_answers() {
        return None;
    }
    let test = path.strip_suffix("::here").unwrap_or(path);
    let at = match endpoint() {
        Ok(socket) => socket.display().to_string(),
        Err(docker_host) => format!("DOCKER_HOST={docker_host}"),
    };
    Some(format!(
        "skipped: {test} needs a Docker engine (none answers at {at}); .ci/run starts one"
    ))
}

/// Says on stderr that a test did not run. Written to the process's stderr
/// itself, not through `eprintln!`, which the test harness captures and
/// shows only for failures: a skip must be seen without `--nocapture`.
pub fn say_skipped(why: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{why}");
}

fn ping(socket: &std::path::Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.set_write_timeout(Some(DEADLINE))?;
    let answer = exchange(stream)?;
    let status = answer.split_whitespace().nth(1);
    if answer.starts_with("HTTP/1.") && status == Some("200") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("answered {answer:?}")))
    }
}

/// Sends the ping and returns the status line of the answer.
fn exchange<S: Read + Write>(mut stream: S) -> std::io::Result<String> {
    stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 256];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 4096 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_string())
}
