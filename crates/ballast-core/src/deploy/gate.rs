//! The doctor gate of deploy, rollback and setup: hosts with a block
//! finding are refused unless the operator forces them.

use super::{say, Context, OnEvent};
use crate::doctor;
use crate::error::{Error, Result};
use crate::fleet::Fleet;

/// Runs doctor's host rules and refuses hosts with a block finding, unless
/// the operator forced them; returns the forced ones with their rules, for
/// the audit log.
pub(super) async fn doctor_gate(
    ctx: &Context<'_>,
    fleet: &Fleet,
    on_event: OnEvent<'_>,
) -> Result<Vec<String>> {
    say(
        on_event,
        None,
        "checking the hosts against known Docker failure modes".into(),
    );
    let reports = doctor::check_hosts(fleet, &ctx.loaded.config).await;
    let mut refused = Vec::new();
    let mut forced = Vec::new();
    for report in reports {
        // Config findings are doctor's to report; the gate is about hosts.
        let blocks: Vec<&doctor::Finding> = report
            .findings
            .iter()
            .filter(|f| f.severity == doctor::Severity::Block && f.role.is_none())
            .collect();
        if blocks.is_empty() {
            continue;
        }
        let rules: Vec<&str> = blocks.iter().map(|f| f.rule).collect();
        if ctx.force_unsafe.contains(&report.host) {
            say(
                on_event,
                Some(&report.host),
                format!(
                    "warning: unsafe for Docker ({}), deploying anyway as forced",
                    rules.join(", ")
                ),
            );
            forced.push(format!("{} ({})", report.host, rules.join(", ")));
        } else {
            let why: Vec<String> = blocks
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}{}",
                        f.rule,
                        f.reason,
                        f.detail
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            refused.push(format!("  {}: {}", report.host, why.join("; ")));
        }
    }
    if refused.is_empty() {
        return Ok(forced);
    }
    Err(Error::failed(
        "check the hosts (doctor)",
        format_args!("{} host(s) are not safe for Docker:\n{}", refused.len(), refused.join("\n")),
    )
    .hint("`ballast doctor` shows each cause and its fix; to deploy anyway, pass --force-unsafe-host HOST (it is written to the audit log)"))
}
