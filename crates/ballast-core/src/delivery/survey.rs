//! What a host already holds: which image store its engine uses, and how many
//! of an image's layers (from the bottom up) some image there already has.

use std::time::Duration;

use bollard::query_parameters::ListImagesOptionsBuilder;
use futures_util::StreamExt;

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::faults;

/// Images inspected at once while looking for shared layers.
const INSPECT_AT_ONCE: usize = 8;

/// Where an engine keeps images; it decides whether a partial load is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The graph-driver store (overlay2...): `docker load` skips a layer whose
    /// chain exists, so missing layers are enough.
    Classic,
    /// The containerd snapshotter store: partial loads are not verified there.
    Containerd,
}

/// Reads `docker info`'s DriverStatus pairs.
pub fn store_of(driver_status: Option<&[Vec<String>]>) -> Store {
    let containerd = driver_status.unwrap_or_default().iter().any(|pair| {
        pair.len() == 2 && pair[0] == "driver-type" && pair[1] == "io.containerd.snapshotter.v1"
    });
    if containerd {
        Store::Containerd
    } else {
        Store::Classic
    }
}

/// Asks the engine which store it uses.
pub async fn store(to: &Engine) -> Result<Store> {
    let info = to
        .call("read the engine's image store", to.docker().info())
        .await?;
    Ok(store_of(info.driver_status.as_deref()))
}

/// How many of `layers`, from the bottom, `chain` shares with them. A layer
/// counts only if every layer below it matches too: a layer is stored as the
/// chain of layers under it, not on its own.
pub fn shared_prefix(layers: &[String], chain: &[String]) -> usize {
    layers.iter().zip(chain).take_while(|(a, b)| a == b).count()
}

/// The longest start of `layers` that some image on `to` already has, found
/// within `deadline`.
pub async fn shared_layers(to: &Engine, layers: &[String], deadline: Duration) -> Result<usize> {
    let step = "list the images the host has";
    let work = async {
        let options = ListImagesOptionsBuilder::default().all(true).build();
        let images = to
            .call(step, to.docker().list_images(Some(options)))
            .await?;
        let mut inspected = futures_util::stream::iter(images)
            .map(|image| async move {
                to.call(
                    "inspect an image the host has",
                    to.docker().inspect_image(&image.id),
                )
                .await
            })
            .buffer_unordered(INSPECT_AT_ONCE);
        let mut best = 0;
        while let Some(answer) = inspected.next().await {
            let chain = match answer {
                Ok(image) => image.root_fs.and_then(|fs| fs.layers).unwrap_or_default(),
                // Removed since it was listed, or a record the engine
                // cannot describe (on the containerd store, an image whose
                // unpack failed has no RootFS type): it shares nothing.
                Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Failed) => {
                    tracing::debug!(host = to.host(), error = %e, "an image there shares nothing");
                    continue;
                }
                Err(e) => return Err(e),
            };
            best = best.max(shared_prefix(layers, &chain));
            if best == layers.len() {
                break;
            }
        }
        Ok(best)
    };
    if let Some(claimed) = faults::number_at(&format!("survey-shared@{}", to.host())) {
        return Ok(claimed.min(layers.len()));
    }
    match tokio::time::timeout(deadline, work).await {
        Ok(found) => found,
        Err(_) => Err(Error::timeout(step, deadline)
            .on(to.host())
            .hint("the host's engine answers slowly: check it with `docker info` there, then deliver again")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| format!("sha256:{x}")).collect()
    }

    #[test]
    fn the_shared_prefix_stops_at_the_first_difference() {
        let image = ids(&["a", "b", "c"]);
        assert_eq!(shared_prefix(&image, &ids(&["a", "b", "x"])), 2);
        assert_eq!(shared_prefix(&image, &ids(&["a", "b", "c", "d"])), 3);
        assert_eq!(shared_prefix(&image, &ids(&["a"])), 1);
        assert_eq!(shared_prefix(&image, &[]), 0);
        // Same layers in another order: the chains differ from the bottom.
        assert_eq!(shared_prefix(&image, &ids(&["b", "a", "c"])), 0);
        // A matching layer above a different one is not shared.
        assert_eq!(shared_prefix(&image, &ids(&["x", "b", "c"])), 0);
    }

    #[test]
    fn the_containerd_store_is_recognised_by_its_driver_type() {
        let pair = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        let containerd = vec![pair("driver-type", "io.containerd.snapshotter.v1")];
        assert_eq!(store_of(Some(&containerd)), Store::Containerd);
        let overlay = vec![
            pair("Backing Filesystem", "extfs"),
            pair("Supports d_type", "true"),
        ];
        assert_eq!(store_of(Some(&overlay)), Store::Classic);
        assert_eq!(store_of(None), Store::Classic);
    }
}
