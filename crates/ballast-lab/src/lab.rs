//! Bringing a lab up: its network, one volume and one container per host
//! (each from its distribution's host image), each host checked until its
//! sshd and dockerd answer. Taking it down is `teardown`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use futures_util::{stream, StreamExt};
use ipnet::Ipv4Net;

use ballast_core::{Engine, Error, ErrorKind, Result};

use crate::engines::{self, Distro, LabEngines};
use crate::files::{make_key, Inventory, LabDir, LabHost};
use crate::host::{answer_over_ssh, check_store, labels, start_host, wait_inside};
use crate::name::LabName;
use crate::recipe::{self, RecipeEvent};
use crate::subnet;
pub use crate::teardown::{down, owned, teardown, Owned, Removed};

/// How many hosts are created, checked or removed at once.
pub(crate) const FAN_OUT: usize = 16;
/// Attempts at creating the network when another lab takes the subnet first.
const NETWORK_ATTEMPTS: usize = 5;

/// What `lab up` was asked for.
#[derive(Debug, Clone)]
pub struct UpRequest {
    pub name: LabName,
    pub hosts: usize,
    /// Directory that holds lab directories.
    pub base: PathBuf,
    /// A subnet to use instead of the first free one.
    pub subnet: Option<String>,
    /// How long hosts may take to answer over SSH with a working dockerd.
    pub timeout: Duration,
    /// Hosts made different on purpose (by number, 1-based), e.g. to give
    /// doctor a real fault to find.
    pub overrides: BTreeMap<usize, HostOverrides>,
}

/// What makes one lab host differ from the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOverrides {
    /// A directory of this machine bind-mounted as the host's
    /// `/var/lib/docker` instead of a volume (e.g. a loop-mounted filesystem).
    pub docker_root: Option<PathBuf>,
    /// Contents of the host's `/etc/docker/daemon.json`.
    pub daemon_json: Option<String>,
    /// The host's dockerd is expected not to start: the host is up once sshd
    /// answers.
    pub docker_may_fail: bool,
    /// The host has no Docker: its image is its distribution's less the
    /// Docker packages (see `bare`), for `ballast setup` to install them.
    /// The host is up once sshd answers.
    pub without_docker: bool,
}

impl HostOverrides {
    /// Whether the host is up only once its dockerd answers.
    fn needs_docker(&self) -> bool {
        !self.docker_may_fail && !self.without_docker
    }
}

/// Progress of `lab up`.
#[derive(Debug, Clone, PartialEq)]
pub enum LabEvent {
    Image(RecipeEvent),
    Network { name: String, subnet: String },
    HostStarted { name: String, ip: String },
    HostReady { name: String, seconds: f64 },
}

/// Starts a lab of bookworm hosts on the classic image store; see
/// [`up_with`].
pub async fn up(
    engine: &Engine,
    req: &UpRequest,
    on_event: &mut (dyn FnMut(LabEvent) + Send),
) -> Result<Inventory> {
    up_with(engine, req, &LabEngines::default(), on_event).await
}

/// Starts a lab whose hosts run the engines `engines` names, and returns
/// its inventory once every host answers over SSH with a working Docker
/// engine. On any failure, everything it created is removed again and the
/// error names the hosts that did not come up.
pub async fn up_with(
    engine: &Engine,
    req: &UpRequest,
    engines: &LabEngines,
    on_event: &mut (dyn FnMut(LabEvent) + Send),
) -> Result<Inventory> {
    check_request(req)?;
    engines.check(req.hosts)?;
    let existing = owned(engine, &req.name).await?;
    if !existing.is_empty() {
        return Err(Error::new(
            ErrorKind::Conflict,
            "start the lab",
            format_args!(
                "lab {} already exists ({} containers, {} networks, {} volumes)",
                req.name,
                existing.containers.len(),
                existing.networks.len(),
                existing.volumes.len()
            ),
        )
        .hint(format!(
            "remove it with `ballast lab down --name {}`, or choose another --name",
            req.name
        )));
    }
    // Each distribution's image builds beside the others: a build is
    // mostly one core's work, and a lab of three distributions made cold
    // would otherwise wait for three in a row.
    let told = std::sync::Mutex::new(&mut *on_event);
    let builds = engines.distros(req.hosts).into_iter().map(|distro| {
        let told = &told;
        async move {
            let mut tell = |e| (told.lock().unwrap_or_else(|p| p.into_inner()))(LabEvent::Image(e));
            let tag = recipe::ensure(engine, distro, &mut tell).await?;
            Ok::<_, Error>((distro, tag))
        }
    });
    let tags: BTreeMap<_, _> = futures_util::future::try_join_all(builds)
        .await?
        .into_iter()
        .collect();
    let mut bare = BTreeMap::new();
    for (n, o) in &req.overrides {
        let distro = engines.of(*n).distro;
        if o.without_docker && !bare.contains_key(&distro) {
            bare.insert(distro, crate::bare::ensure(engine, &tags[&distro]).await?);
        }
    }
    let dir = LabDir::new(&req.base, &req.name);
    let plan = Plan {
        engines,
        tags: &tags,
        bare: &bare,
    };
    match start(engine, req, &dir, &plan, on_event).await {
        Ok(inventory) => Ok(inventory),
        Err(e) => {
            // Leave nothing behind: a failed `up` changes nothing.
            let _ = teardown(engine, &req.name).await;
            let _ = std::fs::remove_dir_all(&dir.path);
            Err(e)
        }
    }
}

/// What each host is started from: its engine and that engine's image.
struct Plan<'a> {
    engines: &'a LabEngines,
    tags: &'a BTreeMap<Distro, String>,
    /// The images without Docker, for hosts that asked for one.
    bare: &'a BTreeMap<Distro, String>,
}

impl Plan<'_> {
    /// Host `n`'s image tag, and its overrides with the daemon.json its
    /// image store needs.
    fn host(&self, req: &UpRequest, n: usize) -> Result<(String, HostOverrides)> {
        let engine = self.engines.of(n);
        let mut overrides = req.overrides.get(&n).cloned().unwrap_or_default();
        overrides.daemon_json =
            engines::daemon_json(overrides.daemon_json.as_deref(), engine.store)?;
        let tag = if overrides.without_docker {
            self.bare[&engine.distro].clone()
        } else {
            self.tags[&engine.distro].clone()
        };
        Ok((tag, overrides))
    }
}

fn check_request(req: &UpRequest) -> Result<()> {
    if req.hosts == 0 || req.hosts > subnet::MAX_HOSTS {
        return Err(Error::input(
            "read --hosts",
            format_args!("{} hosts is outside 1..={}", req.hosts, subnet::MAX_HOSTS),
        )
        .hint("give --hosts a number from 1 to 200, e.g. --hosts 3"));
    }
    if let Some(s) = &req.subnet {
        subnet::parse_user(s, req.hosts)?;
    }
    Ok(())
}

async fn start(
    engine: &Engine,
    req: &UpRequest,
    dir: &LabDir,
    plan: &Plan<'_>,
    on_event: &mut (dyn FnMut(LabEvent) + Send),
) -> Result<Inventory> {
    // A directory without Docker objects is left over from a lab that is gone.
    if dir.path.exists() {
        std::fs::remove_dir_all(&dir.path).map_err(|e| {
            Error::failed(
                "clear the old lab directory",
                format_args!("{}: {e}", dir.path.display()),
            )
        })?;
    }
    std::fs::create_dir_all(&dir.path).map_err(|e| {
        Error::failed(
            "make the lab directory",
            format_args!("{}: {e}", dir.path.display()),
        )
        .hint("choose a writable place with --dir or BALLAST_LAB_HOME")
    })?;
    let public_key = make_key(dir, &req.name).await?;
    let net = create_network(engine, req).await?;
    on_event(LabEvent::Network {
        name: req.name.network(),
        subnet: net.to_string(),
    });

    let numbers: Vec<usize> = (1..=req.hosts).collect();
    let started = Instant::now();
    let created: Vec<Result<(usize, String)>> = stream::iter(numbers.iter().copied())
        .map(|n| {
            let public_key = public_key.clone();
            async move {
                let ip = subnet::host_ip(&net, n)?.to_string();
                let (tag, overrides) = plan.host(req, n)?;
                start_host(engine, &req.name, n, &ip, &tag, &public_key, &overrides).await?;
                Ok((n, ip))
            }
        })
        .buffer_unordered(FAN_OUT)
        .collect()
        .await;
    let mut hosts = Vec::new();
    for result in created {
        let (n, ip) = result?;
        on_event(LabEvent::HostStarted {
            name: req.name.hostname(n),
            ip: ip.clone(),
        });
        hosts.push((n, ip));
    }
    hosts.sort();

    // Each host's own key, read through the local engine: a trusted channel,
    // so known_hosts holds real keys without trusting the network first.
    let deadline = started + req.timeout;
    let keys: Vec<Result<String>> = stream::iter(hosts.iter())
        .map(|(n, _)| {
            let needs_docker = req.overrides.get(n).is_none_or(HostOverrides::needs_docker);
            let store = plan.engines.of(*n).store;
            async move {
                let key = wait_inside(engine, &req.name, *n, needs_docker, deadline).await?;
                if needs_docker {
                    check_store(engine, &req.name, *n, store).await?;
                }
                Ok(key)
            }
        })
        .buffered(FAN_OUT)
        .collect()
        .await;
    let mut lab_hosts = Vec::new();
    let mut failures = Vec::new();
    for ((n, ip), key) in hosts.iter().zip(keys) {
        match key {
            Ok(host_key) => lab_hosts.push(LabHost {
                name: req.name.hostname(*n),
                ip: ip.clone(),
                container: req.name.container(*n),
                host_key,
                distro: plan.engines.of(*n).distro,
                store: plan.engines.of(*n).store,
            }),
            Err(e) => failures.push(e),
        }
    }
    not_up(&failures, req.timeout)?;

    let inventory = Inventory {
        name: req.name.to_string(),
        network: req.name.network(),
        subnet: net.to_string(),
        user: "root".into(),
        key: absolute(&dir.key()),
        known_hosts: absolute(&dir.known_hosts()),
        ssh_config: absolute(&dir.ssh_config()),
        hosts: lab_hosts,
    };
    inventory.write(dir)?;

    // The real client path: strict SSH, forwarded socket, engine API.
    let checks: Vec<(String, Result<()>)> = stream::iter(inventory.hosts.iter())
        .map(|h| {
            let inventory = &inventory;
            let n = h
                .name
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let needs_docker = req
                .overrides
                .get(&n)
                .is_none_or(HostOverrides::needs_docker);
            async move {
                (
                    h.name.clone(),
                    answer_over_ssh(inventory, h, needs_docker, deadline).await,
                )
            }
        })
        .buffer_unordered(FAN_OUT)
        .collect()
        .await;
    let mut failures = Vec::new();
    for (name, check) in checks {
        match check {
            Ok(()) => on_event(LabEvent::HostReady {
                name,
                seconds: started.elapsed().as_secs_f64(),
            }),
            Err(e) => failures.push(e),
        }
    }
    not_up(&failures, req.timeout)?;
    Ok(inventory)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// One error naming every host that did not come up, each with its cause.
fn not_up(failures: &[Error], timeout: Duration) -> Result<()> {
    match failures {
        [] => Ok(()),
        [one] => Err(one.clone()),
        many => {
            let hosts: Vec<&str> = many.iter().filter_map(|e| e.host.as_deref()).collect();
            let causes: Vec<String> = many.iter().map(|e| format!("  {e}")).collect();
            Err(Error::new(
                many[0].kind,
                "start the lab",
                format_args!(
                    "{} hosts did not come up within {} ({}):\n{}",
                    many.len(),
                    ballast_core::error::humanize(timeout),
                    hosts.join(", "),
                    causes.join("\n")
                ),
            )
            .hint(many[0].hint.clone().unwrap_or_default()))
        }
    }
}

async fn create_network(engine: &Engine, req: &UpRequest) -> Result<Ipv4Net> {
    let step = "create the lab network";
    // Subnets the engine refused as overlapping though no network lists
    // them (another lab's, being created or just removed): not tried again.
    let mut refused = Vec::new();
    for attempt in 1..=NETWORK_ATTEMPTS {
        let net = match &req.subnet {
            Some(s) => subnet::parse_user(s, req.hosts)?,
            None => {
                let mut taken = taken_subnets(engine).await?;
                taken.extend(refused.iter().copied());
                subnet::pick(&taken)?
            }
        };
        let request = NetworkCreateRequest {
            name: req.name.network(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(net.to_string()),
                    gateway: Some(subnet::gateway(&net).to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(labels(&req.name, None)),
            ..Default::default()
        };
        match engine
            .call(step, engine.docker().create_network(request))
            .await
        {
            Ok(_) => return Ok(net),
            // Another lab took the subnet between our look and our create.
            Err(e)
                if e.cause.contains("overlap")
                    && req.subnet.is_none()
                    && attempt < NETWORK_ATTEMPTS =>
            {
                refused.push(net);
                continue;
            }
            Err(e) if e.cause.contains("overlap") => {
                return Err(e.hint(
                    "choose a free subnet with --subnet, or remove the network that uses it",
                ))
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

async fn taken_subnets(engine: &Engine) -> Result<Vec<Ipv4Net>> {
    let networks = engine
        .call(
            "list networks",
            engine
                .docker()
                .list_networks(Some(ListNetworksOptionsBuilder::default().build())),
        )
        .await?;
    let subnets: Vec<String> = networks
        .iter()
        .filter_map(|n| n.ipam.as_ref()?.config.clone())
        .flatten()
        .filter_map(|c| c.subnet)
        .collect();
    Ok(subnet::parse_taken(subnets.iter().map(String::as_str)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(hosts: usize, subnet: Option<&str>) -> UpRequest {
        UpRequest {
            name: LabName::parse("t").unwrap(),
            hosts,
            base: PathBuf::from("/tmp"),
            subnet: subnet.map(String::from),
            timeout: Duration::from_secs(1),
            overrides: BTreeMap::new(),
        }
    }

    #[test]
    fn host_counts_outside_the_range_are_refused() {
        for bad in [0, 201] {
            let e = check_request(&request(bad, None)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Input);
            assert!(e.hint.unwrap().contains("--hosts"));
        }
        assert!(check_request(&request(3, None)).is_ok());
        assert!(check_request(&request(3, Some("nope"))).is_err());
    }

    #[test]
    fn many_failures_become_one_error_naming_each_host() {
        let errs = vec![
            Error::timeout("wait", Duration::from_secs(1)).on("t-1"),
            Error::timeout("wait", Duration::from_secs(1)).on("t-3"),
        ];
        let e = not_up(&errs, Duration::from_secs(90)).unwrap_err();
        assert!(
            e.cause
                .contains("2 hosts did not come up within 90s (t-1, t-3)"),
            "{e}"
        );
        assert!(e.cause.contains("t-1: wait"));
        assert!(e.cause.contains("t-3: wait"));
    }
}
