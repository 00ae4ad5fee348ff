//! One lab host: its volume and container with the flags an inner dockerd
//! needs, the lab key installed in it, and the checks that it is up, first
//! from inside the container, then the way clients reach it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkingConfig,
    VolumeCreateRequest,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, UploadToContainerOptionsBuilder};

use ballast_core::ssh::{SshHost, SshSession};
use ballast_core::{Engine, Error, ErrorKind, Result};

use crate::engines::ImageStore;
use crate::files::{Inventory, LabHost};
use crate::lab::HostOverrides;
use crate::name::{LabName, HOST_LABEL, LAB_LABEL};
use crate::recipe;

/// The labels of a lab's objects; hosts' objects also carry their number.
pub(crate) fn labels(name: &LabName, host: Option<usize>) -> HashMap<String, String> {
    let mut l = HashMap::from([(LAB_LABEL.to_string(), name.to_string())]);
    if let Some(n) = host {
        l.insert(HOST_LABEL.to_string(), n.to_string());
    }
    l
}

/// Creates host `n`'s volume and container, gives it the lab's public key,
/// and starts it. The flags are the ones LAB.md found to work here.
pub(crate) async fn start_host(
    engine: &Engine,
    name: &LabName,
    n: usize,
    ip: &str,
    tag: &str,
    public_key: &str,
    overrides: &HostOverrides,
) -> Result<()> {
    let host = name.hostname(n);
    let container = name.container(n);
    let docker_root = match &overrides.docker_root {
        Some(dir) => dir.display().to_string(),
        None => {
            let volume = name.docker_volume(n);
            engine
                .call(
                    "create the Docker volume",
                    engine.docker().create_volume(VolumeCreateRequest {
                        name: Some(volume.clone()),
                        labels: Some(labels(name, Some(n))),
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| e.on(&host))?;
            volume
        }
    };
    let body = ContainerCreateBody {
        image: Some(tag.to_string()),
        hostname: Some(host.clone()),
        cmd: Some(vec![recipe::INIT_PATH.to_string()]),
        labels: Some(labels(name, Some(n))),
        host_config: Some(HostConfig {
            init: Some(true),
            cap_add: Some(vec!["ALL".into()]),
            cap_drop: Some(vec!["SYS_RESOURCE".into()]),
            security_opt: Some(vec![
                "seccomp=unconfined".into(),
                "apparmor=unconfined".into(),
            ]),
            // What the CLI calls `systempaths=unconfined`: nothing under
            // /proc or /sys masked or read-only, as an inner dockerd needs.
            masked_paths: Some(vec![]),
            readonly_paths: Some(vec![]),
            binds: Some(vec![
                "/sys/fs/cgroup:/sys/fs/cgroup:rw".into(),
                format!("{docker_root}:/var/lib/docker"),
            ]),
            tmpfs: Some(HashMap::from([("/run".to_string(), String::new())])),
            network_mode: Some(name.network()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                name.network(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&container)
        .build();
    engine
        .call(
            "create the host container",
            engine.docker().create_container(Some(options), body),
        )
        .await
        .map_err(|e| e.on(&host))?;
    let mut files = vec![(
        "/root",
        "install the lab key",
        authorized_keys_tar(public_key)?,
    )];
    if let Some(json) = &overrides.daemon_json {
        files.push((
            "/etc/docker",
            "write daemon.json",
            file_tar("daemon.json", json)?,
        ));
    }
    for (dir, step, tar) in files {
        let upload = UploadToContainerOptionsBuilder::default().path(dir).build();
        engine
            .call(
                step,
                engine.docker().upload_to_container(
                    &container,
                    Some(upload),
                    bollard::body_full(tar.into()),
                ),
            )
            .await
            .map_err(|e| e.on(&host))?;
    }
    engine
        .call(
            "start the host container",
            engine.docker().start_container(&container, None),
        )
        .await
        .map_err(|e| e.on(&host))?;
    Ok(())
}

/// A tar holding one file, readable by all.
fn file_tar(name: &str, text: &str) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(text.len() as u64);
    tar.append_data(&mut header, name, text.as_bytes())
        .and_then(|()| tar.into_inner())
        .map_err(|e| Error::failed(format!("pack {name}"), e))
}

/// A tar of `.ssh/authorized_keys` with the modes sshd insists on.
fn authorized_keys_tar(public_key: &str) -> Result<Vec<u8>> {
    let step = "pack the lab key";
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o700);
    dir.set_size(0);
    tar.append_data(&mut dir, ".ssh", std::io::empty())
        .map_err(|e| Error::failed(step, e))?;
    let line = format!("{}\n", public_key.trim());
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o600);
    file.set_size(line.len() as u64);
    tar.append_data(&mut file, ".ssh/authorized_keys", line.as_bytes())
        .map_err(|e| Error::failed(step, e))?;
    tar.into_inner().map_err(|e| Error::failed(step, e))
}

/// Waits until host `n` has its SSH host key and a dockerd that answers,
/// checked from inside the container; returns the host's public key line.
pub(crate) async fn wait_inside(
    engine: &Engine,
    name: &LabName,
    n: usize,
    needs_docker: bool,
    deadline: Instant,
) -> Result<String> {
    let host = name.hostname(n);
    let container = name.container(n);
    let probe = Duration::from_secs(5);
    let mut last = String::from("not checked yet");
    loop {
        let key = engine
            .exec(
                &container,
                &["cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
                probe,
            )
            .await;
        let docker = engine
            .exec(
                &container,
                &["docker", "info", "--format", "{{.ServerVersion}}"],
                probe,
            )
            .await;
        match (key, docker) {
            (Ok(k), Ok(d)) if k.success() && (d.success() || !needs_docker) => {
                return Ok(k.stdout.trim().to_string())
            }
            (Ok(k), Err(_)) if k.success() && !needs_docker => {
                return Ok(k.stdout.trim().to_string())
            }
            (Ok(k), _) if !k.success() => {
                last = format!("no SSH host key yet: {}", k.stderr.trim())
            }
            (_, Ok(d)) if !d.success() => {
                last = format!("dockerd does not answer: {}", d.stderr.trim())
            }
            (Err(e), _) | (_, Err(e)) => last = e.cause,
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(host_failed(engine, &host, &container, &last).await);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value `docker info` gives as DriverStatus `driver-type` when the
/// engine keeps images in containerd.
const CONTAINERD_DRIVER_TYPE: &str = "io.containerd.snapshotter.v1";

/// Checks from inside host `n` that its engine runs the image store it was
/// asked for: an engine that ignores the setting must not pass for one that
/// has it.
pub(crate) async fn check_store(
    engine: &Engine,
    name: &LabName,
    n: usize,
    store: ImageStore,
) -> Result<()> {
    let host = name.hostname(n);
    let container = name.container(n);
    let out = engine
        .exec(
            &container,
            &["docker", "info", "--format", "{{json .DriverStatus}}"],
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.on(&host))?;
    let seen = if out.stdout.contains(CONTAINERD_DRIVER_TYPE) {
        ImageStore::Containerd
    } else {
        ImageStore::Classic
    };
    if seen == store {
        return Ok(());
    }
    Err(Error::failed(
        "check the image store",
        format_args!(
            "asked for the {store} image store, the engine runs the {seen} one (DriverStatus {})",
            out.stdout.trim()
        ),
    )
    .on(&host)
    .hint(format!(
        "see `docker exec {container} cat /etc/docker/daemon.json /var/log/dockerd.log`"
    )))
}

/// Connects to a host the way clients will (strict host keys, forwarded
/// Docker socket) and pings its engine, retrying until the deadline.
pub(crate) async fn answer_over_ssh(
    inventory: &Inventory,
    host: &LabHost,
    needs_docker: bool,
    deadline: Instant,
) -> Result<()> {
    let target = inventory.ssh_target(host);
    loop {
        let attempt = async {
            if !needs_docker {
                let ssh = SshSession::connect(&target).await?;
                let _ = ssh.close().await;
                return Ok(());
            }
            let ssh = SshHost::connect(&target).await?;
            let engine = ssh.engine().clone();
            let ping = engine.call("ping the engine", engine.docker().ping()).await;
            let _ = ssh.close().await;
            ping.map(|_| ())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "reach the host over SSH",
                    format_args!("{}", e.cause),
                )
                .on(&host.name)
                .hint(format!(
                    "see `docker logs {}`; try `ssh -F {} {}`",
                    host.container,
                    inventory.ssh_config.display(),
                    host.name
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn host_failed(engine: &Engine, host: &str, container: &str, last: &str) -> Error {
    let logs = engine.log_tail(container, 10).await.unwrap_or_default();
    let dockerd = engine
        .exec(
            container,
            &["tail", "-n", "5", "/var/log/dockerd.log"],
            Duration::from_secs(5),
        )
        .await
        .map(|o| o.stdout)
        .unwrap_or_default();
    let mut cause = format!("did not come up: {last}");
    for (what, text) in [("container log", logs), ("dockerd log", dockerd)] {
        if !text.trim().is_empty() {
            cause.push_str(&format!(
                "\n  last lines of the {what}:\n    {}",
                text.trim().replace('\n', "\n    ")
            ));
        }
    }
    Error::new(ErrorKind::Timeout, "wait for sshd and dockerd", cause)
        .on(host)
        .hint(format!("inspect it with `docker logs {container}` and `docker exec {container} cat /var/log/dockerd.log`, or give more time with --timeout"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_keys_have_sshd_modes() {
        let tar = authorized_keys_tar("ssh-ed25519 AAAA lab").unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let modes: Vec<(String, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            modes,
            [
                (".ssh".to_string(), 0o700),
                (".ssh/authorized_keys".to_string(), 0o600)
            ]
        );
    }
}
