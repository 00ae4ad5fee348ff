//! Whether a lock's holder still runs: its [`Process`] as seen from the
//! machine ballast runs on, and the verdict ([`Liveness`], with [`GoneWhy`]
//! when provably gone) that [`judge`] draws from it and the lease's age.

use serde::Serialize;

use super::info::{read_proc_stat, LockInfo, Machine};
use super::LEASE;

/// The holder's process as seen from the machine ballast runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// On another machine, boot or pid namespace, or not recorded: unknown.
    Unseen,
    /// No process with the holder's pid runs here (or only its zombie).
    Absent,
    /// A process with the holder's pid runs here, started at this tick.
    Running { start_time: u64 },
}

impl Process {
    /// Looks for the holder of `info` among the processes of `here`.
    pub fn observe(info: &LockInfo, here: &Machine) -> Process {
        if !here.sees(info) {
            return Process::Unseen;
        }
        match read_proc_stat(info.pid) {
            Ok(None) => Process::Absent,
            Ok(Some(stat)) if matches!(stat.state, 'Z' | 'X') => Process::Absent,
            Ok(Some(stat)) => Process::Running {
                start_time: stat.start_time,
            },
            Err(_) => Process::Unseen,
        }
    }
}

/// Whether a lock's holder still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Liveness {
    /// Its lease was renewed within [`LEASE`].
    Alive,
    /// Taken by hand (`ballast lock acquire`): nothing renews it; it stays
    /// until released.
    Manual,
    /// It ran on this machine and provably no longer runs.
    Gone { why: GoneWhy },
    /// Its lease was last renewed `for_secs` ago, more than [`LEASE`]; it is
    /// probably gone, but on a machine this one cannot look into.
    LeaseExpired { for_secs: u64 },
}

/// How a holder is known to be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum GoneWhy {
    /// No process has its pid any more.
    NotRunning { pid: u32 },
    /// Its pid now belongs to a process started later.
    PidReused { pid: u32 },
}

impl std::fmt::Display for GoneWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoneWhy::NotRunning { pid } => write!(f, "pid {pid} no longer runs on this machine"),
            GoneWhy::PidReused { pid } => {
                write!(f, "pid {pid} on this machine is now another process")
            }
        }
    }
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Liveness::Alive => write!(f, "alive (it renews its lease)"),
            Liveness::Manual => write!(
                f,
                "held manually (no process renews it; it stays until released)"
            ),
            Liveness::Gone { why } => write!(f, "gone ({why})"),
            Liveness::LeaseExpired { for_secs } => write!(
                f,
                "probably gone (it stopped renewing its lease {for_secs}s ago)"
            ),
        }
    }
}

/// Judges a holder from what was gathered: its record (if readable), the
/// lease's age by the host's clock, and its process as seen from here.
pub fn judge(info: Option<&LockInfo>, lease_age_secs: u64, process: Process) -> Liveness {
    let by_lease = if lease_age_secs > LEASE.as_secs() {
        Liveness::LeaseExpired {
            for_secs: lease_age_secs,
        }
    } else {
        Liveness::Alive
    };
    let Some(info) = info else { return by_lease };
    if info.manual {
        return Liveness::Manual;
    }
    match process {
        Process::Absent => Liveness::Gone {
            why: GoneWhy::NotRunning { pid: info.pid },
        },
        Process::Running { start_time } if info.start_time.is_some_and(|t| t != start_time) => {
            Liveness::Gone {
                why: GoneWhy::PidReused { pid: info.pid },
            }
        }
        Process::Running { .. } | Process::Unseen => by_lease,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::fixtures::info;

    #[test]
    fn a_dead_or_replaced_pid_on_this_machine_is_gone_whatever_the_lease() {
        let i = info(42);
        let gone = |why| Liveness::Gone { why };
        assert_eq!(
            judge(Some(&i), 3, Process::Absent),
            gone(GoneWhy::NotRunning { pid: 42 })
        );
        let later = Process::Running { start_time: 9999 };
        assert_eq!(
            judge(Some(&i), 3, later),
            gone(GoneWhy::PidReused { pid: 42 })
        );
        let no_start = LockInfo {
            start_time: None,
            ..info(42)
        };
        assert_eq!(judge(Some(&no_start), 3, later), Liveness::Alive);
    }

    #[test]
    fn otherwise_the_lease_decides() {
        let i = info(42);
        let same = Process::Running { start_time: 5000 };
        assert_eq!(judge(Some(&i), 60, same), Liveness::Alive);
        assert_eq!(
            judge(Some(&i), 61, same),
            Liveness::LeaseExpired { for_secs: 61 }
        );
        assert_eq!(judge(Some(&i), 0, Process::Unseen), Liveness::Alive);
        assert_eq!(
            judge(Some(&i), 95, Process::Unseen),
            Liveness::LeaseExpired { for_secs: 95 }
        );
        assert_eq!(judge(None, 2, Process::Unseen), Liveness::Alive);
        assert_eq!(
            judge(None, 300, Process::Unseen),
            Liveness::LeaseExpired { for_secs: 300 }
        );
    }

    #[test]
    fn a_manual_lock_is_never_gone_nor_expired() {
        let manual = info(42).manual();
        assert_eq!(
            judge(Some(&manual), 86_400, Process::Absent),
            Liveness::Manual
        );
        assert_eq!(judge(Some(&manual), 1, Process::Unseen), Liveness::Manual);
    }

    #[test]
    fn texts_say_whether_it_runs() {
        let texts: Vec<String> = [
            Liveness::Alive,
            Liveness::Manual,
            Liveness::Gone {
                why: GoneWhy::NotRunning { pid: 42 },
            },
            Liveness::Gone {
                why: GoneWhy::PidReused { pid: 42 },
            },
            Liveness::LeaseExpired { for_secs: 95 },
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            texts,
            [
                "alive (it renews its lease)",
                "held manually (no process renews it; it stays until released)",
                "gone (pid 42 no longer runs on this machine)",
                "gone (pid 42 on this machine is now another process)",
                "probably gone (it stopped renewing its lease 95s ago)",
            ]
        );
    }

    #[test]
    fn liveness_is_structured_in_json() {
        let gone = Liveness::Gone {
            why: GoneWhy::PidReused { pid: 4 },
        };
        assert_eq!(
            serde_json::to_value(gone).unwrap(),
            serde_json::json!({"state": "gone", "why": {"reason": "pid_reused", "pid": 4}})
        );
        assert_eq!(
            serde_json::to_value(Liveness::LeaseExpired { for_secs: 70 }).unwrap(),
            serde_json::json!({"state": "lease_expired", "for_secs": 70})
        );
    }
}
