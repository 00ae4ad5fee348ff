//! `ballast doctor`: gathers facts from every host of the config (or the
//! ones named with `--host`), runs the rules, and prints per host a table
//! of findings, the config's own findings once, and a summary. `--facts`
//! prints the gathered facts as JSON instead.
//!
//! Its exit code says what it found, with codes of the one table in
//! `exit.rs` (see [`exit_code`]); errors before any host is checked
//! (config, arguments) exit as any command's do.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use ballast_core::doctor::{self, Finding, Gather, HostReport, Severity};
use ballast_core::fleet::Fleet;
use ballast_core::{Error, Result};

use crate::cli::DoctorArgs;
use crate::commands::service;
use crate::exit::Exit;
use crate::output::Printer;

/// Width of the reason and fix columns before they wrap.
const TEXT_WIDTH: usize = 46;

#[derive(Debug, Serialize)]
struct Outcome<'a> {
    hosts: &'a [HostReport],
    summary: Summary,
    exit_code: i32,
}

#[derive(Debug, Serialize)]
struct Summary {
    hosts: usize,
    blocked: usize,
    warned: usize,
    unreachable: usize,
}

/// Runs doctor and returns its exit code.
pub async fn run(config: &Path, accept_new: bool, args: DoctorArgs, out: &Printer) -> Result<i32> {
    let loaded = service::load(config)?;
    let names = select(&loaded.config.hosts(), &args.host)?;
    let reach = service::reach(&loaded, accept_new);
    let concurrency = service::concurrency(&loaded);
    if args.fix {
        let on_event = |e: ballast_core::deploy::Event| out.progress(e.host.as_deref(), &e.message);
        let fixes = ballast_core::setup::Options {
            engine: false,
            upgrade_docker: false,
            restart_docker: args.restart_docker,
            registry_ca: None,
        };
        let remote: Vec<String> = names
            .iter()
            .filter(|h| *h != ballast_core::host::LOCAL)
            .cloned()
            .collect();
        // A fix that could not be made is shown; the check goes on, and
        // says what is still wrong.
        if let Err(e) =
            ballast_core::setup::prepare(&loaded.config, &reach, &remote, &fixes, &on_event).await
        {
            out.error(&e);
        }
    }
    out.phase(&format!("checking {} hosts", names.len()));
    let fleet = Fleet::connect(&names, &reach, concurrency).await;
    let how = Gather {
        image: Some(&loaded.config.image),
        reach: Some(&reach),
        concurrency,
    };
    let facts = doctor::gather(&fleet, how).await;
    fleet.close().await;
    if args.facts {
        let value = serde_json::json!({ "hosts": facts });
        let human = serde_json::to_string_pretty(&value).expect("facts serialize");
        out.result(&value, &human);
        return Ok(Exit::Success.code());
    }
    let reports = doctor::evaluate(&facts, Some(&loaded.config));
    let outcome = Outcome::of(&reports);
    out.result(&outcome, &human(&reports, &outcome.summary));
    Ok(outcome.exit_code)
}

impl Outcome<'_> {
    /// The result `--json` prints: the reports, their summary, the exit code.
    fn of(reports: &[HostReport]) -> Outcome<'_> {
        Outcome {
            hosts: reports,
            summary: summary(reports),
            exit_code: exit_code(reports).code(),
        }
    }
}

/// The hosts to check: all of the config's, or those named, which must be
/// the config's.
fn select(all: &[String], wanted: &[String]) -> Result<Vec<String>> {
    if wanted.is_empty() {
        return Ok(all.to_vec());
    }
    for w in wanted {
        if !all.contains(w) {
            return Err(Error::input(
                "select hosts",
                format_args!("`{w}` is not a host of this config"),
            )
            .hint(format!("its hosts are: {}", all.join(", "))));
        }
    }
    Ok(all.iter().filter(|h| wanted.contains(h)).cloned().collect())
}

/// Doctor's verdict on the hosts it was asked about; the worst thing found
/// wins, so each code means one thing (`exit::DOCTOR` lists them in this
/// order for `--help`):
///
/// - 11 ([`Exit::DoctorBlocked`]): a host has a block finding; deploy would
///   refuse it. This is known for certain and needs a fix on the host, so
///   it outranks everything else.
/// - 5 ([`Exit::Unreachable`], the general "did not answer"): a host could
///   not be checked over SSH. Its state is unknown (it may be blocked too)
///   and a deploy would stop at it as well, so it outranks warnings; it is
///   not a warning, and retrying may be all it takes. An engine that is down
///   on a host that answers is a finding (`engine-down`, a block), not this.
/// - 10 ([`Exit::DoctorWarnings`]): every host answered, none is blocked,
///   and at least one has a warning. Not 1: that means doctor itself failed.
/// - 0 ([`Exit::Success`]): every host answered with nothing above info.
pub fn exit_code(reports: &[HostReport]) -> Exit {
    if reports.iter().any(HostReport::blocks) {
        Exit::DoctorBlocked
    } else if reports.iter().any(|r| r.unreachable.is_some()) {
        Exit::Unreachable
    } else if reports.iter().any(|r| r.worst() == Some(Severity::Warn)) {
        Exit::DoctorWarnings
    } else {
        Exit::Success
    }
}

fn summary(reports: &[HostReport]) -> Summary {
    Summary {
        hosts: reports.len(),
        blocked: reports.iter().filter(|r| r.blocks()).count(),
        warned: reports
            .iter()
            .filter(|r| r.worst() == Some(Severity::Warn))
            .count(),
        unreachable: reports.iter().filter(|r| r.unreachable.is_some()).count(),
    }
}

/// Per host a table of its own findings; the config's findings once, with
/// the hosts they concern; then the summary.
fn human(reports: &[HostReport], summary: &Summary) -> String {
    let mut text = String::new();
    let mut config: BTreeMap<(usize, String, String), (Finding, Vec<&str>)> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        text.push_str(format!("{}  {}", r.host, r.about).trim_end());
        text.push('\n');
        if let Some(why) = &r.unreachable {
            text.push_str(&format!("  unreachable: {why}\n\n"));
        }
        let own: Vec<&Finding> = r.findings.iter().filter(|f| f.role.is_none()).collect();
        for f in r.findings.iter().filter(|f| f.role.is_some()) {
            let key = (
                usize::MAX - f.severity as usize,
                f.rule.to_string(),
                f.detail.clone().unwrap_or_default(),
            );
            config
                .entry(key)
                .or_insert_with(|| (f.clone(), Vec::new()))
                .1
                .push(&reports[i].host);
        }
        if r.unreachable.is_none() {
            if own.is_empty() {
                text.push_str("  no findings\n\n");
            } else {
                text.push_str(&table(&own));
                text.push('\n');
            }
        }
    }
    if !config.is_empty() {
        text.push_str("ballast.yml\n");
        let mut rows: Vec<Finding> = Vec::new();
        for (f, hosts) in config.into_values() {
            let mut f = f;
            f.detail = Some(format!(
                "{} (on {})",
                f.detail.unwrap_or_default(),
                hosts.join(", ")
            ));
            rows.push(f);
        }
        text.push_str(&table(&rows.iter().collect::<Vec<_>>()));
        text.push('\n');
    }
    text.push_str(&format!(
        "{} host{} checked: {} blocked, {} with warnings, {} unreachable\n",
        summary.hosts,
        if summary.hosts == 1 { "" } else { "s" },
        summary.blocked,
        summary.warned,
        summary.unreachable
    ));
    text
}

/// Columns SEVERITY, RULE, REASON, FIX (reason and fix wrapped), each
/// finding followed by what was seen.
fn table(findings: &[&Finding]) -> String {
    let rule_width = findings
        .iter()
        .map(|f| f.rule.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "  {:<10}{:<rw$}  {:<tw$}  FIX\n",
        "SEVERITY",
        "RULE",
        "REASON",
        rw = rule_width,
        tw = TEXT_WIDTH
    );
    for f in findings {
        let reason = wrap(f.reason, TEXT_WIDTH);
        let fix = wrap(f.fix, TEXT_WIDTH);
        for i in 0..reason.len().max(fix.len()) {
            let (sev, rule) = if i == 0 {
                (f.severity.as_str(), f.rule)
            } else {
                ("", "")
            };
            let line = format!(
                "  {sev:<10}{rule:<rw$}  {:<tw$}  {}",
                reason.get(i).map(String::as_str).unwrap_or(""),
                fix.get(i).map(String::as_str).unwrap_or(""),
                rw = rule_width,
                tw = TEXT_WIDTH
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if let Some(d) = &f.detail {
            out.push_str(&format!(
                "  {:<10}{:<rw$}  seen: {d}\n",
                "",
                "",
                rw = rule_width
            ));
        }
    }
    out
}

/// Splits `text` into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests;
