//! `ballast prune`: what goes from a host once releases pile up, decided as
//! plain data from what the host holds ([`select`]), then removed
//! ([`run`]). `ballast remove` reuses the image rule ([`unused_images`]) and
//! the removals.
//!
//! # The rule
//! - **Containers**, per role: the releases past `deploy.retain` go, oldest
//!   first. What still holds the role's resources (running, restarting,
//!   paused) counts as kept first and is never selected; the newest stopped
//!   ones fill the rest. One Docker is removing already is left to it.
//!   Deploy's plan prunes by the same rule ([`past_retain`]).
//! - **Images**: an image is the service's when a container of the service
//!   records it (its `io.ballast.image` label), or when every tag it has is
//!   in the service's repository (the config's `image`). It goes when no
//!   container on the host uses it (by image ID) once the selected
//!   containers are gone, and no kept container records it. An image also
//!   tagged in another repository is shared, so it stays; the proxy's image
//!   is never the service's. On the containerd image store, where an
//!   image's ID is its manifest's, the config digest containers record is
//!   read from the image's config tag (`ballast-image:sha256-…`, given by
//!   delivery), which is ballast's own and shares nothing.
//! - Never a volume, never a host directory: containers are removed without
//!   their anonymous volumes, and bind-mounted directories are not touched.
//! - Never an accessory: its containers are not the service's (no
//!   `io.ballast.service` label), and the images they run are in use.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::change::{self, Change};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::host::Host;
use crate::release::{self, AppContainer, ContainerState, SERVICE_LABEL};
use crate::scope::Scope;

/// The retention rule, shared with deploy's plan: of one role's stopped
/// containers on a host, newest first, those past `retain` releases when
/// `kept` releases are kept already (the running one, a new target...). A
/// `retain` of 0 keeps one release.
pub fn past_retain<T>(
    stopped: impl IntoIterator<Item = T>,
    kept: usize,
    retain: usize,
) -> impl Iterator<Item = T> {
    stopped.into_iter().skip(retain.max(1).saturating_sub(kept))
}

/// An image on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFound {
    pub id: String,
    /// `repository:tag` names, none for an untagged image.
    pub tags: Vec<String>,
}

impl ImageFound {
    /// Its tags, or its short ID when it has none: how output names it.
    pub fn describe(&self) -> String {
        let short = short_id(&self.id);
        match self.tags.as_slice() {
            [] => short.to_string(),
            tags => format!("{} ({short})", tags.join(", ")),
        }
    }
}

/// An image ID without `sha256:`, 12 characters long, as `docker images`
/// shows it.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// A container of any kind on a host and the image it runs: what keeps an
/// image in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    pub container: String,
    pub image_id: String,
}

/// A host directory a container of the service mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: String,
    pub destination: String,
}

/// What a host holds, as far as pruning cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The service's containers, newest first (see [`release::observe`]).
    pub containers: Vec<AppContainer>,
    /// Every container on the host, of any service, the proxy's too.
    pub users: Vec<ImageUser>,
    /// Every tagged or top-level image on the host.
    pub images: Vec<ImageFound>,
    /// Host directories the service's containers mount (`remove` keeps
    /// them).
    pub binds: Vec<Bind>,
}

/// A container selected for removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Doomed {
    pub name: String,
    pub role: String,
    pub version: String,
    pub state: ContainerState,
    #[serde(skip)]
    pub id: String,
}

impl Doomed {
    pub fn of(c: &AppContainer) -> Doomed {
        Doomed {
            name: c.name.clone(),
            role: c.role.clone(),
            version: c.version.clone(),
            state: c.state,
            id: c.id.clone(),
        }
    }

    /// "hello-web-v1 (web v1, exited)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({} {}, {})",
            self.name, self.role, self.version, self.state
        )
    }
}

/// What goes from one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub containers: Vec<Doomed>,
    pub images: Vec<ImageFound>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.images.is_empty()
    }
}

/// The service's image repository: the config's `image` without its tag
/// (`None` when it names an image by ID or digest).
pub fn repository(image: &str) -> Option<String> {
    crate::delivery::tag_parts(image, "").map(|(repo, _)| repo)
}

/// What prune removes from a host holding `observed`: the containers of the
/// roles in `scope` past `retain` releases, then the images of the service
/// (in `repository`) nothing uses any more.
pub fn select(
    observed: &Observed,
    retain: usize,
    scope: &Scope,
    repository: Option<&str>,
) -> Selection {
    let mut newest_first: Vec<&AppContainer> = observed.containers.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.created));
    let roles: BTreeSet<&str> = newest_first
        .iter()
        .map(|c| c.role.as_str())
        .filter(|r| scope.has_role(r))
        .collect();
    let mut containers = Vec::new();
    for role in roles {
        let mine = newest_first.iter().filter(|c| c.role == role);
        let kept = mine.clone().filter(|c| c.state.is_active()).count();
        let stopped = mine.filter(|c| !c.state.is_active() && c.state != ContainerState::Removing);
        containers.extend(past_retain(stopped, kept, retain).map(|c| Doomed::of(c)));
    }
    let removed: BTreeSet<&str> = containers.iter().map(|d| d.id.as_str()).collect();
    Selection {
        images: unused_images(observed, &removed, repository),
        containers,
    }
}

/// The service's images on a host holding `observed` that no container
/// uses once the containers `removed` (by ID) are gone, in listed order.
pub fn unused_images(
    observed: &Observed,
    removed: &BTreeSet<&str>,
    repository: Option<&str>,
) -> Vec<ImageFound> {
    let recorded: BTreeSet<&str> = observed
        .containers
        .iter()
        .map(|c| c.image_id.as_str())
        .collect();
    let staying = |id: &str| !removed.contains(id);
    let kept_records: BTreeSet<&str> = observed
        .containers
        .iter()
        .filter(|c| staying(&c.id))
        .map(|c| c.image_id.as_str())
        .collect();
    let in_use: BTreeSet<&str> = observed
        .users
        .iter()
        .filter(|u| staying(&u.container))
        .map(|u| u.image_id.as_str())
        .collect();
    // On the containerd store an image's ID is its manifest's, and the
    // config digest the containers record is in its config tag.
    let config_of = |t: &str| {
        crate::engine::config_of_tag(t).or_else(|| crate::delivery::config_of_unproven(t))
    };
    let configs =
        |i: &ImageFound| -> Vec<String> { i.tags.iter().filter_map(|t| config_of(t)).collect() };
    // A config tag is ballast's name for whatever release has that
    // config, and so is the name a delivery loads it under until proven
    // (left by an interrupted one): neither makes an image shared
    // (containers of other services keep what they use, below).
    let ours = |tag: &str| {
        let repo = crate::delivery::tag_parts(tag, "").map(|(repo, _)| repo);
        repository.is_some_and(|r| repo.as_deref() == Some(r)) || config_of(tag).is_some()
    };
    observed
        .images
        .iter()
        .filter(|i| {
            let configs = configs(i);
            let names = |set: &BTreeSet<&str>| {
                set.contains(i.id.as_str()) || configs.iter().any(|c| set.contains(c.as_str()))
            };
            let shared = i.tags.iter().any(|t| !ours(t));
            let of_service = names(&recorded) || !i.tags.is_empty();
            of_service && !shared && !in_use.contains(i.id.as_str()) && !names(&kept_records)
        })
        .cloned()
        .collect()
}

/// Reads what `engine`'s host holds for `service`.
pub async fn observe(engine: &Engine, service: &str) -> Result<Observed> {
    let containers = release::observe(engine, service).await?;
    let options = ListContainersOptionsBuilder::default().all(true).build();
    let listed = engine
        .call(
            "list the host's containers",
            engine.docker().list_containers(Some(options)),
        )
        .await?;
    let mut users = Vec::new();
    let mut binds = Vec::new();
    for c in listed {
        let Some(id) = c.id else { continue };
        if let Some(image_id) = c.image_id {
            users.push(ImageUser {
                container: id.clone(),
                image_id,
            });
        }
        let labels = c.labels.unwrap_or_default();
        if labels.get(SERVICE_LABEL).map(String::as_str) == Some(service) {
            binds.extend(c.mounts.unwrap_or_default().into_iter().filter_map(|m| {
                (m.typ.as_deref() == Some("bind")).then_some(Bind {
                    source: m.source?,
                    destination: m.destination?,
                })
            }));
        }
    }
    let options = ListImagesOptionsBuilder::default().build();
    let images = engine
        .call(
            "list the host's images",
            engine.docker().list_images(Some(options)),
        )
        .await?
        .into_iter()
        .map(|i| ImageFound {
            id: i.id,
            tags: i
                .repo_tags
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
        })
        .collect();
    Ok(Observed {
        containers,
        users,
        images,
        binds,
    })
}

/// What becomes of a removed container's anonymous volumes (one per
/// `VOLUME` of its image that nothing was mounted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonymousVolumes {
    /// They may hold data someone wants back.
    Keep,
    /// The container never ran: they hold only the image's files.
    Remove,
}

/// Removes container `name`, if it is there; `force` kills it first if
/// it runs (without it, Docker refuses a running one).
pub async fn remove_container(
    engine: &Engine,
    name: &str,
    force: bool,
    volumes: AnonymousVolumes,
) -> Result<()> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(force)
        .v(volumes == AnonymousVolumes::Remove)
        .build();
    match engine
        .call(
            &format!("remove container {name}"),
            engine.docker().remove_container(name, Some(options)),
        )
        .await
    {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes `image`: each of its tags, so that the last one deletes it, or
/// its ID when it has none. Never forced: Docker refuses an image a
/// container uses.
pub async fn remove_image(engine: &Engine, image: &ImageFound) -> Result<()> {
    let names: Vec<&str> = match image.tags.as_slice() {
        [] => vec![image.id.as_str()],
        tags => tags.iter().map(String::as_str).collect(),
    };
    for name in names {
        let options = RemoveImageOptionsBuilder::default().force(false).build();
        match engine
            .call(
                &format!("remove image {name}"),
                engine.docker().remove_image(name, Some(options), None),
            )
            .await
        {
            Err(e) if e.kind == ErrorKind::NotFound => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// What prune did (or, for a dry run, would do) on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPruned {
    pub host: String,
    /// Removed (or to remove); on a failure, what went before it.
    #[serde(flatten)]
    pub selection: Selection,
    /// Why the host stopped short.
    #[serde(serialize_with = "error_text")]
    pub error: Option<Error>,
}

/// An error as JSON shows it in a report: its one-line text.
pub(crate) fn error_text<S: serde::Serializer>(
    e: &Option<Error>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_str(&e.to_string()),
        None => s.serialize_none(),
    }
}

/// Prunes every host of `c.scope` under the lock (a dry run only looks, and
/// takes no lock). Returns each host's report, in host order, even when a
/// host failed, and the outcome.
pub async fn run(
    c: &Change<'_>,
    dry_run: bool,
    cancel: &CancellationToken,
) -> (Vec<HostPruned>, Result<()>) {
    let config = &c.loaded.config;
    let retain = config.deploy.retain;
    let repository = repository(&config.image);
    let reports = Mutex::new(BTreeMap::new());
    let work = async |fleet: &Fleet| {
        let results = fleet
            .each(|h| {
                let repository = repository.as_deref();
                async move {
                    let mut done = HostPruned {
                        host: h.name().to_string(),
                        selection: Selection::default(),
                        error: None,
                    };
                    let result =
                        prune_host(h, c, retain, repository, dry_run, cancel, &mut done).await;
                    done.error = result.err();
                    done
                }
            })
            .await;
        crate::change::file_reports(results, |done| done.error.as_ref(), &reports)
    };
    let result = if dry_run {
        look(c, work).await
    } else {
        change::run(c, work).await
    };
    let reports = reports.into_inner().expect("reports");
    (in_order(c, reports), result)
}

/// Connects to the hosts of `c.scope` and runs `work` without the lock:
/// for looking only.
pub(crate) async fn look(
    c: &Change<'_>,
    work: impl AsyncFnOnce(&Fleet) -> Result<()>,
) -> Result<()> {
    let config = &c.loaded.config;
    let fleet = Fleet::connect(&c.scope.hosts_of(config), c.reach, config.concurrency()).await;
    let result = match fleet.require_all("connect to the hosts") {
        Ok(()) => work(&fleet).await,
        Err(e) => Err(e),
    };
    fleet.close().await;
    result
}

/// Reports in the config's host order.
pub(crate) fn in_order<T>(c: &Change<'_>, mut reports: BTreeMap<String, T>) -> Vec<T> {
    c.scope
        .hosts_of(&c.loaded.config)
        .iter()
        .filter_map(|h| reports.remove(h))
        .collect()
}

async fn prune_host(
    host: &Host,
    c: &Change<'_>,
    retain: usize,
    repository: Option<&str>,
    dry_run: bool,
    cancel: &CancellationToken,
    done: &mut HostPruned,
) -> Result<()> {
    let engine = host.engine();
    let observed = observe(engine, &c.loaded.config.service).await?;
    let selection = select(&observed, retain, &c.scope, repository);
    if dry_run {
        done.selection = selection;
        return Ok(());
    }
    for container in selection.containers {
        stop_if_cancelled(cancel, host)?;
        let service = &c.loaded.config.service;
        let secrets = crate::rollout::secret_dirs_of(host, service, &container.name).await;
        remove_container(engine, &container.name, false, AnonymousVolumes::Keep).await?;
        for dir in secrets {
            crate::rollout::remove_dir(host, &dir).await?;
        }
        done.selection.containers.push(container);
    }
    for image in selection.images {
        stop_if_cancelled(cancel, host)?;
        remove_image(engine, &image).await?;
        done.selection.images.push(image);
    }
    Ok(())
}

/// Fails when the operator interrupted the command; what was done stays
/// done, and running the command again finishes it.
pub(crate) fn stop_if_cancelled(cancel: &CancellationToken, host: &Host) -> Result<()> {
    if cancel.is_cancelled() {
        return Err(Error::new(
            ErrorKind::Interrupted,
            "go on with the next removal",
            "interrupted by the operator",
        )
        .on(host.name())
        .hint("what is listed was removed; run the command again to finish"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerState::{Exited, Paused, Removing, Restarting, Running};

    /// A container of `shop` at `version`, created at `created` (newer is
    /// larger), running image `sha256:<version>`.
    fn container(role: &str, version: &str, state: ContainerState, created: i64) -> AppContainer {
        AppContainer {
            created,
            ..crate::testing::app_container(role, version, state)
        }
    }

    fn doomed(role: &str, version: &str, state: ContainerState) -> Doomed {
        Doomed::of(&container(role, version, state, 0))
    }

    fn image(id: &str, tags: &[&str]) -> ImageFound {
        ImageFound {
            id: id.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn user(container: &str, image_id: &str) -> ImageUser {
        ImageUser {
            container: container.into(),
            image_id: image_id.into(),
        }
    }

    /// A host holding `containers` (each its only user of its image) and
    /// `images`.
    fn host(containers: Vec<AppContainer>, images: Vec<ImageFound>) -> Observed {
        Observed {
            users: containers
                .iter()
                .map(|c| user(&c.id, &c.image_id))
                .collect(),
            containers,
            images,
            binds: Vec::new(),
        }
    }

    fn containers_of(s: &Selection) -> Vec<String> {
        s.containers.iter().map(|d| d.name.clone()).collect()
    }

    #[test]
    fn past_retain_keeps_the_newest_up_to_retain() {
        let past = |kept, retain| -> Vec<&str> {
            past_retain(["d", "c", "b", "a"], kept, retain).collect()
        };
        assert_eq!(past(1, 3), ["b", "a"]);
        assert_eq!(past(0, 3), ["a"]);
        assert_eq!(past(3, 3), ["d", "c", "b", "a"]);
        assert_eq!(past(5, 3), ["d", "c", "b", "a"]);
        assert_eq!(past(1, usize::MAX), Vec::<&str>::new());
        // A retain of 0 keeps the release that runs.
        assert_eq!(past(0, 0), ["c", "b", "a"]);
        assert_eq!(past(1, 0), ["d", "c", "b", "a"]);
    }

    #[test]
    fn stopped_releases_past_retain_go_per_role_the_running_one_counted() {
        let observed = host(
            vec![
                container("web", "v5", Running, 5),
                container("worker", "v5", Running, 5),
                container("web", "v4", Exited, 4),
                container("worker", "v4", Exited, 4),
                container("web", "v3", Exited, 3),
                container("web", "v2", Exited, 2),
                container("web", "v1", Exited, 1),
            ],
            Vec::new(),
        );
        let s = select(&observed, 3, &Scope::all(), Some("shop"));
        // web keeps v5 (running), v4, v3; worker keeps v5 and v4.
        assert_eq!(
            s.containers,
            [doomed("web", "v2", Exited), doomed("web", "v1", Exited)]
        );
    }

    #[test]
    fn the_newest_stopped_are_kept_whatever_the_listed_order() {
        let observed = host(
            vec![
                container("web", "v1", Exited, 1),
                container("web", "v3", Exited, 3),
                container("web", "v2", Exited, 2),
            ],
            Vec::new(),
        );
        let s = select(&observed, 2, &Scope::all(), Some("shop"));
        assert_eq!(containers_of(&s), ["shop-web-v1"]);
    }

    #[test]
    fn never_a_running_restarting_or_paused_container_nor_one_being_removed() {
        let observed = host(
            vec![
                container("web", "v6", Restarting, 6),
                container("web", "v5", Running, 5),
                container("web", "v4", Paused, 4),
                container("web", "v3", Exited, 3),
                container("web", "v2", Removing, 2),
                container("web", "v1", ContainerState::Created, 1),
            ],
            Vec::new(),
        );
        // Three hold the role's resources: already past retain 2.
        let s = select(&observed, 2, &Scope::all(), Some("shop"));
        assert_eq!(containers_of(&s), ["shop-web-v3", "shop-web-v1"]);
        let s = select(&observed, 0, &Scope::all(), Some("shop"));
        assert_eq!(containers_of(&s), ["shop-web-v3", "shop-web-v1"]);
    }

    #[test]
    fn a_retain_of_zero_keeps_the_newest_stopped_when_nothing_runs() {
        let observed = host(
            vec![
                container("web", "v2", Exited, 2),
                container("web", "v1", Exited, 1),
            ],
            Vec::new(),
        );
        let s = select(&observed, 0, &Scope::all(), Some("shop"));
        assert_eq!(containers_of(&s), ["shop-web-v1"]);
    }

    #[test]
    fn roles_out_of_scope_keep_every_container() {
        let observed = host(
            vec![
                container("web", "v3", Running, 3),
                container("worker", "v3", Running, 3),
                container("web", "v2", Exited, 2),
                container("worker", "v2", Exited, 2),
                container("web", "v1", Exited, 1),
                container("worker", "v1", Exited, 1),
            ],
            Vec::new(),
        );
        let scope = Scope {
            roles: vec!["worker".into()],
            ..Scope::all()
        };
        let s = select(&observed, 2, &scope, Some("shop"));
        assert_eq!(containers_of(&s), ["shop-worker-v1"]);
    }

    #[test]
    fn images_nothing_uses_go_and_every_other_stays() {
        let mut observed = host(
            vec![
                container("web", "v4", Running, 4),
                container("web", "v3", Exited, 3),
                container("web", "v2", Exited, 2),
                container("web", "v1", Exited, 1),
            ],
            vec![
                image("sha256:v4", &["shop:v4"]),
                image("sha256:v3", &["shop:v3"]),
                // Another service's container runs it too.
                image("sha256:v2", &["shop:v2"]),
                // Untagged since, but a container of the service records it.
                image("sha256:v1", &[]),
                // Left by a deploy that pruned its container earlier.
                image("sha256:v0", &["shop:v0"]),
                // Tagged in another repository as well: shared.
                image("sha256:kept", &["shop:v9", "backup/shop:v9"]),
                // Untagged, recorded by no container: not known as ours.
                image("sha256:stray", &[]),
                // The proxy's, running and old: never the service's.
                image("sha256:proxy", &["ballast-proxy:0123456789ab"]),
                image("sha256:old-proxy", &["ballast-proxy:ba9876543210"]),
                image("sha256:pg", &["postgres:16.4"]),
                // Same repository name under a registry: another repository.
                image("sha256:reg", &["registry.local:5000/shop:v1"]),
            ],
        );
        observed.users.push(user("other-service", "sha256:v2"));
        observed.users.push(user("ballast-proxy", "sha256:proxy"));
        let s = select(&observed, 2, &Scope::all(), Some("shop"));
        assert_eq!(containers_of(&s), ["shop-web-v2", "shop-web-v1"]);
        assert_eq!(
            s.images,
            [image("sha256:v1", &[]), image("sha256:v0", &["shop:v0"])]
        );
    }

    #[test]
    fn an_image_a_kept_container_records_stays_even_if_no_user_is_listed() {
        let mut observed = host(
            vec![
                container("web", "v2", Running, 2),
                container("web", "v1", Exited, 1),
            ],
            vec![
                image("sha256:v2", &["shop:v2"]),
                image("sha256:v1", &["shop:v1"]),
            ],
        );
        // Docker reports another image ID for the running container.
        observed.users[0].image_id = "sha256:other".into();
        let s = select(&observed, 2, &Scope::all(), Some("shop"));
        assert_eq!(s, Selection::default());
    }

    #[test]
    fn on_the_containerd_store_images_are_known_by_their_config_tag() {
        // Containers record config digests; the store lists images, and
        // the containers using them, by manifest digest.
        let config = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let tag = |c: char| crate::engine::config_tag(&config(c)).unwrap();
        let mut v2 = container("web", "v2", Running, 2);
        v2.image_id = config('b');
        let mut v1 = container("web", "v1", Exited, 1);
        v1.image_id = config('a');
        let mut observed = host(
            vec![v2, v1],
            vec![
                image("sha256:m2", &["shop:v2", &tag('b')]),
                image("sha256:m1", &["shop:v1", &tag('a')]),
                // A release pruned before, left with its config tag only.
                image("sha256:m0", &[&tag('c')]),
            ],
        );
        // An interrupted delivery left its unproven name on v1: still
        // ballast's, so v1 goes when it is past retention.
        let unproven = crate::delivery::oci::unproven_tag(&config('a'), "9-1").unwrap();
        observed.images[1].tags.push(unproven.clone());
        observed.users = vec![
            user("id-web-v2", "sha256:m2"),
            user("id-web-v1", "sha256:m1"),
        ];
        let s = select(&observed, 2, &Scope::all(), Some("shop"));
        assert_eq!(s.images, [image("sha256:m0", &[&tag('c')])]);
        let s = select(&observed, 1, &Scope::all(), Some("shop"));
        assert_eq!(containers_of(&s), ["shop-web-v1"]);
        assert_eq!(
            s.images,
            [
                image("sha256:m1", &["shop:v1", &tag('a'), &unproven]),
                image("sha256:m0", &[&tag('c')])
            ]
        );
    }

    #[test]
    fn without_a_repository_only_recorded_untagged_images_go() {
        let observed = host(
            vec![container("web", "v1", Exited, 1)],
            vec![image("sha256:v1", &[]), image("sha256:v0", &["shop:v0"])],
        );
        let removed = BTreeSet::from(["id-web-v1"]);
        assert_eq!(
            unused_images(&observed, &removed, None),
            [image("sha256:v1", &[])]
        );
        // With nothing removed, the stopped container still uses it.
        assert_eq!(unused_images(&observed, &BTreeSet::new(), None), []);
    }

    #[test]
    fn the_repository_is_the_image_without_its_tag() {
        assert_eq!(repository("shop").as_deref(), Some("shop"));
        assert_eq!(repository("shop:1.2").as_deref(), Some("shop"));
        assert_eq!(
            repository("registry.local:5000/shop:1.2").as_deref(),
            Some("registry.local:5000/shop")
        );
        assert_eq!(repository("shop@sha256:abcd"), None);
    }

    #[test]
    fn images_and_containers_are_named_as_people_read_them() {
        let id = "sha256:0123456789abcdef0123";
        assert_eq!(image(id, &[]).describe(), "0123456789ab");
        assert_eq!(
            image(id, &["shop:v1", "shop:latest"]).describe(),
            "shop:v1, shop:latest (0123456789ab)"
        );
        assert_eq!(
            doomed("web", "v1", Exited).describe(),
            "shop-web-v1 (web v1, exited)"
        );
    }
}
