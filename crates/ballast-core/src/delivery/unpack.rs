//! Proof that an image loaded on the containerd store can run. That
//! store's `docker load` exits 0 even when it cannot unpack what it
//! loaded (a layer neither in the archive nor unpacked on the host: the
//! error is one line of its output, "Error unpacking image"), and Docker
//! unpacks an image when a container is first created from it. So a
//! container is created from the image, never started, and removed: if
//! that works, every container the deploy creates from it will.

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};

/// Label of the check's container, so a leftover one (an interrupted
/// delivery) is recognisable.
const CHECK_LABEL: &str = "io.ballast.delivery-check";

/// Creates and removes a container of `image` (a name or ID on `to`). An
/// image that cannot be unpacked is a [`ErrorKind::Failed`] naming the
/// engine's cause.
pub async fn check(to: &Engine, image: &str) -> Result<()> {
    let step = format!("check that {image} unpacks on the host");
    let hex: String = image
        .rsplit(['-', ':'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    let name = format!("ballast-delivery-check-{hex}");
    remove(to, &name).await?;
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
    let created = to
        .call(&step, to.docker().create_container(Some(options), body))
        .await;
    match created {
        Ok(_) => remove(to, &name).await,
        // The engine answered, and refused: the image is not usable.
        Err(e) if matches!(e.kind, ErrorKind::Failed | ErrorKind::NotFound) => {
            let _ = remove(to, &name).await;
            Err(Error::failed(&step, e.cause).on(to.host()))
        }
        Err(e) => Err(e.on(to.host())),
    }
}

/// Removes the check's container `name`, if it is there.
async fn remove(to: &Engine, name: &str) -> Result<()> {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match to
        .call(
            &format!("remove {name}"),
            to.docker().remove_container(name, Some(options)),
        )
        .await
    {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
