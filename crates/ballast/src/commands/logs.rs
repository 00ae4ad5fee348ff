//! `ballast logs`: the logs of every container of the service, merged across
//! hosts, each line prefixed by host and role. Without `-f` the lines of all
//! hosts are merged in time order; with `-f` they are shown as they arrive.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use regex::Regex;
use tokio::sync::mpsc;

use ballast_core::release;
use ballast_core::{Error, Result};

use crate::cli::LogsArgs;
use crate::commands::service;
use crate::output::Printer;

/// A container whose log is shown, and what to call it.
pub struct Source {
    pub host: String,
    pub role: String,
    pub docker: bollard::Docker,
    pub container: String,
}

/// Which part of the logs to show.
pub struct Window {
    pub follow: bool,
    pub tail: usize,
    /// Unix seconds; only lines newer than this.
    pub since: Option<i32>,
}

/// Shows the logs of every source, each line prefixed by host and role:
/// merged in time order, or as they arrive when following.
pub async fn merge(sources: Vec<Source>, window: &Window, grep: Option<&Regex>, out: &Printer) {
    if sources.is_empty() {
        out.progress(None, "no running containers match");
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Line>(1024);
    for source in sources {
        let mut options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(window.follow)
            .tail(&window.tail.to_string());
        if let Some(s) = window.since {
            options = options.since(s);
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut stream = source.docker.logs(&source.container, Some(options.build()));
            while let Some(Ok(chunk)) = stream.next().await {
                for raw in chunk.to_string().lines() {
                    let (time, text) = raw.split_once(' ').unwrap_or(("", raw));
                    let line = Line {
                        time: time.into(),
                        host: source.host.clone(),
                        role: source.role.clone(),
                        text: text.into(),
                    };
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let keep = |l: &Line| grep.is_none_or(|g| g.is_match(&l.text));
    if window.follow {
        while let Some(line) = rx.recv().await {
            if keep(&line) {
                out.log(&line.host, &line.role, &line.time, &line.text);
            }
        }
        return;
    }
    let mut lines = Vec::new();
    while let Some(line) = rx.recv().await {
        if keep(&line) {
            lines.push(line);
        }
    }
    lines.sort_by(|a, b| a.time.cmp(&b.time));
    for l in &lines {
        out.log(&l.host, &l.role, &l.time, &l.text);
    }
}

/// One log line and where it came from.
struct Line {
    /// RFC 3339 time Docker put in front of the line; sorts as text.
    time: String,
    host: String,
    role: String,
    text: String,
}

pub async fn run(config: &Path, accept_new: bool, args: LogsArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let grep = args
        .grep
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| Error::input("read --grep", e).hint("give a valid regular expression"))?;
    let scope = service::scope(&loaded, &args.scope)?;
    let fleet = service::fleet_in(&loaded, accept_new, &scope).await;
    for e in &fleet.unreachable {
        out.progress(e.host.as_deref(), &format!("did not answer: {}", e.cause));
    }
    let since = args.since.map(|d| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|n| n.as_secs())
            .unwrap_or(0);
        now.saturating_sub(d.as_secs()) as i32
    });
    let mut sources = Vec::new();
    for (name, host) in &fleet.hosts {
        for c in release::observe(host.engine(), &loaded.config.service).await? {
            if c.running && scope.has_role(&c.role) {
                sources.push(Source {
                    host: name.clone(),
                    role: c.role.clone(),
                    docker: host.engine().docker().clone(),
                    container: c.id.clone(),
                });
            }
        }
    }
    let window = Window {
        follow: args.follow,
        tail: args.tail,
        since,
    };
    merge(sources, &window, grep.as_ref(), out).await;
    fleet.close().await;
    Ok(())
}
