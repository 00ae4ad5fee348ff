//! `ballast accessory backup NAME` and `restore NAME`: the accessory's
//! data streamed over the host's SSH connection to a checksummed file on
//! this machine, and back (the file and the copy itself are in
//! [`crate::backup`]). Both run under the service's lock and are audited.
//! A restore checks the file end to end before it connects to the host,
//! and again just before it writes, so a truncated or altered backup
//! changes nothing. An archive copy stops the accessory meanwhile (unless
//! `backup.stop: false`) and starts it again whatever happened.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::spec::AccessorySpec;
use super::{container, files, not_booted, Say};
use crate::backup::{self, Method, OnBytes, Summary};
use crate::change::{self, Change};
use crate::config::backup::method;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::state::{self, AuditRecord};

/// A backup taken or put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copied {
    pub accessory: String,
    pub host: String,
    pub file: PathBuf,
    #[serde(flatten)]
    pub summary: Summary,
    /// `dump` (commands in the container) or `archive` (data directories).
    pub method: &'static str,
    /// Whether the accessory was stopped for the copy.
    pub stopped: bool,
    /// Data directories emptied before an archive was put back
    /// (`--replace-data` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<String>,
}

/// What a restore may do to data already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// An archive goes only into empty data directories.
    Keep,
    /// Empty the data directories first (archives only; audited).
    Replace,
}

struct Job<'a> {
    spec: AccessorySpec,
    method: Method,
    stop: bool,
    file: &'a Path,
    say: Say<'a>,
}

fn job<'a>(c: &Change<'_>, name: &str, file: &'a Path, say: Say<'a>) -> Result<Job<'a>> {
    let names = super::select(&c.loaded.config, name)?;
    let [name] = names.as_slice() else {
        return Err(Error::input(
            "choose the accessory",
            "backup and restore work on one accessory at a time",
        )
        .hint("name it: `ballast accessory backup db --to db.backup.gz`"));
    };
    let config = &c.loaded.config;
    let a = &config.accessories[name];
    let (method, stop) = method(a, &config.service, name);
    Ok(Job {
        spec: AccessorySpec::new(config, &c.loaded.dir, name, a),
        method,
        stop,
        file,
        say,
    })
}

fn method_word(m: &Method) -> &'static str {
    match m {
        Method::Dump { .. } => "dump",
        Method::Archive { .. } => "archive",
    }
}

/// Backs up accessory `name` into `to` (which must not exist yet).
pub async fn backup(
    c: &Change<'_>,
    name: &str,
    to: &Path,
    say: Say<'_>,
    on_bytes: OnBytes<'_>,
    cancel: CancellationToken,
) -> Result<Copied> {
    let job = job(c, name, to, say)?;
    if to.exists() {
        return Err(Error::input(
            "start the backup file",
            format_args!("{} already exists", to.display()),
        )
        .hint("give another --to, or move the old backup away: a backup is never overwritten"));
    }
    let host = job.spec.host.clone();
    change::run_on(c, std::slice::from_ref(&host), async |fleet| {
        let host = fleet.get(&host).expect("every host answered");
        copy(&job, host, on_bytes, cancel, Direction::Out).await
    })
    .await
}

/// Puts the backup `from` back into accessory `name`.
pub async fn restore(
    c: &Change<'_>,
    name: &str,
    from: &Path,
    existing: Existing,
    say: Say<'_>,
    on_bytes: OnBytes<'_>,
    cancel: CancellationToken,
) -> Result<Copied> {
    let job = job(c, name, from, say)?;
    // Before any host is reached: a bad file changes nothing.
    let summary = backup::verify(from)?;
    say(
        &job.spec.host,
        &format!(
            "{} checked: SHA-256 {}, {} bytes of data",
            from.display(),
            summary.sha256,
            summary.raw
        ),
    );
    let host = job.spec.host.clone();
    let copied = change::run_on(c, std::slice::from_ref(&host), async |fleet| {
        let host = fleet.get(&host).expect("every host answered");
        copy(&job, host, on_bytes, cancel, Direction::In(existing)).await
    })
    .await?;
    Ok(copied)
}

enum Direction {
    Out,
    In(Existing),
}

async fn copy(
    job: &Job<'_>,
    host: &Host,
    on_bytes: OnBytes<'_>,
    cancel: CancellationToken,
    direction: Direction,
) -> Result<Copied> {
    let spec = &job.spec;
    let found = container::found(host, spec).await?;
    let Some(current) = found.current else {
        return Err(not_booted(spec, host.name()));
    };
    let name = current.name.clone();
    let running = current.state.is_active();
    let restoring = matches!(direction, Direction::In(_));
    // Files are put back only into a stopped accessory, whatever `stop` says.
    let stop = matches!(job.method, Method::Archive { .. }) && running && (job.stop || restoring);
    if matches!(job.method, Method::Dump { .. }) && !running {
        return Err(Error::input(
            format!(
                "{} accessory {}",
                if restoring { "restore" } else { "back up" },
                spec.name
            ),
            format_args!("{name} is not running, and its dump commands run inside it"),
        )
        .on(host.name())
        .hint(format!(
            "start it first: `ballast accessory start {}`",
            spec.name
        )));
    }
    let mut replaced = Vec::new();
    if let (Direction::In(existing), Method::Archive { .. }) = (&direction, &job.method) {
        let full = files::non_empty(host, &spec.data).await?;
        match (existing, full.is_empty()) {
            (_, true) => {}
            (Existing::Keep, false) => {
                return Err(Error::input(
                    format!("restore accessory {}", spec.name),
                    format_args!("data directory {} is not empty; nothing was changed", full.join(", ")),
                )
                .on(host.name())
                .hint("an archive is put back into empty data directories; to replace what is there, pass --replace-data (the directories are emptied first, and the audit log says so)"));
            }
            (Existing::Replace, false) => {}
        }
    }
    if stop {
        (job.say)(
            host.name(),
            &format!(
                "stopping {name} for the copy (up to {})",
                crate::error::humanize(spec.stop_timeout)
            ),
        );
        container::stop(host, &name, spec.stop_timeout).await?;
    }
    let result = async {
        if let (Direction::In(Existing::Replace), Method::Archive { .. }) =
            (&direction, &job.method)
        {
            replaced = files::empty_data(host, &spec.data).await?;
            audit_replaced(job, host, &replaced).await;
        }
        match direction {
            Direction::Out => {
                (job.say)(
                    host.name(),
                    &format!("copying the data of {name} to {}", job.file.display()),
                );
                backup::take(host, &name, &job.method, job.file, on_bytes, cancel).await
            }
            Direction::In(_) => {
                (job.say)(
                    host.name(),
                    &format!("putting {} back into {name}", job.file.display()),
                );
                backup::put_back(host, &name, &job.method, job.file, on_bytes, cancel).await
            }
        }
    }
    .await;
    if stop {
        // Started again whatever became of the copy: a failed backup must
        // not leave the database down.
        (job.say)(host.name(), &format!("starting {name} again"));
        container::start(host, &name).await?;
        let mode =
            spec.health_mode(container::image_has_healthcheck(host, &current.image_id).await);
        container::wait_healthy(host, &name, &mode, spec.health_timeout).await?;
    }
    Ok(Copied {
        accessory: spec.name.clone(),
        host: host.name().to_string(),
        file: job.file.to_path_buf(),
        summary: result?,
        method: method_word(&job.method),
        stopped: stop,
        replaced,
    })
}

/// A record of its own for data replaced by a restore.
async fn audit_replaced(job: &Job<'_>, host: &Host, emptied: &[String]) {
    let record = AuditRecord {
        at: state::now_rfc3339(),
        who: state::whoami(),
        command: format!(
            "accessory restore {} --from {} --replace-data",
            job.spec.name,
            job.file.display()
        ),
        version: None,
        hosts: vec![host.name().to_string()],
        outcome: format!(
            "data of accessory {} replaced: {} emptied before the restore",
            job.spec.name,
            emptied.join(", ")
        ),
        forced_unsafe: Vec::new(),
        skipped: Vec::new(),
        took_over: Vec::new(),
    };
    if let Err(e) = state::append_audit(host, &job.spec.service, &record).await {
        tracing::warn!(host = %host.name(), error = %e, "the audit record of replaced data was not written");
    }
}
