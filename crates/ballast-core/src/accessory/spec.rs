//! An accessory's container as the config defines it: image, command,
//! environment, published ports with their bind address, data directories
//! and files mounted, logging, init, restart policy, health check and the
//! labels that mark it as an accessory (and never as an app container, so
//! deploy, rollback, prune and `ballast remove`, which select containers by
//! `io.ballast.service`, never see it); and the digest of that definition.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::accessories::FILES_DIR;
use crate::config::{Accessory, AccessoryHealthcheck, Config, DataDir, PublishedPort};
use crate::release::{AT_LABEL, BY_LABEL};
use crate::spec::{HealthMode, SETTLE};
use crate::state::STATE_ROOT;

/// The accessory's name, on its containers.
pub const ACCESSORY_LABEL: &str = "io.ballast.accessory";
/// The service the accessory belongs to. Not `io.ballast.service`: that
/// label makes an app container.
pub const SERVICE_LABEL: &str = "io.ballast.accessory.service";
/// The digest of the definition ([`AccessorySpec::digest`]).
pub const DIGEST_LABEL: &str = "io.ballast.accessory.config";
/// The image reference as the config wrote it.
pub const IMAGE_LABEL: &str = "io.ballast.accessory.image";

/// How the container's health is judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The image's own HEALTHCHECK, if it has one; else still running
    /// after [`SETTLE`].
    Image,
    /// No check, not even the image's: still running after [`SETTLE`].
    Off,
    /// A command run in the container by Docker.
    Command {
        cmd: Vec<String>,
        interval: Duration,
        timeout: Duration,
        retries: u32,
    },
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub host: String,
    pub container: String,
    pub read_only: bool,
}

/// A file of the operator's and where it goes on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCopy {
    /// On this machine, resolved against the config's directory. Not part
    /// of the digest: another checkout of the same config is the same
    /// definition.
    #[serde(skip)]
    pub local: String,
    /// SHA-256 of the content, once read ([`super::files::read_local`]):
    /// a changed file is a changed definition.
    pub sha256: String,
    /// On the host, under [`files_dir`].
    pub host: String,
    pub container: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Everything of an accessory's container that comes from the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessorySpec {
    pub service: String,
    pub name: String,
    pub host: String,
    /// The image reference as configured.
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub env_clear: BTreeMap<String, String>,
    /// Secret names; values are looked up only when a container is created,
    /// and never enter the digest (see [`AccessorySpec::digest`]).
    pub env_secret: Vec<String>,
    pub ports: Vec<PublishedPort>,
    pub data: Vec<DataDir>,
    pub files: Vec<FileCopy>,
    pub log_driver: String,
    pub log_options: BTreeMap<String, String>,
    pub stop_timeout: Duration,
    pub health: Health,
    /// How long a started container may take to become healthy.
    pub health_timeout: Duration,
}

/// Where an accessory's files are kept on its host.
pub fn files_dir(service: &str, name: &str) -> String {
    format!("{STATE_ROOT}/{service}/{FILES_DIR}/{name}")
}

impl AccessorySpec {
    /// The definition of accessory `name`; files are resolved against
    /// `config_dir`.
    pub fn new(config: &Config, config_dir: &Path, name: &str, a: &Accessory) -> AccessorySpec {
        let service = &config.service;
        let files = a
            .files
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let (uid, gid) = crate::config::accessories::parse_owner(&f.owner)?;
                let base = f.local.file_name()?.to_string_lossy().into_owned();
                Some(FileCopy {
                    local: config_dir.join(&f.local).to_string_lossy().into_owned(),
                    sha256: String::new(),
                    host: format!("{}/{i}-{base}", files_dir(service, name)),
                    container: f.container.clone(),
                    uid,
                    gid,
                    mode: crate::config::accessories::parse_mode(&f.mode)?,
                })
            })
            .collect();
        let health = match &a.healthcheck {
            None => Health::Image,
            Some(AccessoryHealthcheck::Off(_)) => Health::Off,
            Some(AccessoryHealthcheck::Command(c)) => Health::Command {
                cmd: c.cmd.clone(),
                interval: c.interval,
                timeout: c.timeout,
                retries: c.retries,
            },
        };
        AccessorySpec {
            service: service.clone(),
            name: name.to_string(),
            host: a.host().to_string(),
            image: a.image.clone(),
            cmd: a.cmd.clone(),
            env_clear: a.env.clear.clone(),
            env_secret: a.env.secret.clone(),
            ports: a.published(),
            data: a.data_dirs(service, name),
            files,
            log_driver: config.logging.driver.to_string(),
            log_options: config.logging.effective_options(),
            stop_timeout: a.stop_timeout,
            health,
            health_timeout: a.health_timeout,
        }
    }

    /// `<service>-<accessory>`: the container that runs.
    pub fn container_name(&self) -> String {
        format!("{}-{}", self.service, self.name)
    }

    /// `<service>-<accessory>-previous`: the container an upgrade keeps
    /// for `accessory rollback`.
    pub fn previous_name(&self) -> String {
        format!("{}-previous", self.container_name())
    }

    /// Where a rollback parks the container it replaces for a moment.
    pub fn parked_name(&self) -> String {
        format!("{}-parked", self.container_name())
    }

    /// The mounts: data directories read-write, files read-only.
    pub fn mounts(&self) -> Vec<Mount> {
        let data = self.data.iter().map(|d| Mount {
            host: d.host.clone(),
            container: d.container.clone(),
            read_only: false,
        });
        let files = self.files.iter().map(|f| Mount {
            host: f.host.clone(),
            container: f.container.clone(),
            read_only: true,
        });
        data.chain(files).collect()
    }

    /// Digest of the definition with image `image_id`: a container with
    /// another digest runs another definition. Secret values are left out
    /// (a label must not hold even a hash of them); whether they changed
    /// is seen by comparing the container's environment
    /// ([`AccessorySpec::env_matches`]).
    pub fn digest(&self, image_id: &str) -> String {
        let text = serde_json::to_string(&(self, image_id)).expect("specs serialize");
        hex(&Sha256::digest(text))[..16].to_string()
    }

    /// The environment the container gets: clear variables, then secrets.
    pub fn env(&self, secret: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let clear = self.env_clear.iter().map(|(k, v)| format!("{k}={v}"));
        let secrets = self
            .env_secret
            .iter()
            .map(|n| format!("{n}={}", secret(n).unwrap_or_default()));
        clear.chain(secrets).collect()
    }

    /// Whether a container whose environment is `found` has every variable
    /// this definition gives, secret values included.
    pub fn env_matches(&self, found: &[String], secret: &dyn Fn(&str) -> Option<String>) -> bool {
        self.env(secret).iter().all(|e| found.contains(e))
    }

    /// The create body of the container for image `image_id`, deployed by
    /// `by` at `at`.
    pub fn container(
        &self,
        image_id: &str,
        by: &str,
        at: &str,
        secret: &dyn Fn(&str) -> Option<String>,
    ) -> ContainerCreateBody {
        let labels = HashMap::from([
            (ACCESSORY_LABEL.to_string(), self.name.clone()),
            (SERVICE_LABEL.to_string(), self.service.clone()),
            (DIGEST_LABEL.to_string(), self.digest(image_id)),
            (IMAGE_LABEL.to_string(), self.image.clone()),
            (BY_LABEL.to_string(), by.to_string()),
            (AT_LABEL.to_string(), at.to_string()),
        ]);
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &self.ports {
            let binding = PortBinding {
                host_ip: Some(p.bind.to_string()),
                host_port: Some(p.host_port.to_string()),
            };
            port_bindings
                .entry(format!("{}/tcp", p.container_port))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(binding);
        }
        let binds = self
            .mounts()
            .iter()
            .map(|m| {
                let mode = if m.read_only { "ro" } else { "rw" };
                format!("{}:{}:{mode}", m.host, m.container)
            })
            .collect();
        let nanos = |d: &Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let healthcheck = match &self.health {
            Health::Image => None,
            Health::Off => Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
            Health::Command {
                cmd,
                interval,
                timeout,
                retries,
            } => Some(HealthConfig {
                test: Some(
                    std::iter::once("CMD".to_string())
                        .chain(cmd.clone())
                        .collect(),
                ),
                interval: Some(nanos(interval)),
                timeout: Some(nanos(timeout)),
                retries: Some(i64::from(*retries)),
                // Failures while it starts (a database's first initdb) do
                // not count: `health_timeout` bounds the start, not retries.
                start_period: Some(nanos(&self.health_timeout)),
                ..Default::default()
            }),
        };
        ContainerCreateBody {
            image: Some(image_id.to_string()),
            cmd: self.cmd.clone(),
            env: Some(self.env(secret)),
            labels: Some(labels),
            exposed_ports: Some(
                self.ports
                    .iter()
                    .map(|p| format!("{}/tcp", p.container_port))
                    .collect(),
            ),
            stop_timeout: Some(self.stop_timeout.as_secs() as i64),
            healthcheck,
            host_config: Some(HostConfig {
                binds: Some(binds),
                port_bindings: Some(port_bindings),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::ALWAYS),
                    maximum_retry_count: None,
                }),
                log_config: Some(HostConfigLogConfig {
                    typ: Some(self.log_driver.clone()),
                    config: Some(self.log_options.clone().into_iter().collect()),
                }),
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// How ballast waits for health, given whether the image has a
    /// HEALTHCHECK of its own.
    pub fn health_mode(&self, image_has_healthcheck: bool) -> HealthMode {
        match self.health {
            Health::Command { .. } => HealthMode::Docker,
            Health::Image if image_has_healthcheck => HealthMode::Docker,
            Health::Image | Health::Off => HealthMode::Running(SETTLE),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, SecretSource};

    const YAML: &str = "\
service: shop
image: shop
roles:
  web:
    hosts: [a]
accessories:
  db:
    image: postgres:16.4
    host: b
    cmd: [postgres, -c, fsync=on]
    env:
      clear: {PGDATA: /data/pg}
      secret: [DB_PASSWORD]
    ports: [\"127.0.0.1:5432:5432\", \"10.0.0.20:5432:5432\"]
    directories: [{container: /data, owner: \"999:999\"}]
    files: [{local: conf/pg.conf, container: /etc/pg.conf, mode: \"0400\"}]
    healthcheck: {cmd: [pg_isready], interval: 1s, retries: 5}
    stop_timeout: 1m
";

    fn spec(yaml: &str) -> AccessorySpec {
        let secrets = BTreeMap::from([("DB_PASSWORD".to_string(), "pw".to_string())]);
        let loaded = parse(
            Path::new("/ops/ballast.yml"),
            yaml,
            SecretSource::Map(secrets),
        )
        .unwrap();
        let c = &loaded.config;
        AccessorySpec::new(c, &loaded.dir, "db", &c.accessories["db"])
    }

    fn secret(name: &str) -> Option<String> {
        (name == "DB_PASSWORD").then(|| "pw".to_string())
    }

    #[test]
    fn the_container_is_pinned_labelled_and_never_an_app_container() {
        let s = spec(YAML);
        assert_eq!(
            (s.container_name(), s.previous_name()),
            ("shop-db".into(), "shop-db-previous".into())
        );
        let body = s.container("sha256:abc", "ana@laptop", "T", &secret);
        let labels = body.labels.unwrap();
        assert_eq!(labels[ACCESSORY_LABEL], "db");
        assert_eq!(labels[SERVICE_LABEL], "shop");
        assert_eq!(labels[IMAGE_LABEL], "postgres:16.4");
        assert_eq!(labels[DIGEST_LABEL], s.digest("sha256:abc"));
        assert!(!labels.contains_key(crate::release::SERVICE_LABEL));
        assert_eq!(body.image.as_deref(), Some("sha256:abc"));
        assert_eq!(body.env.unwrap(), ["PGDATA=/data/pg", "DB_PASSWORD=pw"]);
        assert_eq!(body.stop_timeout, Some(60));
        let check = body.healthcheck.unwrap();
        assert_eq!(check.test.unwrap(), ["CMD", "pg_isready"]);
        assert_eq!(
            (check.interval, check.retries),
            (Some(1_000_000_000), Some(5))
        );
        assert_eq!(check.start_period, Some(s.health_timeout.as_nanos() as i64));
        let hc = body.host_config.unwrap();
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
        assert_eq!(hc.init, Some(true));
        assert_eq!(
            hc.binds.unwrap(),
            [
                "/var/lib/ballast/shop/db/data:/data:rw",
                "/var/lib/ballast/shop/accessory-files/db/0-pg.conf:/etc/pg.conf:ro"
            ]
        );
        let bindings = hc.port_bindings.unwrap()["5432/tcp"].clone().unwrap();
        let ips: Vec<_> = bindings
            .iter()
            .map(|b| b.host_ip.clone().unwrap())
            .collect();
        assert_eq!(ips, ["127.0.0.1", "10.0.0.20"]);
        assert_eq!(s.files[0].local, "/ops/conf/pg.conf");
        assert_eq!(s.files[0].mode, 0o400);
    }

    #[test]
    fn the_digest_follows_definition_and_image_but_not_secret_values() {
        let s = spec(YAML);
        let d = s.digest("sha256:abc");
        assert_ne!(d, s.digest("sha256:def"));
        assert_ne!(
            d,
            spec(&YAML.replace("fsync=on", "fsync=off")).digest("sha256:abc")
        );
        assert_ne!(
            d,
            spec(&YAML.replace("stop_timeout: 1m", "stop_timeout: 2m")).digest("sha256:abc")
        );
        // A file's content counts, not where this machine keeps it.
        let mut changed = s.clone();
        changed.files[0].sha256 = "1".into();
        assert_ne!(changed.digest("sha256:abc"), d);
        let mut moved = s.clone();
        moved.files[0].local = "/elsewhere/conf/pg.conf".into();
        assert_eq!(moved.digest("sha256:abc"), d);
        // Secret values are compared through the environment instead.
        let found = s.env(&secret);
        assert!(s.env_matches(&found, &secret));
        assert!(!s.env_matches(&found, &|_| Some("changed".into())));
        assert!(!d.contains("pw"));
    }

    #[test]
    fn health_is_the_command_the_image_or_settling() {
        let s = spec(YAML);
        assert_eq!(s.health_mode(false), HealthMode::Docker);
        let image = spec(&YAML.replace(
            "    healthcheck: {cmd: [pg_isready], interval: 1s, retries: 5}\n",
            "",
        ));
        assert_eq!(image.health, Health::Image);
        assert_eq!(image.health_mode(true), HealthMode::Docker);
        assert_eq!(image.health_mode(false), HealthMode::Running(SETTLE));
        assert!(image
            .container("i", "b", "t", &secret)
            .healthcheck
            .is_none());
        let off = spec(&YAML.replace("{cmd: [pg_isready], interval: 1s, retries: 5}", "none"));
        assert_eq!(off.health_mode(true), HealthMode::Running(SETTLE));
        let body = off.container("i", "b", "t", &secret);
        assert_eq!(body.healthcheck.unwrap().test.unwrap(), ["NONE"]);
    }
}
