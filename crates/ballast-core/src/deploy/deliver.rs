//! The image to the hosts the plan says lack it, only missing layers sent.
//! Rollbacks never deliver: their images are on the hosts already.

use futures_util::{stream, StreamExt};

use super::{say, Deploy};
use crate::delivery::{self, DeliveryReport};
use crate::engine::Engine;
use crate::error::Result;
use crate::plan::Plan;

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
    say(
        d.on_event,
        None,
        format!("delivering {reference} to {} hosts", needy.len()),
    );
    let prepared = delivery::prepare(&local, reference).await?;
    let results: Vec<Result<DeliveryReport>> = stream::iter(needy)
        .map(|name| {
            let prepared = &prepared;
            async move {
                let host = d.fleet.get(name).expect("planned hosts are connected");
                let report = prepared.send(host.engine(), &mut |_| {}).await?;
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
