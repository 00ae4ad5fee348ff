//! The container definition of a role on a host: image, command, environment
//! (secrets included, at run time only), ports, volumes, logging, labels; and
//! the digest of that definition (secrets keyed, see [`crate::digest_key`]),
//! which tells whether a running container is still what the config asks
//! for.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{defaults, Config, Healthcheck, Role};
use crate::digest_key::DigestKey;
use crate::release::{
    AT_LABEL, BY_LABEL, CONFIG_LABEL, IMAGE_LABEL, ROLE_LABEL, SERVICE_LABEL, SOURCE_LABEL,
    VERSION_LABEL,
};

/// How a new container is judged healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthMode {
    /// `GET path` on the container's port answers 2xx.
    Http {
        port: u16,
        path: String,
        #[serde(with = "humantime_serde")]
        interval: Duration,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    },
    /// Docker's own health status (the image's HEALTHCHECK) says healthy.
    Docker,
    /// Still running after a settling time.
    Running(#[serde(with = "humantime_serde")] Duration),
}

/// How long a container without any health check must keep running.
pub const SETTLE: Duration = Duration::from_secs(5);

/// What a container records about the release it belongs to (its labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseStamp {
    pub service: String,
    pub version: String,
    pub image_id: String,
    /// Digest of the role's definition (see [`RoleSpec::digest`]).
    pub digest: String,
    /// Where the image can be pulled again by digest, when a registry
    /// delivered it ([`crate::release::SOURCE_LABEL`]).
    pub source: Option<String>,
    pub deployed_by: String,
    pub deployed_at: String,
}

/// Everything of a role's container that depends on config, not on the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleSpec {
    pub role: String,
    pub cmd: Option<Vec<String>>,
    /// Clear variables, role then host.
    pub env_clear: BTreeMap<String, String>,
    /// Secret names; values are looked up only when a container is created.
    pub env_secret: Vec<String>,
    pub publish: Vec<(u16, u16)>,
    pub volumes: Vec<String>,
    pub log_driver: String,
    pub log_options: BTreeMap<String, String>,
    /// Serialized as serde's default: it is part of the digest, which must
    /// stay stable across ballast versions.
    pub stop_timeout: Duration,
    /// The Docker network to join: `ballast` for proxied roles, so the proxy
    /// reaches them; the default bridge otherwise.
    pub network: Option<String>,
    /// Secrets as read-only files (`NAME_FILE`), not variables. Left out of
    /// the digest when off, so existing containers keep theirs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret_files: bool,
    /// Docker's init as PID 1 (`roles.<name>.init`). Left out of the
    /// digest when on (the default), so existing containers keep theirs.
    #[serde(skip_serializing_if = "is_on")]
    pub init: bool,
}

fn is_on(flag: &bool) -> bool {
    *flag
}

/// Where a container's secret files live on its host; `digest` keeps two
/// definitions under one name (one moved aside) apart.
pub fn secrets_dir(service: &str, container: &str, digest: &str) -> String {
    format!(
        "{}/{service}/secrets/{container}-{digest}",
        crate::state::STATE_ROOT
    )
}

/// The digest of a role with secrets on a host that has no digest key yet
/// (only `ballast plan` sees one: a deploy makes the key first). It is no
/// label any container has, so the role shows as replaced, as the deploy
/// that makes the key will do: containers whose digest took bare hashes of
/// the secrets (before keys) are replaced once that way.
pub const PENDING_DIGEST: &str = "pending";

/// Inside the container, where secret files are mounted.
pub const SECRETS_MOUNT: &str = "/run/secrets";

impl RoleSpec {
    /// The definition of `role` on `host`.
    pub fn new(config: &Config, role_name: &str, role: &Role, host: &str) -> RoleSpec {
        let mut env_clear = role.env.clear.clone();
        for entry in &role.hosts {
            if let crate::config::HostEntry::WithEnv(h) = entry {
                if h.host == host {
                    env_clear.extend(h.env.clone());
                }
            }
        }
        RoleSpec {
            role: role_name.to_string(),
            cmd: role.cmd.clone(),
            env_clear,
            env_secret: role.env.secret.clone(),
            publish: role
                .publish
                .iter()
                .filter_map(|p| parse_publish(p))
                .collect(),
            volumes: role.volumes.clone(),
            log_driver: config.logging_of(role_name).driver.to_string(),
            log_options: config.logging_of(role_name).effective_options(),
            stop_timeout: role.stop_timeout.unwrap_or_else(defaults::stop_timeout),
            network: role
                .proxy
                .as_ref()
                .map(|_| crate::proxy::NETWORK.to_string()),
            secret_files: role.secret_files,
            init: role.init,
        }
    }

    /// Digest of the definition, as the container's config label: a
    /// container with another digest runs another definition and is
    /// replaced. Secrets enter it only as HMAC-SHA256 with the host's
    /// `key` (see [`crate::digest_key`]), so a changed secret rolls out yet
    /// the label cannot be checked against guessed values. Without a key
    /// (`ballast plan` on a host no deploy has reached since keys came), a
    /// role with secrets gets [`PENDING_DIGEST`]; a role without secrets
    /// needs no key and keeps the digest ballast always gave it.
    ///
    /// The label is 64 bits of SHA-256 over the definition and the whole
    /// 256-bit MACs. That is short on purpose (it names secret directories
    /// too) and enough: guessing a secret from it means computing the MAC,
    /// which takes the key, and whoever can read the key is root on the
    /// host and can read the secret itself; so 64 bits only have to keep
    /// two definitions of one role on one host apart by chance, which they
    /// fail to do once in 2^64.
    pub fn digest(
        &self,
        key: Option<&DigestKey>,
        secret: &dyn Fn(&str) -> Option<String>,
    ) -> String {
        let macs: BTreeMap<&str, String> = match key {
            _ if self.env_secret.is_empty() => BTreeMap::new(),
            None => return PENDING_DIGEST.to_string(),
            Some(key) => self
                .env_secret
                .iter()
                .map(|n| (n.as_str(), key.mac(n, &secret(n).unwrap_or_default())))
                .collect(),
        };
        let text = serde_json::to_string(&(self, macs)).expect("specs serialize");
        hex(&Sha256::digest(text))[..16].to_string()
    }

    /// The create body for this role's container of the release `stamp`.
    pub fn container(
        &self,
        stamp: &ReleaseStamp,
        secret: &dyn Fn(&str) -> Option<String>,
    ) -> ContainerCreateBody {
        let mut env: Vec<String> = self
            .env_clear
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut binds = self.volumes.clone();
        if self.secret_files {
            let name = crate::release::container_name(&stamp.service, &self.role, &stamp.version);
            for n in &self.env_secret {
                env.push(format!("{n}_FILE={SECRETS_MOUNT}/{n}"));
            }
            if !self.env_secret.is_empty() {
                let dir = secrets_dir(&stamp.service, &name, &stamp.digest);
                binds.push(format!("{dir}:{SECRETS_MOUNT}:ro"));
            }
        } else {
            for name in &self.env_secret {
                env.push(format!("{name}={}", secret(name).unwrap_or_default()));
            }
        }
        let mut labels = HashMap::from([
            (SERVICE_LABEL.to_string(), stamp.service.clone()),
            (ROLE_LABEL.to_string(), self.role.clone()),
            (VERSION_LABEL.to_string(), stamp.version.clone()),
            (IMAGE_LABEL.to_string(), stamp.image_id.clone()),
            (CONFIG_LABEL.to_string(), stamp.digest.clone()),
            (BY_LABEL.to_string(), stamp.deployed_by.clone()),
            (AT_LABEL.to_string(), stamp.deployed_at.clone()),
        ]);
        if let Some(source) = &stamp.source {
            labels.insert(SOURCE_LABEL.to_string(), source.clone());
        }
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = self
            .publish
            .iter()
            .map(|(host, container)| {
                (
                    format!("{container}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: None,
                        host_port: Some(host.to_string()),
                    }]),
                )
            })
            .collect();
        ContainerCreateBody {
            image: Some(stamp.image_id.clone()),
            cmd: self.cmd.clone(),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: Some(
                self.publish
                    .iter()
                    .map(|(_, c)| format!("{c}/tcp"))
                    .collect(),
            ),
            stop_timeout: Some(self.stop_timeout.as_secs() as i64),
            host_config: Some(HostConfig {
                binds: Some(binds),
                port_bindings: Some(port_bindings),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                log_config: Some(HostConfigLogConfig {
                    typ: Some(self.log_driver.clone()),
                    config: Some(self.log_options.clone().into_iter().collect()),
                }),
                init: Some(self.init),
                network_mode: self.network.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// How `role` is checked, given whether its image has a HEALTHCHECK.
pub fn health_mode(role: &Role, image_has_healthcheck: bool) -> HealthMode {
    let http = |hc: &Healthcheck, port: u16| HealthMode::Http {
        port,
        path: hc.path.clone(),
        interval: hc.interval,
        timeout: hc.timeout,
    };
    match (&role.healthcheck, role.port) {
        (Some(hc), port) if hc.port.or(port).is_some() => {
            http(hc, hc.port.or(port).expect("checked"))
        }
        (None, Some(port)) => HealthMode::Http {
            port,
            path: defaults::health_path(),
            interval: defaults::interval(),
            timeout: defaults::check_timeout(),
        },
        _ if image_has_healthcheck => HealthMode::Docker,
        _ => HealthMode::Running(SETTLE),
    }
}

/// `HOST:CONTAINER` as two ports (validated when the config was loaded).
pub fn parse_publish(text: &str) -> Option<(u16, u16)> {
    let (h, c) = text.split_once(':')?;
    Some((h.trim().parse().ok()?, c.trim().parse().ok()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{sharded_config as config, sharded_role as role};

    fn stamp() -> ReleaseStamp {
        ReleaseStamp {
            service: "shop".into(),
            version: "v2".into(),
            image_id: "sha256:abc".into(),
            digest: "d1".into(),
            source: None,
            deployed_by: "ana@laptop".into(),
            deployed_at: "T".into(),
        }
    }

    #[test]
    fn host_variables_join_the_role_environment() {
        let c = config();
        let h1 = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let h2 = RoleSpec::new(&c, "web", &c.roles["web"], "h2");
        assert_eq!(h1.env_clear.get("SHARD"), None);
        assert_eq!(h2.env_clear.get("SHARD").map(String::as_str), Some("2"));
        assert_eq!(h2.publish, [(80, 8080)]);
    }

    fn key(byte: u8) -> DigestKey {
        DigestKey::from_bytes([byte; 32])
    }

    /// The digest as ballast made it before keys: bare SHA-256 of each
    /// secret value.
    fn unkeyed_digest(spec: &RoleSpec, value: &str) -> String {
        let secrets: BTreeMap<&str, String> = spec
            .env_secret
            .iter()
            .map(|n| (n.as_str(), hex(&Sha256::digest(value))))
            .collect();
        let text = serde_json::to_string(&(spec, secrets)).unwrap();
        hex(&Sha256::digest(text))[..16].to_string()
    }

    #[test]
    fn digest_follows_secret_values_without_showing_them() {
        let c = config();
        let spec = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let k = key(1);
        let a = spec.digest(Some(&k), &|_| Some("hunter2".into()));
        let b = spec.digest(Some(&k), &|_| Some("hunter3".into()));
        assert_ne!(a, b, "a changed secret rolls out");
        assert_eq!(a, spec.digest(Some(&k), &|_| Some("hunter2".into())));
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!a.contains("hunter2"));
        let bare = hex(&Sha256::digest("hunter2"));
        assert!(
            !bare.contains(&a) && !a.contains(&bare[..8]),
            "no bare hash"
        );
        // What a container made the old way is labelled with: replaced once.
        assert_ne!(a, unkeyed_digest(&spec, "hunter2"));
    }

    #[test]
    fn digest_differs_across_keys_and_waits_for_one() {
        let c = config();
        let spec = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let secret = |_: &str| Some("hunter2".to_string());
        assert_ne!(
            spec.digest(Some(&key(1)), &secret),
            spec.digest(Some(&key(2)), &secret)
        );
        assert_eq!(spec.digest(None, &secret), PENDING_DIGEST);
    }

    #[test]
    fn a_role_without_secrets_needs_no_key_and_keeps_its_digest() {
        let mut c = config();
        c.roles.get_mut("web").unwrap().env.secret.clear();
        let spec = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let none = |_: &str| None;
        let digest = spec.digest(None, &none);
        assert_eq!(digest, spec.digest(Some(&key(1)), &none));
        assert_eq!(
            digest,
            unkeyed_digest(&spec, ""),
            "not replaced by the upgrade"
        );
    }

    #[test]
    fn the_container_carries_labels_env_ports_and_rotation() {
        let c = config();
        let spec = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let stamp = stamp();
        let body = spec.container(&stamp, &|_| Some("s3cret".into()));
        let labels = body.labels.unwrap();
        assert_eq!(labels[VERSION_LABEL], "v2");
        assert_eq!(labels[IMAGE_LABEL], "sha256:abc");
        assert!(!labels.contains_key(SOURCE_LABEL), "sent directly");
        let pulled = ReleaseStamp {
            source: Some("reg:5000/shop@sha256:def".into()),
            ..stamp.clone()
        };
        let pulled = spec.container(&pulled, &|_| None).labels.unwrap();
        assert_eq!(pulled[SOURCE_LABEL], "reg:5000/shop@sha256:def");
        let env = body.env.unwrap();
        assert!(env.contains(&"MODE=prod".to_string()));
        assert!(env.contains(&"TOKEN=s3cret".to_string()));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.log_config.unwrap().typ.as_deref(), Some("local"));
        assert!(hc.port_bindings.unwrap().contains_key("8080/tcp"));
        assert_eq!(hc.binds.unwrap(), ["/srv/data:/data"]);
    }

    #[test]
    fn secret_files_put_a_path_in_the_environment_not_the_value() {
        let mut c = config();
        c.roles.get_mut("web").unwrap().secret_files = true;
        let spec = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let stamp = stamp();
        let body = spec.container(&stamp, &|_| Some("s3cret".into()));
        let env = body.env.unwrap();
        assert!(env.contains(&"TOKEN_FILE=/run/secrets/TOKEN".to_string()));
        assert!(!format!("{env:?}").contains("s3cret"));
        assert_eq!(
            body.host_config.unwrap().binds.unwrap(),
            [
                "/srv/data:/data",
                "/var/lib/ballast/shop/secrets/shop-web-v2-d1:/run/secrets:ro"
            ]
        );
        // Off, the field stays out of the digest: existing containers keep theirs.
        let off = RoleSpec::new(&config(), "web", &config().roles["web"], "h1");
        assert!(!serde_json::to_string(&off)
            .unwrap()
            .contains("secret_files"));
    }

    #[test]
    fn init_is_on_unless_the_role_brings_its_own() {
        let c = config();
        let on = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let body = on.container(&stamp(), &|_| None);
        assert_eq!(body.host_config.unwrap().init, Some(true));
        assert_eq!(body.stop_timeout, Some(30));
        // On, the field stays out of the digest: existing containers keep theirs.
        assert!(!serde_json::to_string(&on).unwrap().contains("init"));
        let mut c = config();
        c.roles.get_mut("web").unwrap().init = false;
        let off = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let body = off.container(&stamp(), &|_| None);
        assert_eq!(body.host_config.unwrap().init, Some(false));
        assert!(serde_json::to_string(&off)
            .unwrap()
            .contains("\"init\":false"));
    }

    #[test]
    fn a_role_logs_its_own_way_or_the_services() {
        let mut c = config();
        c.roles.get_mut("web").unwrap().logging = Some(crate::config::Logging {
            driver: crate::config::LogDriver::Gelf,
            options: [("gelf-address".to_string(), "udp://g:12201".to_string())].into(),
        });
        let spec = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        let log = spec
            .container(&stamp(), &|_| None)
            .host_config
            .unwrap()
            .log_config
            .unwrap();
        assert_eq!(log.typ.as_deref(), Some("gelf"));
        assert_eq!(log.config.unwrap()["gelf-address"], "udp://g:12201");
        let c = config();
        let spec = RoleSpec::new(&c, "web", &c.roles["web"], "h1");
        assert_eq!(spec.log_driver, "local");
        assert_eq!(spec.log_options["max-size"], "10m");
    }

    #[test]
    fn health_mode_prefers_http_then_docker_then_running() {
        let mut r = role();
        assert!(matches!(
            health_mode(&r, true),
            HealthMode::Http { port: 8080, .. }
        ));
        r.port = None;
        assert_eq!(health_mode(&r, true), HealthMode::Docker);
        assert_eq!(health_mode(&r, false), HealthMode::Running(SETTLE));
    }
}
