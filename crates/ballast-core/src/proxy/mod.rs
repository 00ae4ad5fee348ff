//! ballast-proxy on the hosts: its image (`FROM scratch`, built offline from
//! a static ballast binary), its container on the `ballast` network, and its
//! admin socket, reached over the host's SSH connection only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ballast_proxy_wire::{AdminRequest, AdminResponse, DeployRequest, HealthSpec};
use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::host::Host;
use crate::image::{self, BuildSpec};

pub const CONTAINER: &str = "ballast-proxy";
/// The network the proxy shares with the app containers it routes to.
pub const NETWORK: &str = "ballast";
/// Routes and the admin socket live here on each host, outside the container.
pub const STATE_DIR: &str = "/var/lib/ballast/proxy";
pub const ADMIN_SOCKET: &str = "/var/lib/ballast/proxy/admin.sock";
const IMAGE_REPO: &str = "ballast-proxy";
const LABEL: &str = "io.ballast.proxy";

/// A static ballast binary to build the proxy image from:
/// `BALLAST_PROXY_BINARY`, else this very binary when it is static.
pub fn static_binary() -> Result<PathBuf> {
    let step = "find a static ballast binary for the proxy image";
    let candidate = match std::env::var_os("BALLAST_PROXY_BINARY").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().map_err(|e| Error::failed(step, e))?,
    };
    let bytes = std::fs::read(&candidate)
        .map_err(|e| Error::failed(step, format_args!("{}: {e}", candidate.display())))?;
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| {
        Error::input(
            step,
            format_args!("{} is not an ELF binary: {e}", candidate.display()),
        )
    })?;
    if elf.interpreter.is_some() {
        return Err(Error::input(step, format_args!("{} is dynamically linked; a FROM scratch image needs a static one", candidate.display()))
            .hint("build one with RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu -p ballast, then point BALLAST_PROXY_BINARY at target/x86_64-unknown-linux-gnu/release/ballast"));
    }
    Ok(candidate)
}

/// The proxy image's tag: a hash of the static binary, so each ballast
/// build has its own proxy version.
fn image_tag(bytes: &[u8]) -> String {
    let hash: String = Sha256::digest(bytes)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{IMAGE_REPO}:{hash}")
}

/// The ID of the proxy image on this machine, if it was built already
/// (`plan` looks without building).
pub async fn built_image_id(local: &Engine) -> Result<Option<String>> {
    let binary = static_binary()?;
    let bytes = std::fs::read(&binary).map_err(|e| Error::failed("read the ballast binary", e))?;
    local.image_id(&image_tag(&bytes)).await
}

/// Builds the proxy image on this machine if it is missing; returns its tag.
pub async fn image(local: &Engine) -> Result<String> {
    let binary = static_binary()?;
    let bytes = std::fs::read(&binary).map_err(|e| Error::failed("read the ballast binary", e))?;
    let tag = image_tag(&bytes);
    if local.image_id(&tag).await?.is_some() {
        return Ok(tag);
    }
    let context = tempfile::tempdir().map_err(|e| Error::failed("stage the proxy image", e))?;
    std::fs::write(context.path().join("ballast"), &bytes)
        .map_err(|e| Error::failed("stage the proxy image", e))?;
    set_executable(&context.path().join("ballast"))?;
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY ballast /ballast\nENTRYPOINT [\"/ballast\", \"proxy\", \"run\"]\n",
    )
    .map_err(|e| Error::failed("stage the proxy image", e))?;
    image::build(local, &BuildSpec::new(context.path(), &tag), &mut |_| {}).await?;
    Ok(tag)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::failed("stage the proxy image", e))
}

/// What a host's proxy listens on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listen {
    pub http_port: u16,
    /// HTTPS port and the PEM certificate chain and key (their contents).
    pub tls: Option<Tls>,
    /// CIDR ranges whose forwarding headers are believed, sorted.
    pub trusted_proxies: Vec<String>,
}

/// TLS for a host's proxy. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    pub https_port: u16,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("https_port", &self.https_port)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

const TLS_DIR: &str = "/var/lib/ballast/proxy/tls";
/// Label holding a digest of the proxy's image and settings: a proxy whose
/// digest differs is replaced.
const SETTINGS_LABEL: &str = "io.ballast.proxy.settings";

impl Listen {
    /// Digest of the image and these settings: a proxy labelled with
    /// another one is replaced.
    pub fn digest(&self, image_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(image_id);
        h.update(self.http_port.to_le_bytes());
        if let Some(tls) = &self.tls {
            h.update(tls.https_port.to_le_bytes());
            h.update(&tls.cert_pem);
            h.update(&tls.key_pem);
        }
        // Only when set, so proxies without them keep their digest.
        for range in &self.trusted_proxies {
            h.update(b"trusted-proxy");
            h.update(range.as_bytes());
        }
        h.finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--http".to_string(),
            "0.0.0.0:80".into(),
            "--admin-socket".into(),
            ADMIN_SOCKET.into(),
            "--state-dir".into(),
            STATE_DIR.into(),
        ];
        for range in &self.trusted_proxies {
            args.extend(["--trusted-proxy".to_string(), range.clone()]);
        }
        if self.tls.is_some() {
            args.extend([
                "--https".to_string(),
                "0.0.0.0:443".into(),
                "--tls-cert".into(),
                format!("{TLS_DIR}/cert.pem"),
                "--tls-key".into(),
                format!("{TLS_DIR}/key.pem"),
            ]);
        }
        args
    }

    fn ports(&self) -> HashMap<String, Option<Vec<PortBinding>>> {
        let bind = |port: u16| {
            Some(vec![PortBinding {
                host_ip: None,
                host_port: Some(port.to_string()),
            }])
        };
        let mut ports = HashMap::from([("80/tcp".to_string(), bind(self.http_port))]);
        if let Some(tls) = &self.tls {
            ports.insert("443/tcp".to_string(), bind(tls.https_port));
        }
        ports
    }
}

/// What runs as the proxy on `host` now.
pub async fn observe(host: &Host) -> crate::plan::ProxyFound {
    let engine = host.engine();
    match engine
        .call(
            "inspect the proxy",
            engine.docker().inspect_container(CONTAINER, None),
        )
        .await
    {
        Ok(current) => crate::plan::ProxyFound {
            running: current.state.and_then(|s| s.running).unwrap_or(false),
            settings: current
                .config
                .and_then(|c| c.labels)
                .and_then(|mut l| l.remove(SETTINGS_LABEL)),
        },
        Err(_) => crate::plan::ProxyFound::default(),
    }
}

/// Makes sure `host` runs the proxy from `image_id` listening as `listen`,
/// on the `ballast` network, restarting by itself; replaces a proxy of
/// another version or other settings (routes survive: they live in the
/// state directory). Returns whether anything changed.
pub async fn ensure(host: &Host, image_id: &str, listen: &Listen) -> Result<bool> {
    let engine = host.engine();
    let docker = engine.docker();
    ensure_network(host).await?;
    let digest = listen.digest(image_id);
    if let Ok(current) = docker.inspect_container(CONTAINER, None).await {
        let same = current
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(SETTINGS_LABEL))
            == Some(&digest);
        let running = current.state.and_then(|s| s.running).unwrap_or(false);
        if same && running {
            return Ok(false);
        }
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        engine
            .call(
                "replace the proxy",
                docker.remove_container(CONTAINER, Some(options)),
            )
            .await?;
    }
    run_checked(
        host,
        "create the proxy's state directory",
        "mkdir",
        &["-p", STATE_DIR],
        None,
    )
    .await?;
    if let Some(tls) = &listen.tls {
        install_tls(host, tls).await?;
    }
    let body = ContainerCreateBody {
        image: Some(image_id.to_string()),
        cmd: Some(listen.args()),
        labels: Some(HashMap::from([
            (LABEL.to_string(), "1".to_string()),
            (SETTINGS_LABEL.to_string(), digest),
        ])),
        exposed_ports: Some(listen.ports().keys().cloned().collect()),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{STATE_DIR}:{STATE_DIR}")]),
            port_bindings: Some(listen.ports()),
            network_mode: Some(NETWORK.into()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(CONTAINER)
        .build();
    engine
        .call(
            "create the proxy",
            docker.create_container(Some(options), body),
        )
        .await?;
    engine
        .call("start the proxy", docker.start_container(CONTAINER, None))
        .await?;
    wait_for_admin(host).await?;
    Ok(true)
}

/// Writes the certificate and key into a directory only root can read; the
/// key travels over stdin, never in arguments.
async fn install_tls(host: &Host, tls: &Tls) -> Result<()> {
    let step = "install the TLS certificate";
    run_checked(host, step, "mkdir", &["-p", "-m", "700", TLS_DIR], None).await?;
    for (name, data) in [("cert.pem", &tls.cert_pem), ("key.pem", &tls.key_pem)] {
        let path = format!("{TLS_DIR}/{name}");
        run_checked(
            host,
            step,
            "install",
            &["-m", "600", "/dev/stdin", &path],
            Some(data),
        )
        .await?;
    }
    Ok(())
}

async fn run_checked(
    host: &Host,
    step: &str,
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<()> {
    let out = host
        .run(program, args, stdin, Duration::from_secs(15))
        .await?;
    if out.success() {
        Ok(())
    } else {
        Err(Error::failed(step, out.stderr.trim()).on(host.name()))
    }
}

async fn ensure_network(host: &Host) -> Result<()> {
    let engine = host.engine();
    let docker = engine.docker();
    if docker.inspect_network(NETWORK, None).await.is_ok() {
        return Ok(());
    }
    let request = NetworkCreateRequest {
        name: NETWORK.into(),
        driver: Some("bridge".into()),
        labels: Some(HashMap::from([(LABEL.to_string(), "1".to_string())])),
        ..Default::default()
    };
    match engine
        .call("create the ballast network", docker.create_network(request))
        .await
    {
        Ok(_) => Ok(()),
        // Another deploy made it first.
        Err(e) if e.kind == ErrorKind::Conflict => Ok(()),
        Err(e) => Err(e),
    }
}

async fn wait_for_admin(host: &Host) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match admin(host, &AdminRequest::Status, Duration::from_secs(3)).await {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                let logs = host
                    .engine()
                    .log_tail(CONTAINER, 10)
                    .await
                    .unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "wait for the proxy",
                    format_args!(
                        "{}\n  last log lines:\n    {}",
                        e.cause,
                        logs.trim().replace('\n', "\n    ")
                    ),
                )
                .on(host.name())
                .hint(format!("see `docker logs {CONTAINER}` on the host")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Restarts the proxy on `host` and waits until it answers again; routes
/// come back from its state directory.
pub async fn restart(host: &Host) -> Result<()> {
    let engine = host.engine();
    let options = bollard::query_parameters::RestartContainerOptionsBuilder::default()
        .t(10)
        .build();
    engine
        .call(
            "restart the proxy",
            engine.docker().restart_container(CONTAINER, Some(options)),
        )
        .await?;
    wait_for_admin(host).await
}

/// Sends one admin request to the proxy on `host`, through its socket.
pub async fn admin(
    host: &Host,
    request: &AdminRequest,
    deadline: Duration,
) -> Result<AdminResponse> {
    let socket = host.unix(ADMIN_SOCKET, Duration::from_secs(10)).await?;
    ballast_proxy_wire::admin_request(&socket, request, deadline)
        .await
        .map_err(|e| Error::failed("ask the proxy", e).on(host.name()))
}

/// The proxy's name for the route of `role` of `service`.
pub fn route_name(service: &str, role: &str) -> String {
    format!("{service}-{role}")
}

/// Where and how a role is routed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// The proxy's name for the route: `<service>-<role>`.
    pub service: String,
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    /// The app's port inside its container.
    pub port: u16,
    pub health: HealthSpec,
    #[serde(with = "humantime_serde")]
    pub deploy_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Body limits in bytes (`None`: no limit).
    pub max_request_body_bytes: Option<u64>,
    pub max_response_body_bytes: Option<u64>,
}

impl Route {
    /// The address the proxy routes to for a container at `ip`.
    pub fn target(&self, ip: &str) -> String {
        format!("{ip}:{}", self.port)
    }
}

/// Has the proxy on `host` check `target` (`ip:port`), switch to it and
/// drain the old target; answers once done. If the target never gets
/// healthy, nothing is switched and the error says so.
pub async fn switch(host: &Host, route: &Route, target: &str) -> Result<()> {
    let request = AdminRequest::Deploy(DeployRequest {
        service: route.service.clone(),
        hosts: route.hosts.clone(),
        path_prefix: route.path_prefix.clone(),
        targets: vec![target.to_string()],
        health: route.health.clone(),
        deploy_timeout_ms: route.deploy_timeout.as_millis() as u64,
        drain_timeout_ms: route.drain_timeout.as_millis() as u64,
        max_request_body_bytes: route.max_request_body_bytes,
        max_response_body_bytes: route.max_response_body_bytes,
    });
    let deadline = route
        .deploy_timeout
        .saturating_add(route.drain_timeout)
        .saturating_add(Duration::from_secs(15));
    // A switch left running by an interrupted deploy finishes inside the
    // proxy on its own; wait for it rather than fail.
    // The proxy stays busy through the health wait and the drain.
    let give_up =
        std::time::Instant::now() + route.deploy_timeout.saturating_add(route.drain_timeout);
    loop {
        let result = admin(host, &request, deadline).await.map(|_| ());
        match result {
            Err(e)
                if e.cause.contains("already under way") && std::time::Instant::now() < give_up =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => {
                return other.map_err(|e| Error {
                    step: format!("switch the proxy to {target}"),
                    ..e
                })
            }
        }
    }
}

/// Where the proxy on `host` routes each route now (route name to
/// `ip:port` targets); empty when the host has no proxy that answers.
pub async fn routes(host: &Host) -> std::collections::BTreeMap<String, Vec<String>> {
    match admin(host, &AdminRequest::Status, Duration::from_secs(5)).await {
        Ok(AdminResponse {
            status: Some(status),
            ..
        }) => status
            .services
            .into_iter()
            .map(|s| (s.name, s.targets.into_iter().map(|t| t.addr).collect()))
            .collect(),
        _ => Default::default(),
    }
}
