//! Operations on one accessory container of a host, each with its deadline
//! and an error naming host and step: look at it, create, start, stop,
//! rename, remove, wait until healthy, run a command in it. Reused by every
//! accessory command (and by backup and restore).

use std::time::Duration;

use super::plan::{Found, Observed};
use super::spec::{AccessorySpec, ACCESSORY_LABEL, DIGEST_LABEL, IMAGE_LABEL, SERVICE_LABEL};
pub use crate::container::{create, inspect, rename, start, stop};
use crate::engine::ExecOutput;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;
use crate::release::ContainerState;
use crate::spec::HealthMode;

/// How many of a failed container's last log lines an error shows.
const LOG_LINES: usize = 20;

/// The container called `name` as an accessory container of `spec`; an
/// error if a container of that name is someone else's (ballast never
/// touches it then).
pub async fn observe(host: &Host, spec: &AccessorySpec, name: &str) -> Result<Option<Observed>> {
    let Some(c) = inspect(host, name).await? else {
        return Ok(None);
    };
    let config = c.config.unwrap_or_default();
    let labels = config.labels.unwrap_or_default();
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
    if label(ACCESSORY_LABEL) != spec.name || label(SERVICE_LABEL) != spec.service {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("look at accessory {}", spec.name),
            format_args!("a container named {name} is there, and it is not accessory {} of {}", spec.name, spec.service),
        )
        .on(host.name())
        .hint(format!("ballast leaves containers it did not make alone: rename or remove {name} yourself (`docker rename`), then try again")));
    }
    let state = c.state.unwrap_or_default();
    Ok(Some(Observed {
        name: name.to_string(),
        id: c.id.unwrap_or_default(),
        state: ContainerState::from_docker(
            &state.status.map(|s| s.to_string()).unwrap_or_default(),
        ),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        digest: label(DIGEST_LABEL),
        image: label(IMAGE_LABEL),
        image_id: c.image.unwrap_or_default(),
        started_at: state.started_at.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
    }))
}

/// The current and the kept container of `spec` on `host`.
pub async fn found(host: &Host, spec: &AccessorySpec) -> Result<Found> {
    Ok(Found {
        current: observe(host, spec, &spec.container_name()).await?,
        previous: observe(host, spec, &spec.previous_name()).await?,
    })
}

/// Removes `name` (killing it if it runs); its volumes and the host
/// directories it mounts stay. Gone already is fine.
pub async fn remove(host: &Host, name: &str) -> Result<()> {
    crate::prune::remove_container(
        host.engine(),
        name,
        true,
        crate::prune::AnonymousVolumes::Keep,
    )
    .await
}

/// Waits until `name` is healthy by `mode` within `deadline`; on failure
/// the error carries the container's last log lines (redacted on output).
pub async fn wait_healthy(
    host: &Host,
    name: &str,
    mode: &HealthMode,
    deadline: Duration,
) -> Result<()> {
    match crate::health::await_healthy(host, name, mode, deadline).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let tail = host
                .engine()
                .log_tail(name, LOG_LINES)
                .await
                .unwrap_or_default();
            let cause = match tail.trim() {
                "" => e.cause,
                t => format!("{}; its last log lines:\n{t}", e.cause),
            };
            Err(Error { cause, ..e }.hint(format!(
                "fix the image or its config (`accessories` in ballast.yml); if it only needs longer to start, raise its `health_timeout` ({})",
                crate::error::humanize(deadline)
            )))
        }
    }
}

/// Runs `argv` in the running container `name` (no shell, no terminal),
/// within `deadline`.
pub async fn exec(
    host: &Host,
    name: &str,
    argv: &[&str],
    deadline: Duration,
) -> Result<ExecOutput> {
    host.engine().exec(name, argv, deadline).await
}

/// Whether image `image_id` on `host` has a HEALTHCHECK of its own.
pub async fn image_has_healthcheck(host: &Host, image_id: &str) -> bool {
    let engine = host.engine();
    engine
        .call("inspect image", engine.docker().inspect_image(image_id))
        .await
        .map(|i| crate::image::has_healthcheck(&i))
        .unwrap_or(false)
}

/// The name of `spec`'s container on `host` when it runs (for `accessory
/// exec`, backups): an error saying so when it is not there or stopped.
pub async fn running(host: &Host, spec: &AccessorySpec) -> Result<String> {
    match observe(host, spec, &spec.container_name()).await? {
        Some(c) if c.state == ContainerState::Running => Ok(c.name),
        Some(c) => Err(Error::new(
            ErrorKind::Conflict,
            format!("find the running container of accessory {}", spec.name),
            format_args!("{} is {}", c.name, c.state),
        )
        .on(host.name())
        .hint(format!(
            "start it with `ballast accessory start {}`",
            spec.name
        ))),
        None => Err(super::not_booted(spec, host.name())),
    }
}
