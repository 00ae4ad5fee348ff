//! Plain operations on one container of a host, each with its deadline and
//! an error naming host and step: look at it, create, start, stop, rename,
//! remove. The app rollout, accessories and the proxy all go through
//! these; what is particular to each (labels, names, health) stays with
//! them.

use std::time::Duration;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};

use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;

/// How long past its stop timeout the engine may take to answer a stop
/// (it kills the container at the timeout, then cleans up).
const STOP_SLACK: Duration = Duration::from_secs(15);

/// The container `name` on `host`; `None` only when the engine says there
/// is none. Any other failure (SSH, dockerd, the deadline) is an error:
/// nothing may be removed or replaced because a look failed.
pub async fn inspect(host: &Host, name: &str) -> Result<Option<ContainerInspectResponse>> {
    let engine = host.engine();
    match engine
        .call(
            &format!("inspect container {name}"),
            engine.docker().inspect_container(name, None),
        )
        .await
    {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.on(host.name())),
    }
}

/// Creates `name` from `body`. An image named by its config digest that
/// the engine does not know by it (the containerd image store names images
/// by manifest) is asked for by the tag delivery gave it there.
pub async fn create(host: &Host, name: &str, body: &ContainerCreateBody) -> Result<()> {
    match create_once(host, name, body.clone()).await {
        Err(e) if e.kind == ErrorKind::NotFound => {
            let engine = host.engine();
            let image = body.image.as_deref().unwrap_or_default();
            match engine.resolve_image(image).await? {
                Some(other) if other != image => {
                    let body = ContainerCreateBody {
                        image: Some(other),
                        ..body.clone()
                    };
                    create_once(host, name, body).await
                }
                _ => Err(e),
            }
        }
        other => other,
    }
}

async fn create_once(host: &Host, name: &str, body: ContainerCreateBody) -> Result<()> {
    let engine = host.engine();
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    engine
        .call(
            &format!("create {name}"),
            engine.docker().create_container(Some(options), body),
        )
        .await
        .map(|_| ())
}

pub async fn start(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    engine
        .call(
            &format!("start {name}"),
            engine.docker().start_container(name, None),
        )
        .await
        .map_err(|e| e.on(host.name()))
}

/// Stops `name`, giving it `timeout` after SIGTERM before Docker kills it.
pub async fn stop(host: &Host, name: &str, timeout: Duration) -> Result<()> {
    let engine = host.engine();
    let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
    let options = StopContainerOptionsBuilder::default().t(secs).build();
    let deadline = timeout.saturating_add(STOP_SLACK);
    let step = format!("stop {name}");
    let work = engine.docker().stop_container(name, Some(options));
    match tokio::time::timeout(deadline, work).await {
        Err(_) => Err(Error::timeout(step, deadline).on(host.name())),
        Ok(Err(e)) => Err(engine.error(&step, e)),
        Ok(Ok(())) => Ok(()),
    }
}

pub async fn rename(host: &Host, from: &str, to: &str) -> Result<()> {
    let engine = host.engine();
    let options = RenameContainerOptionsBuilder::default().name(to).build();
    engine
        .call(
            &format!("rename {from} to {to}"),
            engine.docker().rename_container(from, options),
        )
        .await
        .map_err(|e| e.on(host.name()))
}

/// Removes `name`, killing it if it runs; the host directories it mounts
/// stay. A container already gone is an error here (callers that accept
/// it say so).
pub async fn remove(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    engine
        .call(
            &format!("remove {name}"),
            engine.docker().remove_container(name, Some(options)),
        )
        .await
}
