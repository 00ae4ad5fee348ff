//! A lab host without Docker, for `ballast setup` to install it on: its
//! distribution's host image with the Docker packages purged (sshd and the
//! rest stay), built once on top of that image and tagged after it, so it
//! takes seconds and no download.
//!
//! Its init script stands in for the service manager of a real host: once
//! a package installed dockerd, it keeps it running, as systemd's
//! `docker.service` does (`Restart=always`). Debian's own init script for
//! dockerd cannot run here: it raises the open-files limit, which needs
//! CAP_SYS_RESOURCE, and lab hosts lack it (see LAB.md).

use std::time::Duration;

use ballast_core::{Engine, Error, Result};

/// Repository of the images; the tag is the host image's.
pub const REPO: &str = "ballast-lab-bare";
/// What is purged: the engine, what only it needs, and the clients.
const PURGE: &[&str] = &[
    "dpkg",
    "--purge",
    "python3-docker",
    "docker-cli",
    "docker.io",
    "containerd",
    "runc",
    "tini",
];
/// sshd in the foreground; dockerd kept running once it is installed.
const INIT_SCRIPT: &str = r#"#!/bin/sh
set -e
if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
  ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
fi
mkdir -p /run/sshd
(
  while :; do
    if [ -x /usr/sbin/dockerd ]; then
      /usr/sbin/dockerd >>/var/log/dockerd.log 2>&1 || true
    fi
    sleep 1
  done
) &
exec /usr/sbin/sshd -D -e
"#;
/// How long purging may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// The tag of the image without Docker made from host image `host_tag`,
/// built unless it is there.
pub async fn ensure(engine: &Engine, host_tag: &str) -> Result<String> {
    // The init script is part of what is built: a new one, a new tag.
    let script: String = sha256_hex(INIT_SCRIPT.as_bytes()).chars().take(8).collect();
    let version = host_tag.rsplit(':').next().unwrap_or(host_tag);
    let tag = format!("{REPO}:{version}-{script}");
    let step = format!("build {tag}");
    let purge = serde_json::to_string(PURGE).map_err(|e| Error::failed(&step, e))?;
    let init = crate::recipe::INIT_PATH;
    let dockerfile = format!("FROM {host_tag}\nRUN {purge}\nCOPY init {init}\n");
    let files = [("init", INIT_SCRIPT, 0o755)];
    crate::rootfs::build_on_top(engine, &tag, &dockerfile, &files, DEADLINE).await?;
    Ok(tag)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
