//! State ballast keeps in files on a host, under `/var/lib/ballast/<service>/`:
//! the deploy lock (a directory, because `mkdir` is atomic) and the audit log
//! (one JSON line per action). Files are written with plain programs and
//! arguments passed as data; nothing is kept on the operator's machine.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;

/// Root of ballast's files on every host.
pub const STATE_ROOT: &str = "/var/lib/ballast";
const FILE_DEADLINE: Duration = Duration::from_secs(15);

fn service_dir(service: &str) -> String {
    format!("{STATE_ROOT}/{service}")
}

fn lock_dir(service: &str) -> String {
    format!("{}/lock", service_dir(service))
}

/// Who holds the lock, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// `user@machine` of the holder.
    pub holder: String,
    /// Process ID of the holder on its machine, to spot a killed holder.
    pub pid: u32,
    /// The command that took it ("deploy --version v2").
    pub command: String,
    pub message: Option<String>,
    /// RFC 3339 UTC time it was taken.
    pub since: String,
}

impl LockInfo {
    pub fn new(command: &str, message: Option<String>) -> LockInfo {
        LockInfo {
            holder: whoami(),
            pid: std::process::id(),
            command: command.to_string(),
            message,
            since: now_rfc3339(),
        }
    }

    pub fn describe(&self) -> String {
        let mut text = format!(
            "held by {} since {} for `{}` (pid {})",
            self.holder, self.since, self.command, self.pid
        );
        if let Some(m) = &self.message {
            text.push_str(&format!(": {m}"));
        }
        text
    }
}

/// `user@machine` of whoever runs ballast.
pub fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{machine}")
}

/// The name of this process's user from /etc/passwd (CI jobs and services
/// often run without `$USER`).
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_string())
    })
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

async fn ensure_dir(host: &Host, service: &str) -> Result<()> {
    let out = host
        .run("mkdir", &["-p", &service_dir(service)], None, FILE_DEADLINE)
        .await?;
    if !out.success() {
        return Err(Error::failed("create the state directory", out.stderr.trim())
            .on(host.name())
            .hint(format!("ballast needs to write {STATE_ROOT} on the host: log in as root or give the user sudo-free write access there")));
    }
    Ok(())
}

/// Takes the lock on `host`, or fails naming who holds it.
pub async fn acquire_lock(host: &Host, service: &str, info: &LockInfo) -> Result<()> {
    ensure_dir(host, service).await?;
    let dir = lock_dir(service);
    let out = host.run("mkdir", &[&dir], None, FILE_DEADLINE).await?;
    if !out.success() {
        if out.stderr.contains("File exists") {
            let holder = read_lock(host, service)
                .await?
                .map(|l| l.describe())
                .unwrap_or_else(|| "held (its holder did not record itself)".into());
            return Err(Error::new(ErrorKind::Conflict, "take the deploy lock", format_args!("the lock of {service} is {holder}"))
                .on(host.name())
                .hint("wait for that command to finish; if its process is gone, check `ballast lock status` and clear it with `ballast lock release`"));
        }
        return Err(Error::failed("take the deploy lock", out.stderr.trim()).on(host.name()));
    }
    let json = serde_json::to_string(info).expect("lock info serializes");
    write_file(host, &format!("{dir}/info.json"), json.as_bytes(), false).await
}

/// Who holds the lock on `host`, if anyone.
pub async fn read_lock(host: &Host, service: &str) -> Result<Option<LockInfo>> {
    let dir = lock_dir(service);
    let exists = host.run("test", &["-d", &dir], None, FILE_DEADLINE).await?;
    if !exists.success() {
        return Ok(None);
    }
    let out = host
        .run("cat", &[&format!("{dir}/info.json")], None, FILE_DEADLINE)
        .await?;
    Ok(Some(serde_json::from_str(&out.stdout).unwrap_or(
        LockInfo {
            holder: "unknown".into(),
            pid: 0,
            command: "unknown".into(),
            message: Some("the lock has no readable holder record".into()),
            since: "unknown".into(),
        },
    )))
}

/// Removes the lock on `host`, whoever holds it.
pub async fn release_lock(host: &Host, service: &str) -> Result<()> {
    let out = host
        .run(
            "rm",
            &["-rf", "--", &lock_dir(service)],
            None,
            FILE_DEADLINE,
        )
        .await?;
    if !out.success() {
        return Err(Error::failed("release the deploy lock", out.stderr.trim()).on(host.name()));
    }
    Ok(())
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC time of the action's end.
    pub at: String,
    pub who: String,
    pub command: String,
    pub version: Option<String>,
    pub hosts: Vec<String>,
    /// "ok", or "failed: <why>".
    pub outcome: String,
    /// Hosts doctor blocked that the operator deployed to anyway, with the
    /// rules they break (`--force-unsafe-host`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced_unsafe: Vec<String>,
}

/// Appends `record` to the audit log on `host`.
pub async fn append_audit(host: &Host, service: &str, record: &AuditRecord) -> Result<()> {
    ensure_dir(host, service).await?;
    let mut line = serde_json::to_string(record).expect("audit records serialize");
    line.push('\n');
    write_file(
        host,
        &format!("{}/audit.log", service_dir(service)),
        line.as_bytes(),
        true,
    )
    .await
}

/// The last `lines` records of the audit log on `host`, oldest first.
pub async fn read_audit(host: &Host, service: &str, lines: usize) -> Result<Vec<AuditRecord>> {
    let path = format!("{}/audit.log", service_dir(service));
    let out = host
        .run(
            "tail",
            &["-n", &lines.to_string(), &path],
            None,
            FILE_DEADLINE,
        )
        .await?;
    if !out.success() {
        return Ok(Vec::new());
    }
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

async fn write_file(host: &Host, path: &str, data: &[u8], append: bool) -> Result<()> {
    let args: Vec<&str> = if append { vec!["-a", path] } else { vec![path] };
    let out = host.run("tee", &args, Some(data), FILE_DEADLINE).await?;
    if !out.success() {
        return Err(Error::failed(format!("write {path}"), out.stderr.trim()).on(host.name()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_info_says_who_what_and_since_when() {
        let info = LockInfo {
            holder: "ana@laptop".into(),
            pid: 42,
            command: "deploy --version v2".into(),
            message: Some("hotfix".into()),
            since: "2026-11-22T18:00:00Z".into(),
        };
        assert_eq!(
            info.describe(),
            "held by ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42): hotfix"
        );
    }

    #[test]
    fn paths_live_under_the_service_directory() {
        assert_eq!(lock_dir("shop"), "/var/lib/ballast/shop/lock");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
