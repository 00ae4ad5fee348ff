//! What `ballast accessory details` shows per host (the container's state,
//! health, image and ports, the kept previous container, the data
//! directories with their owner and mode), and which containers
//! `accessory logs` and `ballast logs` read. Only looks: no lock.

use serde::Serialize;

use super::files::{self, DirState};
use super::plan::Observed;
use super::{container, specs, AccessorySpec};
use crate::config::Loaded;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::logs::Source;

/// One accessory as its host has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Details {
    pub accessory: String,
    pub host: String,
    /// The image the config names.
    pub image: String,
    /// `ADDRESS:HOST_PORT:CONTAINER_PORT`, as the config publishes them.
    pub ports: Vec<String>,
    pub current: Option<Observed>,
    /// The container the last upgrade kept for rollback.
    pub previous: Option<Observed>,
    pub data: Vec<DirState>,
    /// Why the host could not be read.
    #[serde(serialize_with = "crate::prune::error_text")]
    pub error: Option<crate::error::Error>,
}

async fn one(fleet: &Fleet, spec: &AccessorySpec, ports: Vec<String>) -> Details {
    let mut d = Details {
        accessory: spec.name.clone(),
        host: spec.host.clone(),
        image: spec.image.clone(),
        ports,
        current: None,
        previous: None,
        data: Vec::new(),
        error: None,
    };
    let Some(host) = fleet.get(&spec.host) else {
        d.error = fleet
            .unreachable
            .iter()
            .find(|e| e.host.as_deref() == Some(spec.host.as_str()))
            .cloned();
        return d;
    };
    let look = async {
        let found = container::found(host, spec).await?;
        d.current = found.current;
        d.previous = found.previous;
        d.data = files::look(host, &spec.data).await?;
        Ok::<_, crate::error::Error>(())
    };
    if let Err(e) = look.await {
        d.error = Some(e);
    }
    d
}

/// The details of the accessories `names`, read from a fleet connected to
/// their hosts (unreachable ones say so).
pub async fn details(loaded: &Loaded, fleet: &Fleet, names: &[String]) -> Vec<Details> {
    let mut out = Vec::new();
    for spec in specs(loaded, names) {
        let ports = loaded.config.accessories[&spec.name].ports.clone();
        out.push(one(fleet, &spec, ports).await);
    }
    out
}

/// The containers of the accessories `names` on the connected hosts of
/// `fleet` (running or not, when `running_only` is false), each named
/// after its accessory.
pub async fn log_sources(
    loaded: &Loaded,
    fleet: &Fleet,
    names: &[String],
    running_only: bool,
) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for spec in specs(loaded, names) {
        let Some(host) = fleet.get(&spec.host) else {
            continue;
        };
        let Some(c) = container::observe(host, &spec, &spec.container_name()).await? else {
            continue;
        };
        if running_only && !c.state.is_active() {
            continue;
        }
        sources.push(Source {
            host: spec.host.clone(),
            role: spec.name.clone(),
            docker: host.engine().docker().clone(),
            container: c.id,
        });
    }
    Ok(sources)
}
