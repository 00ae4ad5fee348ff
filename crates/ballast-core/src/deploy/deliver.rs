//! The image to the hosts the plan says lack it: for a deploy, from this
//! machine (only missing layers sent, or pushed once and pulled by
//! digest); for a rollback, pulled again by the digest its containers
//! recorded, where a host no longer holds it.

use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};

use super::{say, Deploy};
use crate::config::Registry;
use crate::delivery::{self, registry, DeliveryReport, Prepared, Progress};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::image::ImageEvent;
use crate::plan::{Plan, StepKind};

/// How often a delivery under way says how far each host got.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Where the plan's image comes from.
pub(super) enum Supply<'a> {
    /// A deploy: this machine's image of that reference, with its ID here
    /// when the deploy planned; already saved when naming the release
    /// needed it.
    Local {
        reference: &'a str,
        local_id: String,
        saved: Option<Box<Prepared>>,
    },
    /// A rollback: the hosts that lack the release's image pull it again
    /// from [`Plan::image_source`]; without one, none may lack it.
    Recorded,
}

/// What delivery did, and where the image can be pulled again (recorded on
/// the new containers).
pub(super) struct Delivered {
    pub reports: Vec<DeliveryReport>,
    pub source: Option<String>,
}

/// Gets the plan's image to every host the plan marks for delivery.
pub(super) async fn deliver(d: &Deploy<'_>, plan: &Plan, supply: Supply<'_>) -> Result<Delivered> {
    let needy = plan.deliveries();
    let registry = d.ctx.loaded.config.delivery.registry();
    let (reference, local_id, saved) = match supply {
        Supply::Recorded => {
            let reports = again_by_digest(d, plan, registry, &needy).await?;
            return Ok(Delivered {
                reports,
                source: plan.image_source.clone(),
            });
        }
        Supply::Local {
            reference,
            local_id,
            saved,
        } => (reference, local_id, saved),
    };
    // Through a registry, a release that creates containers is pushed even
    // when every host has its image: the push tags it again by version (a
    // registry's garbage collection keeps it) and tells the new containers
    // where to pull it again.
    let creates = plan
        .host_plans()
        .any(|p| p.steps.iter().any(|s| s.kind() == StepKind::Create));
    if needy.is_empty() && (registry.is_none() || !creates) {
        return Ok(Delivered {
            reports: Vec::new(),
            source: None,
        });
    }
    let local = Engine::local().await?;
    if let Some(registry) = registry {
        let planned = registry::Planned {
            reference,
            local_id: &local_id,
            image_id: &plan.image_id,
            version: &plan.version,
        };
        return through_registry(
            d,
            &local,
            planned,
            plan.image_source.as_deref(),
            registry,
            &needy,
        )
        .await;
    }
    say(
        d.on_event,
        None,
        format!("delivering {reference} to {} hosts", needy.len()),
    );
    let prepared = match saved {
        Some(prepared) => *prepared,
        None => delivery::prepare(&local, reference).await?,
    }
    .with_compression(d.ctx.loaded.config.delivery.compression());
    let progress = Progress::new(PROGRESS_EVERY);
    let results: Vec<Result<DeliveryReport>> = stream::iter(needy)
        .map(|name| {
            let (prepared, progress) = (&prepared, &progress);
            async move {
                let host = d.fleet.get(name).expect("planned hosts are connected");
                let mut on_image = |e: ImageEvent| {
                    if let ImageEvent::Sent { host, bytes } = e {
                        if let Some(line) = progress.record(&host, bytes, Instant::now()) {
                            say(d.on_event, None, line);
                        }
                    }
                };
                let sent = prepared.send(host.engine(), &mut on_image).await;
                progress.done(name);
                let report = sent?;
                say(
                    d.on_event,
                    Some(name),
                    if report.skipped {
                        "image already present".to_string()
                    } else {
                        format!(
                            "image delivered: {} of {} layers, {} bytes",
                            report.layers_sent, report.layers_total, report.bytes_sent
                        )
                    },
                );
                Ok(report)
            }
        })
        .buffer_unordered(d.fleet.concurrency)
        .collect()
        .await;
    Ok(Delivered {
        reports: results.into_iter().collect::<Result<_>>()?,
        source: None,
    })
}

/// The repository an image goes to by default: its name without tag and
/// without a registry of its own (`registry.local:5000/team/app:2` →
/// `team/app`).
fn default_repository(image: &str) -> String {
    let name = crate::prune::repository(image).unwrap_or_else(|| image.to_string());
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            rest.to_string()
        }
        _ => name,
    }
}

/// The registry's login, with the password from the secrets.
fn login(d: &Deploy<'_>, registry: &Registry) -> registry::Login {
    let password = d
        .ctx
        .loaded
        .secrets
        .get(&registry.password_secret)
        .unwrap_or_default();
    registry::Login::new(registry, password)
}

/// Pushes the `planned` image once, then has every host in `needy` pull
/// it by digest. `recorded`: where containers of this image already say
/// it can be pulled, kept when only that record was at stake.
async fn through_registry(
    d: &Deploy<'_>,
    local: &Engine,
    planned: registry::Planned<'_>,
    recorded: Option<&str>,
    registry: &Registry,
    needy: &[&str],
) -> Result<Delivered> {
    let login = login(d, registry);
    let repository = registry
        .repository
        .clone()
        .unwrap_or_else(|| default_repository(&d.ctx.loaded.config.image));
    say(
        d.on_event,
        None,
        format!(
            "pushing {} to {}/{repository}",
            planned.reference, registry.server
        ),
    );
    let pushed = match registry::push(local, planned, &repository, &login).await {
        Ok(pushed) => pushed,
        // No host waits for it: only the record of where to pull it
        // again is at stake, and containers may already hold one.
        Err(e) if needy.is_empty() => {
            say(
                d.on_event,
                None,
                format!(
                    "warning: {e}; the new containers record {}",
                    recorded.unwrap_or("no digest to pull it again by")
                ),
            );
            return Ok(Delivered {
                reports: Vec::new(),
                source: recorded.map(str::to_string),
            });
        }
        Err(e) => return Err(e),
    };
    say(
        d.on_event,
        None,
        format!(
            "pushed as {}; {} hosts pull it",
            pushed.by_digest,
            needy.len()
        ),
    );
    let reports = pull_on(d, &pushed, &login, needy).await?;
    Ok(Delivered {
        reports,
        source: Some(pushed.by_digest),
    })
}

/// A rollback: the hosts in `needy` pull the release's image again by the
/// digest its containers recorded.
async fn again_by_digest(
    d: &Deploy<'_>,
    plan: &Plan,
    registry: Option<&Registry>,
    needy: &[&str],
) -> Result<Vec<DeliveryReport>> {
    let Some((pushed, login)) = pull_again(d, plan, registry, needy)? else {
        return Ok(Vec::new());
    };
    say(
        d.on_event,
        None,
        format!(
            "{} lack{} the image of {}: pulling {}",
            needy.join(", "),
            if needy.len() == 1 { "s" } else { "" },
            plan.version,
            pushed.by_digest
        ),
    );
    pull_on(d, &pushed, &login, needy).await
}

/// For a rollback, where the hosts in `needy` get the release's image
/// again: `None` when none lacks it; refused when some do and the release
/// was sent directly (or the registry is no longer configured), so before
/// anything changes.
pub(super) fn pull_again(
    d: &Deploy<'_>,
    plan: &Plan,
    registry: Option<&Registry>,
    needy: &[&str],
) -> Result<Option<(registry::Pushed, registry::Login)>> {
    if needy.is_empty() {
        return Ok(None);
    }
    let (Some(source), Some(registry)) = (&plan.image_source, registry) else {
        return Err(missing_images(plan, needy));
    };
    let login = login(d, registry);
    let pushed = registry::Pushed::recorded(source, &plan.version, &plan.image_id, &login)?;
    Ok(Some((pushed, login)))
}

/// Every host in `needy` pulls `pushed` by digest.
async fn pull_on(
    d: &Deploy<'_>,
    pushed: &registry::Pushed,
    login: &registry::Login,
    needy: &[&str],
) -> Result<Vec<DeliveryReport>> {
    let results: Vec<Result<DeliveryReport>> = stream::iter(needy)
        .map(|name| async move {
            let host = d.fleet.get(name).expect("planned hosts are connected");
            let report = registry::pull(host.engine(), pushed, login).await?;
            say(
                d.on_event,
                Some(name),
                format!("pulled {}", pushed.by_digest),
            );
            Ok(report)
        })
        .buffer_unordered(d.fleet.concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A rollback whose image some hosts lack, with nowhere to pull it from.
fn missing_images(plan: &Plan, lacking: &[&str]) -> Error {
    Error::input(
        "plan the rollback",
        format_args!(
            "{} no longer hold{} the image of {}",
            lacking.join(", "),
            if lacking.len() == 1 { "s" } else { "" },
            plan.version
        ),
    )
    .hint(format!(
        "deploy {} again instead (its image is sent), or roll back the other hosts with --hosts",
        plan.version
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_repository_is_the_image_name_alone() {
        assert_eq!(default_repository("hello"), "hello");
        assert_eq!(default_repository("hello:v1"), "hello");
        assert_eq!(default_repository("team/app:2"), "team/app");
        assert_eq!(default_repository("localhost:5000/app"), "app");
        assert_eq!(default_repository("localhost/app:1"), "app");
        assert_eq!(
            default_repository("registry.local:5000/team/app:2"),
            "team/app"
        );
    }
}
