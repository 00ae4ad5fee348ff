//! `ballast lock status|release` and `ballast audit`: the lock and the audit
//! log kept on the primary host.

use std::path::Path;

use ballast_core::state::{self, AuditRecord};
use ballast_core::Result;

use crate::cli::LockCommand;
use crate::commands::service;
use crate::output::Printer;

pub async fn run(
    config: &Path,
    accept_new: bool,
    command: LockCommand,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    let service_name = &loaded.config.service;
    let fleet = service::primary(&loaded, accept_new).await?;
    let primary = fleet.primary().expect("connected");
    let result = match command {
        LockCommand::Status => state::read_lock(primary, service_name).await.map(|lock| {
            let text = match &lock {
                Some(l) => format!(
                    "the lock of {service_name} on {} is {}",
                    primary.name(),
                    l.describe()
                ),
                None => format!("the lock of {service_name} is free"),
            };
            out.result(
                &serde_json::json!({"held": lock.is_some(), "lock": lock, "host": primary.name()}),
                &text,
            );
        }),
        LockCommand::Release => {
            let held = state::read_lock(primary, service_name).await?;
            state::release_lock(primary, service_name).await?;
            let record = AuditRecord {
                at: state::now_rfc3339(),
                who: state::whoami(),
                command: "lock release".into(),
                version: None,
                hosts: vec![primary.name().to_string()],
                outcome: match &held {
                    Some(l) => format!("ok: cleared the lock {}", l.describe()),
                    None => "ok: the lock was free".into(),
                },
                forced_unsafe: Vec::new(),
            };
            state::append_audit(primary, service_name, &record).await?;
            let text = match &held {
                Some(l) => format!("released the lock that was {}", l.describe()),
                None => "the lock was already free".into(),
            };
            out.result(
                &serde_json::json!({"released": held.is_some(), "lock": held}),
                &text,
            );
            Ok(())
        }
    };
    fleet.close().await;
    result
}

pub async fn audit(config: &Path, accept_new: bool, tail: usize, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let fleet = service::primary(&loaded, accept_new).await?;
    let primary = fleet.primary().expect("connected");
    let records = state::read_audit(primary, &loaded.config.service, tail).await;
    fleet.close().await;
    let records = records?;
    let mut text = String::new();
    for r in &records {
        text.push_str(&format!(
            "{} {} `{}` version={} hosts={} -> {}\n",
            r.at,
            r.who,
            r.command,
            r.version.as_deref().unwrap_or("-"),
            r.hosts.join(","),
            r.outcome
        ));
    }
    if records.is_empty() {
        text.push_str("the audit log is empty\n");
    }
    out.result(&serde_json::json!({"records": records}), &text);
    Ok(())
}
