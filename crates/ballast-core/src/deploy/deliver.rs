//! The image to the hosts the plan says lack it, only missing layers sent.
//! Rollbacks never deliver: their images are on the hosts already.

use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};

use super::{say, Deploy};
use crate::delivery::{self, registry, DeliveryReport, Progress};
use crate::engine::Engine;
use crate::error::Result;
use crate::image::ImageEvent;
use crate::plan::Plan;

/// How often a delivery under way says how far each host got.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Sends `image_ref` to every host the plan marks for delivery.
pub(super) async fn deliver(
    d: &Deploy<'_>,
    plan: &Plan,
    image_ref: Option<&str>,
) -> Result<Vec<DeliveryReport>> {
    let needy = plan.deliveries();
    let Some(reference) = image_ref else {
        return Ok(Vec::new());
    };
    if needy.is_empty() {
        return Ok(Vec::new());
    }
    let local = Engine::local().await?;
    if let Some(registry) = d.ctx.loaded.config.delivery.registry() {
        return through_registry(d, &local, reference, registry, &needy).await;
    }
    say(
        d.on_event,
        None,
        format!("delivering {reference} to {} hosts", needy.len()),
    );
    let prepared = delivery::prepare(&local, reference)
        .await?
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
    results.into_iter().collect()
}

/// Pushes `reference` once, then has every host in `needy` pull it by digest.
async fn through_registry(
    d: &Deploy<'_>,
    local: &Engine,
    reference: &str,
    registry: &crate::config::Registry,
    needy: &[&str],
) -> Result<Vec<DeliveryReport>> {
    let password = d
        .ctx
        .loaded
        .secrets
        .get(&registry.password_secret)
        .unwrap_or_default();
    let login = registry::Login::new(registry, password);
    let repository = registry.repository.clone().unwrap_or_else(|| {
        let image = &d.ctx.loaded.config.image;
        image.split(':').next().unwrap_or(image).to_string()
    });
    say(
        d.on_event,
        None,
        format!("pushing {reference} to {}/{repository}", registry.server),
    );
    let pushed = registry::push(local, reference, &repository, &login).await?;
    say(
        d.on_event,
        None,
        format!(
            "pushed as {}; {} hosts pull it",
            pushed.by_digest,
            needy.len()
        ),
    );
    let results: Vec<Result<DeliveryReport>> = stream::iter(needy)
        .map(|name| {
            let (pushed, login) = (&pushed, &login);
            async move {
                let host = d.fleet.get(name).expect("planned hosts are connected");
                let report = registry::pull(host.engine(), pushed, login).await?;
                say(
                    d.on_event,
                    Some(name),
                    format!("pulled {}", pushed.by_digest),
                );
                Ok(report)
            }
        })
        .buffer_unordered(d.fleet.concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}
