//! An accessory's directories and files on its host: data directories
//! created with the configured owner and mode, the operator's files read
//! here (all of them, before any host is touched) and written there, what
//! a data directory looks like (for `details`), and the one place data is
//! ever deleted (`accessory remove --destroy-data`). Every command is a
//! program with its arguments, never a shell string.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::spec::{files_dir, AccessorySpec, FileCopy};
use crate::config::DataDir;
use crate::error::{Error, Result};
use crate::host::Host;

/// Deadline of one command run on the host for a file or directory.
const FILE_DEADLINE: Duration = Duration::from_secs(30);

/// A file read on this machine, ready to write on hosts.
pub struct LocalFile {
    pub copy: FileCopy,
    pub bytes: Vec<u8>,
}

/// Reads every file `spec` copies and records each one's SHA-256 in
/// `spec` (part of its digest); an unreadable one is an input error, found
/// before anything changes on a host.
pub fn read_local(spec: &mut AccessorySpec) -> Result<Vec<LocalFile>> {
    let name = spec.name.clone();
    spec.files
        .iter_mut()
        .map(|f| match std::fs::read(&f.local) {
            Ok(bytes) => {
                f.sha256 = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Ok(LocalFile {
                    copy: f.clone(),
                    bytes,
                })
            }
            Err(e) => Err(Error::input(
                format!("read the files of accessory {name}"),
                format_args!("{}: {e}", f.local),
            )
            .hint("`files[].local` is relative to the config file: fix the path or create the file; nothing was changed on the hosts")),
        })
        .collect()
}

fn octal(mode: u32) -> String {
    format!("{mode:04o}")
}

/// Creates each data directory (and its parents) with its owner and mode,
/// and sets them on one already there. Its content is never touched.
pub async fn make_data_dirs(host: &Host, dirs: &[DataDir]) -> Result<()> {
    for d in dirs {
        let (owner, group, mode) = (d.uid.to_string(), d.gid.to_string(), octal(d.mode));
        host.run_checked(
            &format!("create data directory {}", d.host),
            "install",
            &["-d", "-o", &owner, "-g", &group, "-m", &mode, "--", &d.host],
            None,
            FILE_DEADLINE,
        )
        .await
        .map_err(|e| e.hint("ballast needs root on the host (or write access there) to create data directories with their owner"))?;
    }
    Ok(())
}

/// Writes the files into the accessory's files directory (root only but
/// for the files themselves, which get their own owner and mode); their
/// content travels on stdin.
pub async fn write_files(host: &Host, spec: &AccessorySpec, files: &[LocalFile]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let dir = files_dir(&spec.service, &spec.name);
    let step = format!("copy the files of accessory {}", spec.name);
    host.run_checked(
        &step,
        "install",
        &["-d", "-m", "0755", "--", &dir],
        None,
        FILE_DEADLINE,
    )
    .await?;
    for f in files {
        let c = &f.copy;
        let (owner, group, mode) = (c.uid.to_string(), c.gid.to_string(), octal(c.mode));
        let args = [
            "-o",
            &owner,
            "-g",
            &group,
            "-m",
            &mode,
            "/dev/stdin",
            &c.host,
        ];
        host.run_checked(&step, "install", &args, Some(&f.bytes), FILE_DEADLINE)
            .await?;
    }
    Ok(())
}

/// Removes the accessory's files directory (ballast's copies, not data).
pub async fn remove_files(host: &Host, spec: &AccessorySpec) -> Result<()> {
    let dir = files_dir(&spec.service, &spec.name);
    host.run_checked(
        &format!("remove {dir}"),
        "rm",
        &["-rf", "--", &dir],
        None,
        FILE_DEADLINE,
    )
    .await
}

/// Deletes the data directories, whole. Only `accessory remove NAME
/// --destroy-data`, confirmed, comes here. Returns the paths deleted.
pub async fn destroy_data(host: &Host, dirs: &[DataDir]) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    for d in dirs {
        // Checked when the config loaded; checked again where it matters.
        if !d.host.starts_with('/') || d.host.split('/').filter(|p| !p.is_empty()).count() < 2 {
            return Err(Error::input(
                "destroy data",
                format_args!("{} is no data directory ballast may delete", d.host),
            ));
        }
        host.run_checked(
            &format!("delete data directory {}", d.host),
            "rm",
            &["-rf", "--", &d.host],
            None,
            FILE_DEADLINE,
        )
        .await?;
        gone.push(d.host.clone());
    }
    Ok(gone)
}

/// The data directories that hold anything (a restore from an archive
/// goes only into empty ones, unless told to replace what is there).
pub async fn non_empty(host: &Host, dirs: &[DataDir]) -> Result<Vec<String>> {
    let mut full = Vec::new();
    for d in dirs {
        let out = host
            .run(
                "find",
                &[
                    &d.host,
                    "-mindepth",
                    "1",
                    "-maxdepth",
                    "1",
                    "-print",
                    "-quit",
                ],
                None,
                FILE_DEADLINE,
            )
            .await?;
        if !out.success() {
            return Err(Error::failed(
                format!("look into data directory {}", d.host),
                out.stderr.trim(),
            )
            .on(host.name()));
        }
        if !out.stdout.trim().is_empty() {
            full.push(d.host.clone());
        }
    }
    Ok(full)
}

/// Empties the data directories, keeping the directories themselves
/// (owner and mode). Only `accessory restore --replace-data` comes here.
pub async fn empty_data(host: &Host, dirs: &[DataDir]) -> Result<Vec<String>> {
    let mut emptied = Vec::new();
    for d in dirs {
        if !d.host.starts_with('/') || d.host.split('/').filter(|p| !p.is_empty()).count() < 2 {
            return Err(Error::input(
                "replace data",
                format_args!("{} is no data directory ballast may empty", d.host),
            ));
        }
        host.run_checked(
            &format!("empty data directory {}", d.host),
            "find",
            &[&d.host, "-mindepth", "1", "-delete"],
            None,
            FILE_DEADLINE,
        )
        .await?;
        emptied.push(d.host.clone());
    }
    Ok(emptied)
}

/// A data directory as the host has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirState {
    pub path: String,
    pub container: String,
    pub exists: bool,
    /// `UID:GID` as found.
    pub owner: Option<String>,
    /// Octal, as found.
    pub mode: Option<String>,
    /// `UID:GID` and mode the config asks for.
    pub wanted: String,
}

/// What the host has at each data directory.
pub async fn look(host: &Host, dirs: &[DataDir]) -> Result<Vec<DirState>> {
    let mut out = Vec::new();
    for d in dirs {
        let stat = host
            .run(
                "stat",
                &["-c", "%u:%g %a", "--", &d.host],
                None,
                FILE_DEADLINE,
            )
            .await?;
        let found = stat.success().then(|| stat.stdout.trim().to_string());
        let (owner, mode) = match found.as_deref().and_then(|s| s.split_once(' ')) {
            Some((o, m)) => (Some(o.to_string()), Some(format!("{:0>4}", m))),
            None => (None, None),
        };
        out.push(DirState {
            path: d.host.clone(),
            container: d.container.clone(),
            exists: found.is_some(),
            owner,
            mode,
            wanted: format!("{}:{} {}", d.uid, d.gid, octal(d.mode)),
        });
    }
    Ok(out)
}
