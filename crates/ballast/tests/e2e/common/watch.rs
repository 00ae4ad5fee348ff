//! `ballast watch` under test: its state file and loopback port given by
//! the test, started, and waited for until it says what it watches.

use std::path::Path;
use std::time::Duration;

use super::ballast_cmd;
use super::child::Watched;

/// `ballast watch` keeping its state in `state` and serving its page and
/// metrics on loopback port `http`; the proxy image from `binary`.
pub fn spawn(config: &Path, binary: &Path, state: &Path, http: u16) -> Watched {
    let listen = format!("127.0.0.1:{http}");
    Watched::spawn(ballast_cmd(
        config,
        binary,
        &[
            "watch",
            "--state",
            state.to_str().unwrap(),
            "--listen",
            &listen,
        ],
    ))
}

/// [`spawn`], once it says it watches `hosts` hosts of `service`.
pub fn start(
    config: &Path,
    binary: &Path,
    state: &Path,
    http: u16,
    hosts: usize,
    service: &str,
) -> Watched {
    let mut watch = spawn(config, binary, state, http);
    watch.wait_for(
        &format!("watching {hosts} hosts of {service}"),
        Duration::from_secs(30),
    );
    watch
}
