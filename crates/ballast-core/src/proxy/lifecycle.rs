//! The proxy's container on a host: what runs now, and replacing it without
//! losing a request.
//!
//! A replacement is a takeover, never stop-then-start: the new container
//! is created as `ballast-proxy-next` (same state directory, host
//! networking); the old one's restart policy is set to `no` first, because
//! the old process exits by itself once the new one has its sockets and
//! Docker would otherwise start it again; the new one starts, finds the
//! old one on the takeover socket, receives its listening sockets and
//! admin socket, and answers `status` with its own `instance`; the old one
//! drains what is in flight (up to its drain time) and exits; it is then
//! removed and the new container takes the name `ballast-proxy`. Until the
//! new instance answers nothing is committed: on any failure the new
//! container is removed and the old one's restart policy restored, so the
//! old proxy keeps serving. A run interrupted half way leaves a
//! `ballast-proxy-next` that the next run finishes or removes
//! ([`finish_leftover`]).
//!
//! A proxy from before host networking (on the `ballast` bridge, with
//! published ports) cannot hand over: Docker holds its ports. It is
//! replaced stop-then-start, once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, HostConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use serde::Serialize;

use super::image::Build;
use super::listen::Listen;
use super::{admin, network, CONTAINER, LABEL, STATE_DIR};
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;

/// The name a new proxy runs under until the old one is gone.
pub const NEXT: &str = "ballast-proxy-next";
const SETTINGS_LABEL: &str = "io.ballast.proxy.settings";
const LISTEN_LABEL: &str = "io.ballast.proxy.listen";
/// How long a new proxy may take to answer on the admin socket.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Beyond its drain time, how long an old proxy may take to exit.
const EXIT_MARGIN: Duration = Duration::from_secs(15);

/// The ballast-proxy container found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProxyFound {
    pub running: bool,
    /// On a bridge network with published ports (from before host
    /// networking): it cannot hand its sockets over.
    pub legacy: bool,
    /// The ballast it runs (none on a legacy proxy).
    pub build: Option<Build>,
    /// The digest of its settings.
    pub settings: Option<String>,
    /// Its settings, to merge with what a deploy needs.
    pub listen: Option<Listen>,
}

/// The image a proxy container runs, and its build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub build: Build,
}

/// What happened to a host's proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Replaced {
    /// It already ran this image with these settings.
    Unchanged,
    /// There was none running: one was started.
    Started,
    /// A new process took the sockets over; nothing was refused.
    TookOver,
    /// A legacy proxy was stopped, then the new one started.
    StoppedFirst,
}

async fn inspect(host: &Host, name: &str) -> Option<ContainerInspectResponse> {
    host.engine()
        .docker()
        .inspect_container(name, None)
        .await
        .ok()
}

fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

fn labels(c: &ContainerInspectResponse) -> HashMap<String, String> {
    c.config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

fn found_of(c: &ContainerInspectResponse) -> ProxyFound {
    let labels = labels(c);
    let mode = c.host_config.as_ref().and_then(|h| h.network_mode.clone());
    ProxyFound {
        running: is_running(c),
        legacy: mode.as_deref() != Some("host"),
        build: Build::from_labels(&labels),
        settings: labels.get(SETTINGS_LABEL).cloned(),
        listen: labels.get(LISTEN_LABEL).and_then(|l| Listen::from_label(l)),
    }
}

/// What runs as the proxy on `host` now.
pub async fn observe(host: &Host) -> ProxyFound {
    inspect(host, CONTAINER)
        .await
        .map(|c| found_of(&c))
        .unwrap_or_default()
}

/// The image the proxy on `host` runs now, to reconfigure it without
/// changing its version.
pub async fn running_image(host: &Host) -> Result<Image> {
    let step = "find the running proxy's image";
    let c = inspect(host, CONTAINER).await.ok_or_else(|| {
        Error::new(ErrorKind::NotFound, step, "the host has no ballast-proxy")
            .on(host.name())
            .hint("`ballast setup` or a deploy starts one")
    })?;
    let build = Build::from_labels(&labels(&c)).ok_or_else(|| {
        Error::failed(step, "the proxy is from before host networking")
            .on(host.name())
            .hint("`ballast proxy upgrade` replaces it")
    })?;
    Ok(Image {
        id: c.image.unwrap_or_default(),
        build,
    })
}

/// Makes `host` run its proxy from `image` with `listen`, by takeover when
/// one runs already (see the module doc).
pub async fn ensure(host: &Host, image: &Image, listen: &Listen) -> Result<Replaced> {
    converge(host, image, listen, false).await
}

/// A fresh proxy process on `host` with the same image and settings, by
/// takeover (a legacy proxy is restarted by Docker: a short refusal).
pub async fn restart(host: &Host) -> Result<Replaced> {
    let found = observe(host).await;
    if found.running && found.legacy {
        restart_legacy(host).await?;
        return Ok(Replaced::StoppedFirst);
    }
    let image = running_image(host).await?;
    let listen = found.listen.ok_or_else(|| {
        Error::failed("restart the proxy", "its settings label is missing")
            .on(host.name())
            .hint("`ballast proxy upgrade` replaces it")
    })?;
    converge(host, &image, &listen, true).await
}

async fn converge(host: &Host, image: &Image, listen: &Listen, always: bool) -> Result<Replaced> {
    network::ensure_network(host, network::NETWORK).await?;
    run_checked(
        host,
        "create the proxy's state directory",
        "mkdir",
        &["-p", "-m", "700", STATE_DIR],
    )
    .await?;
    finish_leftover(host).await?;
    let Some(current) = inspect(host, CONTAINER).await else {
        start_new(host, CONTAINER, image, listen).await?;
        return Ok(Replaced::Started);
    };
    let found = found_of(&current);
    if !found.running {
        remove(host, CONTAINER).await?;
        start_new(host, CONTAINER, image, listen).await?;
        return Ok(Replaced::Started);
    }
    if found.legacy {
        remove(host, CONTAINER).await?;
        start_new(host, CONTAINER, image, listen).await.map_err(|e| {
            e.hint("the old proxy is gone and the new one did not come up: see `docker logs ballast-proxy` on the host, fix the cause and run the command again, which starts one")
        })?;
        return Ok(Replaced::StoppedFirst);
    }
    let same = found.build.as_ref() == Some(&image.build)
        && found.settings.as_deref() == Some(listen.digest().as_str());
    if same && !always {
        return Ok(Replaced::Unchanged);
    }
    let drain = found.listen.map(|l| l.drain_timeout).unwrap_or_default();
    takeover(host, image, listen, drain).await?;
    Ok(Replaced::TookOver)
}

async fn takeover(host: &Host, image: &Image, listen: &Listen, old_drain: Duration) -> Result<()> {
    let old = admin::instance(host).await.map_err(|e| {
        Error {
            step: "ask the running proxy which process it is".into(),
            ..e
        }
        .hint("it does not answer on its admin socket; see `docker logs ballast-proxy` on the host")
    })?;
    create(host, NEXT, image, listen).await?;
    let handover = async {
        set_restart(host, CONTAINER, RestartPolicyNameEnum::NO).await?;
        start(host, NEXT).await?;
        admin::wait_for_instance(host, Some(&old), START_DEADLINE, NEXT).await
    };
    if let Err(e) = handover.await {
        undo_takeover(host).await;
        let hint = e.hint.clone().unwrap_or_default();
        return Err(e.hint(format!("the old proxy keeps serving; {hint}")));
    }
    retire_old(host, old_drain).await?;
    rename(host, NEXT, CONTAINER).await
}

/// The new proxy never took over: it goes, the old one restarts by itself
/// again.
async fn undo_takeover(host: &Host) {
    let _ = remove(host, NEXT).await;
    let _ = set_restart(host, CONTAINER, RestartPolicyNameEnum::ALWAYS).await;
}

/// Waits for the old proxy to exit after draining; stops it past the
/// deadline; removes it.
async fn retire_old(host: &Host, drain: Duration) -> Result<()> {
    let until = Instant::now() + drain + EXIT_MARGIN;
    while Instant::now() < until {
        match inspect(host, CONTAINER).await {
            Some(c) if is_running(&c) => tokio::time::sleep(Duration::from_millis(250)).await,
            _ => break,
        }
    }
    let engine = host.engine();
    if inspect(host, CONTAINER)
        .await
        .is_some_and(|c| is_running(&c))
    {
        let options = StopContainerOptionsBuilder::default().t(5).build();
        engine
            .call(
                "stop the old proxy after its drain time",
                engine.docker().stop_container(CONTAINER, Some(options)),
            )
            .await
            .map_err(|e| e.on(host.name()))?;
    }
    remove(host, CONTAINER).await
}

/// Finishes or undoes what an interrupted takeover left: a
/// `ballast-proxy-next` beside (or instead of) `ballast-proxy`.
pub async fn finish_leftover(host: &Host) -> Result<()> {
    let Some(next) = inspect(host, NEXT).await else {
        return Ok(());
    };
    let next_running = is_running(&next);
    match inspect(host, CONTAINER).await {
        // The old one was already removed: only the rename was left.
        None if next_running => rename(host, NEXT, CONTAINER).await,
        None => remove(host, NEXT).await,
        Some(old) if !is_running(&old) => {
            if next_running {
                remove(host, CONTAINER).await?;
                rename(host, NEXT, CONTAINER).await
            } else {
                remove(host, NEXT).await
            }
        }
        Some(_) if !next_running => {
            remove(host, NEXT).await?;
            set_restart(host, CONTAINER, RestartPolicyNameEnum::ALWAYS).await
        }
        // Both run: if the new one took over, the old one drains and
        // exits; if it never did, the old one keeps running and serving.
        Some(old) => {
            let drain = found_of(&old)
                .listen
                .map(|l| l.drain_timeout)
                .unwrap_or_default();
            let until = Instant::now() + drain + EXIT_MARGIN;
            while Instant::now() < until {
                match inspect(host, CONTAINER).await {
                    Some(c) if is_running(&c) => {
                        tokio::time::sleep(Duration::from_millis(250)).await
                    }
                    _ => {
                        remove(host, CONTAINER).await?;
                        return rename(host, NEXT, CONTAINER).await;
                    }
                }
            }
            undo_takeover(host).await;
            Ok(())
        }
    }
}

async fn start_new(host: &Host, name: &str, image: &Image, listen: &Listen) -> Result<()> {
    create(host, name, image, listen).await?;
    start(host, name).await?;
    admin::wait_for_instance(host, None, START_DEADLINE, name)
        .await
        .map(|_| ())
}

async fn create(host: &Host, name: &str, image: &Image, listen: &Listen) -> Result<()> {
    let mut labels = HashMap::from([
        (LABEL.to_string(), "1".to_string()),
        (SETTINGS_LABEL.to_string(), listen.digest()),
        (LISTEN_LABEL.to_string(), listen.label()),
    ]);
    labels.extend(image.build.labels());
    let body = ContainerCreateBody {
        image: Some(image.id.clone()),
        cmd: Some(listen.args()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{STATE_DIR}:{STATE_DIR}")]),
            // Old and new process share the host's network namespace, so
            // listening sockets can pass from one to the other; Docker's
            // published ports could not.
            network_mode: Some("host".into()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    let engine = host.engine();
    engine
        .call(
            &format!("create {name}"),
            engine.docker().create_container(Some(options), body),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.on(host.name()))
}

async fn start(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    engine
        .call(
            &format!("start {name}"),
            engine.docker().start_container(name, None),
        )
        .await
        .map_err(|e| e.on(host.name()))
}

async fn remove(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match engine
        .call(
            &format!("remove {name}"),
            engine.docker().remove_container(name, Some(options)),
        )
        .await
    {
        Err(e) if e.kind != ErrorKind::NotFound => Err(e.on(host.name())),
        _ => Ok(()),
    }
}

async fn rename(host: &Host, from: &str, to: &str) -> Result<()> {
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

async fn set_restart(host: &Host, name: &str, policy: RestartPolicyNameEnum) -> Result<()> {
    let engine = host.engine();
    let body = ContainerUpdateBody {
        restart_policy: Some(RestartPolicy {
            name: Some(policy),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    engine
        .call(
            &format!("set the restart policy of {name} to {policy}"),
            engine.docker().update_container(name, body),
        )
        .await
        .map_err(|e| e.on(host.name()))
}

/// A proxy from before host networking, restarted in place by Docker.
async fn restart_legacy(host: &Host) -> Result<()> {
    let engine = host.engine();
    let options = bollard::query_parameters::RestartContainerOptionsBuilder::default()
        .t(10)
        .build();
    engine
        .call(
            "restart the proxy",
            engine.docker().restart_container(CONTAINER, Some(options)),
        )
        .await
        .map_err(|e| e.on(host.name()))?;
    admin::wait_for_instance(host, None, START_DEADLINE, CONTAINER)
        .await
        .map(|_| ())
}

async fn run_checked(host: &Host, step: &str, program: &str, args: &[&str]) -> Result<()> {
    let out = host
        .run(program, args, None, Duration::from_secs(15))
        .await?;
    if out.success() {
        Ok(())
    } else {
        Err(Error::failed(step, out.stderr.trim()).on(host.name()))
    }
}
