//! The audit line a deploy, rollback or setup leaves on every host.

use super::{say, Context, OnEvent, Report};
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
    on_event: OnEvent<'_>,
) {
    let (version, result) = match outcome {
        Ok((_, report)) if report.failed() => {
            let failed: Vec<&str> = report
                .hosts
                .iter()
                .filter(|h| h.outcome == "failed")
                .map(|h| h.host.as_str())
                .collect();
            (
                Some(report.version.clone()),
                format!("failed on {}", failed.join(", ")),
            )
        }
        Ok((_, report)) => (Some(report.version.clone()), "ok".to_string()),
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
    };
    let written = fleet
        .each(16, |h: &Host| {
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
