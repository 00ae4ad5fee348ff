//! `ballast lab up|down|status`: a multi-host lab on this machine.

mod engines;

pub use engines::EngineArgs;

use std::path::PathBuf;

use ballast_core::{Engine, Error, ErrorKind, Result};
use ballast_lab::recipe::RecipeEvent;
use ballast_lab::status::LabStatus;
use ballast_lab::{LabEvent, LabName, UpRequest};

use crate::cli::{
    LabCommand, LabDirArgs, LabImage, LabImageArgs, LabLoadArgs, LabStatusArgs, LabUpArgs,
};
use crate::output::Printer;

pub async fn run(command: LabCommand, out: &Printer) -> Result<()> {
    match command {
        LabCommand::Up(mut args) => {
            let engines = std::mem::take(&mut args.engines);
            up(args, engines, out).await
        }
        LabCommand::Down(args) => {
            let name = LabName::parse(&args.name)?;
            down(&name, &base(&args.dir), out).await
        }
        LabCommand::Status(args) => status(args, out).await,
        LabCommand::Image(args) => image(args, out).await,
        LabCommand::Load(args) => load(args, out).await,
    }
}

fn base(args: &LabDirArgs) -> PathBuf {
    args.dir.clone().unwrap_or_else(ballast_lab::default_base)
}

async fn up(args: LabUpArgs, engine_args: EngineArgs, out: &Printer) -> Result<()> {
    let engines = engine_args.engines(args.hosts)?;
    let req = UpRequest {
        name: LabName::parse(&args.lab.name)?,
        hosts: args.hosts,
        base: base(&args.lab.dir),
        subnet: args.subnet,
        timeout: args.timeout,
        overrides: Default::default(),
    };
    let engine = Engine::local().await?;
    let started = std::time::Instant::now();
    let mut on_event = |event: LabEvent| match event {
        LabEvent::Image(RecipeEvent::Cached { tag }) => {
            out.progress(None, &format!("host image {tag} (cached)"))
        }
        LabEvent::Image(RecipeEvent::Phase(phase)) => out.phase(&phase),
        LabEvent::Image(RecipeEvent::Built { tag, seconds }) => {
            out.finish();
            out.progress(None, &format!("host image {tag} built in {seconds:.0}s"))
        }
        LabEvent::Network { name, subnet } => {
            out.progress(None, &format!("network {name} on {subnet}"));
            out.phase(&format!("starting {} hosts", req.hosts));
        }
        LabEvent::HostStarted { name, ip } => {
            out.progress(Some(&name), &format!("started at {ip}"))
        }
        LabEvent::HostReady { name, seconds } => out.progress(
            Some(&name),
            &format!("answers over SSH with dockerd ({seconds:.1}s)"),
        ),
    };
    let work = ballast_lab::up_with(&engine, &req, &engines, &mut on_event);
    let inventory = tokio::select! {
        result = work => result?,
        _ = tokio::signal::ctrl_c() => {
            out.finish();
            out.progress(None, "interrupted: removing the partial lab");
            let _ = ballast_lab::lab::teardown(&engine, &req.name).await;
            let _ = std::fs::remove_dir_all(ballast_lab::LabDir::new(&req.base, &req.name).path);
            return Err(Error::new(ErrorKind::Interrupted, "start the lab", "interrupted").hint("nothing was left behind"));
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let mut text = format!(
        "lab {} is up: {} hosts on {} in {seconds:.1}s\n",
        inventory.name,
        inventory.hosts.len(),
        inventory.subnet
    );
    for h in &inventory.hosts {
        text.push_str(&format!(
            "  {:<12} {:<14} {} ({} store)\n",
            h.name, h.ip, h.distro, h.store
        ));
    }
    let dir = ballast_lab::LabDir::new(&req.base, &req.name);
    text.push_str(&format!(
        "inventory: {}\ntry: ssh -F {} {}",
        dir.inventory().display(),
        inventory.ssh_config.display(),
        inventory.hosts[0].name
    ));
    let mut value = serde_json::to_value(&inventory).expect("inventory serializes");
    value["seconds"] = seconds.into();
    out.result(&value, &text);
    Ok(())
}

async fn down(name: &LabName, base: &std::path::Path, out: &Printer) -> Result<()> {
    let engine = Engine::local().await?;
    let removed = ballast_lab::down(&engine, name, base).await?;
    out.result(
        &removed,
        &format!(
            "lab {name} removed: {} containers, {} networks, {} volumes{}",
            removed.containers,
            removed.networks,
            removed.volumes,
            removed
                .directory
                .as_ref()
                .map(|d| format!(", directory {}", d.display()))
                .unwrap_or_default()
        ),
    );
    Ok(())
}

async fn status(args: LabStatusArgs, out: &Printer) -> Result<()> {
    let only = args.name.as_deref().map(LabName::parse).transpose()?;
    let engine = Engine::local().await?;
    let labs = ballast_lab::status::status(&engine, &base(&args.dir), only.as_ref()).await?;
    if let (Some(name), true) = (&only, labs.is_empty()) {
        return Err(Error::new(
            ErrorKind::NotFound,
            "show the lab",
            format_args!("there is no lab named {name}"),
        )
        .hint("`ballast lab status` lists the labs that exist"));
    }
    out.result(&serde_json::json!({ "labs": labs }), &render(&labs));
    Ok(())
}

/// `lab image`: builds the image if its recipe's tag is missing, then
/// prints the tag.
async fn image(args: LabImageArgs, out: &Printer) -> Result<()> {
    let recipe = match (args.image, args.distro) {
        (LabImage::Host, distro) => {
            ballast_lab::recipe::host(distro.unwrap_or(ballast_lab::Distro::Bookworm))
        }
        (LabImage::Postgres, None) => ballast_lab::postgres::RECIPE,
        (LabImage::Postgres, Some(_)) => return Err(Error::input(
            "choose the image",
            "--distro is for the host image: the postgres image is Debian bookworm's PostgreSQL 15",
        )
        .hint("drop --distro, or ask for `ballast lab image host --distro ...`")),
    };
    let engine = Engine::local().await?;
    let mut cached = false;
    let mut on_event = |event: RecipeEvent| match event {
        RecipeEvent::Cached { .. } => cached = true,
        RecipeEvent::Phase(phase) => out.phase(&phase),
        RecipeEvent::Built { tag, seconds } => {
            out.finish();
            out.progress(None, &format!("{tag} built in {seconds:.0}s"))
        }
    };
    let tag = recipe.ensure(&engine, &mut on_event).await?;
    out.result(&serde_json::json!({ "image": tag, "cached": cached }), &tag);
    Ok(())
}

fn render(labs: &[LabStatus]) -> String {
    if labs.is_empty() {
        return "no labs: start one with `ballast lab up`".into();
    }
    let mut text = String::new();
    for lab in labs {
        let up = lab.hosts.iter().filter(|h| h.answers).count();
        text.push_str(&format!(
            "lab {} ({}): {up}/{} hosts answer\n",
            lab.name,
            lab.subnet.as_deref().unwrap_or("subnet unknown"),
            lab.hosts.len()
        ));
        text.push_str(&format!(
            "  {:<14} {:<14} {:<23} {:<9} {}\n",
            "HOST", "IP", "ENGINE", "STATE", "ANSWERS"
        ));
        for h in &lab.hosts {
            let answers = if h.answers {
                "yes".to_string()
            } else {
                format!("no: {}", h.problem.as_deref().unwrap_or("unknown"))
            };
            let engine = h.engine.map_or("-".to_string(), |e| {
                format!("{}, {} store", e.distro, e.store)
            });
            text.push_str(&format!(
                "  {:<14} {:<14} {engine:<23} {:<9} {answers}\n",
                h.name,
                h.ip.as_deref().unwrap_or("-"),
                h.state
            ));
        }
    }
    text
}

/// `lab load`: steady requests until interrupted or `--duration` ends,
/// then the report. A run with failed requests exits non-zero, so a script
/// (the quickstart) can tell.
async fn load(args: LabLoadArgs, out: &Printer) -> Result<()> {
    let urls = ballast_lab::load::parse_urls(&args.urls)?;
    if args.rate == 0 {
        return Err(Error::input("start the load", "--rate must be at least 1"));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(ballast_lab::load::run(
        urls,
        args.rate,
        args.connections,
        stopped,
    ));
    out.progress(
        None,
        &format!(
            "{} requests/s over {} connections to {}",
            args.rate,
            args.connections,
            args.urls.join(", ")
        ),
    );
    let cancelled = crate::signals::cancel_on_signals();
    match args.duration {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = cancelled.cancelled() => {}
        },
        None => cancelled.cancelled().await,
    }
    let _ = stop.send(true);
    let report = running
        .await
        .map_err(|e| Error::failed("finish the load", e))?;
    out.result(&report, &render_load(&report));
    if report.failed > 0 {
        return Err(Error::new(
            ErrorKind::Failed,
            "count the load's answers",
            format_args!("{} of {} requests failed", report.failed, report.sent),
        ));
    }
    Ok(())
}

fn render_load(r: &ballast_lab::load::LoadReport) -> String {
    let mut text = format!(
        "{} requests in {:.1}s ({:.0}/s): {} answered 200, {} failed",
        r.sent,
        r.seconds,
        r.rate(),
        r.ok,
        r.failed
    );
    for (version, n) in &r.versions {
        text.push_str(&format!("\n  {n:>7} answered by {version}"));
    }
    for f in &r.failures {
        text.push_str(&format!("\n  failed: {f}"));
    }
    text
}
