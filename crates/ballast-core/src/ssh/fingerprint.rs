//! What key a host presents, for a host-key refusal: the operator compares
//! it with the one they expect before trusting a reinstalled host.

use std::time::Duration;

use super::SshTarget;
use crate::error::Error;

/// Adds the fingerprint of the key the host presents now to a host-key
/// error, so the operator can compare it with the one they expect.
pub(super) async fn with_fingerprint(mut err: Error, target: &SshTarget) -> Error {
    if !err.cause.starts_with("host key verification failed") {
        return err;
    }
    if let Some(fp) = presented_fingerprint(target).await {
        err.cause = format!("{}; it presents {fp}", err.cause);
    }
    err
}

/// Resolves the real address and port with `ssh -G` (so aliases of the ssh
/// config work), asks the host for its keys with `ssh-keyscan`, and
/// fingerprints them with `ssh-keygen -l`. Arguments only, no shell.
async fn presented_fingerprint(target: &SshTarget) -> Option<String> {
    use tokio::process::Command;
    let mut resolve = Command::new("ssh");
    resolve.arg("-G");
    if let Some(config) = &target.config {
        resolve.arg("-F").arg(config);
    }
    if let Some(port) = target.port {
        resolve.arg("-p").arg(port.to_string());
    }
    resolve.arg("--").arg(&target.destination);
    let resolved = tokio::time::timeout(Duration::from_secs(5), resolve.output())
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&resolved.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let (address, port) = (field("hostname ")?, field("port ")?);
    let scan = Command::new("ssh-keyscan")
        .args([
            "-T",
            "5",
            "-t",
            "ed25519,ecdsa,rsa",
            "-p",
            &port,
            "--",
            &address,
        ])
        .output();
    let scanned = tokio::time::timeout(Duration::from_secs(8), scan)
        .await
        .ok()?
        .ok()?;
    if scanned.stdout.is_empty() {
        return None;
    }
    let mut keygen = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = keygen.stdin.take()?;
        stdin.write_all(&scanned.stdout).await.ok()?;
    }
    let out = tokio::time::timeout(Duration::from_secs(5), keygen.wait_with_output())
        .await
        .ok()?
        .ok()?;
    let prints: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "256 SHA256:abc... host (ED25519)"
            let mut parts = l.split_whitespace();
            let fp = parts.nth(1)?;
            let kind = parts.last()?.trim_matches(|c| c == '(' || c == ')');
            Some(format!("{kind} key {fp}"))
        })
        .collect();
    (!prints.is_empty()).then(|| prints.join(", "))
}
