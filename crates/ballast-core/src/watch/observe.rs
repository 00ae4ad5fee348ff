//! One look at the hosts: on each, the current container of every role it
//! runs and of every accessory pinned to it, with state, Docker's restart
//! count and health (the role's HTTP check, or Docker's own), and whether
//! a live holder has the deploy lock; and, on a host whose roles use
//! ballast-proxy, whether the proxy serves and what it counted (see
//! [`super::proxy_look`]); and how full its Docker disk is (see
//! [`super::disk`]). Each host is looked at within the deadline, a
//! bounded number at a time, over a connection kept from one look to the
//! next (and opened again after a failure). Each host's look runs on its
//! own; the loop gathers them into rounds (see [`super::batch`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::disk::{self, DiskSeen};
use super::proxy_look::{self, ProxySeen};
use super::watcher::Topology;
use super::{Millis, Subject};
use crate::error::{Error, ErrorKind, Result};
use crate::host::{Host, Reach};
use crate::lock::Liveness;
use crate::release::{self, AppContainer, ContainerState};
use crate::spec::HealthMode;

/// What every host showed in one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub at: Millis,
    pub hosts: BTreeMap<String, HostSeen>,
    /// How long each host took to answer (or to fail).
    pub took: BTreeMap<String, Duration>,
}

/// What one host showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSeen {
    /// It answered.
    Up(HostView),
    /// SSH or its engine did not answer within the deadline: why.
    Down(String),
    /// It answered, but a step of the look failed (a container removed
    /// meanwhile): nothing can be said this time.
    Unknown(String),
}

/// The containers of a host that answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostView {
    /// Who holds the service's deploy lock here, if a live holder does.
    pub locked: Option<String>,
    /// The current container of each role the host runs and of each
    /// accessory pinned to it; `None`: there is none.
    pub containers: BTreeMap<Subject, Option<ContainerSeen>>,
    /// Its proxy, when a role here uses one (`None`: none does).
    pub proxy: Option<ProxySeen>,
    /// How full the filesystem of its engine's data root is (`None`: not
    /// read).
    pub disk: Option<DiskSeen>,
}

/// A container as one look saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSeen {
    pub name: String,
    pub id: String,
    /// The release it runs (role containers).
    pub version: Option<String>,
    /// When that release was deployed here (RFC 3339).
    pub deployed_at: Option<String>,
    pub state: ContainerState,
    pub exit_code: Option<i64>,
    /// Docker's count of restarts by its restart policy.
    pub restart_count: i64,
    pub health: Health,
    /// When it was last started, if it ever was.
    pub started_at: Option<Millis>,
}

/// A running container's health, as its check says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Docker's check has not decided yet.
    Starting,
    /// The check failed: why.
    Failing(String),
    /// No check (or not running): running is all that is asked.
    Unchecked,
}

/// One connection per host, kept between looks.
#[derive(Default)]
pub struct Connections {
    hosts: BTreeMap<String, Arc<Host>>,
    /// Each host's engine data root, once asked: it only changes with a
    /// restart of the engine, which drops the connection too.
    roots: BTreeMap<String, String>,
}

impl Connections {
    /// The connection to `host`, if one is open.
    pub fn get(&self, host: &str) -> Option<Arc<Host>> {
        self.hosts.get(host).cloned()
    }

    /// Every open connection, by host.
    pub fn iter(&self) -> impl Iterator<Item = (String, Arc<Host>)> + '_ {
        self.hosts.iter().map(|(n, h)| (n.clone(), h.clone()))
    }

    /// Closes every connection.
    pub async fn close(self) {
        for (_, host) in self.hosts {
            if let Ok(host) = Arc::try_unwrap(host) {
                host.close().await;
            }
        }
    }
}

/// One host's look, as it comes back to the loop.
pub struct HostLook {
    pub name: String,
    /// The connection to keep (none after a failure).
    host: Option<Arc<Host>>,
    /// Its engine's data root, if known.
    root: Option<String>,
    pub seen: HostSeen,
    /// How long it took to answer (or to fail).
    pub took: Duration,
    /// Nothing answered within the deadline (as opposed to a refusal).
    pub silent: bool,
}

impl Connections {
    /// A look at `name` within `deadline`, on the connection held now (a
    /// new one if none is). It owns what it needs of the connections, so
    /// looks at several hosts run beside each other; [`Connections::keep`]
    /// takes in what comes of it.
    pub fn look<'a>(
        &self,
        name: &str,
        topology: &'a Topology,
        reach: &'a Reach,
        deadline: Duration,
    ) -> impl std::future::Future<Output = HostLook> + 'a {
        let (name, host, root) = (
            name.to_string(),
            self.hosts.get(name).cloned(),
            self.roots.get(name).cloned(),
        );
        async move {
            let start = std::time::Instant::now();
            let (host, root, seen) = look_host(&name, host, root, topology, reach, deadline).await;
            let took = start.elapsed();
            HostLook {
                silent: matches!(seen, HostSeen::Down(_)) && took >= deadline,
                name,
                host,
                root,
                seen,
                took,
            }
        }
    }

    /// Keeps the connection a look used, or forgets it after a failure
    /// (the next look connects again).
    pub fn keep(&mut self, look: &mut HostLook) {
        match look.host.take() {
            Some(host) => {
                self.hosts.insert(look.name.clone(), host);
            }
            None => {
                self.hosts.remove(&look.name);
                self.roots.remove(&look.name);
            }
        }
        if let Some(root) = look.root.take() {
            self.roots.insert(look.name.clone(), root);
        }
    }
}

impl Observation {
    /// What `looks` showed, judged at `at`.
    pub fn of(looks: &[HostLook], at: Millis) -> Observation {
        Observation {
            at,
            hosts: looks
                .iter()
                .map(|l| (l.name.clone(), l.seen.clone()))
                .collect(),
            took: looks.iter().map(|l| (l.name.clone(), l.took)).collect(),
        }
    }
}

/// One host's look: the connection to keep (none after a failure), its
/// engine's data root if known, and what it showed.
async fn look_host(
    name: &str,
    host: Option<Arc<Host>>,
    root: Option<String>,
    topology: &Topology,
    reach: &Reach,
    deadline: Duration,
) -> (Option<Arc<Host>>, Option<String>, HostSeen) {
    let until = std::time::Instant::now() + deadline;
    let work = async {
        let host = match host {
            Some(h) => h,
            None => Arc::new(Host::connect(name, &reach.target(name)).await?),
        };
        let (view, (root, disk)) = tokio::join!(
            view(&host, topology, deadline, until),
            disk::look(&host, root, deadline)
        );
        let view = view.map(|v| HostView {
            disk: Some(disk),
            ..v
        });
        Ok::<_, Error>((host, root, view))
    };
    match tokio::time::timeout(deadline, work).await {
        Err(_) => (
            None,
            None,
            HostSeen::Down(format!(
                "no answer within {}",
                crate::error::humanize(deadline)
            )),
        ),
        Ok(Err(e)) => (None, None, HostSeen::Down(cause(&e))),
        Ok(Ok((_, _, Err(e)))) if matches!(e.kind, ErrorKind::Unreachable | ErrorKind::Timeout) => {
            (None, None, HostSeen::Down(cause(&e)))
        }
        Ok(Ok((host, root, Err(e)))) => (Some(host), root, HostSeen::Unknown(cause(&e))),
        Ok(Ok((host, root, Ok(view)))) => (Some(host), root, HostSeen::Up(view)),
    }
}

fn cause(e: &Error) -> String {
    format!("{}: {}", e.step, e.cause)
}

/// What `host` runs of the service, whether it is locked, and its proxy;
/// the proxy is asked last, with what is left until `until` (the host's
/// deadline) but a margin, so that a proxy that does not answer leaves the
/// look time to say so.
async fn view(
    host: &Host,
    topology: &Topology,
    deadline: Duration,
    until: std::time::Instant,
) -> Result<HostView> {
    let service = &topology.service;
    let apps = release::observe(host.engine(), service).await?;
    let mut containers = BTreeMap::new();
    for (role, r) in topology.roles_on(host.name()) {
        let mine: Vec<&AppContainer> = apps.iter().filter(|c| &c.role == role).collect();
        let seen = match current(host, &mine).await? {
            None => None,
            Some(c) => inspect(host, &c.name, Some((c, &r.role)), deadline).await?,
        };
        containers.insert(Subject::Role(role.clone()), seen);
    }
    for (name, container) in topology.accessories_on(host.name()) {
        let seen = inspect(host, container, None, deadline).await?;
        containers.insert(Subject::Accessory(name.clone()), seen);
    }
    let locked = crate::lock::read(host, service)
        .await?
        .filter(|l| matches!(l.liveness, Liveness::Alive | Liveness::Manual))
        .map(|l| l.describe());
    let proxied: Vec<&String> = topology.proxied_on(host.name()).collect();
    let proxy = match proxied.is_empty() {
        true => None,
        false => {
            let answer_by = until.checked_sub(deadline / 10).unwrap_or(until);
            Some(proxy_look::look(host, service, &proxied, answer_by).await?)
        }
    };
    Ok(HostView {
        locked,
        containers,
        proxy,
        disk: None,
    })
}

/// The container that stands for the role on the host: the newest one
/// running; else the one started last (a rollback starts an older one,
/// so creation order does not tell).
async fn current<'a>(host: &Host, mine: &[&'a AppContainer]) -> Result<Option<&'a AppContainer>> {
    if let Some(running) = mine.iter().find(|c| c.state.is_active()) {
        return Ok(Some(*running));
    }
    let mut best: Option<(String, &AppContainer)> = None;
    for &c in mine {
        let Some(inspected) = crate::accessory::container::inspect(host, &c.name).await? else {
            continue;
        };
        let started = inspected
            .state
            .and_then(|s| s.started_at)
            .unwrap_or_default();
        if best.as_ref().is_none_or(|(b, _)| started > *b) {
            best = Some((started, c));
        }
    }
    Ok(best.map(|(_, c)| c))
}

/// Inspects the container `name`, and checks its health: the role's HTTP
/// check when `app` is a role's container with one, else Docker's.
async fn inspect(
    host: &Host,
    name: &str,
    app: Option<(&AppContainer, &crate::config::Role)>,
    deadline: Duration,
) -> Result<Option<ContainerSeen>> {
    let Some(c) = crate::accessory::container::inspect(host, name).await? else {
        return Ok(None);
    };
    let state = c.state.clone().unwrap_or_default();
    let status =
        ContainerState::from_docker(&state.status.map(|s| s.to_string()).unwrap_or_default());
    let running = status == ContainerState::Running;
    let docker_health = state
        .health
        .and_then(|h| h.status)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty() && s != "none");
    let has_check = c
        .config
        .as_ref()
        .and_then(|cfg| cfg.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| t.first().is_some_and(|w| w != "NONE"));
    let mode = app.map(|(_, role)| crate::spec::health_mode(role, has_check));
    let health = match (running, mode) {
        (false, _) => Health::Unchecked,
        (
            true,
            Some(HealthMode::Http {
                port,
                path,
                timeout,
                ..
            }),
        ) => {
            let ip = app
                .and_then(|(a, _)| a.ip.clone())
                .or_else(|| first_ip(&c))
                .unwrap_or_default();
            let timeout = timeout.min(deadline);
            match crate::health::http_get(host, &ip, port, &path, timeout).await {
                Ok((s, _)) if (200..300).contains(&s) => Health::Healthy,
                Ok((s, _)) => Health::Failing(format!("GET {path} answered {s}")),
                Err(e) => Health::Failing(format!("GET {path}: {}", e.cause)),
            }
        }
        (true, _) => match docker_health.as_deref() {
            Some("healthy") => Health::Healthy,
            Some("unhealthy") => Health::Failing("Docker reports it unhealthy".into()),
            Some(_) => Health::Starting,
            None => Health::Unchecked,
        },
    };
    Ok(Some(ContainerSeen {
        name: name.to_string(),
        id: c.id.clone().unwrap_or_default(),
        version: app.map(|(a, _)| a.version.clone()),
        deployed_at: app.map(|(a, _)| a.deployed_at.clone()),
        state: status,
        exit_code: state.exit_code,
        restart_count: c.restart_count.unwrap_or(0),
        health,
        started_at: state
            .started_at
            .and_then(|t| humantime::parse_rfc3339(&t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }))
}

fn first_ip(c: &bollard::models::ContainerInspectResponse) -> Option<String> {
    c.network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .values()
        .find_map(|e| e.ip_address.clone().filter(|ip| !ip.is_empty()))
}
