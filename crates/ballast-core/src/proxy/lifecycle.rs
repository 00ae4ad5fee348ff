//! The proxy's container on a host: what runs now, and replacing it without
//! losing a request.
//!
//! A replacement is a takeover, never stop-then-start: the new container
//! is created as `ballast-proxy-next` (same state directory, host
//! networking) with restart policy `no`, so Docker never retries a failed
//! exchange behind ballast's back; the old one's restart policy is set to
//! `no` too, because the old process exits by itself once the new one has
//! its sockets and Docker would otherwise start it again; the new one
//! starts, finds the old one on the takeover socket, receives its
//! listening sockets and admin socket, and answers `status` with its own
//! `instance`. Only then is the new container's policy set to `always`;
//! the old one drains what is in flight (up to its drain time) and exits;
//! it is then removed and the new container takes the name
//! `ballast-proxy`.
//!
//! When the new instance does not answer in time (or starting it fails),
//! ballast does not guess: it freezes the new container (`docker pause`)
//! and asks which process answers. The old one, if it still has the
//! sockets: the new container is removed and the old one's policy set
//! back to `always` (a failure to do so is an error). Nobody, or the new
//! one: the handover happened (late): the new one is let run and kept,
//! and the old one retired. The process that has the sockets is never
//! removed (`resolve`). A run interrupted half way leaves a
//! `ballast-proxy-next` that the next run resolves the same way
//! ([`finish_leftover`]); with none, a running `ballast-proxy` whose
//! policy is not `always` gets it back.
//!
//! A container is removed only when the engine said it is stopped or gone:
//! a look that fails (SSH, dockerd, the deadline) is an error, never
//! "gone".
//!
//! A proxy from before host networking (on the `ballast` bridge, with
//! published ports) cannot hand over: Docker holds its ports. It is
//! replaced stop-then-start, once.
//!
//! The single Docker calls on the containers are in [`super::container`];
//! this module decides which to make, and in which order.

use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, RestartPolicyNameEnum};
use serde::Serialize;

use super::container::{
    create, inspect, is_paused, is_running, labels, pause, remove, rename, restarts_always,
    set_restart, start, unpause, LISTEN_LABEL, SETTINGS_LABEL,
};
use super::image::Build;
use super::listen::Listen;
use super::{admin, container, network, CONTAINER, STATE_DIR};
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;

/// The name a new proxy runs under until the old one is gone.
pub const NEXT: &str = "ballast-proxy-next";
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

/// What runs as the proxy on `host` now (nothing found when it cannot be
/// looked at: for reports; decisions use [`try_observe`]).
pub async fn observe(host: &Host) -> ProxyFound {
    try_observe(host).await.unwrap_or_default()
}

/// What runs as the proxy on `host` now; an error when it cannot be told.
pub async fn try_observe(host: &Host) -> Result<ProxyFound> {
    Ok(inspect(host, CONTAINER)
        .await?
        .map(|c| found_of(&c))
        .unwrap_or_default())
}

/// The image the proxy on `host` runs now, to reconfigure it without
/// changing its version.
pub async fn running_image(host: &Host) -> Result<Image> {
    let step = "find the running proxy's image";
    let c = inspect(host, CONTAINER).await?.ok_or_else(|| {
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
    host.run_checked(
        "create the proxy's state directory",
        "mkdir",
        &["-p", "-m", "700", STATE_DIR],
        None,
        Duration::from_secs(15),
    )
    .await?;
    finish_leftover(host).await?;
    let Some(current) = inspect(host, CONTAINER).await? else {
        start_new(host, CONTAINER, image, listen).await?;
        return Ok(Replaced::Started);
    };
    let found = found_of(&current);
    // Whatever the caller saw, the proxy there keeps what it listens on
    // (another service's ports), running or stopped.
    let merged = found.listen.as_ref().map(|there| there.union(listen));
    let listen = merged.as_ref().unwrap_or(listen);
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
    // Restart `no` until it has taken over: Docker must not retry a failed
    // exchange behind ballast's back (a retry could take over just as
    // ballast gives up on it and removes it).
    create(host, NEXT, image, listen, RestartPolicyNameEnum::NO).await?;
    let handover = async {
        set_restart(host, CONTAINER, RestartPolicyNameEnum::NO).await?;
        start(host, NEXT).await?;
        admin::wait_for_instance(host, Some(&old), START_DEADLINE, NEXT).await
    };
    match handover.await {
        Ok(_) => commit(host, old_drain).await,
        Err(e) => match resolve(host, Some(&old), old_drain).await {
            // It took over late, and was kept: done.
            Ok(Resolved::NewServes) => Ok(()),
            Ok(Resolved::OldServes) => {
                let hint = e.hint.clone().unwrap_or_default();
                Err(e.hint(format!("the old proxy keeps serving; {hint}")))
            }
            Err(undo) => Err(Error {
                cause: format!(
                    "{}; then, putting things back: {}: {}",
                    e.cause, undo.step, undo.cause
                ),
                ..e
            }
            .hint(undo.hint.unwrap_or_else(|| {
                "run the command again: it finishes or undoes the takeover".into()
            }))),
        },
    }
}

/// The new proxy answers: it is the one Docker restarts from now on; the
/// old one drains and goes, and the new one takes the name.
async fn commit(host: &Host, old_drain: Duration) -> Result<()> {
    let again = "the new proxy serves; run the command again to finish replacing the old one";
    set_restart(host, NEXT, RestartPolicyNameEnum::ALWAYS)
        .await
        .map_err(|e| e.hint(again))?;
    retire_old(host, old_drain)
        .await
        .map_err(|e| e.hint(again))?;
    rename(host, NEXT, CONTAINER)
        .await
        .map_err(|e| e.hint(again))
}

/// Which proxy serves after a takeover that was not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// The old process still has the sockets: the new container is gone
    /// and the old one restarts by itself again.
    OldServes,
    /// The new process has them: it was kept and the old one retired.
    NewServes,
}

/// How many times the old proxy is asked while the new container is
/// frozen before it is taken as having handed over, and how long each
/// answer may take: a new process that has taken over is frozen meanwhile
/// (clients wait in the accept queue), so this stays short.
const ASKS: u32 = 2;
const ASK_DEADLINE: Duration = Duration::from_secs(2);

/// What asking the admin socket told, the new container frozen or not
/// running.
#[derive(Debug)]
enum Asked {
    /// The old process answers: it kept its sockets.
    Old,
    /// Another process than the (known) old one answers: the new one.
    New,
    /// Nobody answers.
    Nobody(Error),
}

/// Decides a takeover that was not confirmed (timed out, failed, or left
/// by an interrupted run) by asking which process answers; never removes
/// the process that has the sockets. `old` is the old process's instance
/// when known.
///
/// The new container is frozen (`docker pause`) first, so it cannot take
/// over while ballast decides. An answer then comes from the old process
/// (a frozen one cannot answer; `old` confirms it when known), which has
/// kept its sockets (it stops answering once it hands them over): the new
/// container goes. No answer: the old one handed over (or is about to):
/// the new one runs again and, once it answers, is kept. Without `old`, an
/// answer from the running new container could be the old one's after a
/// lost look, so it is frozen and asked once more before the old one is
/// retired.
async fn resolve(host: &Host, old: Option<&str>, old_drain: Duration) -> Result<Resolved> {
    for round in 0..2 {
        let frozen = freeze(host).await?;
        match ask(host, old, frozen).await {
            Asked::Old => {
                remove(host, NEXT).await?;
                set_restart(host, CONTAINER, RestartPolicyNameEnum::ALWAYS)
                    .await
                    .map_err(|e| {
                        e.hint("the old proxy serves, but Docker would not restart it after a reboot or crash: run the command again, or `docker update --restart always ballast-proxy` on the host")
                    })?;
                return Ok(Resolved::OldServes);
            }
            Asked::New => {
                if frozen {
                    unpause(host, NEXT).await?;
                }
                break;
            }
            // The new one is not running, so it cannot take over (or died
            // just after the old one handed over), and the old one does
            // not answer: the new container goes, and Docker restarts the
            // old one again (once it exits, if it is draining).
            Asked::Nobody(e) if !frozen => {
                remove(host, NEXT).await?;
                set_restart(host, CONTAINER, RestartPolicyNameEnum::ALWAYS).await?;
                if inspect(host, CONTAINER)
                    .await?
                    .is_some_and(|c| !is_running(&c))
                {
                    start(host, CONTAINER).await?;
                }
                return Err(Error::failed(
                    "find which proxy serves",
                    format_args!(
                        "no proxy answers on the admin socket ({}) and the new one is not running",
                        e.cause
                    ),
                )
                .on(host.name())
                .hint("the new container was removed and the old one is restarted by Docker if it exits; see `docker logs ballast-proxy` on the host, then run the command again"));
            }
            Asked::Nobody(_) => {
                unpause(host, NEXT).await?;
                match admin::wait_for_instance(host, old, START_DEADLINE, NEXT).await {
                    Ok(_) if old.is_some() || round > 0 => break,
                    // The old one may answer again after a lost look:
                    // freeze and ask once more.
                    Ok(_) => {}
                    Err(e) if round > 0 => return Err(e),
                    Err(_) => {}
                }
            }
        }
    }
    commit(host, old_drain).await?;
    Ok(Resolved::NewServes)
}

/// Freezes the new container if it runs; whether it is frozen now.
async fn freeze(host: &Host) -> Result<bool> {
    let Some(next) = inspect(host, NEXT).await? else {
        return Ok(false);
    };
    if !is_running(&next) {
        return Ok(false);
    }
    if is_paused(&next) {
        // An interrupted run froze it.
        return Ok(true);
    }
    match pause(host, NEXT).await {
        Ok(()) => Ok(true),
        // It exited meanwhile: it cannot take over.
        Err(e) if matches!(e.kind, ErrorKind::Conflict | ErrorKind::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Asks which process answers, a few times while the new one is frozen
/// (a lost answer is then not taken for a handover at once).
async fn ask(host: &Host, old: Option<&str>, frozen: bool) -> Asked {
    let mut last = None;
    for _ in 0..ASKS {
        match admin::instance_within(host, ASK_DEADLINE).await {
            Ok(i) if old.is_none_or(|o| o == i) => return Asked::Old,
            Ok(_) => return Asked::New,
            Err(e) if !frozen => return Asked::Nobody(e),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Asked::Nobody(last.expect("asked at least once"))
}

/// Waits for the old proxy to exit after draining; stops it past the
/// deadline; removes it. Only a container seen stopped, or stopped here,
/// is removed; a failed look is retried until the deadline, then is an
/// error.
async fn retire_old(host: &Host, drain: Duration) -> Result<()> {
    let until = Instant::now() + drain + EXIT_MARGIN;
    while Instant::now() < until {
        match inspect(host, CONTAINER).await {
            Ok(Some(c)) if is_running(&c) => {}
            Ok(_) => break,
            // A brief SSH or dockerd failure: look again.
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let running = inspect(host, CONTAINER).await.map_err(|e| {
        e.hint("the new proxy serves; the old one may still be draining: run the command again to finish")
    })?;
    let Some(old) = running else {
        return Ok(());
    };
    if is_running(&old) {
        container::stop(
            host,
            CONTAINER,
            5,
            "stop the old proxy after its drain time",
        )
        .await?;
    }
    remove(host, CONTAINER).await
}

/// Finishes or undoes what an interrupted takeover left: a
/// `ballast-proxy-next` beside (or instead of) `ballast-proxy`. With none,
/// makes sure a running `ballast-proxy` is restarted by Docker (an
/// interrupted takeover or a failed undo can leave its restart policy at
/// `no`).
pub async fn finish_leftover(host: &Host) -> Result<()> {
    let Some(next) = inspect(host, NEXT).await? else {
        return restore_restart(host).await;
    };
    let next_running = is_running(&next);
    let old = inspect(host, CONTAINER).await?;
    if is_paused(&next) && !old.as_ref().is_some_and(is_running) {
        // An interrupted run froze it, and it is the only one left.
        unpause(host, NEXT).await?;
    }
    match old {
        // The old one was already removed: only the rename was left.
        None if next_running => {
            set_restart(host, NEXT, RestartPolicyNameEnum::ALWAYS).await?;
            rename(host, NEXT, CONTAINER).await
        }
        None => remove(host, NEXT).await,
        Some(old) if !is_running(&old) => {
            if next_running {
                set_restart(host, NEXT, RestartPolicyNameEnum::ALWAYS).await?;
                remove(host, CONTAINER).await?;
                rename(host, NEXT, CONTAINER).await
            } else {
                remove(host, NEXT).await
            }
        }
        // The new one is not running: it never took over for good, or
        // died after; the old one restarts by itself again either way.
        Some(_) if !next_running => {
            remove(host, NEXT).await?;
            set_restart(host, CONTAINER, RestartPolicyNameEnum::ALWAYS).await
        }
        // Both run: whichever answers has the sockets.
        Some(old) => {
            let drain = found_of(&old)
                .listen
                .map(|l| l.drain_timeout)
                .unwrap_or_default();
            resolve(host, None, drain).await.map(|_| ())
        }
    }
}

/// Sets a running `ballast-proxy`'s restart policy back to `always`.
async fn restore_restart(host: &Host) -> Result<()> {
    let Some(c) = inspect(host, CONTAINER).await? else {
        return Ok(());
    };
    if !is_running(&c) || found_of(&c).legacy || restarts_always(&c) {
        return Ok(());
    }
    set_restart(host, CONTAINER, RestartPolicyNameEnum::ALWAYS)
        .await
        .map_err(|e| {
            e.hint("the proxy serves, but Docker would not restart it after a reboot or crash: run the command again, or `docker update --restart always ballast-proxy` on the host")
        })
}

async fn start_new(host: &Host, name: &str, image: &Image, listen: &Listen) -> Result<()> {
    create(host, name, image, listen, RestartPolicyNameEnum::ALWAYS).await?;
    start(host, name).await?;
    admin::wait_for_instance(host, None, START_DEADLINE, name)
        .await
        .map(|_| ())
}

/// A proxy from before host networking, restarted in place by Docker.
async fn restart_legacy(host: &Host) -> Result<()> {
    container::restart(host, CONTAINER, 10, "restart the proxy").await?;
    admin::wait_for_instance(host, None, START_DEADLINE, CONTAINER)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_stopped_proxy_still_says_what_it_listens_on() {
        let listen = Listen {
            http_ports: [80, 8080].into(),
            ..Listen::default()
        };
        let labels = HashMap::from([
            (LISTEN_LABEL.to_string(), listen.label()),
            (SETTINGS_LABEL.to_string(), listen.digest()),
        ]);
        let c = container::inspected(false, false, RestartPolicyNameEnum::ALWAYS, labels);
        let found = found_of(&c);
        assert!(!found.running && !found.legacy);
        assert_eq!(found.listen.map(|l| l.http_ports), Some([80, 8080].into()));
    }
}
