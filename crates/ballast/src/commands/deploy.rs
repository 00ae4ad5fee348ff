//! `ballast plan`, `deploy` and `rollback`: the rollout commands.

use std::path::Path;
use std::time::Instant;

use ballast_core::config::Reference;
use ballast_core::deploy::{self, Context, Event, Goal, HookAbout, Outcome, Report};
use ballast_core::hooks::Hook;
use ballast_core::image::ImageEvent;
use ballast_core::plan::{Plan, ProxyChange, Switch};
use ballast_core::scope::Scope;
use ballast_core::spec::HealthMode;
use ballast_core::{version, Error, ErrorKind, Result};
use tokio_util::sync::CancellationToken;

use crate::cli::{DeployArgs, PlanArgs, RollbackArgs};
use crate::commands::service;
use crate::output::Printer;
use crate::signals;

pub async fn plan(config: &Path, accept_new: bool, args: PlanArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::change_scope(&loaded, &args.scope)?;
    let reach = service::reach(&loaded, accept_new);
    let chosen = version::choose(&loaded, args.version.version.as_deref()).await?;
    let ctx = Context {
        loaded: &loaded,
        reach: &reach,
        command: "plan".into(),
        message: None,
        dry_run: true,
        force_unsafe: Vec::new(),
        scope,
        cancel: CancellationToken::new(),
    };
    let goal = Goal::Deploy {
        image: chosen.image,
        version: chosen.version,
    };
    let on_event = |e: Event| out.progress(e.host.as_deref(), &e.message);
    let (plan, report) = deploy::run(&ctx, &goal, &on_event).await?;
    out.result(
        &plan,
        &render_plan(&plan, &report.skipped, &loaded.references),
    );
    Ok(())
}

pub async fn deploy(
    config: &Path,
    accept_new: bool,
    args: DeployArgs,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    let scope = service::change_scope(&loaded, &args.scope)?;
    let about = HookAbout {
        loaded: &loaded,
        scope: &scope,
        command: "deploy",
    };
    let on_event = |e: Event| out.progress(e.host.as_deref(), &e.message);
    deploy::run_hook(
        &about,
        Hook::PreBuild,
        args.version.version.as_deref(),
        None,
        &on_event,
    )
    .await?;
    let started = Instant::now();
    out.phase("preparing the image");
    let resolved = version::resolve(&loaded, args.version.version.as_deref(), &mut |e| {
        if let ImageEvent::BuildLine(line) = e {
            out.progress(None, &line)
        }
    })
    .await?;
    out.finish();
    let build_seconds = started.elapsed().as_secs_f64();
    let command = with_scope(format!("deploy --version {}", resolved.version), &scope);
    let goal = Goal::Deploy {
        image: resolved.image,
        version: resolved.version,
    };
    let change = Change {
        command,
        message: args.message,
        force_unsafe: args.force_unsafe_host,
        scope,
    };
    let mut report = roll(&loaded, accept_new, change, &goal, out).await?;
    report.phases.insert(0, ("build".into(), build_seconds));
    finish(report, out)
}

pub async fn rollback(
    config: &Path,
    accept_new: bool,
    args: RollbackArgs,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
    if let Some(v) = &args.version {
        ballast_core::release::check_version(v)?;
    }
    let scope = service::change_scope(&loaded, &args.scope)?;
    let command = match &args.version {
        Some(v) => format!("rollback {v}"),
        None => "rollback".to_string(),
    };
    let change = Change {
        command: with_scope(command, &scope),
        message: args.message,
        force_unsafe: args.force_unsafe_host,
        scope,
    };
    let report = roll(
        &loaded,
        accept_new,
        change,
        &Goal::Rollback(args.version.clone()),
        out,
    )
    .await?;
    finish(report, out)
}

/// What the operator asked to change, and where.
struct Change {
    command: String,
    message: Option<String>,
    force_unsafe: Vec<String>,
    scope: Scope,
}

fn with_scope(command: String, scope: &Scope) -> String {
    match scope.describe() {
        s if s.is_empty() => command,
        s => format!("{command} {s}"),
    }
}

/// Runs the rollout. An interrupt (Ctrl-C, SIGTERM, SIGHUP) lets the core
/// undo what is half done, release the lock and audit; a second one exits.
async fn roll(
    loaded: &ballast_core::config::Loaded,
    accept_new: bool,
    change: Change,
    goal: &Goal,
    out: &Printer,
) -> Result<Report> {
    let reach = service::reach(loaded, accept_new);
    let cancel = signals::cancel_on_signals();
    let ctx = Context {
        loaded,
        reach: &reach,
        command: change.command,
        message: change.message,
        dry_run: false,
        force_unsafe: change.force_unsafe,
        scope: change.scope,
        cancel: cancel.clone(),
    };
    let on_event = |e: Event| out.progress(e.host.as_deref(), &e.message);
    let notice = async {
        cancel.cancelled().await;
        out.progress(
            None,
            "interrupted: undoing what is half done, then releasing the lock (a second interrupt exits at once)",
        );
        std::future::pending::<()>().await
    };
    tokio::select! {
        result = deploy::run(&ctx, goal, &on_event) => result.map(|(_, report)| report),
        () = notice => unreachable!("pending never completes"),
    }
}

fn finish(report: Report, out: &Printer) -> Result<()> {
    out.result(&report, &render_report(&report));
    outcome(&report)
}

/// How the command ends: `Ok` when every host took the release; else the
/// error naming the hosts that did not, and what to do next.
fn outcome(report: &Report) -> Result<()> {
    let problems: Vec<String> = report
        .hosts
        .iter()
        .filter(|h| h.outcome.is_failure() || h.outcome == Outcome::Interrupted)
        .map(|h| match &h.error {
            Some(e) => format!("  {} ({}): {e}", h.host, h.outcome.word()),
            None => format!("  {}: {}", h.host, h.outcome.word()),
        })
        .collect();
    if report.failed() {
        let reverted = report.hosts.iter().any(|h| h.outcome == Outcome::Reverted);
        return Err(Error::failed(
            format!("roll out {}", report.version),
            format_args!(
                "{} did not take it:\n{}",
                if problems.len() == 1 { "1 host".to_string() } else { format!("{} hosts", problems.len()) },
                problems.join("\n")
            ),
        )
        .hint(if reverted {
            "the hosts this deploy had switched went back to their previous release (deploy.on_failure: revert). Fix the cause, then deploy again"
        } else {
            "failed hosts keep serving their previous version; later batches were not touched. Fix the cause, then deploy again"
        }));
    }
    if report.interrupted() {
        return Err(Error::new(
            ErrorKind::Interrupted,
            format!("roll out {}", report.version),
            "interrupted by the operator",
        )
        .hint(
            "every host serves a whole release (see above); run the same command again to finish",
        ));
    }
    Ok(())
}

fn render_report(report: &Report) -> String {
    let mut text = format!("{:<16} {:<10} {}\n", "HOST", "ROLE", "OUTCOME");
    for h in &report.hosts {
        text.push_str(&format!(
            "{:<16} {:<10} {}\n",
            h.host,
            h.role,
            h.outcome.word()
        ));
    }
    for h in &report.skipped {
        text.push_str(&format!("{h:<16} {:<10} skipped (did not answer)\n", "-"));
    }
    let phases: Vec<String> = report
        .phases
        .iter()
        .map(|(p, s)| format!("{p} {s:.1}s"))
        .collect();
    let steps: Vec<String> = report
        .steps
        .iter()
        .map(|(p, s)| format!("{p} {s:.1}s"))
        .collect();
    text.push_str(&format!(
        "phases: {} (rolling: {})",
        phases.join(", "),
        steps.join(", ")
    ));
    if !report.failed() && !report.interrupted() {
        let whole = if report.skipped.is_empty() {
            "everywhere".to_string()
        } else {
            format!("on every host but {}", report.skipped.join(", "))
        };
        text.push_str(&format!("\nrolled out {} {whole}", report.version));
    }
    text
}

fn render_plan(plan: &Plan, skipped: &[String], references: &[Reference]) -> String {
    let mut text = format!("plan for {} at {}:\n", plan.service, plan.version);
    // Inventory variables as the config resolved them (clear values only:
    // a secret is never a reference).
    for r in references {
        text.push_str(&format!(
            "env {} = {:?} (from {:?})\n",
            r.key, r.value, r.written
        ));
    }
    for p in &plan.proxies {
        let listen = p.listen.as_ref().map(|l| l.describe()).unwrap_or_default();
        let what = match &p.change {
            ProxyChange::Current => continue,
            ProxyChange::Start => format!("start ballast-proxy ({listen})"),
            ProxyChange::Reconfigure { upgrade_due } => format!(
                "reconfigure ballast-proxy by takeover ({listen}), no connection refused{}",
                if *upgrade_due {
                    "; it runs another build: `ballast proxy upgrade` is due"
                } else {
                    ""
                }
            ),
            ProxyChange::UpgradeDue { running, available } => format!(
                "ballast-proxy runs {running}, this ballast has {available}: left running; `ballast proxy upgrade` is due"
            ),
            ProxyChange::Legacy => format!(
                "replace ballast-proxy from before host networking stop-then-start, once ({listen})"
            ),
            ProxyChange::Unknown { why } => format!("ballast-proxy: not known yet ({why})"),
        };
        text.push_str(&format!("proxy on {}: {what}\n", p.host));
    }
    for (n, batch) in plan.batches.iter().enumerate() {
        text.push_str(&format!("batch {} ({}):\n", n + 1, batch.role));
        for h in &batch.hosts {
            if h.is_current() {
                text.push_str(&format!("  {}: already runs {}\n", h.host, h.target));
                continue;
            }
            text.push_str(&format!("  {}: {}\n", h.host, describe_host(h)));
            if h.deliver {
                text.push_str("    - deliver the image (only the layers the host lacks)\n");
            }
            for (n, step) in h.steps.iter().enumerate() {
                // Started on every host before the first batch switches;
                // the drained old stopped beside the later batches.
                let when = if n < h.ahead {
                    " (ahead of the batches)"
                } else if n >= h.steps.len() - h.behind {
                    " (beside the later batches)"
                } else {
                    ""
                };
                text.push_str(&format!("    - {}{when}\n", step.describe()));
            }
        }
    }
    for h in skipped {
        text.push_str(&format!("skipped: {h} (did not answer)\n"));
    }
    if plan.is_noop() {
        text.push_str("nothing to do: every host runs this release\n");
    }
    text
}

/// How a host's target is checked and switched, in a few words.
fn describe_host(h: &ballast_core::plan::HostPlan) -> String {
    let health = match &h.health {
        HealthMode::Http { port, path, .. } => format!("GET {path} on port {port}"),
        HealthMode::Docker => "the image's HEALTHCHECK".to_string(),
        HealthMode::Running(settle) => format!("running for {}s", settle.as_secs()),
    };
    let switch = match &h.switch {
        Switch::Proxy(route) => format!(
            "proxy route {} checks GET {}",
            route.service, route.health.path
        ),
        Switch::StopFirst => "old stops first (publishes ports)".to_string(),
        Switch::StartFirst => format!("healthy by {health}, then old stops"),
    };
    format!("{} (config {}; {switch})", h.target, h.digest)
}

#[cfg(test)]
mod tests;
