//! `ballast status` and `ballast releases`: what the hosts run and keep,
//! read from the hosts themselves ([`ballast_core::status`] and
//! [`ballast_core::release`] build the tables; this prints them).

use std::path::Path;

use ballast_core::{release, status, Result};

use crate::cli::ScopeArgs;
use crate::commands::service;
use crate::output::Printer;

pub async fn status(config: &Path, accept_new: bool, args: ScopeArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::scope(&loaded, &args)?;
    let fleet = service::fleet_in(&loaded, accept_new, &scope).await;
    let found = release::observe_fleet(&fleet, &loaded.config.service).await;
    let table = status::table(&loaded.config, &scope, &found, &fleet.unreachable);
    fleet.close().await;
    out.result(
        &status_json(&loaded.config.service, &table),
        &render_status(&table),
    );
    Ok(())
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
    let rows = release::table(&found, &scope)?;
    out.result(
        &releases_json(&rows, &unreachable),
        &render_releases(&rows, &unreachable),
    );
    Ok(())
}

/// One line per host and role, then the hosts that did not answer.
fn render_status(table: &status::Table) -> String {
    let mut text = format!(
        "{:<16} {:<10} {:<16} {:<12} {}\n",
        "HOST", "ROLE", "VERSION", "STATE", "STATUS"
    );
    for r in &table.hosts {
        text.push_str(&format!(
            "{:<16} {:<10} {:<16} {:<12} {}\n",
            r.host,
            r.role,
            r.version.as_deref().unwrap_or("-"),
            r.state.word(),
            r.status
        ));
    }
    for u in &table.unreachable {
        text.push_str(&format!("{:<16} did not answer: {}\n", u.host, u.error));
    }
    text
}

fn status_json(service: &str, table: &status::Table) -> serde_json::Value {
    serde_json::json!({"service": service, "hosts": table.hosts, "unreachable": table.unreachable})
}

/// One line per release, newest first, then the hosts that did not answer.
fn render_releases(rows: &[release::Release], unreachable: &[String]) -> String {
    let mut text = format!(
        "{:<16} {:<14} {:<22} {:<20} {}\n",
        "VERSION", "IMAGE", "DEPLOYED AT", "BY", "HOSTS"
    );
    for r in rows {
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
    for u in unreachable {
        text.push_str(&format!("did not answer: {u}\n"));
    }
    text
}

fn releases_json(rows: &[release::Release], unreachable: &[String]) -> serde_json::Value {
    serde_json::json!({"releases": rows, "unreachable": unreachable})
}

#[cfg(test)]
mod tests;
