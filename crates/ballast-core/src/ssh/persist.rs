//! Master connections kept for the next command (`ssh.persist`), as
//! OpenSSH's ControlPersist does for `ssh` and Ansible does by default:
//! a deploy right after a `plan`, or a `status` during a deploy, reuses
//! the connection instead of paying for a handshake per host again.
//!
//! A master is found again by a key over everything that decides how a
//! host is reached and checked: the destination, user, port, identity,
//! jump hosts, host-key policy, and the *contents* of the known_hosts and
//! ssh config files in use. Editing known_hosts (removing a key, adding a
//! reinstalled host's new one) or the ssh config therefore never reuses a
//! master made under the old contents: the next command connects afresh
//! and checks the host key again. Within the idle window a reused master
//! does not check the host key again, which is what ControlPersist means.
//!
//! The masters live in a directory only this user can enter
//! (`$TMPDIR/ballast-ssh-<uid>`, mode 0700); if it is not ours or not
//! private, nothing is kept. A master that no longer answers, or whose
//! host does not answer through it, is stopped and forgotten, and a fresh
//! connection is made in its place.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssh::Session;
use sha2::{Digest, Sha256};

use super::{HostKeyPolicy, SshTarget};

/// How long a resumed master may take to say it is alive.
const CHECK: Duration = Duration::from_secs(2);

/// Where the master for one target is recorded.
#[derive(Debug, Clone)]
pub(super) struct Store {
    /// The control directory new masters for this target are made in.
    pub dir: PathBuf,
    /// Holds the control socket path of the master in use.
    record: PathBuf,
}

impl Store {
    /// The store of `target`; `None` when it keeps no master
    /// (`ssh.persist: 0s`) or no private directory can be had.
    pub fn of(target: &SshTarget) -> Option<Store> {
        target.persist.filter(|d| !d.is_zero())?;
        let base = private_dir(&std::env::temp_dir())?;
        let key = key(target);
        let dir = base.join(&key);
        fs::create_dir_all(&dir).ok()?;
        Some(Store {
            dir,
            record: base.join(format!("{key}.master")),
        })
    }

    /// A session on the master recorded for this target, if it answers.
    pub async fn resume(&self) -> Option<Session> {
        let ctl = PathBuf::from(fs::read_to_string(&self.record).ok()?.trim());
        if !ctl.starts_with(&self.dir) {
            return None;
        }
        let session = Session::resume_mux(ctl.into_boxed_path(), None);
        match tokio::time::timeout(CHECK, session.check()).await {
            Ok(Ok(())) => Some(session),
            _ => {
                self.forget();
                None
            }
        }
    }

    /// Records the master `session` was just opened on, detached so it
    /// outlives this process, and returns a session on it.
    pub fn keep(&self, session: Session) -> Session {
        let (ctl, log) = session.detach();
        let _ = fs::write(&self.record, ctl.to_string_lossy().as_bytes());
        Session::resume_mux(ctl, log)
    }

    /// Stops a kept master that turned out not to reach its host, and
    /// forgets it.
    pub async fn discard(&self, session: Session) {
        self.forget();
        let _ = tokio::time::timeout(CHECK, session.close()).await;
    }

    fn forget(&self) {
        let _ = fs::remove_file(&self.record);
    }
}

/// `base/ballast-ssh-<uid>`, made private if new; `None` unless it is a
/// real directory owned by this user that nobody else may enter.
fn private_dir(base: &Path) -> Option<PathBuf> {
    let uid = fs::metadata("/proc/self").ok()?.uid();
    let dir = base.join(format!("ballast-ssh-{uid}"));
    if fs::create_dir(&dir).is_ok() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).ok()?;
    }
    let meta = fs::symlink_metadata(&dir).ok()?;
    let private = meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0;
    private.then_some(dir)
}

/// What decides how `target` is reached and checked, hashed.
fn key(target: &SshTarget) -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let known_hosts = target
        .known_hosts
        .clone()
        .or_else(|| home.as_ref().map(|h| h.join(".ssh/known_hosts")));
    let config = target
        .config
        .clone()
        .or_else(|| home.as_ref().map(|h| h.join(".ssh/config")));
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("destination", target.destination.as_bytes());
    field("user", target.user.as_deref().unwrap_or("").as_bytes());
    field("port", &target.port.unwrap_or(0).to_le_bytes());
    field(
        "identity",
        path_bytes(target.identity.as_deref()).as_bytes(),
    );
    field("jump", target.jump.as_deref().unwrap_or("").as_bytes());
    let policy = match target.host_keys {
        HostKeyPolicy::Strict => "strict",
        HostKeyPolicy::AcceptNew => "accept-new",
    };
    field("host keys", policy.as_bytes());
    for (name, file) in [("known_hosts", known_hosts), ("ssh config", config)] {
        field(name, path_bytes(file.as_deref()).as_bytes());
        field(
            name,
            &file.and_then(|f| fs::read(f).ok()).unwrap_or_default(),
        );
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn path_bytes(p: Option<&Path>) -> String {
    p.map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(known_hosts: &Path) -> SshTarget {
        let mut t = SshTarget::new("web-1");
        t.known_hosts = Some(known_hosts.to_path_buf());
        t.persist = Some(Duration::from_secs(60));
        t
    }

    #[test]
    fn an_edited_known_hosts_or_other_settings_never_reuse_a_master() {
        let dir = tempfile::tempdir().unwrap();
        let kh = dir.path().join("known_hosts");
        fs::write(&kh, "web-1 ssh-ed25519 AAAA1\n").unwrap();
        let first = key(&target(&kh));
        assert_eq!(first, key(&target(&kh)), "the same settings share a master");
        fs::write(&kh, "web-1 ssh-ed25519 AAAA2\n").unwrap();
        assert_ne!(first, key(&target(&kh)), "a changed known_hosts");
        let now = key(&target(&kh));
        let mut other = target(&kh);
        other.user = Some("deploy".into());
        assert_ne!(now, key(&other), "another user");
        let mut other = target(&kh);
        other.host_keys = HostKeyPolicy::AcceptNew;
        assert_ne!(now, key(&other), "another host-key policy");
        let mut other = target(&kh);
        other.destination = "web-2".into();
        assert_ne!(now, key(&other), "another host");
    }

    #[test]
    fn nothing_is_kept_when_persist_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = target(&dir.path().join("kh"));
        t.persist = Some(Duration::ZERO);
        assert!(Store::of(&t).is_none());
        t.persist = None;
        assert!(Store::of(&t).is_none());
    }

    #[test]
    fn only_a_private_directory_of_our_own_holds_masters() {
        let base = tempfile::tempdir().unwrap();
        let dir = private_dir(base.path()).expect("made private");
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // Opened up by someone: refused.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(private_dir(base.path()).is_none());
        // A symlink planted in its place: refused.
        fs::remove_dir(&dir).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &dir).unwrap();
        assert!(private_dir(base.path()).is_none());
    }
}
