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
    if let Some(role) = &args.role {
        if !loaded.config.roles.contains_key(role) {
            let known: Vec<&str> = loaded.config.roles.keys().map(String::as_str).collect();
            return Err(
                Error::input("read --role", format_args!("there is no role {role:?}"))
                    .hint(format!("roles: {}", known.join(", "))),
            );
        }
    }
    let fleet = service::fleet(&loaded, accept_new).await;
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
    let (tx, mut rx) = mpsc::channel::<Line>(1024);
    let mut streams = 0;
    for (name, host) in &fleet.hosts {
        if args.host.as_deref().is_some_and(|h| h != name) {
            continue;
        }
        for c in release::observe(host.engine(), &loaded.config.service).await? {
            let wanted_role = args.role.as_deref().is_none_or(|r| r == c.role);
            if !c.running || !wanted_role {
                continue;
            }
            streams += 1;
            let mut options = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .timestamps(true)
                .follow(args.follow)
                .tail(&args.tail.to_string());
            if let Some(s) = since {
                options = options.since(s);
            }
            let docker = host.engine().docker().clone();
            let (tx, host_name, role, id) =
                (tx.clone(), name.clone(), c.role.clone(), c.id.clone());
            tokio::spawn(async move {
                let mut stream = docker.logs(&id, Some(options.build()));
                while let Some(Ok(chunk)) = stream.next().await {
                    for raw in chunk.to_string().lines() {
                        let (time, text) = raw.split_once(' ').unwrap_or(("", raw));
                        let line = Line {
                            time: time.into(),
                            host: host_name.clone(),
                            role: role.clone(),
                            text: text.into(),
                        };
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
    drop(tx);
    if streams == 0 {
        out.progress(None, "no running containers match");
    }
    let keep = |l: &Line| grep.as_ref().is_none_or(|g| g.is_match(&l.text));
    if args.follow {
        while let Some(line) = rx.recv().await {
            if keep(&line) {
                out.log(&line.host, &line.role, &line.time, &line.text);
            }
        }
    } else {
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
    fleet.close().await;
    Ok(())
}
