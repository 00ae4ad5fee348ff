//! `ballast doctor`: whether each host's kernel, distribution, storage
//! driver, filesystem and daemon settings are known to be safe for Docker,
//! and whether the service's config keeps data and secrets safe. Facts are
//! gathered per host, in parallel; rules are a table of rows run on those
//! facts alone (DESIGN principle 6), so every rule is unit-tested with facts
//! written by hand.
//!
//! # Layout
//! - [`facts`]: what is known about one host: plain, serializable data.
//! - [`gather`](mod@gather): gathering facts over the fleet's connections.
//! - `shell`: running commands for facts, over SSH alone when the engine is down.
//! - `files`: the small files doctor reads, in one command.
//! - `parse`: reading os-release, daemon.json, `df`, mountinfo, kernel config.
//! - [`rules`]: the table: id, condition, severity, reason, fix, source.
//! - `storage`, `system`, `daemon`, `service`: the conditions, by subject.
//! - [`knowledge`]: data the conditions use: supported distributions,
//!   maintained engines, stateful images, secret words, kernel options.
//! - `docs`: `docs/doctor-rules.md`, generated from the table.
//!
//! Findings are `block` (deploy must refuse the host), `warn` or `info`.

mod daemon;
mod docs;
pub mod facts;
mod files;
pub mod gather;
pub mod knowledge;
pub(crate) mod parse;
pub mod rules;
mod service;
pub(crate) mod shell;
mod storage;
mod system;

#[cfg(test)]
mod engine_fixtures;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::config::{Config, Role};
use crate::fleet::Fleet;

pub use docs::rules_markdown;
pub use facts::{Facts, ImageFacts};
pub use gather::{gather, Gather};
pub use rules::{Check, Rule, RULES};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing breaks.
    Info,
    /// A known way to lose availability or time; deploy goes on.
    Warn,
    /// A known data-loss or crash combination: deploy refuses the host.
    Block,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Block => "block",
        }
    }
}

/// One role of the config as it would run on one host: what config rules
/// look at.
pub struct RoleView<'a> {
    pub config: &'a Config,
    /// The role's name.
    pub name: &'a str,
    pub spec: &'a Role,
    /// The host it would run on (for per-host variables).
    pub host: &'a str,
    /// The service's image as that host has it, if it does.
    pub image: Option<&'a ImageFacts>,
}

/// A rule that fired on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub reason: &'static str,
    pub fix: &'static str,
    pub source: &'static str,
    /// What exactly was seen on this host.
    pub detail: Option<String>,
    /// The role, for findings about the config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Finding {
    fn new(rule: &'static Rule, detail: Option<String>, role: Option<&str>) -> Finding {
        Finding {
            rule: rule.id,
            severity: rule.severity,
            reason: rule.reason,
            fix: rule.fix,
            source: rule.source,
            detail,
            role: role.map(str::to_string),
        }
    }
}

/// What doctor says about one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    pub host: String,
    /// Distribution, kernel, engine and storage in a few words.
    pub about: String,
    /// Most severe first.
    pub findings: Vec<Finding>,
    /// Why the host could not be checked, if it could not.
    pub unreachable: Option<String>,
}

impl HostReport {
    /// Whether a finding forbids deploying to this host.
    pub fn blocks(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Block)
    }

    /// The most severe finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Runs every rule on the facts of every host (and, given the config, every
/// config rule on the roles of each host). Pure.
pub fn evaluate(all: &[Facts], config: Option<&Config>) -> Vec<HostReport> {
    all.iter()
        .map(|facts| {
            let others: Vec<&Facts> = all
                .iter()
                .filter(|o| o.host != facts.host && o.unreachable.is_none())
                .collect();
            let mut findings = Vec::new();
            if facts.unreachable.is_none() {
                findings.extend(host_findings(facts, &others));
            }
            if let Some(config) = config {
                findings.extend(role_findings(config, &facts.host, facts.image.as_ref()));
            }
            sort(&mut findings);
            HostReport {
                host: facts.host.clone(),
                about: facts.describe(),
                findings,
                unreachable: facts.unreachable.clone(),
            }
        })
        .collect()
}

fn host_findings(facts: &Facts, others: &[&Facts]) -> Vec<Finding> {
    RULES
        .iter()
        .filter_map(|rule| {
            let detail = match rule.check {
                Check::Host(check) => check(facts)?,
                Check::Fleet(check) => check(facts, others)?,
                Check::Role(_) => return None,
            };
            Some(Finding::new(rule, Some(detail), None))
        })
        .collect()
}

/// Config rules on every role that runs on `host`.
fn role_findings(config: &Config, host: &str, image: Option<&ImageFacts>) -> Vec<Finding> {
    let mut out = Vec::new();
    for name in config.roles_on(host) {
        let Some(spec) = config.role(name) else {
            continue;
        };
        let view = RoleView {
            config,
            name,
            spec,
            host,
            image,
        };
        for rule in RULES {
            if let Check::Role(check) = rule.check {
                if let Some(detail) = check(&view) {
                    out.push(Finding::new(rule, Some(detail), Some(name)));
                }
            }
        }
    }
    out
}

/// Config rules alone, on every role on every host, each finding once:
/// what doctor says about `ballast.yml` without looking at hosts.
pub fn check_config(config: &Config) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for host in config.hosts() {
        for f in role_findings(config, &host, None) {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    sort(&mut out);
    out
}

/// Most severe first, then in the table's order.
fn sort(findings: &mut [Finding]) {
    let order = |id: &str| RULES.iter().position(|r| r.id == id).unwrap_or(usize::MAX);
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(order(a.rule).cmp(&order(b.rule)))
            .then(a.role.cmp(&b.role))
    });
}

/// Gathers every connected host's facts and runs every rule, config rules
/// included. Hosts the fleet could not reach are reported as unreachable;
/// a host whose SSH works but whose engine does not is blocked by
/// `engine-down`. (With the SSH settings, [`gather()`] also reads such a
/// host's daemon log: the `ballast doctor` command does.)
pub async fn check_hosts(fleet: &Fleet, config: &Config) -> Vec<HostReport> {
    let how = Gather {
        image: Some(&config.image),
        reach: None,
        concurrency: config.concurrency(),
    };
    let facts = gather(fleet, how).await;
    evaluate(&facts, Some(config))
}
