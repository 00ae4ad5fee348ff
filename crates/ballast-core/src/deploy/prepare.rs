//! What comes between taking the lock and rolling: planning (it only
//! reads, so it runs beside doctor's gate), then, once the gate passed,
//! the pre-deploy hook, the image's delivery and the proxies beside it.

use std::time::Instant;

use super::{
    deliver, interrupted, observe, proxies, release, role_targets, rollback, say, targets,
    unix_now, Deploy, Goal, Report,
};
use crate::error::Result;
use crate::hooks::Hook;
use crate::plan::{self, Plan};

/// A plan, its report so far, and where its image comes from.
pub(super) struct Planned<'g> {
    pub plan: Plan,
    pub report: Report,
    pub supply: deliver::Supply<'g>,
}

/// Observes the hosts, chooses the release and plans; changes nothing.
pub(super) async fn plan_deploy<'g>(d: &Deploy<'_>, goal: &'g Goal) -> Result<Planned<'g>> {
    let ctx = d.ctx;
    let config = &ctx.loaded.config;
    let started = Instant::now();
    let containers = observe::containers(d.fleet, &config.service).await?;
    let (release, image_ref, saved) = match goal {
        Goal::Deploy { image, version } => {
            let release::Local {
                mut release,
                id,
                saved,
            } = release::local_release(ctx, image, version).await?;
            if let Some(registry) = config.delivery.registry() {
                release.source =
                    release::recorded_source(&containers, &release.image_id, &registry.server);
            }
            (release, Some((image, id)), saved)
        }
        Goal::Rollback(wanted) => {
            let server = config.delivery.registry().map(|r| r.server.as_str());
            let release = rollback::choose_rollback(&containers, wanted.as_deref(), server)?;
            say(
                d.on_event,
                None,
                format!("rolling back to {}", release.version),
            );
            (
                rollback::with_healthcheck(d.fleet, release).await,
                None,
                None,
            )
        }
    };
    let reachable = |h: &str| d.fleet.get(h).is_some();
    let keys = targets::digest_keys(d, &config.service).await?;
    let targets = role_targets(ctx.loaded, &release, &ctx.scope, &reachable, &keys);
    if ctx.dry_run {
        targets::say_pending_keys(&targets, d.on_event);
    }
    let states = observe::host_states(d.fleet, &config.service, containers, &targets).await;
    let settings = plan::Settings {
        batch: targets::batch_size(&config.deploy.batch),
        retain: config.deploy.retain,
        now: unix_now(),
        start_ahead: config.deploy.start_ahead,
    };
    let mut plan = plan::plan(
        &config.service,
        &release.version,
        &release.image_id,
        &targets,
        settings,
        &states,
    );
    let wanted = proxies::wanted_proxies(ctx, &plan);
    plan.proxies = plan::proxies(&plan, &states, &wanted);
    let mut report = Report::of(&plan);
    report
        .phases
        .push(("plan".to_string(), started.elapsed().as_secs_f64()));
    plan.image_source = release.source.clone();
    let supply = match image_ref {
        Some((image, id)) => deliver::Supply::Local {
            reference: image,
            local_id: id,
            saved,
        },
        None => {
            let registry = config.delivery.registry();
            deliver::pull_again(d, &plan, registry, &plan.deliveries())?;
            deliver::Supply::Recorded
        }
    };
    Ok(Planned {
        plan,
        report,
        supply,
    })
}

/// Delivers the image and starts the proxies where the plan needs them.
pub(super) async fn carry_out(d: &Deploy<'_>, planned: Planned<'_>) -> Result<(Plan, Report)> {
    let ctx = d.ctx;
    let Planned {
        mut plan,
        mut report,
        supply,
    } = planned;
    ctx.hook(Hook::PreDeploy, Some(&plan.version), None, d.on_event)
        .await?;
    let started = Instant::now();
    let delivering = async {
        tokio::select! {
            delivered = deliver::deliver(d, &plan, supply) => delivered,
            () = ctx.cancel.cancelled() => Err(interrupted("deliver the image")),
        }
    };
    // The proxies need not wait for the image. A proxy being started or
    // upgraded is let finish even if the operator interrupts: it takes
    // over from the old one without dropping a request either way.
    let proxying = proxies::ensure_proxies_on(ctx, d.fleet, &plan, d.on_event);
    let (delivered, proxied) = tokio::join!(delivering, proxying);
    let delivered = delivered?;
    proxied?;
    report.delivered = delivered.reports;
    if delivered.source.is_some() {
        plan.image_source = delivered.source;
    }
    report
        .phases
        .push(("deliver".to_string(), started.elapsed().as_secs_f64()));
    Ok((plan, report))
}
