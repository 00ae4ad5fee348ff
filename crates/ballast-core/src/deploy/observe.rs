//! What the hosts run now, as planning needs it: the service's containers,
//! where each host's proxy routes, which hosts hold the image, and whether
//! a target container already running alone is healthy (so a rerun after
//! an interrupt knows what was proven).

use std::collections::HashMap;

use futures_util::{stream, StreamExt};

use crate::error::Result;
use crate::fleet::Fleet;
use crate::plan::{HostState, RoleTarget, Switch};
use crate::release::{self, container_name, AppContainer};

/// The service's containers on every connected host.
pub async fn containers(
    fleet: &Fleet,
    service: &str,
) -> Result<HashMap<String, Vec<AppContainer>>> {
    let mut observed = HashMap::new();
    for (name, found) in release::observe_fleet(fleet, service).await {
        observed.insert(name, found?);
    }
    Ok(observed)
}

/// Each host's state for planning `targets` of `service`.
pub async fn host_states(
    fleet: &Fleet,
    service: &str,
    mut containers: HashMap<String, Vec<AppContainer>>,
    targets: &[RoleTarget],
) -> HashMap<String, HostState> {
    let hosts: Vec<String> = fleet.hosts.keys().cloned().collect();
    let work = hosts.into_iter().map(|name| {
        let found = containers.remove(&name).unwrap_or_default();
        async move {
            let host = fleet.get(&name).expect("connected");
            let mut state = HostState {
                containers: found,
                ..HostState::default()
            };
            let on_host: Vec<&RoleTarget> = targets
                .iter()
                .filter(|t| t.hosts.iter().any(|h| h.host == name))
                .collect();
            if on_host.iter().any(|t| matches!(t.switch, Switch::Proxy(_))) {
                state.routes = crate::proxy::routes(host).await;
                state.proxy = Some(crate::proxy::observe(host).await);
            }
            for t in &on_host {
                if host
                    .engine()
                    .resolve_image(&t.image_id)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
                {
                    state.images.insert(t.image_id.clone());
                }
                if matches!(t.switch, Switch::Proxy(_)) {
                    continue;
                }
                let target = container_name(service, &t.role, &t.version);
                let running_alone = state
                    .containers
                    .iter()
                    .filter(|c| c.role == t.role && c.state.is_active())
                    .all(|c| c.name == target && c.running);
                let present = state
                    .containers
                    .iter()
                    .any(|c| c.name == target && c.running);
                if present && running_alone && crate::health::probe(host, &target, &t.health).await
                {
                    state.proven.insert(target);
                }
            }
            (name, state)
        }
    });
    stream::iter(work)
        .buffer_unordered(fleet.concurrency)
        .collect()
        .await
}
