//! The audit line a deploy, rollback or setup leaves on every host.

use super::{say, Context, OnEvent, Outcome, Report};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::host::Host;
use crate::plan::Plan;
use crate::state::{self, AuditRecord};

/// Appends one record of the outcome to the audit log of every host.
pub(super) async fn audit(
    ctx: &Context<'_>,
    fleet: &Fleet,
    outcome: &Result<(Plan, Report)>,
    forced_unsafe: Vec<String>,
    skipped: &[String],
    took_over: Vec<String>,
    on_event: OnEvent<'_>,
) {
    let (version, result) = match outcome {
        Ok((_, report)) => (Some(report.version.clone()), summary(report)),
        Err(e) if e.kind == crate::ErrorKind::Interrupted => (None, "interrupted".to_string()),
        Err(e) => (None, format!("failed: {e}")),
    };
    let record = AuditRecord {
        at: state::now_rfc3339(),
        who: state::whoami(),
        command: ctx.command.clone(),
        version,
        hosts: fleet.order.clone(),
        outcome: result,
        forced_unsafe,
        skipped: skipped.to_vec(),
        took_over,
    };
    let written = fleet
        .each(|h: &Host| {
            let record = &record;
            let service = &ctx.loaded.config.service;
            async move { state::append_audit(h, service, record).await }
        })
        .await;
    for (host, r) in written {
        if let Err(e) = r {
            say(
                on_event,
                Some(&host),
                format!("warning: audit log not written: {}", e.cause),
            );
        }
    }
}

/// One line for the audit log: "ok", or which hosts ended how.
fn summary(report: &Report) -> String {
    let mut by_outcome: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for h in &report.hosts {
        if !matches!(h.outcome, Outcome::Updated | Outcome::Current) {
            by_outcome
                .entry(h.outcome.word())
                .or_default()
                .push(h.host.as_str());
        }
    }
    if by_outcome.is_empty() {
        return "ok".to_string();
    }
    let parts: Vec<String> = by_outcome
        .iter()
        .map(|(word, hosts)| format!("{word} on {}", hosts.join(", ")))
        .collect();
    let lead = if report.failed() {
        "failed"
    } else if report.interrupted() {
        "interrupted"
    } else {
        "ok"
    };
    format!("{lead}: {}", parts.join("; "))
}
