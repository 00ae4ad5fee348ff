//! What each role in scope should run, host by host: the container's
//! definition and digest per host (a host's own variables included), how
//! health is judged and how the proxy switches. Computed once, from the
//! config and the release; the plan carries it to the executor.

use std::collections::HashMap;

use crate::config::{Batch as BatchSetting, Loaded};
use crate::plan::{BatchSize, HostTarget, RoleTarget, Switch};
use crate::scope::Scope;
use crate::spec::{health_mode, RoleSpec};

use super::proxies::proxy_route;

/// The release a rollout goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub image_id: String,
    /// Whether the image has its own HEALTHCHECK.
    pub image_healthcheck: bool,
    /// For a rollback: the digest each host's retained container has, by
    /// (role, host), so the retained container is started as it is.
    pub retained: HashMap<(String, String), String>,
}

/// Every role in `scope`, with the hosts in scope that are `reachable`.
pub fn role_targets(
    loaded: &Loaded,
    release: &Release,
    scope: &Scope,
    reachable: &dyn Fn(&str) -> bool,
) -> Vec<RoleTarget> {
    let config = &loaded.config;
    let secret = |n: &str| loaded.secrets.get(n).map(str::to_string);
    config
        .roles
        .iter()
        .filter(|(name, _)| scope.has_role(name))
        .map(|(name, role)| {
            let hosts = role
                .hosts
                .iter()
                .map(|h| h.address())
                .filter(|h| scope.has_host(h) && reachable(h))
                .map(|h| {
                    let spec = RoleSpec::new(config, name, role, h);
                    let digest = release
                        .retained
                        .get(&(name.to_string(), h.to_string()))
                        .cloned()
                        .unwrap_or_else(|| spec.digest(&secret));
                    HostTarget {
                        host: h.to_string(),
                        spec,
                        digest,
                    }
                })
                .collect();
            let switch = match proxy_route(config, name) {
                Some(route) => Switch::Proxy(route),
                None if !role.publish.is_empty() => Switch::StopFirst,
                None => Switch::StartFirst,
            };
            RoleTarget {
                role: name.to_string(),
                version: release.version.clone(),
                image_id: release.image_id.clone(),
                health: health_mode(role, release.image_healthcheck),
                health_timeout: config.deploy.health_timeout,
                switch,
                hosts,
            }
        })
        .filter(|t: &RoleTarget| !t.hosts.is_empty())
        .collect()
}

/// The batch setting as the planner takes it.
pub fn batch_size(setting: &BatchSetting) -> BatchSize {
    match setting {
        BatchSetting::Count(n) => BatchSize::Count(*n),
        BatchSetting::Percent(p) => {
            BatchSize::Percent(p.trim_end_matches('%').trim().parse().unwrap_or(100))
        }
    }
}
