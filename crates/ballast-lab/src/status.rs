//! `lab status`: which labs exist, their hosts and addresses, and whether each
//! host answers over SSH with a working Docker engine right now.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;
use futures_util::{stream, StreamExt};
use serde::Serialize;

use ballast_core::ssh::SshHost;
use ballast_core::{Engine, Result};

use crate::engines::HostEngine;
use crate::files::{Inventory, LabDir};
use crate::name::{LabName, HOST_LABEL, LAB_LABEL};

/// How long one host may take to answer a status check.
const CHECK_DEADLINE: Duration = Duration::from_secs(8);

/// One lab as found on the engine.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    pub name: String,
    pub subnet: Option<String>,
    /// The lab directory, if it still exists.
    pub directory: Option<String>,
    pub hosts: Vec<HostStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub ip: Option<String>,
    pub container: String,
    /// Docker's state of the container: running, exited...
    pub state: String,
    /// Whether SSH and the engine behind it answered just now.
    pub answers: bool,
    /// Why it does not answer, if it does not.
    pub problem: Option<String>,
    /// The engine the inventory says the host runs.
    pub engine: Option<HostEngine>,
}

/// Every lab on `engine` (or only `only`), with a live check of each host.
pub async fn status(
    engine: &Engine,
    base: &Path,
    only: Option<&LabName>,
) -> Result<Vec<LabStatus>> {
    let label = match only {
        Some(name) => format!("{LAB_LABEL}={name}"),
        None => LAB_LABEL.to_string(),
    };
    let filters = std::collections::HashMap::from([("label", vec![label])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = engine
        .call(
            "list lab containers",
            engine.docker().list_containers(Some(options)),
        )
        .await?;

    let mut labs: BTreeMap<String, Vec<(usize, HostStatus)>> = BTreeMap::new();
    for c in containers {
        let labels = c.labels.clone().unwrap_or_default();
        let (Some(lab), Some(n)) = (labels.get(LAB_LABEL), labels.get(HOST_LABEL)) else {
            continue;
        };
        let n: usize = n.parse().unwrap_or(0);
        let container = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default();
        let ip = c
            .network_settings
            .as_ref()
            .and_then(|s| s.networks.as_ref())
            .and_then(|nets| nets.values().find_map(|e| e.ip_address.clone()))
            .filter(|ip| !ip.is_empty());
        let state = c
            .state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into());
        labs.entry(lab.clone()).or_default().push((
            n,
            HostStatus {
                name: format!("{lab}-{n}"),
                ip,
                container,
                state,
                answers: false,
                problem: None,
                engine: None,
            },
        ));
    }

    let mut out = Vec::new();
    for (name, mut hosts) in labs {
        hosts.sort_by_key(|(n, _)| *n);
        let dir = LabName::parse(&name).ok().map(|n| LabDir::new(base, &n));
        let inventory = dir.as_ref().and_then(|d| Inventory::load(&d.path).ok());
        let checked: Vec<HostStatus> = stream::iter(hosts.into_iter().map(|(_, h)| h))
            .map(|h| check(h, inventory.as_ref()))
            .buffered(16)
            .collect()
            .await;
        out.push(LabStatus {
            subnet: inventory.as_ref().map(|i| i.subnet.clone()),
            directory: inventory
                .as_ref()
                .and(dir.as_ref())
                .map(|d| d.path.display().to_string()),
            name,
            hosts: checked,
        });
    }
    Ok(out)
}

async fn check(mut host: HostStatus, inventory: Option<&Inventory>) -> HostStatus {
    host.engine = inventory
        .and_then(|inv| inv.host(&host.name))
        .map(|h| HostEngine::new(h.distro, h.store));
    if host.state != "running" {
        host.problem = Some(format!("container is {}", host.state));
        return host;
    }
    let Some(inv) = inventory else {
        host.problem = Some("no lab directory: cannot authenticate".into());
        return host;
    };
    let Some(lab_host) = inv.host(&host.name) else {
        host.problem = Some("not in the lab inventory".into());
        return host;
    };
    let mut target = inv.ssh_target(lab_host);
    target.connect_timeout = CHECK_DEADLINE;
    let result = async {
        let ssh = SshHost::connect(&target).await?;
        let engine = ssh.engine().clone();
        let ping = engine.call("ping the engine", engine.docker().ping()).await;
        let _ = ssh.close().await;
        ping
    }
    .await;
    match result {
        Ok(_) => host.answers = true,
        Err(e) => host.problem = Some(format!("{}: {}", e.step, e.cause)),
    }
    host
}
