//! Doctor's rules in watch: every `watch.doctor_every`, on a task of its
//! own (never in a look's way), fresh facts are gathered from every host,
//! a bounded number at a time and within a deadline, and doctor's host
//! rules run on them ([`crate::doctor::evaluate`]). Each host's rules of
//! severity block become that host's [`Checkup`]; the watcher keeps the
//! latest one and judges it in every look: one `doctor_block` incident per
//! rule and host, closed when the rule passes again. Warnings and infos
//! are `ballast doctor`'s to show, never incidents; config rules too (the
//! config does not change under a running watch).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::assess::Assessment;
use super::incident::Finding;
use super::{Key, Kind};
use crate::doctor::{self, Gather, HostReport, Severity};
use crate::fleet::Fleet;
use crate::host::Reach;

/// The longest one run over every host may take; past it, every host is
/// unchecked this time. Doctor's own per-host deadline is shorter.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Doctor's own rule for an engine that does not answer: watch says that
/// as `host_down` already, so it is left out here.
const ENGINE_DOWN: &str = "engine-down";

/// What the last run of the rules said of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkup {
    /// The rules ran: those of severity block that fired (none: all pass).
    Checked(Vec<Block>),
    /// The host could not be checked: why. Its incidents stay as they are.
    Unchecked(String),
}

/// A rule of severity block that fired on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub rule: String,
    pub reason: String,
    pub fix: String,
    pub source: String,
    /// What exactly was seen on the host.
    pub detail: Option<String>,
}

/// Every host's checkup from one run, by host.
pub type Checkups = BTreeMap<String, Checkup>;

/// Starts running the rules every `every`, from now on, on `hosts`
/// reached with `reach`, `concurrency` hosts at a time, on a thread of its
/// own (doctor's gathering is not a task a multi-threaded runtime can
/// take); each run's checkups are sent on the returned receiver. It stops
/// as soon as the receiver is dropped, even in the middle of a run.
pub fn start(
    every: Duration,
    hosts: Vec<String>,
    reach: Reach,
    concurrency: usize,
) -> std::io::Result<mpsc::Receiver<Checkups>> {
    let (tx, rx) = mpsc::channel(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("watch-doctor".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    () = repeat(every, &hosts, &reach, concurrency, &tx) => {}
                    () = tx.closed() => {}
                }
            })
        })?;
    Ok(rx)
}

async fn repeat(
    every: Duration,
    hosts: &[String],
    reach: &Reach,
    concurrency: usize,
    tx: &mpsc::Sender<Checkups>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let checkups = once(hosts, reach, concurrency).await;
        if tx.send(checkups).await.is_err() {
            return;
        }
    }
}

/// One run of the rules on fresh facts of every host, within [`DEADLINE`].
pub async fn once(hosts: &[String], reach: &Reach, concurrency: usize) -> Checkups {
    let work = async {
        let fleet = Fleet::connect(hosts, reach, concurrency).await;
        let how = Gather {
            image: None,
            reach: Some(reach),
            concurrency,
        };
        let facts = doctor::gather(&fleet, how).await;
        fleet.close().await;
        of_reports(&doctor::evaluate(&facts, None))
    };
    match tokio::time::timeout(DEADLINE, work).await {
        Ok(checkups) => checkups,
        Err(_) => {
            let why = format!("not done within {}", crate::error::humanize(DEADLINE));
            hosts
                .iter()
                .map(|h| (h.clone(), Checkup::Unchecked(why.clone())))
                .collect()
        }
    }
}

/// Each host's blocks from doctor's reports.
pub fn of_reports(reports: &[HostReport]) -> Checkups {
    reports
        .iter()
        .map(|r| {
            let checkup = match &r.unreachable {
                Some(why) => Checkup::Unchecked(why.clone()),
                None if r.findings.iter().any(|f| f.rule == ENGINE_DOWN) => {
                    Checkup::Unchecked("its engine does not answer".into())
                }
                None => Checkup::Checked(
                    r.findings
                        .iter()
                        .filter(|f| f.severity == Severity::Block && f.role.is_none())
                        .map(|f| Block {
                            rule: f.rule.to_string(),
                            reason: f.reason.to_string(),
                            fix: f.fix.to_string(),
                            source: f.source.to_string(),
                            detail: f.detail.clone(),
                        })
                        .collect(),
                ),
            };
            (r.host.clone(), checkup)
        })
        .collect()
}

/// Judges the latest checkup of `host`: a finding per rule that blocks.
/// A host not checked yet (watch just started) or not checkable has its
/// `doctor_block` incidents left as they are.
pub fn judge(host: &str, checkup: Option<&Checkup>, out: &mut Assessment) {
    let blocks = match checkup {
        Some(Checkup::Checked(blocks)) => blocks,
        Some(Checkup::Unchecked(_)) | None => {
            out.held.insert((Kind::DoctorBlock, host.to_string()));
            return;
        }
    };
    for b in blocks {
        let detail = b
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        out.findings.push(Finding {
            key: Key::doctor_block(host, &b.rule),
            cause: format!("{}{detail} (source: {})", b.reason, b.source),
            inhibited: false,
            container: None,
            hint: Some(format!(
                "{} (`ballast doctor --host {host}` tells more)",
                b.fix
            )),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Finding as DoctorFinding;

    fn finding(rule: &'static str, severity: Severity, role: Option<&str>) -> DoctorFinding {
        DoctorFinding {
            rule,
            severity,
            reason: "why it matters",
            fix: "what to do",
            source: "docs.docker.com/x",
            detail: Some("what was seen".into()),
            role: role.map(str::to_string),
        }
    }

    fn report(host: &str, findings: Vec<DoctorFinding>, unreachable: Option<&str>) -> HostReport {
        HostReport {
            host: host.into(),
            about: String::new(),
            findings,
            unreachable: unreachable.map(str::to_string),
        }
    }

    #[test]
    fn only_host_rules_that_block_count() {
        let reports = [
            report(
                "h1",
                vec![
                    finding("api-tcp-without-tls", Severity::Block, None),
                    finding("secret-in-clear", Severity::Block, Some("web")),
                    finding("live-restore-off", Severity::Warn, None),
                    finding("something", Severity::Info, None),
                ],
                None,
            ),
            report(
                "h2",
                vec![finding("live-restore-off", Severity::Warn, None)],
                None,
            ),
            report("h3", vec![], Some("ssh: connection refused")),
            report(
                "h4",
                vec![finding(ENGINE_DOWN, Severity::Block, None)],
                None,
            ),
        ];
        let got = of_reports(&reports);
        let Checkup::Checked(blocks) = &got["h1"] else {
            panic!("{got:?}")
        };
        let rules: Vec<&str> = blocks.iter().map(|b| b.rule.as_str()).collect();
        assert_eq!(rules, ["api-tcp-without-tls"]);
        assert_eq!(got["h2"], Checkup::Checked(vec![]));
        assert_eq!(
            got["h3"],
            Checkup::Unchecked("ssh: connection refused".into())
        );
        assert!(matches!(got["h4"], Checkup::Unchecked(_)), "{got:?}");
    }

    #[test]
    fn a_block_is_a_finding_naming_rule_reason_and_source() {
        let checkups = of_reports(&[report(
            "h1",
            vec![finding("api-tcp-without-tls", Severity::Block, None)],
            None,
        )]);
        let mut out = Assessment::default();
        judge("h1", checkups.get("h1"), &mut out);
        let f = &out.findings[0];
        assert_eq!(f.key, Key::doctor_block("h1", "api-tcp-without-tls"));
        assert_eq!(
            f.key.to_string(),
            "doctor rule api-tcp-without-tls blocks h1"
        );
        assert_eq!(
            f.cause,
            "why it matters: what was seen (source: docs.docker.com/x)"
        );
        assert_eq!(
            f.hint.as_deref(),
            Some("what to do (`ballast doctor --host h1` tells more)")
        );
        assert!(out.held.is_empty());
    }

    #[test]
    fn an_unchecked_host_holds_its_incidents() {
        let mut out = Assessment::default();
        judge("h1", None, &mut out);
        judge("h2", Some(&Checkup::Unchecked("timeout".into())), &mut out);
        assert!(out.findings.is_empty());
        assert!(out.held.contains(&(Kind::DoctorBlock, "h1".to_string())));
        assert!(out.held.contains(&(Kind::DoctorBlock, "h2".to_string())));
    }
}
