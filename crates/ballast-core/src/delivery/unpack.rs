//! Proof that an image loaded on the containerd store can run. That
//! store's `docker load` exits 0 even when it cannot unpack what it
//! loaded (a layer neither in the archive nor unpacked on the host: the
//! error is one line of its output, "Error unpacking image"), and Docker
//! unpacks an image when a container is first created from it. So a
//! container is created from the image, never started, and removed with
//! its anonymous volumes: if that works, every container the deploy
//! creates from it will.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListContainersOptionsBuilder};

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::prune::{self, AnonymousVolumes};

/// Label of the check's containers, so leftovers (an interrupted delivery)
/// are found and removed.
const CHECK_LABEL: &str = "io.ballast.delivery-check";
/// How long the check may take at most: creating the container unpacks
/// the image if the load did not, a few minutes for a big one.
pub const DEADLINE: Duration = Duration::from_secs(10 * 60);
/// A check container older than this is a leftover: no check runs so long.
const STALE: Duration = Duration::from_secs(15 * 60);

/// Creates and removes a container of `image` (a name or ID on `to`)
/// within `deadline` (creating may unpack a big image). An image that
/// cannot be unpacked is a [`ErrorKind::Failed`] naming the engine's
/// cause.
pub async fn check(to: &Engine, image: &str, deadline: Duration) -> Result<()> {
    let step = format!("check that {image} unpacks on the host");
    remove_leftovers(to).await;
    let name = format!("ballast-delivery-check-{}", super::nonce());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        // Never started: only an image without any command needs one to
        // be created.
        entrypoint: Some(vec!["/ballast-delivery-check".to_string()]),
        cmd: Some(Vec::new()),
        network_disabled: Some(true),
        labels: Some([(CHECK_LABEL.to_string(), "1".to_string())].into()),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created =
        tokio::time::timeout(deadline, to.docker().create_container(Some(options), body)).await;
    match created {
        Ok(Ok(_)) => {
            // The image is proven; a container left behind is only litter,
            // removed by the next check.
            if let Err(e) = remove(to, &name).await {
                tracing::warn!(host = to.host(), error = %e, "the delivery check's container stays");
            }
            Ok(())
        }
        // The engine answered, and refused: the image is not usable.
        Ok(Err(e)) => {
            let e = to.error(&step, e);
            let _ = remove(to, &name).await;
            match e.kind {
                ErrorKind::Failed | ErrorKind::NotFound => {
                    Err(Error::failed(&step, e.cause).on(to.host()))
                }
                _ => Err(e),
            }
        }
        Err(_) => {
            // The engine may still make it: take it away if it did.
            let _ = remove(to, &name).await;
            Err(Error::timeout(&step, deadline).on(to.host()))
        }
    }
}

/// Removes check containers an interrupted delivery left (best effort:
/// litter, not a reason to fail).
async fn remove_leftovers(to: &Engine) {
    let filters = std::collections::HashMap::from([("label", vec![CHECK_LABEL.to_string()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(found) = to
        .call(
            "list leftover delivery checks",
            to.docker().list_containers(Some(options)),
        )
        .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for c in found {
        let old = c.created.is_some_and(|t| now - t > STALE.as_secs() as i64);
        if let (true, Some(id)) = (old, c.id) {
            let _ = remove(to, &id).await;
        }
    }
}

/// Removes the check's container `name` and its anonymous volumes (an
/// image's `VOLUME`s get one each), if it is there.
async fn remove(to: &Engine, name: &str) -> Result<()> {
    prune::remove_container(to, name, true, AnonymousVolumes::Remove).await
}
