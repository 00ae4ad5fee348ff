//! `ballast plan`, `deploy` and `rollback`: the rollout commands.

use std::path::Path;
use std::time::Instant;

use ballast_core::deploy::{self, Context, Event, Goal, Report};
use ballast_core::image::ImageEvent;
use ballast_core::plan::Plan;
use ballast_core::state::{self, AuditRecord};
use ballast_core::{version, Error, ErrorKind, Result};

use crate::cli::{DeployArgs, RollbackArgs, VersionArgs};
use crate::commands::service;
use crate::output::Printer;

pub async fn plan(config: &Path, accept_new: bool, args: VersionArgs, out: &Printer) -> Result<()> {
    let loaded = service::load(config)?;
    let reach = service::reach(&loaded, accept_new);
    let chosen = version::choose(&loaded, args.version.as_deref()).await?;
    let ctx = Context {
        loaded: &loaded,
        reach: &reach,
        command: "plan".into(),
        message: None,
        dry_run: true,
        force_unsafe: Vec::new(),
    };
    let goal = Goal::Deploy {
        image: chosen.image,
        version: chosen.version,
    };
    let on_event = |e: Event| out.progress(e.host.as_deref(), &e.message);
    let (plan, report) = deploy::run(&ctx, &goal, &on_event).await?;
    out.result(&plan, &render_plan(&plan, &report.version));
    Ok(())
}

pub async fn deploy(
    config: &Path,
    accept_new: bool,
    args: DeployArgs,
    out: &Printer,
) -> Result<()> {
    let loaded = service::load(config)?;
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
    let command = format!("deploy --version {}", resolved.version);
    let goal = Goal::Deploy {
        image: resolved.image,
        version: resolved.version,
    };
    let mut report = roll(
        &loaded,
        accept_new,
        command,
        args.message,
        args.force_unsafe_host,
        &goal,
        out,
    )
    .await?;
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
    let command = match &args.version {
        Some(v) => format!("rollback {v}"),
        None => "rollback".to_string(),
    };
    let report = roll(
        &loaded,
        accept_new,
        command,
        args.message,
        args.force_unsafe_host,
        &Goal::Rollback(args.version.clone()),
        out,
    )
    .await?;
    finish(report, out)
}

/// Runs the rollout; on Ctrl-C, releases the lock and records the interruption.
async fn roll(
    loaded: &ballast_core::config::Loaded,
    accept_new: bool,
    command: String,
    message: Option<String>,
    force_unsafe: Vec<String>,
    goal: &Goal,
    out: &Printer,
) -> Result<Report> {
    let reach = service::reach(loaded, accept_new);
    let ctx = Context {
        loaded,
        reach: &reach,
        command: command.clone(),
        message,
        dry_run: false,
        force_unsafe,
    };
    let on_event = |e: Event| out.progress(e.host.as_deref(), &e.message);
    tokio::select! {
        result = deploy::run(&ctx, goal, &on_event) => result.map(|(_, report)| report),
        _ = tokio::signal::ctrl_c() => {
            out.progress(None, "interrupted: releasing the lock");
            interrupted(loaded, accept_new, &command).await;
            Err(Error::new(ErrorKind::Interrupted, command, "interrupted")
                .hint("hosts may be between versions: run `ballast status`, then deploy again"))
        }
    }
}

async fn interrupted(loaded: &ballast_core::config::Loaded, accept_new: bool, command: &str) {
    let Ok(fleet) = service::primary(loaded, accept_new).await else {
        return;
    };
    if let Some(primary) = fleet.primary() {
        let service = &loaded.config.service;
        let _ = state::release_lock(primary, service).await;
        let record = AuditRecord {
            at: state::now_rfc3339(),
            who: state::whoami(),
            command: command.to_string(),
            version: None,
            hosts: loaded.config.hosts(),
            outcome: "interrupted".into(),
            forced_unsafe: Vec::new(),
        };
        let _ = state::append_audit(primary, service, &record).await;
    }
    fleet.close().await;
}

fn finish(report: Report, out: &Printer) -> Result<()> {
    let mut text = format!("{:<16} {:<10} {}\n", "HOST", "ROLE", "OUTCOME");
    for h in &report.hosts {
        text.push_str(&format!("{:<16} {:<10} {}\n", h.host, h.role, h.outcome));
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
    if report.failed() {
        out.result(&report, &text);
        let failed: Vec<String> = report
            .hosts
            .iter()
            .filter(|h| h.outcome == "failed")
            .map(|h| format!("  {}", h.error.as_deref().unwrap_or(&h.host)))
            .collect();
        return Err(Error::failed(
            format!("roll out {}", report.version),
            format_args!("{} host(s) failed:\n{}", failed.len(), failed.join("\n")),
        )
        .hint("failed hosts keep serving their previous version; later batches were not touched. Fix the cause, then deploy again"));
    }
    out.result(
        &report,
        &format!("{text}\nrolled out {} everywhere", report.version),
    );
    Ok(())
}

fn render_plan(plan: &Plan, version: &str) -> String {
    let mut text = format!("plan for {} at {version}:\n", plan.service);
    for (n, batch) in plan.batches.iter().enumerate() {
        text.push_str(&format!("batch {} ({}):\n", n + 1, batch.role));
        for h in &batch.hosts {
            if h.is_current() {
                text.push_str(&format!("  {}: already runs {}\n", h.host, h.target));
                continue;
            }
            text.push_str(&format!("  {}:\n", h.host));
            for step in &h.steps {
                text.push_str(&format!("    - {}\n", step.describe()));
            }
        }
    }
    if plan.is_noop() {
        text.push_str("nothing to do: every host runs this release\n");
    }
    text
}
