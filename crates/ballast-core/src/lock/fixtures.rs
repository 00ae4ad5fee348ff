//! Fixtures shared by the lock's unit tests.

use super::info::new_token;
use super::LockInfo;
use crate::state::STATE_ROOT;

/// A record of ana@laptop's `deploy --version v2` as pid `pid`, with a
/// fixed boot, pid namespace, start time, date and token.
pub(super) fn info(pid: u32) -> LockInfo {
    LockInfo {
        holder: "ana@laptop".into(),
        pid,
        boot_id: Some("boot-1".into()),
        pid_namespace: Some("pid:[4026531836]".into()),
        start_time: Some(5000),
        command: "deploy --version v2".into(),
        message: None,
        since: "2026-11-22T18:00:00Z".into(),
        token: "0123456789abcdef0123456789abcdef".into(),
        manual: false,
    }
}

/// A service name of its own under /var/lib/ballast, removed on drop.
pub(super) struct Scratch(pub(super) String);

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch(format!("lock-test-{}", new_token().unwrap()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("{STATE_ROOT}/{}", self.0));
    }
}
