//! State ballast keeps in files on a host, under `/var/lib/ballast/<service>/`:
//! the audit log (one JSON line per action), who does what, and private
//! files (mode 0600) such as the digest key of secrets. Files are
//! written with plain programs and arguments passed as data; nothing is kept
//! on the operator's machine. The deploy lock lives there too: see
//! [`crate::lock`].

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::Host;

/// Root of ballast's files on every host.
pub const STATE_ROOT: &str = "/var/lib/ballast";
const FILE_DEADLINE: Duration = Duration::from_secs(15);

fn service_dir(service: &str) -> String {
    format!("{STATE_ROOT}/{service}")
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
    /// Hosts left out because they did not answer (`--skip-unreachable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Locks of gone holders this command took over, each described.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub took_over: Vec<String>,
}

/// Appends `record` to the audit log on `host`.
pub async fn append_audit(host: &Host, service: &str, record: &AuditRecord) -> Result<()> {
    ensure_dir(host, service).await?;
    // An outcome may quote a container's last log lines: never a secret.
    let mut line =
        crate::redact::redact(&serde_json::to_string(record).expect("audit records serialize"))
            .into_owned();
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

/// The last `lines` records across every connected host of `fleet`,
/// oldest first, each record once: a command writes its record on every
/// host it touched, so any host that answers tells its part of the story.
/// Hosts that could not be read are returned beside the records.
pub async fn read_fleet_audit(
    fleet: &crate::fleet::Fleet,
    service: &str,
    lines: usize,
) -> (Vec<AuditRecord>, Vec<Error>) {
    let answers = fleet
        .each(|h| async move { read_audit(h, service, lines).await })
        .await;
    let mut unread = Vec::new();
    let mut per_host = Vec::new();
    for (_, answer) in answers {
        match answer {
            Ok(records) => per_host.push(records),
            Err(e) => unread.push(e),
        }
    }
    (merge_audit(per_host, lines), unread)
}

/// Merges hosts' audit logs: each record once, ordered by time (RFC 3339
/// UTC sorts as text), the last `lines` kept.
pub fn merge_audit(per_host: Vec<Vec<AuditRecord>>, lines: usize) -> Vec<AuditRecord> {
    let mut all: Vec<AuditRecord> = per_host.into_iter().flatten().collect();
    // Stable: records of the same second keep the order a host wrote them.
    all.sort_by(|a, b| a.at.cmp(&b.at));
    let mut merged: Vec<AuditRecord> = Vec::with_capacity(all.len());
    for record in all {
        if !merged
            .iter()
            .rev()
            .take_while(|m| m.at == record.at)
            .any(|m| *m == record)
        {
            merged.push(record);
        }
    }
    let skip = merged.len().saturating_sub(lines);
    merged.split_off(skip)
}

/// Creates the file `name` in the service's directory on `host` with
/// `data`, mode 0600 (root only), unless it exists: written under a random
/// temporary name, then linked into place, which fails if another got
/// there first. `data` travels on stdin, never in arguments. Whether it
/// was created or found, read it back with [`read_private`].
pub(crate) async fn create_private(
    host: &Host,
    service: &str,
    name: &str,
    data: &[u8],
) -> Result<()> {
    ensure_dir(host, service).await?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| {
        Error::failed(
            format!("create {name}"),
            format_args!("no random bytes: {e}"),
        )
    })?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let path = format!("{}/{name}", service_dir(service));
    let temporary = format!("{path}.{nonce}.new");
    let step = format!("write {path}");
    host.run_checked(
        &step,
        "install",
        &["-m", "0600", "/dev/stdin", &temporary],
        Some(data),
        FILE_DEADLINE,
    )
    .await?;
    // `ln` refuses an existing target: a file made meanwhile is kept.
    let linked = host
        .run("ln", &["-T", &temporary, &path], None, FILE_DEADLINE)
        .await;
    let removed = host
        .run_checked(&step, "rm", &["-f", "--", &temporary], None, FILE_DEADLINE)
        .await;
    linked?;
    removed
}

/// The text of the file `name` in the service's directory on `host`;
/// `None` when there is no such file.
pub(crate) async fn read_private(host: &Host, service: &str, name: &str) -> Result<Option<String>> {
    let path = format!("{}/{name}", service_dir(service));
    let out = host.run("cat", &["--", &path], None, FILE_DEADLINE).await?;
    if out.success() {
        return Ok(Some(out.stdout));
    }
    let exists = host
        .run("test", &["-e", &path], None, FILE_DEADLINE)
        .await?;
    if exists.status == Some(1) {
        return Ok(None);
    }
    Err(Error::failed(format!("read {path}"), out.stderr.trim())
        .on(host.name())
        .hint(format!("ballast needs to read {STATE_ROOT} on the host: log in as root or give the user read access there")))
}

async fn write_file(host: &Host, path: &str, data: &[u8], append: bool) -> Result<()> {
    let args: Vec<&str> = if append { vec!["-a", path] } else { vec![path] };
    host.run_checked(
        &format!("write {path}"),
        "tee",
        &args,
        Some(data),
        FILE_DEADLINE,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_logs_of_several_hosts_merge_by_time_without_repeats() {
        let record = |at: &str, command: &str, host: &str| AuditRecord {
            at: at.into(),
            who: "ops".into(),
            command: command.into(),
            version: None,
            hosts: vec![host.into()],
            outcome: "ok".into(),
            forced_unsafe: Vec::new(),
            skipped: Vec::new(),
            took_over: Vec::new(),
        };
        let deploy_both = AuditRecord {
            hosts: vec!["a".into(), "b".into()],
            ..record("2026-12-01T10:00:00Z", "deploy", "a")
        };
        let a = vec![
            deploy_both.clone(),
            record("2026-12-01T10:05:00Z", "proxy restart", "a"),
        ];
        let b = vec![
            record("2026-12-01T09:00:00Z", "setup", "b"),
            deploy_both.clone(),
        ];
        let merged = merge_audit(vec![a.clone(), b.clone()], 10);
        let commands: Vec<&str> = merged.iter().map(|r| r.command.as_str()).collect();
        assert_eq!(commands, ["setup", "deploy", "proxy restart"]);
        // The tail keeps the newest.
        let last = merge_audit(vec![a, b], 2);
        assert_eq!(last[0], deploy_both);
        assert_eq!(last[1].command, "proxy restart");
    }

    #[test]
    fn paths_live_under_the_service_directory() {
        assert_eq!(service_dir("shop"), "/var/lib/ballast/shop");
        assert!(now_rfc3339().ends_with('Z'));
    }
}
