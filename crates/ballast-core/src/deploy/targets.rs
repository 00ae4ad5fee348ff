//! What each role in scope should run, host by host: the container's
//! definition and digest per host (a host's own variables included), how
//! health is judged and how the proxy switches. Computed once, from the
//! config, the release and each host's digest key (read here, made here by
//! a deploy); the plan carries it to the executor.

use std::collections::HashMap;

use crate::config::{Batch as BatchSetting, Loaded};
use crate::digest_key::{fleet_keys, HostKeys};
use crate::error::Result;
use crate::plan::{BatchSize, HostTarget, RoleTarget, Switch};
use crate::scope::Scope;
use crate::spec::{health_mode, RoleSpec, PENDING_DIGEST};

use super::proxies::proxy_route;
use super::{say, Deploy, OnEvent};

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
    /// For a rollback: where its image was pulled from
    /// ([`crate::release::SOURCE_LABEL`]), to pull it again where a host
    /// lacks it.
    pub source: Option<String>,
}

/// Every role in `scope`, with the hosts in scope that are `reachable`;
/// each host's digest keyed with its key in `keys` (see
/// [`RoleSpec::digest`] for a host without one).
pub fn role_targets(
    loaded: &Loaded,
    release: &Release,
    scope: &Scope,
    reachable: &dyn Fn(&str) -> bool,
    keys: &HostKeys,
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
                        .unwrap_or_else(|| spec.digest(keys.get(h), &secret));
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

/// The digest keys of the hosts (see [`crate::digest_key`]): read, and made
/// where missing unless this is a dry run (`ballast plan` changes nothing).
/// A service whose roles have no secrets needs none, and the hosts are not
/// asked.
pub(super) async fn digest_keys(d: &Deploy<'_>, service: &str) -> Result<HostKeys> {
    let roles = &d.ctx.loaded.config.roles;
    if roles.values().all(|r| r.env.secret.is_empty()) {
        return Ok(HostKeys::new());
    }
    let make = !d.ctx.dry_run;
    let (keys, lacked) = fleet_keys(d.fleet, service, make).await?;
    if make {
        for host in &lacked {
            say(
                d.on_event,
                Some(host),
                "made the digest key of secrets (0600, root only)".into(),
            );
        }
    }
    Ok(keys)
}

/// Tells, in a plan, which hosts have no digest key yet, where it matters:
/// their roles with secrets show as replaced.
pub(super) fn say_pending_keys(targets: &[RoleTarget], on_event: OnEvent<'_>) {
    let mut hosts: Vec<&str> = targets
        .iter()
        .flat_map(|t| &t.hosts)
        .filter(|h| h.digest == PENDING_DIGEST)
        .map(|h| h.host.as_str())
        .collect();
    hosts.sort();
    hosts.dedup();
    for host in hosts {
        say(on_event, Some(host), "no digest key of secrets yet: the deploy makes one and replaces the containers with secrets once (config `pending` until then)".into());
    }
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
