//! How full a host's Docker disk is, in watch: the used share of the
//! filesystem that holds the engine's data root (`DockerRootDir` in
//! `docker info`), read in each look with `df -P` on the host (arguments
//! as data), and what it means for the incident book: at or above
//! `watch.disk_full_percent`, a `disk_full` incident for the host, closed
//! once the share stays below it for `recover_after`.

use std::time::Duration;

use super::assess::Assessment;
use super::incident::Finding;
use super::Key;
use crate::error::{Error, Result};
use crate::host::Host;

/// What one look read of a host's Docker disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSeen {
    /// `df` answered.
    Read(Usage),
    /// It could not be read this time: why. Nothing is judged then.
    Unread(String),
}

/// The filesystem holding the data root, as `df -P` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The engine's data root, e.g. `/var/lib/docker`.
    pub root: String,
    /// Where the filesystem holding it is mounted.
    pub mount: String,
    /// Used share, in percent, as `df` rounds it (up).
    pub used_percent: u8,
}

/// Reads the used share of the filesystem holding the engine's data root
/// on `host`. `root` is the data root if already known (it is asked of the
/// engine otherwise, and comes back for the next look).
pub async fn look(
    host: &Host,
    root: Option<String>,
    deadline: Duration,
) -> (Option<String>, DiskSeen) {
    let root = match root {
        Some(r) => r,
        None => match data_root(host).await {
            Ok(r) => r,
            Err(e) => return (None, DiskSeen::Unread(format!("{}: {}", e.step, e.cause))),
        },
    };
    let seen = match host.run("df", &["-P", "--", &root], None, deadline).await {
        Err(e) => DiskSeen::Unread(format!("{}: {}", e.step, e.cause)),
        Ok(out) if !out.success() => DiskSeen::Unread(format!("df {root}: {}", out.stderr.trim())),
        Ok(out) => match parse_df(&out.stdout) {
            Some((used_percent, mount)) => DiskSeen::Read(Usage {
                root: root.clone(),
                mount,
                used_percent,
            }),
            None => DiskSeen::Unread(format!("df {root}: nothing readable in its output")),
        },
    };
    (Some(root), seen)
}

/// The engine's data root (`DockerRootDir`).
async fn data_root(host: &Host) -> Result<String> {
    let engine = host.engine();
    let info = engine
        .call("read docker info", engine.docker().info())
        .await?;
    info.docker_root_dir
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::failed("read docker info", "no DockerRootDir").on(host.name()))
}

/// `(used percent, mount point)` from the output of `df -P DIR`: its last
/// line is `filesystem blocks used available capacity% mount`, and the
/// mount point may hold spaces (so may the filesystem's name: the
/// capacity is found as the first `N%` after three numbers).
pub fn parse_df(text: &str) -> Option<(u8, String)> {
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let numeric = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
    let at = (3..words.len()).find(|&i| {
        words[i].strip_suffix('%').is_some_and(numeric)
            && words[i - 3..i].iter().all(|w| numeric(w))
    })?;
    let percent: u8 = words[at].trim_end_matches('%').parse().ok()?;
    let mount = words.get(at + 1..)?.join(" ");
    (!mount.is_empty() && percent <= 100).then_some((percent, mount))
}

/// Judges the disk of `host` against `threshold` (percent): a finding at
/// or above it; nothing can be said when it was not read.
pub fn judge(host: &str, seen: Option<&DiskSeen>, threshold: u8, out: &mut Assessment) {
    let key = Key::disk_full(host);
    let usage = match seen {
        Some(DiskSeen::Read(u)) => u,
        Some(DiskSeen::Unread(_)) | None => {
            out.unknown.insert(key);
            return;
        }
    };
    if usage.used_percent < threshold {
        return;
    }
    out.findings.push(Finding {
        key,
        cause: format!(
            "the filesystem holding {} (mounted on {}) is {}% used (watch.disk_full_percent: {threshold}%)",
            usage.root, usage.mount, usage.used_percent
        ),
        inhibited: false,
        container: None,
        hint: Some(format!(
            "see what takes the room with `docker system df` on {host}, free it with \
             `ballast prune` (old releases and images), then give {} more room",
            usage.root
        )),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_output_is_read_from_its_last_line() {
        let text = "Filesystem     1024-blocks      Used Available Capacity Mounted on\n\
                    /dev/vda         263174212  26214400  70254592      28% /var/lib/docker\n";
        assert_eq!(parse_df(text), Some((28, "/var/lib/docker".into())));
        // Spaces in the filesystem's name and in the mount point.
        let text = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                    my disk 100 91 9 91% /mnt/with space\n";
        assert_eq!(parse_df(text), Some((91, "/mnt/with space".into())));
        // A long name on its own line (some df without -P do that).
        let text = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                    /dev/mapper/very-long-name\n  100 100 0 100% /\n";
        assert_eq!(parse_df(text), Some((100, "/".into())));
    }

    #[test]
    fn unreadable_df_output_is_none() {
        assert_eq!(parse_df(""), None);
        assert_eq!(parse_df("df: /nope: No such file or directory\n"), None);
        assert_eq!(
            parse_df("Filesystem 1024-blocks Used Available Capacity Mounted on\n"),
            None
        );
        assert_eq!(parse_df("x 1 2 3 4%\n"), None, "no mount point");
        assert_eq!(parse_df("x 1 2 3 140% /\n"), None);
    }

    fn usage(percent: u8) -> DiskSeen {
        DiskSeen::Read(Usage {
            root: "/var/lib/docker".into(),
            mount: "/".into(),
            used_percent: percent,
        })
    }

    #[test]
    fn the_threshold_is_reached_at_or_above_it() {
        let mut out = Assessment::default();
        judge("h1", Some(&usage(89)), 90, &mut out);
        assert!(out.findings.is_empty() && out.unknown.is_empty());
        judge("h1", Some(&usage(90)), 90, &mut out);
        let f = &out.findings[0];
        assert_eq!(f.key, Key::disk_full("h1"));
        assert_eq!(
            f.cause,
            "the filesystem holding /var/lib/docker (mounted on /) is 90% used (watch.disk_full_percent: 90%)"
        );
        assert!(f.hint.as_deref().unwrap().contains("`ballast prune`"));
        assert!(f.hint.as_deref().unwrap().contains("`docker system df`"));
    }

    #[test]
    fn a_disk_not_read_is_not_judged() {
        let mut out = Assessment::default();
        judge(
            "h1",
            Some(&DiskSeen::Unread("df: not found".into())),
            90,
            &mut out,
        );
        judge("h2", None, 90, &mut out);
        assert!(out.findings.is_empty());
        assert_eq!(
            out.unknown.into_iter().collect::<Vec<_>>(),
            [Key::disk_full("h1"), Key::disk_full("h2")]
        );
    }
}
