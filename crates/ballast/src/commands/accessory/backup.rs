//! `ballast accessory backup NAME --to FILE` and `restore NAME --from
//! FILE`: arguments, progress in bytes, and the report. The work is
//! [`ballast_core::accessory::backup`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;

use ballast_core::accessory::backup::{self, Copied, Existing};
use ballast_core::change::Change;
use ballast_core::config::Loaded;
use ballast_core::scope::Scope;
use ballast_core::Result;

use crate::commands::build::human_bytes;
use crate::commands::service;
use crate::output::Printer;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// An accessory of the config.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to write the backup (gzip) on this machine; its SHA-256 goes
    /// beside it as FILE.sha256. Never overwritten
    /// [default: NAME-<UTC time>.backup.gz].
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// An accessory of the config.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A backup made by `ballast accessory backup`, with its FILE.sha256
    /// beside it; checked end to end before the host is touched.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// For an archive backup: empty the data directories before putting
    /// the archive back (without it, they must be empty). Audited.
    #[arg(long)]
    pub replace_data: bool,
}

/// Shows bytes moved, at most once a second.
fn progress<'a>(out: &'a Printer, host: &'a str, what: &'a str) -> impl FnMut(u64) + Send + 'a {
    let last = Mutex::new(Instant::now());
    move |bytes| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            out.progress(Some(host), &format!("{what}: {}", human_bytes(bytes)));
        }
    }
}

/// The accessory's host, for progress lines (empty for an unknown name,
/// which the command then refuses).
fn host_of(loaded: &Loaded, name: &str) -> String {
    loaded
        .config
        .accessories
        .get(name)
        .map(|a| a.host().to_string())
        .unwrap_or_default()
}

fn change<'a>(
    loaded: &'a Loaded,
    reach: &'a ballast_core::host::Reach,
    command: String,
) -> Change<'a> {
    Change {
        loaded,
        reach,
        command,
        scope: Scope::all(),
    }
}

pub async fn backup(
    loaded: &Loaded,
    accept_new: bool,
    args: BackupArgs,
    out: &Printer,
) -> Result<()> {
    let to = args.to.unwrap_or_else(|| {
        let stamp = ballast_core::state::now_rfc3339().replace(':', "");
        PathBuf::from(format!("{}-{stamp}.backup.gz", args.name))
    });
    let reach = service::reach(loaded, accept_new);
    let c = change(
        loaded,
        &reach,
        format!("accessory backup {} --to {}", args.name, to.display()),
    );
    let host = host_of(loaded, &args.name);
    let say = |host: &str, message: &str| out.progress(Some(host), message);
    let mut on_bytes = progress(out, &host, "copied");
    let cancel = crate::signals::cancel_on_signals();
    let copied = backup::backup(&c, &args.name, &to, &say, &mut on_bytes, cancel).await?;
    report(out, &copied, "backed up");
    Ok(())
}

pub async fn restore(
    loaded: &Loaded,
    accept_new: bool,
    args: RestoreArgs,
    out: &Printer,
) -> Result<()> {
    let reach = service::reach(loaded, accept_new);
    let mut command = format!(
        "accessory restore {} --from {}",
        args.name,
        args.from.display()
    );
    if args.replace_data {
        command.push_str(" --replace-data");
    }
    let c = change(loaded, &reach, command);
    let existing = if args.replace_data {
        Existing::Replace
    } else {
        Existing::Keep
    };
    let host = host_of(loaded, &args.name);
    let say = |host: &str, message: &str| out.progress(Some(host), message);
    let mut on_bytes = progress(out, &host, "put back");
    let cancel = crate::signals::cancel_on_signals();
    let copied = backup::restore(
        &c,
        &args.name,
        &args.from,
        existing,
        &say,
        &mut on_bytes,
        cancel,
    )
    .await?;
    report(out, &copied, "restored");
    Ok(())
}

fn report(out: &Printer, c: &Copied, done: &str) {
    let stopped = if c.stopped { ", stopped meanwhile" } else { "" };
    let text = format!(
        "{}: accessory {} {done} ({}{stopped}): {} of data, {} in {}\nSHA-256 {}  (in {}.sha256)",
        c.host,
        c.accessory,
        c.method,
        human_bytes(c.summary.raw),
        human_bytes(c.summary.stored),
        c.file.display(),
        c.summary.sha256,
        c.file.display(),
    );
    out.result(c, &text);
}
