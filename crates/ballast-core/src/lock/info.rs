//! Who holds the lock: the record [`LockInfo`] kept in `info.json`, with the
//! token that alone releases it, and what tells the holder's process apart
//! from others': its [`Machine`] (boot and pid namespace) and its
//! `/proc/<pid>/stat` ([`ProcStat`]).

use serde::{Deserialize, Serialize};

use super::TOKEN_PREFIX;
use crate::error::{Error, Result};
use crate::state;

/// Who holds the lock, and for what; `info.json` in the lock directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// `user@machine` of the holder, for people to read.
    pub holder: String,
    /// The holder's process on its machine, to tell whether it still runs.
    pub pid: u32,
    /// The holder machine's boot ID: a pid means something only on the same boot.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The holder's pid namespace (`pid:[…]`): containers share their host's
    /// boot ID but not its pids.
    #[serde(default)]
    pub pid_namespace: Option<String>,
    /// When the holder's process started, in clock ticks after boot (field 22
    /// of `/proc/<pid>/stat`), so a reused pid is not mistaken for it.
    #[serde(default)]
    pub start_time: Option<u64>,
    /// The command that took it (`deploy --version v2`).
    pub command: String,
    /// The operator's note (`-m`).
    pub message: Option<String>,
    /// RFC 3339 UTC time it was taken, by the holder's clock.
    pub since: String,
    /// 128 random bits in hex: only who knows it releases the lock. Empty in
    /// records written before tokens existed.
    #[serde(default)]
    pub token: String,
    /// Taken by `ballast lock acquire`: nothing renews it and it is never
    /// taken over automatically.
    #[serde(default)]
    pub manual: bool,
}

impl LockInfo {
    /// A record for this process running `command`, with a fresh token.
    pub fn new(command: &str, message: Option<String>) -> Result<LockInfo> {
        let here = Machine::this();
        let pid = std::process::id();
        Ok(LockInfo {
            holder: state::whoami(),
            pid,
            boot_id: here.boot_id,
            pid_namespace: here.pid_namespace,
            start_time: read_proc_stat(pid).ok().flatten().map(|s| s.start_time),
            command: command.to_string(),
            message,
            since: state::now_rfc3339(),
            token: new_token()?,
            manual: false,
        })
    }

    /// The same record, marked as taken by hand for maintenance.
    pub fn manual(mut self) -> LockInfo {
        self.manual = true;
        self
    }

    /// The first characters of the token: enough to tell locks apart, not
    /// enough to release one.
    pub fn token_prefix(&self) -> &str {
        let end = self
            .token
            .char_indices()
            .nth(TOKEN_PREFIX)
            .map_or(self.token.len(), |(i, _)| i);
        &self.token[..end]
    }

    /// "ana@laptop since 2026-… for `deploy --version v2` (pid 42): note".
    pub fn describe(&self) -> String {
        let by = if self.manual {
            "manually".to_string()
        } else {
            format!("pid {}", self.pid)
        };
        let mut text = format!(
            "{} since {} for `{}` ({by})",
            self.holder, self.since, self.command
        );
        if let Some(m) = &self.message {
            text.push_str(&format!(": {m}"));
        }
        text
    }
}

/// 128 random bits from the OS, in lowercase hex.
pub(super) fn new_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::failed("make a lock token", e).hint("the OS random source failed"))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What tells this machine's processes apart from others': its boot and
/// pid namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    pub boot_id: Option<String>,
    pub pid_namespace: Option<String>,
}

impl Machine {
    /// Reads `/proc` of the machine ballast runs on (nothing outside Linux).
    pub fn this() -> Machine {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let pid_namespace = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        Machine {
            boot_id,
            pid_namespace,
        }
    }

    /// Whether `info`'s pid names a process visible here: same boot and same
    /// pid namespace, both recorded on both sides.
    pub fn sees(&self, info: &LockInfo) -> bool {
        let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        same(&self.boot_id, &info.boot_id) && same(&self.pid_namespace, &info.pid_namespace)
    }
}

/// The two fields of `/proc/<pid>/stat` the lock needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// R, S, D, Z (zombie), …
    pub state: char,
    /// Clock ticks after boot at which the process started (field 22).
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 was the state; field 22 is 19 further.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// `Ok(None)` when no process has `pid` here.
pub(super) fn read_proc_stat(pid: u32) -> std::io::Result<Option<ProcStat>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => Ok(parse_proc_stat(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::fixtures::info;
    use crate::lock::{judge, Liveness, Process};

    // A stat line whose command name holds spaces and parentheses.
    const STAT: &str =
        "4242 (my (odd) job) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 98765 1000 200";

    #[test]
    fn proc_stat_counts_fields_after_the_command_name() {
        assert_eq!(
            parse_proc_stat(STAT),
            Some(ProcStat {
                state: 'S',
                start_time: 98765
            })
        );
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_proc_stat(&own).is_some_and(|s| s.start_time > 0));
        assert_eq!(parse_proc_stat("4242 (cut) S 1 2"), None);
        assert_eq!(parse_proc_stat("no parenthesis"), None);
    }

    #[test]
    fn only_the_same_boot_and_pid_namespace_see_a_pid() {
        let here = Machine {
            boot_id: Some("boot-1".into()),
            pid_namespace: Some("pid:[4026531836]".into()),
        };
        assert!(here.sees(&info(42)));
        let container = LockInfo {
            pid_namespace: Some("pid:[4026532999]".into()),
            ..info(42)
        };
        assert!(!here.sees(&container));
        let rebooted = LockInfo {
            boot_id: Some("boot-2".into()),
            ..info(42)
        };
        assert!(!here.sees(&rebooted));
        let unknown = LockInfo {
            boot_id: None,
            ..info(42)
        };
        assert!(!here.sees(&unknown));
        assert!(!Machine::default().sees(&unknown));
        assert_eq!(Process::observe(&rebooted, &here), Process::Unseen);
    }

    #[test]
    fn tokens_are_128_random_bits_in_hex() {
        let a = LockInfo::new("deploy", None).unwrap();
        let b = LockInfo::new("deploy", None).unwrap();
        assert_eq!(a.token.len(), 32);
        assert!(a
            .token
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a.token, b.token);
        assert_eq!(a.token_prefix(), &a.token[..8]);
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert_eq!(
            LockInfo {
                token: "abc".into(),
                ..info(1)
            }
            .token_prefix(),
            "abc"
        );
    }

    #[test]
    fn a_new_record_knows_this_process() {
        let i = LockInfo::new("deploy", Some("hotfix".into())).unwrap();
        assert_eq!(i.pid, std::process::id());
        assert!(!i.manual);
        assert!(i.manual().manual);
        let here = Machine::this();
        let i = LockInfo::new("deploy", None).unwrap();
        assert!(here.sees(&i));
        let me = Process::observe(&i, &here);
        assert_eq!(judge(Some(&i), 0, me), Liveness::Alive);
    }

    #[test]
    fn records_written_before_tokens_still_read() {
        let old = r#"{"holder":"ana@laptop","pid":7,"command":"deploy","message":null,"since":"2026-01-01T00:00:00Z"}"#;
        let i: LockInfo = serde_json::from_str(old).unwrap();
        assert_eq!((i.token.as_str(), i.manual, i.boot_id), ("", false, None));
    }

    #[test]
    fn texts_say_who_what_since_when_and_whether_it_runs() {
        let i = LockInfo {
            message: Some("hotfix".into()),
            ..info(42)
        };
        assert_eq!(
            i.describe(),
            "ana@laptop since 2026-11-22T18:00:00Z for `deploy --version v2` (pid 42): hotfix"
        );
        let m = LockInfo {
            command: "lock acquire".into(),
            ..info(42).manual()
        };
        assert_eq!(
            m.describe(),
            "ana@laptop since 2026-11-22T18:00:00Z for `lock acquire` (manually)"
        );
    }
}
