//! The lock on one host: [`read`], [`acquire`], [`renew`], [`release`] and
//! [`force_release`], each a few single commands run over the host's
//! connection (`mkdir` of the lock directory is the atomic step).

use std::time::Duration;

use super::decision::{decide, not_yours, Decision};
use super::{
    info_path, judge, lock_dir, HeldLock, LockInfo, Machine, Process, Takeover, DEADLINE,
    RENEW_DEADLINE, TRIES, UNREACHABLE_HINT, WRITE_HINT,
};
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;
use crate::ssh::CommandOutput;
use crate::state::STATE_ROOT;

/// Runs one step of the lock on `host` within `deadline`; a failure to run it
/// at all names the step and says what to check.
async fn exec(
    host: &Host,
    step: &str,
    (program, args): (&str, &[&str]),
    stdin: Option<&[u8]>,
    deadline: Duration,
) -> Result<CommandOutput> {
    // `env LC_ALL=C`: stderr is matched ("File exists"), so keep it English.
    let mut argv = vec!["LC_ALL=C", program];
    argv.extend_from_slice(args);
    host.run("env", &argv, stdin, deadline)
        .await
        .map_err(|e| Error {
            step: step.to_string(),
            hint: e.hint.clone().or_else(|| Some(UNREACHABLE_HINT.into())),
            ..e
        })
}

/// A step that ran and failed, with what the program said.
fn failed(host: &Host, step: &str, out: &CommandOutput) -> Error {
    let cause = match out.stderr.trim() {
        "" => format!("exit status {:?}", out.status),
        text => text.to_string(),
    };
    Error::failed(step, cause).on(host.name()).hint(WRITE_HINT)
}

fn missing(out: &CommandOutput) -> bool {
    out.stderr.contains("No such file or directory")
}

/// Seconds since the Unix epoch on the host, by its own clock.
async fn host_now(host: &Host, step: &str) -> Result<i64> {
    let out = exec(host, step, ("date", &["+%s"]), None, DEADLINE).await?;
    out.stdout.trim().parse().map_err(|_| {
        Error::failed(
            step,
            format_args!("`date +%s` printed {:?}", out.stdout.trim()),
        )
        .on(host.name())
        .hint("ballast needs GNU or busybox `date` on the host")
    })
}

/// Parses `stat -c '%Y %n'` output into the mtimes of `dir` and `file`.
fn parse_mtimes(stdout: &str, dir: &str, file: &str) -> (Option<i64>, Option<i64>) {
    let mut found = (None, None);
    for (mtime, name) in stdout.lines().filter_map(|l| l.split_once(' ')) {
        let mtime = mtime.parse().ok();
        if name == dir {
            found.0 = mtime;
        } else if name == file {
            found.1 = mtime;
        }
    }
    found
}

/// Who holds the lock of `service` on `host`, if anyone, and whether they
/// still run.
pub async fn read(host: &Host, service: &str) -> Result<Option<HeldLock>> {
    let step = "read the deploy lock";
    let (dir, file) = (lock_dir(service), info_path(service));
    let out = exec(
        host,
        step,
        ("stat", &["-c", "%Y %n", "--", &dir, &file]),
        None,
        DEADLINE,
    )
    .await?;
    let (dir_mtime, file_mtime) = parse_mtimes(&out.stdout, &dir, &file);
    let Some(dir_mtime) = dir_mtime else {
        return match missing(&out) {
            true => Ok(None),
            false => Err(failed(host, step, &out)),
        };
    };
    let now = host_now(host, step).await?;
    let info = match file_mtime {
        Some(_) => read_info(host, service).await?,
        None => None,
    };
    let lease_age_secs = u64::try_from(now - file_mtime.unwrap_or(dir_mtime)).unwrap_or(0);
    let process = info
        .as_ref()
        .map_or(Process::Unseen, |i| Process::observe(i, &Machine::this()));
    Ok(Some(HeldLock {
        host: host.name().to_string(),
        liveness: judge(info.as_ref(), lease_age_secs, process),
        info,
        lease_age_secs,
    }))
}

/// The lock's record, `None` when missing or unreadable.
async fn read_info(host: &Host, service: &str) -> Result<Option<LockInfo>> {
    let out = exec(
        host,
        "read the deploy lock",
        ("cat", &["--", &info_path(service)]),
        None,
        DEADLINE,
    )
    .await?;
    Ok(serde_json::from_str(&out.stdout).ok())
}

/// Takes the lock of `service` on `host` for `info`. A lock whose holder is
/// provably gone is taken over and returned; any other holder is a conflict.
pub async fn acquire(host: &Host, service: &str, info: &LockInfo) -> Result<Option<Takeover>> {
    let step = "take the deploy lock";
    let mut takeover = None;
    // One more try for making the service's state directory, on its first
    // lock (every later lock finds it: one round trip fewer each time).
    for _ in 0..=TRIES {
        let dir = lock_dir(service);
        let out = exec(host, step, ("mkdir", &["--", &dir]), None, DEADLINE).await?;
        if out.success() {
            write_info(host, service, info).await?;
            return Ok(takeover);
        }
        if out.stderr.contains("No such file or directory") {
            make_state_dir(host, service).await?;
            continue;
        }
        if !out.stderr.contains("File exists") {
            return Err(failed(host, step, &out));
        }
        let Some(held) = read(host, service).await? else {
            continue; // released meanwhile: try again
        };
        match decide(service, &held, info) {
            Decision::Ours => return Ok(takeover),
            Decision::Refuse(e) => return Err(e),
            Decision::TakeOver { removed, why } => {
                if remove_if_token(host, service, &removed.token).await? {
                    takeover = Some(Takeover {
                        host: host.name().to_string(),
                        removed,
                        why,
                    });
                }
            }
        }
    }
    Err(Error::new(
        ErrorKind::Conflict,
        step,
        "the lock kept changing hands while ballast tried to take it",
    )
    .on(host.name())
    .hint("another command is taking it right now: check `ballast lock status`"))
}

/// Makes the service's state directory, where its lock lives.
async fn make_state_dir(host: &Host, service: &str) -> Result<()> {
    let parent = format!("{STATE_ROOT}/{service}");
    let step = "create the state directory";
    exec_ok(host, step, ("mkdir", &["-p", "--", &parent]), DEADLINE).await
}

/// Runs a command that must succeed, with no input.
async fn exec_ok(
    host: &Host,
    step: &str,
    command: (&str, &[&str]),
    deadline: Duration,
) -> Result<()> {
    let out = exec(host, step, command, None, deadline).await?;
    match out.success() {
        true => Ok(()),
        false => Err(failed(host, step, &out)),
    }
}

/// Writes the record into a lock directory just made; removes the directory
/// again if that fails, so no lock without a holder stays behind.
async fn write_info(host: &Host, service: &str, info: &LockInfo) -> Result<()> {
    let step = "record the lock's holder";
    let json = serde_json::to_vec(info).expect("lock info serializes");
    let path = info_path(service);
    let written = exec(host, step, ("tee", &["--", &path]), Some(&json), DEADLINE).await;
    match written {
        Ok(out) if out.success() => Ok(()),
        other => {
            let _ = remove(host, service).await;
            Err(match other {
                Ok(out) => failed(host, step, &out),
                Err(e) => e,
            })
        }
    }
}

/// Removes the lock directory, whoever holds it.
async fn remove(host: &Host, service: &str) -> Result<()> {
    let step = "remove the deploy lock";
    let out = exec(
        host,
        step,
        ("rm", &["-rf", "--", &lock_dir(service)]),
        None,
        DEADLINE,
    )
    .await?;
    match out.success() {
        true => Ok(()),
        false => Err(failed(host, step, &out)),
    }
}

/// Removes the lock if `token` still holds it (a takeover must not remove a
/// lock someone else took meanwhile); `false` when it had changed hands.
async fn remove_if_token(host: &Host, service: &str, token: &str) -> Result<bool> {
    match read_info(host, service).await? {
        Some(info) if info.token == token => remove(host, service).await.map(|()| true),
        _ => Ok(false),
    }
}

/// Renews the lease of the lock held under `token` on `host`. Fails with
/// `NotFound` when the lock is gone and `Conflict` when another holds it.
pub async fn renew(host: &Host, service: &str, token: &str) -> Result<()> {
    let step = "renew the deploy lock";
    let path = info_path(service);
    let out = exec(host, step, ("cat", &["--", &path]), None, RENEW_DEADLINE).await?;
    let info: Option<LockInfo> = serde_json::from_str(&out.stdout).ok();
    match info {
        Some(info) if !token.is_empty() && info.token == token => {}
        Some(info) => return Err(Error::new(
            ErrorKind::Conflict,
            step,
            format_args!(
                "the lock of {service} was taken from this command: it is now held by {}",
                info.describe()
            ),
        )
        .on(host.name())
        .hint(
            "someone released it by force: check `ballast lock status` and what runs on this host",
        )),
        None if missing(&out) => {
            return Err(Error::new(
                ErrorKind::NotFound,
                step,
                format_args!("the lock of {service} was removed while this command held it"),
            )
            .on(host.name())
            .hint("someone released it by force: check `ballast audit` for who"))
        }
        None => return Err(failed(host, step, &out)),
    }
    exec_ok(host, step, ("touch", &["-c", "--", &path]), RENEW_DEADLINE).await
}

/// Releases the lock of `service` on `host` held under `token`: returns the
/// lock removed, or `None` if it was free. A lock held under another token
/// is refused, naming its holder.
pub async fn release(host: &Host, service: &str, token: &str) -> Result<Option<HeldLock>> {
    let Some(held) = read(host, service).await? else {
        return Ok(None);
    };
    match &held.info {
        Some(info) if !token.is_empty() && info.token == token => {
            remove(host, service).await?;
            Ok(Some(held))
        }
        _ => Err(not_yours(service, &held)),
    }
}

/// Removes the lock of `service` on `host` whoever holds it; returns what it
/// removed, or `None` if the lock was free.
pub async fn force_release(host: &Host, service: &str) -> Result<Option<HeldLock>> {
    let held = read(host, service).await?;
    if held.is_some() {
        remove(host, service).await?;
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::fixtures::Scratch;
    use crate::lock::{GoneWhy, Liveness};

    #[test]
    fn stat_output_gives_both_mtimes() {
        let (d, f) = (
            "/var/lib/ballast/shop/lock",
            "/var/lib/ballast/shop/lock/info.json",
        );
        let both = format!("1700000000 {d}\n1700000042 {f}\n");
        assert_eq!(
            parse_mtimes(&both, d, f),
            (Some(1_700_000_000), Some(1_700_000_042))
        );
        assert_eq!(
            parse_mtimes(&format!("1700000000 {d}\n"), d, f),
            (Some(1_700_000_000), None)
        );
        assert_eq!(parse_mtimes("", d, f), (None, None));
    }

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    async fn local() -> Host {
        Host::connect(crate::host::LOCAL, &crate::ssh::SshTarget::new("local"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn on_this_machine_only_the_token_releases_and_a_dead_holder_is_taken_over() {
        let (host, svc) = (local().await, Scratch::new());
        let svc = svc.0.as_str();
        assert_eq!(read(&host, svc).await.unwrap(), None);

        let mine = LockInfo::new("deploy --version v2", None).unwrap();
        assert_eq!(acquire(&host, svc, &mine).await.unwrap(), None);
        let found = read(&host, svc).await.unwrap().unwrap();
        assert_eq!(
            (found.info.as_ref(), found.liveness),
            (Some(&mine), Liveness::Alive)
        );
        assert!(found.lease_age_secs <= 1);
        renew(&host, svc, &mine.token).await.unwrap();

        let other = LockInfo::new("deploy --version v3", None).unwrap();
        let refused = acquire(&host, svc, &other).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Conflict);
        assert_eq!(
            renew(&host, svc, &other.token).await.unwrap_err().kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            release(&host, svc, &other.token).await.unwrap_err().kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            release(&host, svc, "").await.unwrap_err().kind,
            ErrorKind::Conflict
        );
        let released = release(&host, svc, &mine.token).await.unwrap().unwrap();
        assert_eq!(released.info, Some(mine.clone()));
        assert_eq!(release(&host, svc, &mine.token).await.unwrap(), None);
        assert_eq!(
            renew(&host, svc, &mine.token).await.unwrap_err().kind,
            ErrorKind::NotFound
        );

        let killed = LockInfo {
            pid: dead_pid(),
            ..LockInfo::new("deploy", None).unwrap()
        };
        acquire(&host, svc, &killed).await.unwrap();
        let takeover = acquire(&host, svc, &mine).await.unwrap().unwrap();
        assert_eq!(takeover.removed, killed);
        assert_eq!(takeover.why, GoneWhy::NotRunning { pid: killed.pid });

        let removed = force_release(&host, svc).await.unwrap().unwrap();
        assert_eq!(removed.info, Some(mine));
        let manual = killed.manual();
        acquire(&host, svc, &manual).await.unwrap();
        let refused = acquire(&host, svc, &other).await.unwrap_err();
        assert!(refused.cause.contains("(manually)"), "{refused}");
        assert_eq!(
            read(&host, svc).await.unwrap().unwrap().liveness,
            Liveness::Manual
        );
        force_release(&host, svc).await.unwrap();
        assert_eq!(force_release(&host, svc).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stale_lease_of_another_machine_is_a_conflict_until_renewed() {
        let (host, svc) = (local().await, Scratch::new());
        let svc = svc.0.as_str();
        let elsewhere = LockInfo {
            boot_id: Some("another machine".into()),
            ..LockInfo::new("deploy", None).unwrap()
        };
        acquire(&host, svc, &elsewhere).await.unwrap();
        let file = std::fs::File::options()
            .write(true)
            .open(info_path(svc))
            .unwrap();
        let past = std::time::SystemTime::now() - Duration::from_secs(100);
        file.set_modified(past).unwrap();
        let found = read(&host, svc).await.unwrap().unwrap();
        assert!(
            matches!(found.liveness, Liveness::LeaseExpired { for_secs } if for_secs >= 100),
            "{found:?}"
        );
        let mine = LockInfo::new("deploy", None).unwrap();
        let refused = acquire(&host, svc, &mine).await.unwrap_err();
        assert!(
            refused.cause.contains("stopped renewing its lease"),
            "{refused}"
        );
        renew(&host, svc, &elsewhere.token).await.unwrap();
        let found = read(&host, svc).await.unwrap().unwrap();
        assert_eq!(found.liveness, Liveness::Alive);
        assert!(found.lease_age_secs <= 1);
    }
}
