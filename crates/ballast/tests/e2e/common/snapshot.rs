//! Snapshots of what the binary prints: a run in an environment of its
//! own, shown as exit code, stdout and stderr, with insta filters for what
//! differs between machines and runs (temp paths, timings, clock times,
//! container and image IDs, IP addresses, lock tokens).

use std::path::Path;
use std::process::{Output, Stdio};

/// Runs `ballast ARGS` in `dir` with nothing of this machine's environment:
/// no colour or terminal settings, no `RUST_LOG`, no `BALLAST_*`, no
/// secrets, `HOME` in `dir`, and a Docker socket that does not exist (the
/// commands snapshotted this way must not need an engine).
pub fn isolated(dir: &Path, args: &[&str]) -> Output {
    super::command(dir, args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env("BALLAST_LAB_HOME", dir)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run the ballast binary")
}

/// What a user sees: the exit code, then stdout and stderr as printed.
pub fn shown(out: &Output) -> String {
    let code = match out.status.code() {
        Some(code) => code.to_string(),
        None => "killed by a signal".to_string(),
    };
    format!(
        "exit code: {code}\n--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Addresses of the documentation networks (RFC 5737), which configs in
/// tests and the starter use as examples: they are kept as written.
const DOC_NETS: &str = r"\b(192\.0\.2|198\.51\.100|203\.0\.113)";

/// insta settings for snapshots of runs in `temp`: its path (as given and
/// as resolved) becomes `[TEMP]`, and every value that differs between
/// machines or runs becomes a placeholder naming what it was.
pub fn settings(temp: &Path) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_omit_expression(true);
    let mut temps = vec![temp.to_path_buf()];
    if let Ok(real) = temp.canonicalize() {
        temps.push(real);
    }
    // The longer first, so a resolved path is not half replaced.
    temps.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for t in &temps {
        s.add_filter(&regex::escape(&t.to_string_lossy()), "[TEMP]");
    }
    // Any other temp dir the run made (tempfile's `.tmpXXXXXX`).
    s.add_filter(r"(/[\w.-]+)*/\.tmp[A-Za-z0-9]{6,}", "[TEMP]");
    s.add_filter(
        r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
        "[RFC3339]",
    );
    s.add_filter(r"\b\d{2}:\d{2}:\d{2}\b", "[HH:MM:SS]");
    s.add_filter(r"\b\d+\.\d+s\b", "[SECONDS]");
    s.add_filter(r"\bsha256:[0-9a-f]{64}\b", "sha256:[IMAGE_ID]");
    s.add_filter(r"\b[0-9a-f]{64}\b", "[CONTAINER_ID]");
    s.add_filter(r"\b[0-9a-f]{32}\b", "[TOKEN]");
    s.add_filter(r"\b[0-9a-f]{12}\b", "[SHORT_ID]");
    // IPv4 addresses, but for the documentation networks: those are set
    // aside (`192.0.2~11`), the rest replaced, then they are put back.
    s.add_filter(&format!(r"{DOC_NETS}\.(\d{{1,3}})\b"), "$1~$2");
    s.add_filter(r"\b\d{1,3}(\.\d{1,3}){3}\b", "[IP]");
    s.add_filter(&format!(r"{DOC_NETS}~(\d{{1,3}})\b"), "$1.$2");
    s
}
