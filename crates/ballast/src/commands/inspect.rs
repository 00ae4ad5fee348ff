//! `ballast status` and `ballast releases`: what the hosts run and keep,
//! read from the hosts themselves.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use ballast_core::release::{self, AppContainer};
use ballast_core::Result;

use crate::cli::ScopeArgs;
use crate::commands::service;
use crate::output::Printer;

#[derive(Debug, Serialize)]
struct Row {
    host: String,
    role: String,
    version: Option<String>,
    state: String,
    /// Docker's status line: uptime and health.
    status: String,
}

#[derive(Debug, Serialize)]
struct Unreachable {
    host: String,
    error: String,
}

pub async fn status(config: &Path, accept_new: bool, args: ScopeArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args)?;
    let fleet = service::fleet_in(&loaded, accept_new, &scope).await;
    let found = release::observe_fleet(&fleet, &loaded.config.service).await;
    let found: BTreeMap<String, Result<Vec<AppContainer>>> = found.into_iter().collect();
    let mut rows = Vec::new();
    let mut unreachable: Vec<Unreachable> = fleet
        .unreachable
        .iter()
        .map(|e| Unreachable {
            host: e.host.clone().unwrap_or_default(),
            error: e.cause.clone(),
        })
        .collect();
    for (role_name, role) in &loaded.config.roles {
        if !scope.has_role(role_name) {
            continue;
        }
        for entry in &role.hosts {
            let host = entry.address();
            if !scope.has_host(host) {
                continue;
            }
            let Some(Ok(containers)) = found.get(host) else {
                if let Some(Err(e)) = found.get(host) {
                    unreachable.push(Unreachable {
                        host: host.into(),
                        error: e.cause.clone(),
                    });
                }
                continue;
            };
            let mine: Vec<&AppContainer> =
                containers.iter().filter(|c| &c.role == role_name).collect();
            let running: Vec<&&AppContainer> = mine.iter().filter(|c| c.running).collect();
            if running.is_empty() {
                rows.push(Row {
                    host: host.into(),
                    role: role_name.clone(),
                    version: None,
                    state: if mine.is_empty() {
                        "not deployed"
                    } else {
                        "stopped"
                    }
                    .into(),
                    status: mine.first().map(|c| c.status.clone()).unwrap_or_default(),
                });
            }
            for c in running {
                rows.push(Row {
                    host: host.into(),
                    role: role_name.clone(),
                    version: Some(c.version.clone()),
                    state: c.state.to_string(),
                    status: c.status.clone(),
                });
            }
        }
    }
    unreachable.sort_by(|a, b| a.host.cmp(&b.host));
    unreachable.dedup_by(|a, b| a.host == b.host);
    fleet.close().await;
    let mut text = format!(
        "{:<16} {:<10} {:<16} {:<12} {}\n",
        "HOST", "ROLE", "VERSION", "STATE", "STATUS"
    );
    for r in &rows {
        text.push_str(&format!(
            "{:<16} {:<10} {:<16} {:<12} {}\n",
            r.host,
            r.role,
            r.version.as_deref().unwrap_or("-"),
            r.state,
            r.status
        ));
    }
    for u in &unreachable {
        text.push_str(&format!("{:<16} did not answer: {}\n", u.host, u.error));
    }
    out.result(&serde_json::json!({"service": loaded.config.service, "hosts": rows, "unreachable": unreachable}), &text);
    Ok(())
}

#[derive(Debug, Serialize)]
struct ReleaseRow {
    version: String,
    image_id: String,
    deployed_by: String,
    deployed_at: String,
    /// `host (role): state` for every container of this release.
    hosts: Vec<String>,
    running: bool,
}

pub async fn releases(
    config: &Path,
    accept_new: bool,
    args: ScopeArgs,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args)?;
    let fleet = service::fleet_in(&loaded, accept_new, &scope).await;
    let found = release::observe_fleet(&fleet, &loaded.config.service).await;
    let unreachable: Vec<String> = fleet.unreachable.iter().map(|e| e.to_string()).collect();
    fleet.close().await;
    let mut by_version: BTreeMap<String, ReleaseRow> = BTreeMap::new();
    for (host, result) in found {
        for c in result?.into_iter().filter(|c| scope.has_role(&c.role)) {
            let row = by_version
                .entry(c.version.clone())
                .or_insert_with(|| ReleaseRow {
                    version: c.version.clone(),
                    image_id: c.image_id.clone(),
                    deployed_by: c.deployed_by.clone(),
                    deployed_at: c.deployed_at.clone(),
                    hosts: Vec::new(),
                    running: false,
                });
            row.running |= c.running;
            if c.deployed_at > row.deployed_at {
                row.deployed_at = c.deployed_at.clone();
                row.deployed_by = c.deployed_by.clone();
            }
            row.hosts.push(format!("{host} ({}): {}", c.role, c.state));
        }
    }
    let mut rows: Vec<ReleaseRow> = by_version.into_values().collect();
    rows.sort_by(|a, b| b.deployed_at.cmp(&a.deployed_at));
    let mut text = format!(
        "{:<16} {:<14} {:<22} {:<20} {}\n",
        "VERSION", "IMAGE", "DEPLOYED AT", "BY", "HOSTS"
    );
    for r in &rows {
        let id = r.image_id.trim_start_matches("sha256:");
        text.push_str(&format!(
            "{:<16} {:<14} {:<22} {:<20} {}{}\n",
            r.version,
            &id[..id.len().min(12)],
            r.deployed_at,
            r.deployed_by,
            r.hosts.join(", "),
            if r.running { "" } else { " (retained)" }
        ));
    }
    for u in &unreachable {
        text.push_str(&format!("did not answer: {u}\n"));
    }
    out.result(
        &serde_json::json!({"releases": rows, "unreachable": unreachable}),
        &text,
    );
    Ok(())
}
