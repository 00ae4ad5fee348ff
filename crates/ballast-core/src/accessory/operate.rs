//! The accessory commands carried out on one host: each looks at what is
//! there, decides with [`super::plan`], and changes only what it must.
//! An upgrade or rollback that fails puts the old container back and
//! starts it; data directories are never touched but by `remove` with
//! `--destroy-data`.

use std::collections::HashMap;

use tokio::sync::Mutex;

use super::files::{self, LocalFile};
use super::plan::{self, Found, Observed};
use super::spec::AccessorySpec;
use super::{container, not_booted, Done, Operation, Outcome, Say};
use crate::config::Loaded;
use crate::delivery::{self, Prepared};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;
use crate::state;

/// What every accessory of one command shares: secrets, who runs it, and
/// this machine's engine with the images saved from it once.
pub(super) struct Ctx<'a> {
    loaded: &'a Loaded,
    say: Say<'a>,
    who: String,
    local: Mutex<Option<Option<Engine>>>,
    prepared: Mutex<HashMap<String, Prepared>>,
}

/// The image a new container runs, and where it comes from.
enum Wanted {
    /// On this machine's engine: delivered to hosts that lack it.
    Local(String),
    /// Only on the host.
    HostOnly(String),
}

impl Wanted {
    fn id(&self) -> &str {
        match self {
            Wanted::Local(id) | Wanted::HostOnly(id) => id,
        }
    }
}

impl<'a> Ctx<'a> {
    pub(super) fn new(loaded: &'a Loaded, say: Say<'a>) -> Ctx<'a> {
        Ctx {
            loaded,
            say,
            who: state::whoami(),
            local: Mutex::new(None),
            prepared: Mutex::new(HashMap::new()),
        }
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.loaded.secrets.get(name).map(str::to_string)
    }

    fn env_ok(&self, spec: &AccessorySpec, found: Option<&Observed>) -> bool {
        found.is_some_and(|c| spec.env_matches(&c.env, &|n| self.secret(n)))
    }

    async fn local(&self) -> Option<Engine> {
        let mut local = self.local.lock().await;
        if local.is_none() {
            *local = Some(Engine::local().await.ok());
        }
        local.clone().flatten()
    }

    /// The image of `spec` as this machine has it, else as the host has it.
    async fn wanted(&self, host: &Host, spec: &AccessorySpec) -> Result<Wanted> {
        if let Some(local) = self.local().await {
            if let Some(id) = local.image_id(&spec.image).await? {
                return Ok(Wanted::Local(id));
            }
        }
        match host.engine().image_id(&spec.image).await? {
            Some(id) => Ok(Wanted::HostOnly(id)),
            None => Err(Error::new(
                ErrorKind::NotFound,
                format!("find image {}", spec.image),
                format_args!("neither this machine's engine nor {} has it", host.name()),
            )
            .hint(format!(
                "build or load it here (`ballast build DIR --tag {}`, `docker load`): ballast sends it over SSH",
                spec.image
            ))),
        }
    }

    /// Sends the image to `host` unless it has it; saved here once.
    async fn deliver(&self, host: &Host, spec: &AccessorySpec, wanted: &Wanted) -> Result<()> {
        let Wanted::Local(id) = wanted else {
            return Ok(());
        };
        if host.engine().resolve_image(id).await?.is_some() {
            return Ok(());
        }
        let mut prepared = self.prepared.lock().await;
        if !prepared.contains_key(&spec.image) {
            let local = self.local().await.expect("the image was found here");
            (self.say)(
                host.name(),
                &format!("saving {} on this machine", spec.image),
            );
            let p = delivery::prepare(&local, &spec.image)
                .await?
                .with_compression(self.loaded.config.delivery.compression());
            prepared.insert(spec.image.clone(), p);
        }
        let p = &prepared[&spec.image];
        let report = p.send(host.engine(), &mut |_| {}).await?;
        (self.say)(
            host.name(),
            &format!(
                "image {} delivered: {} of {} layers, {} bytes",
                spec.image, report.layers_sent, report.layers_total, report.bytes_sent
            ),
        );
        Ok(())
    }

    /// Image, data directories and files in place: all a new container
    /// needs, done before any running container is stopped.
    async fn ready(
        &self,
        host: &Host,
        spec: &AccessorySpec,
        wanted: &Wanted,
        local_files: &[LocalFile],
    ) -> Result<()> {
        self.deliver(host, spec, wanted).await?;
        files::make_data_dirs(host, &spec.data).await?;
        files::write_files(host, spec, local_files).await
    }

    /// Creates and starts container `spec` from `image_id`, waits until it
    /// is healthy; a container that fails is removed (its data stays).
    async fn launch(&self, host: &Host, spec: &AccessorySpec, image_id: &str) -> Result<()> {
        let name = spec.container_name();
        let at = state::now_rfc3339();
        let body = spec.container(image_id, &self.who, &at, &|n| self.secret(n));
        container::create(host, &name, &body).await?;
        (self.say)(host.name(), &format!("starting {name}"));
        let result = match container::start(host, &name).await {
            Ok(()) => self.healthy(host, spec, &name, image_id).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = container::remove(host, &name).await;
        }
        result
    }

    async fn healthy(
        &self,
        host: &Host,
        spec: &AccessorySpec,
        name: &str,
        image: &str,
    ) -> Result<()> {
        let mode = spec.health_mode(container::image_has_healthcheck(host, image).await);
        (self.say)(host.name(), &format!("waiting until {name} is healthy"));
        container::wait_healthy(host, name, &mode, spec.health_timeout).await
    }
}

/// Carries out `op` for `spec` on `host`.
pub(super) async fn on_host(
    ctx: &Ctx<'_>,
    host: &Host,
    spec: &AccessorySpec,
    op: Operation,
    local_files: &[LocalFile],
    done: &mut Done,
) -> Result<Outcome> {
    let found = container::found(host, spec).await?;
    match op {
        Operation::Boot => boot(ctx, host, spec, &found, local_files).await,
        Operation::Reboot => {
            let wanted = ctx.wanted(host, spec).await?;
            ctx.ready(host, spec, &wanted, local_files).await?;
            if let Some(c) = &found.current {
                stop_and_remove(ctx, host, spec, c).await?;
            }
            ctx.launch(host, spec, wanted.id()).await?;
            Ok(Outcome::Rebooted)
        }
        Operation::Start => power(ctx, host, spec, &found, true, false).await,
        Operation::Stop => power(ctx, host, spec, &found, false, false).await,
        Operation::Restart => power(ctx, host, spec, &found, true, true).await,
        Operation::Upgrade => upgrade(ctx, host, spec, &found, local_files).await,
        Operation::Rollback => rollback(ctx, host, spec, &found).await,
        Operation::Remove { destroy_data } => remove(ctx, host, spec, destroy_data, done).await,
    }
}

async fn boot(
    ctx: &Ctx<'_>,
    host: &Host,
    spec: &AccessorySpec,
    found: &Found,
    local_files: &[LocalFile],
) -> Result<Outcome> {
    let wanted = ctx.wanted(host, spec).await?;
    let env_ok = ctx.env_ok(spec, found.current.as_ref());
    match plan::boot(found, &spec.digest(wanted.id()), env_ok) {
        plan::Boot::AlreadyRunning => Ok(Outcome::AlreadyRunning),
        plan::Boot::Differs => Err(Error::new(
            ErrorKind::Conflict,
            format!("boot accessory {}", spec.name),
            format_args!("{} runs another definition than the config's (image {}); boot changed nothing", spec.container_name(), found.current.as_ref().map_or("?", |c| c.image.as_str())),
        )
        .on(host.name())
        .hint(format!("`ballast accessory upgrade {0}` replaces it and keeps the old container for rollback; `ballast accessory reboot {0}` replaces it outright (data kept either way)", spec.name))),
        plan::Boot::Start => {
            ctx.ready(host, spec, &wanted, local_files).await?;
            container::start(host, &spec.container_name()).await?;
            ctx.healthy(host, spec, &spec.container_name(), wanted.id()).await?;
            Ok(Outcome::Started)
        }
        plan::Boot::Create => {
            ctx.ready(host, spec, &wanted, local_files).await?;
            ctx.launch(host, spec, wanted.id()).await?;
            Ok(Outcome::Booted)
        }
    }
}

async fn stop_and_remove(
    ctx: &Ctx<'_>,
    host: &Host,
    spec: &AccessorySpec,
    c: &Observed,
) -> Result<()> {
    if c.state.is_active() {
        (ctx.say)(
            host.name(),
            &format!(
                "stopping {} (up to {})",
                c.name,
                crate::error::humanize(spec.stop_timeout)
            ),
        );
        container::stop(host, &c.name, spec.stop_timeout).await?;
    }
    container::remove(host, &c.name).await
}

async fn power(
    ctx: &Ctx<'_>,
    host: &Host,
    spec: &AccessorySpec,
    found: &Found,
    want_running: bool,
    restart: bool,
) -> Result<Outcome> {
    let name = spec.container_name();
    let step = plan::power(found, want_running, restart);
    let Some(c) = &found.current else {
        return match want_running {
            false => Ok(Outcome::NotThere),
            true => Err(not_booted(spec, host.name())),
        };
    };
    if matches!(step, plan::Power::Stop | plan::Power::StopThenStart) {
        (ctx.say)(
            host.name(),
            &format!(
                "stopping {name} (up to {})",
                crate::error::humanize(spec.stop_timeout)
            ),
        );
        container::stop(host, &name, spec.stop_timeout).await?;
    }
    if matches!(step, plan::Power::Start | plan::Power::StopThenStart) {
        container::start(host, &name).await?;
        ctx.healthy(host, spec, &name, &c.image_id).await?;
    }
    Ok(match (step, restart) {
        (plan::Power::Nothing, _) if want_running => Outcome::AlreadyRunning,
        (plan::Power::Nothing, _) => Outcome::AlreadyStopped,
        (plan::Power::Stop, _) => Outcome::Stopped,
        (_, true) | (plan::Power::StopThenStart, _) => Outcome::Restarted,
        _ => Outcome::Started,
    })
}

async fn upgrade(
    ctx: &Ctx<'_>,
    host: &Host,
    spec: &AccessorySpec,
    found: &Found,
    local_files: &[LocalFile],
) -> Result<Outcome> {
    let wanted = ctx.wanted(host, spec).await?;
    let env_ok = ctx.env_ok(spec, found.current.as_ref());
    let drop_previous = match plan::upgrade(found, &spec.digest(wanted.id()), env_ok) {
        plan::Upgrade::NotBooted => return Err(not_booted(spec, host.name())),
        plan::Upgrade::UpToDate => return Ok(Outcome::UpToDate),
        plan::Upgrade::Replace { drop_previous } => drop_previous,
    };
    let old = found
        .current
        .as_ref()
        .expect("replace has a current container");
    let (name, kept, parked) = (
        spec.container_name(),
        spec.previous_name(),
        spec.parked_name(),
    );
    ctx.ready(host, spec, &wanted, local_files).await?;
    // The container kept before stays until the new one is proven.
    if drop_previous {
        container::rename(host, &kept, &parked).await?;
    }
    let unpark = async || {
        if drop_previous {
            let _ = container::rename(host, &parked, &kept).await;
        }
    };
    let was_active = old.state.is_active();
    if was_active {
        (ctx.say)(host.name(), &format!("stopping {name} first: its ports are fixed and its data shared, so the new container starts only once the old one has stopped; {} is unavailable until the new one is healthy", spec.name));
        if let Err(e) = container::stop(host, &name, spec.stop_timeout).await {
            unpark().await;
            return Err(e);
        }
    }
    if let Err(e) = container::rename(host, &name, &kept).await {
        if was_active {
            let _ = container::start(host, &name).await;
        }
        unpark().await;
        return Err(e);
    }
    match ctx.launch(host, spec, wanted.id()).await {
        Ok(()) => {
            if drop_previous {
                (ctx.say)(
                    host.name(),
                    "removing the container kept by the upgrade before",
                );
                container::remove(host, &parked).await?;
            }
            (ctx.say)(host.name(), &format!("{name} is healthy; the old container is kept as {kept}: `ballast accessory rollback {}` returns to it", spec.name));
            Ok(Outcome::Upgraded)
        }
        Err(e) => {
            (ctx.say)(
                host.name(),
                &format!("the new {name} failed; starting the old one again"),
            );
            let restored = restore(ctx, host, spec, &kept, &name, &old.image_id, was_active).await;
            unpark().await;
            let hint = match restored {
                Ok(()) => format!("the old container runs again with its data untouched; fix the new definition, then `ballast accessory upgrade {}` again", spec.name),
                Err(r) => format!("the old container could not be started again ({r}): it is {name}, stopped; start it with `ballast accessory start {}`", spec.name),
            };
            Err(e.hint(hint))
        }
    }
}

/// Puts container `from` back as `to` and starts it (if it ran before).
async fn restore(
    ctx: &Ctx<'_>,
    host: &Host,
    spec: &AccessorySpec,
    from: &str,
    to: &str,
    image_id: &str,
    start: bool,
) -> Result<()> {
    container::rename(host, from, to).await?;
    if start {
        container::start(host, to).await?;
        ctx.healthy(host, spec, to, image_id).await?;
    }
    Ok(())
}

async fn rollback(
    ctx: &Ctx<'_>,
    host: &Host,
    spec: &AccessorySpec,
    found: &Found,
) -> Result<Outcome> {
    let (name, kept, parked) = (
        spec.container_name(),
        spec.previous_name(),
        spec.parked_name(),
    );
    let Some(previous) = &found.previous else {
        return Err(Error::input(
            format!("roll back accessory {}", spec.name),
            format_args!("no previous container of {} is kept", spec.name),
        )
        .on(host.name())
        .hint("an upgrade keeps the container it replaces; there was none since the last boot, reboot or remove"));
    };
    let current = found.current.as_ref();
    let was_active = current.is_some_and(|c| c.state.is_active());
    if was_active {
        (ctx.say)(host.name(), &format!("stopping {name} first: its ports are fixed and its data shared; {} is unavailable until {kept} is healthy", spec.name));
        container::stop(host, &name, spec.stop_timeout).await?;
    }
    if current.is_some() {
        container::rename(host, &name, &parked).await?;
    }
    container::rename(host, &kept, &name).await?;
    (ctx.say)(
        host.name(),
        &format!("starting the kept container as {name}"),
    );
    let started = match container::start(host, &name).await {
        Ok(()) => ctx.healthy(host, spec, &name, &previous.image_id).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(()) => {
            if current.is_some() {
                container::rename(host, &parked, &kept).await?;
            }
            Ok(Outcome::RolledBack)
        }
        Err(e) => {
            let _ = container::stop(host, &name, spec.stop_timeout).await;
            let _ = container::rename(host, &name, &kept).await;
            if let Some(c) = current {
                let back = restore(ctx, host, spec, &parked, &name, &c.image_id, was_active).await;
                if let Err(r) = back {
                    return Err(e.hint(format!(
                        "the container it replaced could not be started again ({r})"
                    )));
                }
            }
            Err(e.hint("the container it replaced runs again with its data untouched"))
        }
    }
}

async fn remove(
    ctx: &Ctx<'_>,
    host: &Host,
    spec: &AccessorySpec,
    destroy_data: bool,
    done: &mut Done,
) -> Result<Outcome> {
    let mut any = false;
    for name in [
        spec.container_name(),
        spec.previous_name(),
        spec.parked_name(),
    ] {
        if let Some(c) = container::observe(host, spec, &name).await? {
            stop_and_remove(ctx, host, spec, &c).await?;
            (ctx.say)(host.name(), &format!("removed {name}"));
            any = true;
        }
    }
    files::remove_files(host, spec).await?;
    if destroy_data {
        (ctx.say)(host.name(), &format!("deleting the data of {}", spec.name));
        done.data_destroyed = files::destroy_data(host, &spec.data).await?;
        any = true;
    } else {
        done.data_kept = spec.data.iter().map(|d| d.host.clone()).collect();
    }
    Ok(if any {
        Outcome::Removed
    } else {
        Outcome::NotThere
    })
}
