//! The Docker networks around the proxy, and the address it routes to.
//!
//! Every app container of a proxied role joins the shared `ballast`
//! network (where peers reach each other, as before) and its service's own
//! network `ballast-<service>`. The proxy routes to the container's address
//! on the service's network: only containers of that service are ever
//! attached there, so an address Docker hands again to a new container,
//! after the old one stopped, can only belong to the same service; a
//! stopped container's address on `ballast` may go to any service's
//! container, which would then receive this service's traffic. The cost is
//! one bridge network per service per host.
//!
//! The proxy itself runs with host networking and reaches the containers
//! through the host's routes to its bridges.

use std::collections::HashMap;

use bollard::models::{NetworkConnectRequest, NetworkCreateRequest};

use super::LABEL;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;

/// The network peers share (and app containers of unproxied roles join).
pub const NETWORK: &str = "ballast";

/// The network of `service`'s proxied containers, where the proxy reaches
/// them.
pub fn service_network(service: &str) -> String {
    format!("{NETWORK}-{service}")
}

/// Creates the bridge network `name` on `host` unless it exists.
pub async fn ensure_network(host: &Host, name: &str) -> Result<()> {
    let engine = host.engine();
    let docker = engine.docker();
    if docker.inspect_network(name, None).await.is_ok() {
        return Ok(());
    }
    let request = NetworkCreateRequest {
        name: name.into(),
        driver: Some("bridge".into()),
        labels: Some(HashMap::from([(LABEL.to_string(), "1".to_string())])),
        ..Default::default()
    };
    match engine
        .call(
            &format!("create the {name} network"),
            docker.create_network(request),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Another deploy made it first.
        Err(e) if e.kind == ErrorKind::Conflict => Ok(()),
        Err(e) => Err(e.on(host.name())),
    }
}

/// The address the proxy routes to for `container` of `service`: its
/// address on the service's network, attaching it first if it is not
/// there yet (a container from before this network, or a retained one a
/// rollback returns to).
pub async fn routable_address(host: &Host, service: &str, container: &str) -> Result<String> {
    let network = service_network(service);
    let step = format!("route to {container}");
    if let Some(ip) = address_on(host, container, &network).await? {
        return Ok(ip);
    }
    ensure_network(host, &network).await?;
    let engine = host.engine();
    let request = NetworkConnectRequest {
        container: container.to_string(),
        endpoint_config: None,
    };
    let attached = engine
        .call(
            &format!("attach {container} to {network}"),
            engine.docker().connect_network(&network, request),
        )
        .await;
    // Attached meanwhile (an interrupted run, or a race) answers an error
    // too: the address decides.
    if let (Err(e), Ok(None)) = (&attached, address_on(host, container, &network).await) {
        return Err(e.clone().on(host.name()));
    }
    address_on(host, container, &network).await?.ok_or_else(|| {
        Error::failed(
            step,
            format_args!("the container has no address on the {network} network"),
        )
        .on(host.name())
        .hint(format!(
            "see `docker network inspect {network}` on the host"
        ))
    })
}

/// Removes `service`'s network from `host` once none of its containers is
/// left; true when there was one to remove.
pub async fn remove_service_network(host: &Host, service: &str) -> Result<bool> {
    let network = service_network(service);
    let engine = host.engine();
    let docker = engine.docker();
    if docker.inspect_network(&network, None).await.is_err() {
        return Ok(false);
    }
    match engine
        .call(
            &format!("remove the {network} network"),
            docker.remove_network(&network),
        )
        .await
    {
        Ok(()) => Ok(true),
        // Gone meanwhile.
        Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.on(host.name()).hint(format!(
            "a container outside ballast may still use it: see `docker network inspect {network}` on the host"
        ))),
    }
}

async fn address_on(host: &Host, container: &str, network: &str) -> Result<Option<String>> {
    let engine = host.engine();
    let found = engine
        .call(
            &format!("inspect {container}"),
            engine.docker().inspect_container(container, None),
        )
        .await
        .map_err(|e| e.on(host.name()))?;
    Ok(found
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut nets| nets.remove(network))
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty()))
}
