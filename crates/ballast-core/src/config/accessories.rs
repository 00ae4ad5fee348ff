//! `accessories:` in `ballast.yml`: the stateful companions of the roles (a
//! database, a cache, a queue), each pinned to one host, with fixed
//! published ports bound to a chosen address, data in host directories
//! ballast creates with the owner and mode given here, files copied from
//! the operator's machine, and a health check. The types (the schema of
//! the section and its reference), the questions other modules ask of
//! them ([`Accessory::host`], [`Accessory::port`], the data directories with
//! their defaults applied), and their semantic checks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::names::{image_problem, is_env_name, is_valid_name, suggest_name};
use super::node::shorten;
use super::schema::{Config, Env};
use crate::remove::normalize;
use crate::state::STATE_ROOT;

/// An accessory: one container on one host, replaced only by its own
/// commands (`ballast accessory ...`), never by an app deploy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Accessory {
    /// The image, e.g. `postgres:16.4`: it must be on this machine's engine
    /// (built or loaded there); it reaches the host over SSH like the app's
    /// image, only the layers the host lacks sent.
    pub image: String,
    /// The host it runs on: one address or ssh alias.
    pub host: String,
    /// Command (arguments to the image's entrypoint) [default: the image's].
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Environment of the container, as for roles: clear variables, and the
    /// names of secrets whose values come from your environment or
    /// `.ballast/secrets`.
    #[serde(default)]
    pub env: Env,
    /// Ports published on the host, as `ADDRESS:HOST_PORT:CONTAINER_PORT`
    /// (`"127.0.0.1:5432:5432"`, `"10.0.0.20:6379:6379"`, `"[::1]:5432:5432"`).
    /// The address is required: loopback or the host's private address.
    /// A host port stays the accessory's, so an upgrade stops the old
    /// container before the new one starts.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Allow ports bound to every address (`0.0.0.0`, `::`) or to a public
    /// address: the accessory is then reachable from outside the private
    /// network.
    #[serde(default)]
    pub public: bool,
    /// Host directories holding the accessory's data, created by ballast
    /// with the owner and mode given. Deploy, rollback, prune, `remove` and
    /// `accessory remove` never delete them; only `accessory remove NAME
    /// --destroy-data` does, once confirmed.
    #[serde(default)]
    pub directories: Vec<DataDirectory>,
    /// Files copied from this machine to the host at every boot, and mounted
    /// read-only into the container.
    #[serde(default)]
    pub files: Vec<AccessoryFile>,
    /// How ballast and Docker tell the accessory is healthy: a command run in
    /// the container, or `none` [default: the image's HEALTHCHECK, if any;
    /// else still running 5s after it started].
    #[serde(default)]
    pub healthcheck: Option<AccessoryHealthcheck>,
    /// How long a started container may take to become healthy.
    #[serde(default = "defaults::health_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub health_timeout: Duration,
    /// How long the container gets to stop after SIGTERM before it is
    /// killed (a database flushes its data then).
    #[serde(default = "defaults::stop_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub stop_timeout: Duration,
    /// How `ballast accessory backup` and `restore` copy the data: `dump`
    /// and `restore` commands run in the container, or an archive of the
    /// data directories taken while the accessory is stopped [default: the
    /// archive].
    #[serde(default)]
    pub backup: Option<super::backup::AccessoryBackup>,
}

/// A host directory mounted into the accessory.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataDirectory {
    /// Where it appears inside the container, e.g. `/var/lib/postgresql/data`.
    pub container: String,
    /// The directory on the host, absolute, inside
    /// `/var/lib/ballast/<service>/` or one of `data_roots`
    /// [default: `/var/lib/ballast/<service>/<accessory>/<last part of container>`].
    #[serde(default)]
    pub host: Option<String>,
    /// Owner of the directory, as numeric `UID:GID` (the user the image runs
    /// as, e.g. `"999:999"` for Debian's postgres).
    pub owner: String,
    /// Mode of the directory, in octal, quoted.
    #[serde(default = "defaults::directory_mode")]
    pub mode: String,
}

/// A file of the operator's copied to the host and mounted read-only.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessoryFile {
    /// The file on this machine, relative to the config file.
    pub local: PathBuf,
    /// Where it appears inside the container.
    pub container: String,
    /// Owner of the copy on the host, as numeric `UID:GID`.
    #[serde(default = "defaults::file_owner")]
    pub owner: String,
    /// Mode of the copy on the host, in octal, quoted.
    #[serde(default = "defaults::file_mode")]
    pub mode: String,
}

/// An accessory's health check: `none`, or a command.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AccessoryHealthcheck {
    /// `none`: no check at all, even the image's; healthy once running 5s.
    Off(NoCheck),
    /// A command run in the container, like Docker's HEALTHCHECK.
    Command(HealthCommand),
}

/// The word that turns health checks off. (Its variant has no doc comment
/// on purpose: the schema then says "a string", which the shape check
/// tells apart from the mapping of a command.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoCheck {
    None,
}

/// A health check command run inside the container.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCommand {
    /// The program and its arguments, run without a shell, e.g.
    /// `[pg_isready, -U, postgres]`; exit code 0 means healthy.
    pub cmd: Vec<String>,
    /// Time between checks.
    #[serde(default = "defaults::check_interval", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub interval: Duration,
    /// Deadline of one check.
    #[serde(default = "defaults::check_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub timeout: Duration,
    /// Failed checks in a row that make the accessory unhealthy.
    #[serde(default = "defaults::retries")]
    pub retries: u32,
}

/// Defaults of the accessory keys, named so serde and the reference agree.
pub mod defaults {
    use std::time::Duration;

    pub fn health_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn stop_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn directory_mode() -> String {
        "0700".into()
    }
    pub fn file_owner() -> String {
        "0:0".into()
    }
    pub fn file_mode() -> String {
        "0644".into()
    }
    pub fn check_interval() -> Duration {
        Duration::from_secs(2)
    }
    pub fn check_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn retries() -> u32 {
        3
    }
}

/// A published port, read from `ADDRESS:HOST_PORT:CONTAINER_PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    pub bind: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
}

/// A data directory with its default applied and its owner and mode read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataDir {
    /// Absolute and normalized.
    pub host: String,
    pub container: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Entries of `/var/lib/ballast/<service>/` that are ballast's own: no
/// accessory may be named after them (its default data would land there).
pub const RESERVED_NAMES: &[&str] = &["secrets", "lock", "audit.log", "digest.key", FILES_DIR];

/// Where, under the service's state directory, accessories' files are kept.
pub const FILES_DIR: &str = "accessory-files";

impl Accessory {
    /// The host it runs on (for `{{ accessories.NAME.host }}`).
    pub fn host(&self) -> &str {
        self.host.trim()
    }

    /// Its first published host port (for `{{ accessories.NAME.port }}`).
    pub fn port(&self) -> Option<u16> {
        self.published().first().map(|p| p.host_port)
    }

    /// Its published ports (entries are validated when the config loads).
    pub fn published(&self) -> Vec<PublishedPort> {
        self.ports.iter().filter_map(|p| parse_port(p)).collect()
    }

    /// Its data directories, defaults applied.
    pub fn data_dirs(&self, service: &str, name: &str) -> Vec<DataDir> {
        self.directories
            .iter()
            .filter_map(|d| {
                let (uid, gid) = parse_owner(&d.owner)?;
                Some(DataDir {
                    host: normalize(&d.host_path(service, name)),
                    container: d.container.clone(),
                    uid,
                    gid,
                    mode: parse_mode(&d.mode)?,
                })
            })
            .collect()
    }
}

impl DataDirectory {
    /// The host directory as written, or its default.
    pub fn host_path(&self, service: &str, accessory: &str) -> String {
        match &self.host {
            Some(h) => h.clone(),
            None => {
                let last = self.container.trim_end_matches('/').rsplit('/').next();
                let last = last.filter(|l| !l.is_empty()).unwrap_or("data");
                format!("{STATE_ROOT}/{service}/{accessory}/{last}")
            }
        }
    }
}

impl Config {
    /// Every host of the service once: the roles' hosts (see
    /// [`Config::hosts`]), then the accessories' hosts not among them.
    pub fn all_hosts(&self) -> Vec<String> {
        let mut out = self.hosts();
        for a in self.accessories.values() {
            if !out.iter().any(|h| h == a.host()) {
                out.push(a.host().to_string());
            }
        }
        out
    }
}

/// `ADDRESS:HOST_PORT:CONTAINER_PORT`, IPv6 addresses in brackets.
pub fn parse_port(entry: &str) -> Option<PublishedPort> {
    let (bind, rest) = match entry.strip_prefix('[') {
        Some(v6) => {
            let (addr, rest) = v6.split_once("]:")?;
            (addr, rest)
        }
        None => entry.split_once(':')?,
    };
    let (host_port, container_port) = super::names::parse_publish(rest)?;
    Some(PublishedPort {
        bind: bind.parse().ok()?,
        host_port,
        container_port,
    })
}

/// `UID:GID`, both numeric.
pub fn parse_owner(owner: &str) -> Option<(u32, u32)> {
    let (u, g) = owner.split_once(':')?;
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((num(u)?, num(g)?))
}

/// An octal mode of 3 or 4 digits, at most `7777`.
pub fn parse_mode(mode: &str) -> Option<u32> {
    let ok = (3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    ok.then(|| u32::from_str_radix(mode, 8).ok()).flatten()
}

/// Whether `ip` is on a private network (or loopback): where an accessory
/// may listen without saying `public: true`.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Accessory names, sorted (for messages).
pub fn accessory_names(accessories: &BTreeMap<String, Accessory>) -> Vec<&str> {
    accessories.keys().map(String::as_str).collect()
}

mod checks;
