//! `ballast setup`'s part under the deploy lock, once every machine is
//! ready: doctor's gate, the `ballast` network, the accessories' data
//! directories, and ballast-proxy where a role needs it.

use super::gate::doctor_gate;
use super::proxies::{apply, listens};
use super::{say, Context, OnEvent};
use crate::error::Result;
use crate::fleet::Fleet;
use crate::plan::WantedProxy;
use crate::proxy;

/// Prepares the hosts in scope (the roles' and the accessories'), under
/// the lock: checks them with doctor (refusing blocked ones unless
/// forced), makes the `ballast` network and the accessories' data
/// directories with their owners and modes, and starts (or reconfigures)
/// ballast-proxy where a role needs it.
pub async fn setup(ctx: &Context<'_>, on_event: OnEvent<'_>) -> Result<()> {
    let config = &ctx.loaded.config;
    let change = crate::change::Change {
        loaded: ctx.loaded,
        reach: ctx.reach,
        command: ctx.command.clone(),
        scope: ctx.scope.clone(),
    };
    let mut hosts = ctx.scope.hosts_of(config);
    for a in config.accessories.values() {
        if ctx.scope.has_host(a.host()) && !hosts.iter().any(|h| h == a.host()) {
            hosts.push(a.host().to_string());
        }
    }
    say(
        on_event,
        None,
        format!("connecting to {} hosts", hosts.len()),
    );
    crate::change::run_on(&change, &hosts, async |fleet: &Fleet| {
        doctor_gate(ctx, fleet, on_event).await?;
        // The network app containers share, made before any deploy needs
        // it (the lock has made the state directory by now).
        for (_, made) in fleet
            .each(
                |h| async move { proxy::network::ensure_network(h, proxy::network::NETWORK).await },
            )
            .await
        {
            made?;
        }
        data_directories(ctx, fleet, on_event).await?;
        let wanted = proxy::image::available().map_err(|e| e.cause);
        let mut plans = Vec::new();
        for (name, w) in listens(&ctx.loaded.config) {
            let Some(host) = fleet.get(&name).filter(|_| ctx.scope.has_host(&name)) else {
                continue;
            };
            let found = proxy::lifecycle::try_observe(host).await?;
            let w = wanted.as_ref().map(|b| WantedProxy {
                listen: w,
                build: b.clone(),
            });
            let w = w.as_ref().map_err(|why| why.as_str());
            plans.push(crate::plan::proxy_plan(&name, Some(&found), w));
        }
        apply(ctx, fleet, &plans, on_event).await?;
        let hosts: Vec<String> = plans.iter().map(|p| p.host.clone()).collect();
        if hosts.is_empty() {
            return Ok(());
        }
        super::certs::install(ctx, fleet, &hosts, on_event).await
    })
    .await
}

/// Makes each accessory's data directories on its host, with their owners
/// and modes (as its boot would), so the host is ready before the first.
async fn data_directories(ctx: &Context<'_>, fleet: &Fleet, on_event: OnEvent<'_>) -> Result<()> {
    let service = &ctx.loaded.config.service;
    for (name, a) in &ctx.loaded.config.accessories {
        let Some(host) = fleet.get(a.host()) else {
            continue;
        };
        let dirs = a.data_dirs(service, name);
        if dirs.is_empty() {
            continue;
        }
        crate::accessory::files::make_data_dirs(host, &dirs).await?;
        let paths: Vec<&str> = dirs.iter().map(|d| d.host.as_str()).collect();
        say(
            on_event,
            Some(a.host()),
            format!("data directories of {name}: {}", paths.join(", ")),
        );
    }
    Ok(())
}
