//! `ballast remove`: the service taken off its hosts, under the lock, one
//! audit line on each. On each host, in this order: the host's proxy stops
//! routing to the service (an admin `remove` per route, which drains it),
//! every container of the service is stopped and removed, the service's
//! images nothing else uses are removed (the rule of [`crate::prune`]), and
//! ballast's own files under `/var/lib/ballast/<service>/` go.
//!
//! Never data: the host directories the roles mount (`roles.*.volumes`, and
//! whatever the containers found mount) stay, even inside the state
//! directory, and so does everything in it ballast did not write. The audit
//! log stays too: it records who removed the service. The proxy keeps
//! running for the other services. What to remove is decided as data
//! ([`routes`], [`data_paths`], [`state_cleanup`]); a rerun after an
//! interruption finishes the job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};
use std::sync::Mutex;
use std::time::Duration;

use ballast_proxy_wire::{AdminRequest, RemoveRequest};
use bollard::query_parameters::StopContainerOptionsBuilder;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::change::{self, Change};
use crate::config::{defaults, Config};
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host::Host;
use crate::proxy;
use crate::prune::{self, Bind, Doomed, ImageFound, Observed};
use crate::state::STATE_ROOT;

/// The audit log's name in the state directory (see
/// [`crate::state::append_audit`]).
const AUDIT_LOG: &str = "audit.log";
/// Deadline of one command run on a host for the state directory.
const FILE_DEADLINE: Duration = Duration::from_secs(15);

/// Why an entry of the state directory stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptWhy {
    /// A role's volume, inside one, or holding one.
    Data,
    /// The record of who did what, this removal included.
    AuditLog,
    /// Not written by ballast.
    NotOurs,
}

impl KeptWhy {
    pub fn words(self) -> &'static str {
        match self {
            KeptWhy::Data => "data: a role's volume, or holding one",
            KeptWhy::AuditLog => "the audit log: the record of this removal",
            KeptWhy::NotOurs => "not written by ballast",
        }
    }
}

/// An entry of the state directory left in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub path: String,
    pub why: KeptWhy,
}

/// What becomes of the state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    pub remove: Vec<String>,
    pub kept: Vec<Kept>,
}

/// What remove did on one host; on a failure, what went before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostRemoved {
    pub host: String,
    /// Routes taken off the host's proxy.
    pub routes: Vec<String>,
    pub containers: Vec<Doomed>,
    /// The service's own network, where the proxy reached it.
    pub networks: Vec<String>,
    pub images: Vec<ImageFound>,
    /// Files and directories of ballast removed from the state directory.
    pub files: Vec<String>,
    /// What stays in the state directory, and why.
    pub kept: Vec<Kept>,
    /// Why the host stopped short.
    #[serde(serialize_with = "prune::error_text")]
    pub error: Option<Error>,
}

impl HostRemoved {
    fn new(host: &str) -> HostRemoved {
        HostRemoved {
            host: host.to_string(),
            routes: Vec::new(),
            containers: Vec::new(),
            networks: Vec::new(),
            images: Vec::new(),
            files: Vec::new(),
            kept: Vec::new(),
            error: None,
        }
    }
}

/// The state directory of `service` on every host.
pub fn state_dir(service: &str) -> String {
    format!("{STATE_ROOT}/{service}")
}

/// The routes of `service` to take off a proxy that routes `routed`: one
/// per role in `roles` it routes, as `(role, route)`, sorted by role.
pub fn routes<'a>(
    service: &str,
    roles: impl IntoIterator<Item = &'a str>,
    routed: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let roles: BTreeSet<&str> = roles.into_iter().collect();
    roles
        .into_iter()
        .map(|role| (role.to_string(), proxy::route_name(service, role)))
        .filter(|(_, route)| routed.contains(route))
        .collect()
}

/// The host paths that hold data, normalized: every role's volumes and
/// accessory's data directories in `config`, and every directory the
/// service's containers mount (`binds`) but the secret files ballast
/// mounts for them.
pub fn data_paths(config: &Config, binds: &[Bind]) -> Vec<String> {
    let secrets = secrets_root(&config.service);
    let from_config = config
        .roles
        .values()
        .flat_map(|r| r.volumes.iter())
        .map(|v| v.split(':').next().unwrap_or(v).to_string());
    let accessories = config
        .accessories
        .iter()
        .flat_map(|(name, a)| a.data_dirs(&config.service, name))
        .map(|d| d.host);
    let mounted = binds
        .iter()
        .filter(|b| {
            let ballasts = b.destination == crate::spec::SECRETS_MOUNT
                && inside(&normalize(&b.source), &secrets);
            !ballasts
        })
        .map(|b| b.source.clone());
    let all: BTreeSet<String> = from_config
        .chain(accessories)
        .chain(mounted)
        .filter(|p| p.starts_with('/'))
        .map(|p| normalize(&p))
        .collect();
    all.into_iter().collect()
}

/// Where ballast keeps the service's secret files: the parent of every
/// container's directory ([`crate::spec::secrets_dir`]).
fn secrets_root(service: &str) -> String {
    let one = crate::spec::secrets_dir(service, "c", "d");
    let parent = Path::new(&one).parent().map(|p| p.to_string_lossy());
    normalize(&parent.unwrap_or_default())
}

/// An absolute path with `.`, `..` and repeated or trailing slashes
/// resolved as text (symbolic links are the host's business: see
/// [`resolve`]).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether `path` is `dir` or inside it (both normalized).
fn inside(path: &str, dir: &str) -> bool {
    path == dir || dir == "/" || path.starts_with(&format!("{dir}/"))
}

/// What of `service`'s state directory goes, given its `entries` (names),
/// the directory as the host resolves it (`resolved`, when it differs),
/// and the `data` paths (normalized, and as the host resolves them).
/// Only ballast's own entries go (its secret files and the digest key of
/// secrets; its lock is given back
/// as the command ends); an entry that is data, inside data or holding
/// data stays, and so does the audit log and whatever ballast did not
/// write.
pub fn state_cleanup(
    service: &str,
    entries: &[String],
    resolved: Option<&str>,
    data: &[String],
) -> Cleanup {
    let dir = state_dir(service);
    let lock = crate::lock::lock_dir(service);
    let ours = [secrets_root(service), crate::digest_key::path(service)];
    let mut cleanup = Cleanup::default();
    // Names only: anything else is no entry of the directory.
    let mut names: Vec<&String> = entries
        .iter()
        .filter(|e| !e.is_empty() && !e.contains('/') && *e != "." && *e != "..")
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let path = normalize(&format!("{dir}/{name}"));
        if path == normalize(&lock) {
            continue;
        }
        let mut seen_as = vec![path.clone()];
        if let Some(r) = resolved {
            seen_as.push(normalize(&format!("{r}/{name}")));
        }
        let holds_data = seen_as
            .iter()
            .any(|p| data.iter().any(|d| inside(d, p) || inside(p, d)));
        let why = if holds_data {
            Some(KeptWhy::Data)
        } else if name == AUDIT_LOG {
            Some(KeptWhy::AuditLog)
        } else if !ours.contains(&path) {
            Some(KeptWhy::NotOurs)
        } else {
            None
        };
        match why {
            Some(why) => cleanup.kept.push(Kept { path, why }),
            None => cleanup.remove.push(path),
        }
    }
    cleanup
}

/// Removes `c.loaded`'s service from every host of `c.scope`, under the
/// lock. Returns each host's report, in host order, even when a host
/// failed, and the outcome.
pub async fn run(c: &Change<'_>, cancel: &CancellationToken) -> (Vec<HostRemoved>, Result<()>) {
    let reports = Mutex::new(BTreeMap::new());
    let work = async |fleet: &Fleet| {
        let results = fleet
            .each(|h| async move {
                let mut done = HostRemoved::new(h.name());
                done.error = remove_host(h, &c.loaded.config, cancel, &mut done)
                    .await
                    .err();
                done
            })
            .await;
        crate::change::file_reports(results, |done| done.error.as_ref(), &reports)
    };
    let result = change::run(c, work).await;
    let reports = reports.into_inner().expect("reports");
    (prune::in_order(c, reports), result)
}

async fn remove_host(
    host: &Host,
    config: &Config,
    cancel: &CancellationToken,
    done: &mut HostRemoved,
) -> Result<()> {
    let service = &config.service;
    let engine = host.engine();
    let observed = prune::observe(engine, service).await?;
    // Found before anything goes: the containers name what they mount.
    let data = resolved_data(host, &data_paths(config, &observed.binds)).await;
    take_routes(host, config, &observed, done).await?;
    for c in &observed.containers {
        prune::stop_if_cancelled(cancel, host)?;
        if c.state.is_active() {
            // A failed stop is not fatal: the forced removal kills it.
            let _ = stop(host, &c.name, config.stop_timeout(&c.role)).await;
        }
        prune::remove_container(engine, &c.name, true, prune::AnonymousVolumes::Keep).await?;
        done.containers.push(Doomed::of(c));
    }
    prune::stop_if_cancelled(cancel, host)?;
    if proxy::remove_service_network(host, service).await? {
        done.networks.push(proxy::service_network(service));
    }
    let all: BTreeSet<&str> = observed.containers.iter().map(|c| c.id.as_str()).collect();
    let repository = prune::repository(&config.image);
    for image in prune::unused_images(&observed, &all, repository.as_deref()) {
        prune::stop_if_cancelled(cancel, host)?;
        prune::remove_image(engine, &image).await?;
        done.images.push(image);
    }
    prune::stop_if_cancelled(cancel, host)?;
    let dir = state_dir(service);
    let entries = list(host, &dir).await?;
    let resolved = resolve(host, &dir).await.filter(|r| *r != dir);
    let cleanup = state_cleanup(service, &entries, resolved.as_deref(), &data);
    for path in cleanup.remove {
        host.run_checked(
            &format!("remove {path}"),
            "rm",
            &["-rf", "--", &path],
            None,
            FILE_DEADLINE,
        )
        .await?;
        done.files.push(path);
    }
    done.kept = cleanup.kept;
    Ok(())
}

/// Has the host's proxy stop routing to the service, route by route (each
/// drained). A host with no proxy has no route; a stopped proxy keeps its
/// routes, so it fails the host before anything is removed.
async fn take_routes(
    host: &Host,
    config: &Config,
    observed: &Observed,
    done: &mut HostRemoved,
) -> Result<()> {
    let proxied: Vec<&str> = config
        .roles
        .iter()
        .filter(|(_, r)| r.proxy.is_some() && r.addresses().contains(&host.name()))
        .map(|(name, _)| name.as_str())
        .collect();
    let roles = proxied
        .iter()
        .copied()
        .chain(observed.containers.iter().map(|c| c.role.as_str()));
    let found = proxy::observe(host).await;
    if !found.running {
        let routed_here = !proxied.is_empty() || observed.containers.iter().any(|c| c.ip.is_some());
        if found.settings.is_some() && routed_here {
            return Err(Error::failed(
                "take the service's routes off the proxy",
                format_args!(
                    "{} is stopped, so its routes to {} cannot be removed",
                    proxy::CONTAINER,
                    config.service
                ),
            )
            .on(host.name())
            .hint(format!(
                "nothing was removed here: start it with `ballast proxy restart --hosts {}`, then run `ballast remove` again",
                host.name()
            )));
        }
        return Ok(());
    }
    let status = proxy::admin(host, &AdminRequest::Status, Duration::from_secs(10)).await?;
    let routed: BTreeSet<String> = status
        .status
        .map(|s| s.services.into_iter().map(|s| s.name).collect())
        .unwrap_or_default();
    for (role, route) in routes(&config.service, roles, &routed) {
        let drain = config
            .roles
            .get(&role)
            .and_then(|r| r.proxy.as_ref())
            .map_or_else(defaults::drain_timeout, |p| p.drain_timeout);
        let request = AdminRequest::Remove(RemoveRequest {
            service: route.clone(),
            drain_timeout_ms: drain.as_millis() as u64,
        });
        proxy::admin(
            host,
            &request,
            drain.saturating_add(Duration::from_secs(15)),
        )
        .await
        .map_err(|e| Error {
            step: format!("take route {route} off the proxy"),
            ..e
        })?;
        done.routes.push(route);
    }
    Ok(())
}

async fn stop(host: &Host, name: &str, timeout: Duration) -> Result<()> {
    let engine = host.engine();
    let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
    let options = StopContainerOptionsBuilder::default().t(secs).build();
    let deadline = timeout.saturating_add(Duration::from_secs(15));
    let step = format!("stop {name}");
    match tokio::time::timeout(
        deadline,
        engine.docker().stop_container(name, Some(options)),
    )
    .await
    {
        Err(_) => Err(Error::timeout(step, deadline).on(host.name())),
        Ok(Err(e)) => Err(engine.error(&step, e)),
        Ok(Ok(())) => Ok(()),
    }
}

/// `data` and, beside each, the path the host resolves it to (through
/// symbolic links), when it differs.
async fn resolved_data(host: &Host, data: &[String]) -> Vec<String> {
    let mut all = data.to_vec();
    for path in data {
        if let Some(real) = resolve(host, path).await {
            all.push(real);
        }
    }
    all.sort();
    all.dedup();
    all
}

/// The path the host resolves `path` to, normalized; `None` when it cannot.
async fn resolve(host: &Host, path: &str) -> Option<String> {
    let out = host
        .run("readlink", &["-f", "--", path], None, FILE_DEADLINE)
        .await
        .ok()?;
    let real = out.stdout.trim();
    (out.success() && real.starts_with('/')).then(|| normalize(real))
}

/// The names in directory `dir` on the host; none when it is not there.
async fn list(host: &Host, dir: &str) -> Result<Vec<String>> {
    let there = host.run("test", &["-d", dir], None, FILE_DEADLINE).await?;
    if !there.success() {
        return Ok(Vec::new());
    }
    let out = host
        .run("ls", &["-A1", "--", dir], None, FILE_DEADLINE)
        .await?;
    if !out.success() {
        return Err(Error::failed(format!("list {dir}"), out.stderr.trim()).on(host.name()));
    }
    Ok(out.stdout.lines().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn kept(path: &str, why: KeptWhy) -> Kept {
        Kept {
            path: path.into(),
            why,
        }
    }

    fn config(volumes: &[&str]) -> Config {
        let mut config = crate::testing::sharded_config();
        let web = config.roles.get_mut("web").expect("web");
        web.volumes = names(volumes);
        config
    }

    fn bind(source: &str, destination: &str) -> Bind {
        Bind {
            source: source.into(),
            destination: destination.into(),
        }
    }

    #[test]
    fn routes_are_those_of_the_roles_the_proxy_routes() {
        let routed = BTreeSet::from([
            "shop-web".to_string(),
            "shop-api".to_string(),
            "other-web".to_string(),
            "shop-web-x".to_string(),
        ]);
        assert_eq!(
            routes("shop", ["web", "worker", "web", "api"], &routed),
            [
                ("api".to_string(), "shop-api".to_string()),
                ("web".to_string(), "shop-web".to_string()),
            ]
        );
        assert_eq!(routes("shop", ["web"], &BTreeSet::new()), []);
    }

    #[test]
    fn data_is_every_volume_and_every_mount_but_the_secret_files() {
        let binds = [
            bind("/srv/uploads/", "/uploads"),
            bind(
                "/var/lib/ballast/shop/secrets/shop-web-v1-d",
                "/run/secrets",
            ),
            // Mounted at /run/secrets from elsewhere: the operator's.
            bind("/etc/shop/secrets", "/run/secrets"),
            // Under ballast's secrets, mounted elsewhere: not ballast's.
            bind("/var/lib/ballast/shop/secrets/keep", "/keep"),
        ];
        let config = config(&["/var/lib/ballast/shop/data:/data", "/srv//db/./x/..:/db:ro"]);
        assert_eq!(
            data_paths(&config, &binds),
            [
                "/etc/shop/secrets",
                "/srv/db",
                "/srv/uploads",
                "/var/lib/ballast/shop/data",
                "/var/lib/ballast/shop/secrets/keep",
            ]
        );
    }

    #[test]
    fn only_ballasts_own_files_go_never_data_the_audit_log_or_others() {
        let entries = names(&[
            "secrets",
            "audit.log",
            "lock",
            "data",
            "notes.txt",
            "digest.key",
        ]);
        let data = names(&["/var/lib/ballast/shop/data"]);
        assert_eq!(
            state_cleanup("shop", &entries, None, &data),
            Cleanup {
                remove: names(&[
                    "/var/lib/ballast/shop/digest.key",
                    "/var/lib/ballast/shop/secrets"
                ]),
                kept: vec![
                    kept("/var/lib/ballast/shop/audit.log", KeptWhy::AuditLog),
                    kept("/var/lib/ballast/shop/data", KeptWhy::Data),
                    kept("/var/lib/ballast/shop/notes.txt", KeptWhy::NotOurs),
                ],
            }
        );
    }

    #[test]
    fn secrets_holding_a_volume_stay() {
        let entries = names(&["secrets"]);
        let data = names(&["/var/lib/ballast/shop/secrets/db"]);
        assert_eq!(
            state_cleanup("shop", &entries, None, &data),
            Cleanup {
                remove: vec![],
                kept: vec![kept("/var/lib/ballast/shop/secrets", KeptWhy::Data)],
            }
        );
    }

    #[test]
    fn a_volume_holding_the_state_directory_keeps_all_of_it() {
        let entries = names(&["secrets", "audit.log"]);
        for volume in ["/var/lib/ballast", "/var/lib/ballast/shop", "/"] {
            let cleanup = state_cleanup("shop", &entries, None, &names(&[volume]));
            assert_eq!(cleanup.remove, Vec::<String>::new(), "{volume}");
            assert!(
                cleanup.kept.iter().all(|k| k.why == KeptWhy::Data),
                "{volume}: {cleanup:?}"
            );
        }
    }

    #[test]
    fn data_reached_through_a_symbolic_link_is_seen() {
        // /var/lib/ballast is a link to /srv/ballast on this host, and a
        // volume was written as the real path.
        let entries = names(&["secrets"]);
        let data = names(&["/srv/ballast/shop/secrets/db"]);
        let cleanup = state_cleanup("shop", &entries, Some("/srv/ballast/shop"), &data);
        assert_eq!(cleanup.remove, Vec::<String>::new());
        assert_eq!(
            cleanup.kept,
            [kept("/var/lib/ballast/shop/secrets", KeptWhy::Data)]
        );
    }

    #[test]
    fn odd_entries_never_reach_outside_the_directory() {
        let entries = names(&["..", ".", "", "x/../secrets", "/"]);
        assert_eq!(
            state_cleanup("shop", &entries, None, &[]),
            Cleanup::default()
        );
    }

    #[test]
    fn paths_are_normalized_as_text() {
        assert_eq!(normalize("/a//b/./c/"), "/a/b/c");
        assert_eq!(normalize("/a/b/../c"), "/a/c");
        assert_eq!(normalize("/../a"), "/a");
        assert_eq!(normalize("/"), "/");
        assert!(inside("/a/b", "/a"));
        assert!(inside("/a", "/a"));
        assert!(!inside("/ab", "/a"));
        assert!(inside("/a", "/"));
        assert_eq!(secrets_root("shop"), "/var/lib/ballast/shop/secrets");
    }
}
