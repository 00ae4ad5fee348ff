//! Taking a lab down: every container, network and volume labelled as
//! the lab's, found by label and removed whatever state it was left in,
//! then the lab directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures_util::{stream, StreamExt};

use ballast_core::{Engine, Error, ErrorKind, Result};

use crate::files::LabDir;
use crate::lab::FAN_OUT;
use crate::name::{LabName, LAB_LABEL};

/// The Docker objects that belong to a lab, found by label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl Owned {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }
}

/// What `lab down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    pub directory: Option<PathBuf>,
}

/// Finds every container, network and volume labelled as lab `name`'s.
pub async fn owned(engine: &Engine, name: &LabName) -> Result<Owned> {
    let filter = HashMap::from([("label", vec![format!("{LAB_LABEL}={name}")])]);
    let docker = engine.docker();
    let containers = engine
        .call(
            "list lab containers",
            docker.list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filter)
                    .build(),
            )),
        )
        .await?;
    let networks = engine
        .call(
            "list lab networks",
            docker.list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            )),
        )
        .await?;
    let volumes = engine
        .call(
            "list lab volumes",
            docker.list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            )),
        )
        .await?;
    let mut found = Owned {
        containers: containers
            .into_iter()
            .filter_map(|c| {
                c.names?
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
            })
            .collect(),
        networks: networks.into_iter().filter_map(|n| n.name).collect(),
        volumes: volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect(),
    };
    found.containers.sort();
    found.networks.sort();
    found.volumes.sort();
    Ok(found)
}

/// Removes every Docker object of lab `name`: containers first (they hold
/// the network and volumes), then networks, then volumes.
pub async fn teardown(engine: &Engine, name: &LabName) -> Result<Removed> {
    let found = owned(engine, name).await?;
    let docker = engine.docker();
    let force = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let removals = stream::iter(found.containers.iter())
        .map(|c| {
            let force = force.clone();
            async move {
                engine
                    .call(
                        "remove a lab container",
                        docker.remove_container(c, Some(force)),
                    )
                    .await
                    .map_err(|e| e.on(c.as_str()))
            }
        })
        .buffer_unordered(FAN_OUT)
        .collect::<Vec<_>>()
        .await;
    for r in removals {
        r?;
    }
    for n in &found.networks {
        engine
            .call("remove the lab network", docker.remove_network(n))
            .await?;
    }
    for v in &found.volumes {
        engine
            .call(
                "remove a lab volume",
                docker.remove_volume(v, None::<bollard::query_parameters::RemoveVolumeOptions>),
            )
            .await?;
    }
    Ok(Removed {
        containers: found.containers.len(),
        networks: found.networks.len(),
        volumes: found.volumes.len(),
        directory: None,
    })
}

/// Takes lab `name` down: its Docker objects and its directory. A lab that
/// has neither is an error, so typos do not pass silently.
pub async fn down(engine: &Engine, name: &LabName, base: &Path) -> Result<Removed> {
    let dir = LabDir::new(base, name);
    let found = owned(engine, name).await?;
    if found.is_empty() && !dir.path.exists() {
        return Err(Error::new(
            ErrorKind::NotFound,
            "take the lab down",
            format_args!("there is no lab named {name}"),
        )
        .hint("`ballast lab status` lists the labs that exist"));
    }
    let mut removed = teardown(engine, name).await?;
    if dir.path.exists() {
        std::fs::remove_dir_all(&dir.path).map_err(|e| {
            Error::failed(
                "remove the lab directory",
                format_args!("{}: {e}", dir.path.display()),
            )
        })?;
        removed.directory = Some(dir.path);
    }
    Ok(removed)
}
