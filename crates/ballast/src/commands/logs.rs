//! `ballast logs`: the logs of every container of the service (its
//! accessories' too), merged across hosts by [`ballast_core::logs`], each
//! line prefixed by host and role (or accessory).

use std::path::Path;
use std::time::SystemTime;

use regex::Regex;

use ballast_core::fleet::Fleet;
use ballast_core::logs::{self, Source, Window};
use ballast_core::{Error, Result};

use crate::cli::{LogWindowArgs, LogsArgs};
use crate::commands::service;
use crate::output::Printer;

/// Prints the merged logs of `sources`, or says that there are none.
pub async fn print(sources: Vec<Source>, window: &Window, grep: Option<&Regex>, out: &Printer) {
    if sources.is_empty() {
        out.progress(None, "no running containers match");
        return;
    }
    logs::merge(sources, window, grep, |l| {
        out.log(&l.host, &l.role, &l.time, &l.text)
    })
    .await;
}

/// The lines asked for, and the `--grep` pattern checked.
pub fn window(args: &LogWindowArgs) -> Result<(Window, Option<Regex>)> {
    let grep = args
        .grep
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| Error::input("read --grep", e).hint("give a valid regular expression"))?;
    let window = Window {
        follow: args.follow,
        tail: args.tail,
        since: args.since.map(|d| Window::cutoff(d, SystemTime::now())),
    };
    Ok((window, grep))
}

pub async fn run(config: &Path, accept_new: bool, args: LogsArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let (window, grep) = window(&args.window)?;
    let scope = service::scope(&loaded, &args.scope)?;
    let hosts = logs::hosts(&loaded.config, &scope);
    let reach = service::reach(&loaded, accept_new);
    let fleet = Fleet::connect(&hosts, &reach, service::concurrency(&loaded)).await;
    for e in &fleet.unreachable {
        out.progress(e.host.as_deref(), &format!("did not answer: {}", e.cause));
    }
    let mut sources = logs::app_sources(&fleet, &loaded.config.service, &scope).await?;
    sources.extend(logs::accessory_sources(&loaded, &fleet, &scope).await?);
    let (sources, elsewhere) = logs::by_driver(&loaded.config, sources);
    for e in &elsewhere {
        out.progress(None, &e.note());
    }
    print(sources, &window, grep.as_ref(), out).await;
    fleet.close().await;
    Ok(())
}
