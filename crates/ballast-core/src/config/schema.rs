//! The shape of `ballast.yml`: every key, its type, its default and what it is
//! for. These types are the single source of validation (serde rejects unknown
//! keys and wrong types) and of the generated reference in `docs/config.md`
//! (from the doc comments, through schemars).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A whole `ballast.yml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the service. Containers, state directories on the hosts
    /// (`/var/lib/ballast/<service>`), the lock and the audit log are named
    /// after it. Lowercase letters, digits and hyphens.
    pub service: String,
    /// The image to deploy: its repository name when `build` is given (the
    /// version becomes the tag), or an existing image reference otherwise.
    pub image: String,
    /// How to build the image on this machine. Omit to deploy `image` as is.
    #[serde(default)]
    pub build: Option<Build>,
    /// How to reach the hosts. Anything left out comes from `~/.ssh/config`.
    #[serde(default)]
    pub ssh: Ssh,
    /// How images reach the hosts: `direct` (the default) or `registry`,
    /// or a mapping with the method and its settings, e.g. `{ method:
    /// direct, compression: none }`.
    #[serde(default)]
    pub delivery: DeliverySetting,
    /// The Docker engine `ballast setup` installs on hosts that have none.
    #[serde(default, skip_serializing_if = "DockerEngine::is_unset")]
    pub docker: DockerEngine,
    /// The roles of the service: named sets of identical containers on listed hosts.
    pub roles: BTreeMap<String, Role>,
    /// Accessories: stateful companions of the roles (a database, a cache),
    /// each pinned to its host with its data in host directories, booted
    /// and upgraded by `ballast accessory`, never by a deploy. See
    /// docs/accessories.md.
    #[serde(default)]
    pub accessories: BTreeMap<String, super::accessories::Accessory>,
    /// Host directories, besides `/var/lib/ballast/<service>/`, where
    /// accessories may keep their data, e.g. `[/srv/data]`.
    #[serde(default)]
    pub data_roots: Vec<String>,
    /// How deploys roll across hosts.
    #[serde(default)]
    pub deploy: DeploySettings,
    /// Log driver of every container (a role may have its own); rotation
    /// is on by default.
    #[serde(default)]
    pub logging: Logging,
    /// Executables in `.ballast/hooks/` beside the config, run on this
    /// machine around a deploy: `pre-connect`, `pre-build`, `pre-deploy`,
    /// `post-deploy`, `post-rollback`.
    #[serde(default)]
    pub hooks: Hooks,
    /// Commands of your own, as `NAME: "COMMAND ARGS..."` (e.g.
    /// `console: "exec web -i -- rails c"`): `ballast NAME` runs
    /// `ballast COMMAND ARGS...`. An alias cannot hide a ballast command.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Refuse every command without `-d DESTINATION`, so nobody deploys
    /// the base config by mistake. `-d NAME` lays `ballast.NAME.yml` (beside
    /// this file) over this file: mappings merge key by key, as deep as they
    /// go; lists and scalars in the destination replace this file's whole.
    /// Its secrets come from the environment, `.ballast/secrets.NAME`, then
    /// `.ballast/secrets`.
    #[serde(default)]
    pub require_destination: bool,
    /// How `ballast watch` watches the hosts, restarts what fell over and
    /// alerts. See docs/watch.md.
    #[serde(default)]
    pub watch: super::watch::Watch,
}

/// How hooks run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// How long one hook may run; past it, it is stopped and counts as
    /// failed.
    #[serde(default = "defaults::hook_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            timeout: defaults::hook_timeout(),
        }
    }
}

/// Building the image from a directory.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Build context, relative to the config file.
    #[serde(default = "defaults::context")]
    pub context: PathBuf,
    /// Dockerfile, relative to the context.
    #[serde(default = "defaults::dockerfile")]
    pub dockerfile: String,
    /// Build arguments (`ARG` in the Dockerfile).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

/// The Docker engine of the hosts, as `ballast setup` installs it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerEngine {
    /// The exact version of the distribution's Docker package (`docker.io`
    /// on Debian and Ubuntu, `moby-engine` on Fedora, `docker` on Amazon
    /// Linux), as its package manager spells it, e.g.
    /// `"20.10.24+dfsg1-1+deb12u1"`. `ballast setup` installs it where
    /// Docker is missing and holds it there; a host with another version is
    /// reported and changed only with `--upgrade-docker`. Omit to leave the
    /// engine to you: setup then refuses hosts without one.
    #[serde(default)]
    pub version: Option<String>,
}

impl DockerEngine {
    fn is_unset(&self) -> bool {
        self == &DockerEngine::default()
    }
}

/// SSH settings shared by every host.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// Login user [default: from `~/.ssh/config`, else your user name].
    #[serde(default)]
    pub user: Option<String>,
    /// SSH port [default: from `~/.ssh/config`, else 22].
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Private key to use, relative to the config file.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file to check host keys against, relative to the config
    /// file [default: `~/.ssh/known_hosts`].
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Jump host(s), as for `ssh -J`.
    #[serde(default)]
    pub proxy_jump: Option<String>,
    /// ssh config file to read instead of `~/.ssh/config`, relative to the config file.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Deadline for connecting to one host.
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>", extend("format" = "duration"))]
    pub connect_timeout: Option<Duration>,
    /// How many hosts are worked on at once [default: 10].
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// How long an idle SSH connection is kept for the next command, as
    /// OpenSSH's ControlPersist (and Ansible by default) do; `0s` closes
    /// each with its command. A kept connection is reused only while the
    /// known_hosts and ssh config files read the same: edit either and
    /// the next command connects afresh and checks host keys again.
    #[serde(default = "defaults::persist", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub persist: Duration,
}

/// How images travel to hosts: just the method (every setting at its
/// default), or the method and its settings. (The variants have no doc
/// comments on purpose: the reference then names the two shapes, not
/// their descriptions.)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DeliverySetting {
    Method(Delivery),
    Settings(DeliverySettings),
}

impl Default for DeliverySetting {
    fn default() -> Self {
        DeliverySetting::Method(Delivery::default())
    }
}

impl DeliverySetting {
    pub fn method(&self) -> Delivery {
        match self {
            DeliverySetting::Method(m) => *m,
            DeliverySetting::Settings(s) => s.method,
        }
    }

    pub fn compression(&self) -> Compression {
        match self {
            DeliverySetting::Method(_) => Compression::default(),
            DeliverySetting::Settings(s) => s.compression,
        }
    }

    /// The registry images go through, when one is configured.
    pub fn registry(&self) -> Option<&Registry> {
        match self {
            DeliverySetting::Method(_) => None,
            DeliverySetting::Settings(s) => s.registry.as_ref(),
        }
    }
}

/// A delivery method with its settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// How images travel.
    #[serde(default)]
    pub method: Delivery,
    /// How direct delivery compresses the layers it sends (once for every
    /// host that lacks the same layers; hosts decompress as they load).
    /// `auto`, the default: `gzip` when less than 16 MiB of layers is to
    /// be sent (under a second of one core, for the fewest bytes), else
    /// `gzip-fast`. `gzip-fast` compresses at over 100 MB/s on one core,
    /// so it keeps up with a gigabit link, and sends under half the
    /// layers' size; `gzip` sends about a sixth less at seven times the
    /// CPU, for slow links; `none` sends layers as they are, for links
    /// faster than the compressor. BENCHMARKS.md has the measurements.
    #[serde(default)]
    pub compression: Compression,
    /// The registry of `method: registry`.
    #[serde(default)]
    pub registry: Option<Registry>,
}

/// A private registry images go through: pushed once from this machine,
/// pulled by digest on every host, so each runs exactly the image pushed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The registry's address as image references spell it,
    /// `HOST[:PORT]`, e.g. `registry.example.com:5000`.
    pub server: String,
    /// Repository the service's images go to [default: the `image` name].
    #[serde(default)]
    pub repository: Option<String>,
    /// The user to log in as.
    pub username: String,
    /// Name of the secret holding the password, found like the roles'
    /// secrets (the environment, then `.ballast/secrets`). The password
    /// reaches the engines in the API's auth header only: never in a
    /// process argument, a log or `docker inspect`.
    pub password_secret: String,
    /// The CA certificate (PEM) that signed the registry's certificate,
    /// when it is not a public CA, relative to the config file. `ballast
    /// setup` installs it on every host as
    /// `/etc/docker/certs.d/SERVER/ca.crt`; the engine of the machine you
    /// deploy from needs it there too.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// How image layers are compressed on their way to hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// gzip at level 6 for small sends, else at level 1.
    #[default]
    Auto,
    /// gzip at level 1.
    GzipFast,
    /// gzip at level 6.
    Gzip,
    /// No compression.
    None,
}

/// How images travel to hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Over SSH, sending only the layers a host lacks, on the classic and
    /// the containerd image store alike (but for a containerd-store host
    /// sent an image built on a containerd-store engine, which gets it
    /// whole). No registry needed.
    #[default]
    Direct,
    /// Through the registry of `delivery.registry`: pushed once, pulled
    /// by digest on every host.
    Registry,
}

/// A role: identical containers on listed hosts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Hosts running this role: an address or ssh alias, or
    /// `{ host: ADDRESS, env: { KEY: VALUE } }` for per-host variables.
    pub hosts: Vec<HostEntry>,
    /// Command (arguments to the image's entrypoint) [default: the image's].
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Port the app listens on inside the container; the HTTP health check
    /// (and later the proxy) uses it.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Ports published on the host, as `HOST_PORT:CONTAINER_PORT`. A role
    /// that publishes a port changes version by stopping the old container
    /// before starting the new one.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Environment of the containers.
    #[serde(default)]
    pub env: Env,
    /// Host directories mounted into the containers, as
    /// `HOST_PATH:CONTAINER_PATH[:ro|rw]`, both paths absolute. Data lives
    /// here, never in a container.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// How ballast decides a new container is healthy. Without it, a role
    /// with `port` is checked with `GET /up` on that port; a role without
    /// `port` is healthy when its image's HEALTHCHECK says so or, if the image
    /// has none, when the container is still running 5 s after it started.
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    /// How long a container gets to stop after SIGTERM before it is
    /// killed, wherever ballast stops it (deploy, rollback, undo, remove)
    /// and when Docker does (`docker stop`, a daemon shutdown); whole
    /// seconds [default: 30s].
    #[serde(default, with = "humantime_serde::option")]
    #[schemars(with = "Option<String>", extend("format" = "duration"))]
    pub stop_timeout: Option<Duration>,
    /// Run a small init process (Docker's `--init`) as PID 1 of each
    /// container: it passes signals such as SIGTERM on to the app and reaps
    /// the zombie processes the app's orphaned children leave. Set `false`
    /// only for images that bring their own init (tini, dumb-init, s6,
    /// systemd).
    #[serde(default = "defaults::init")]
    pub init: bool,
    /// This role's logging instead of the top-level `logging`.
    #[serde(default)]
    pub logging: Option<Logging>,
    /// Serve this role through ballast-proxy on each of its hosts: requests
    /// switch to a new version only once it is healthy, with none failed.
    /// Needs `port`.
    #[serde(default)]
    pub proxy: Option<RoleProxy>,
    /// Hand secrets to the containers as files instead of environment
    /// variables: each secret `NAME` is a file of mode 0400 in a root-only
    /// directory on the host, mounted read-only at `/run/secrets/NAME`, and
    /// the container gets `NAME_FILE=/run/secrets/NAME`; so no value shows
    /// in `docker inspect`. (The files are owned by root: an app running as
    /// another user cannot read them.)
    #[serde(default)]
    pub secret_files: bool,
}

/// How ballast-proxy routes to a role.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleProxy {
    /// Host names (the `Host` header) routed to this role; none routes every
    /// host name not claimed by another service.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix routed to this role [default: all paths].
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Port the proxy listens on for HTTP on each host.
    #[serde(default = "defaults::proxy_http_port")]
    #[schemars(range(min = 1))]
    pub http_port: u16,
    /// How long requests in flight on the old container get to finish.
    #[serde(default = "defaults::drain_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub drain_timeout: Duration,
    /// Serve HTTPS for `hosts`, and redirect their plain HTTP to it. Each
    /// service's certificate is chosen by the name the client asks for
    /// (SNI), so services sharing a host keep their own.
    #[serde(default)]
    pub tls: Option<ProxyTls>,
    /// Clients whose `X-Forwarded-For`, `Forwarded` and `X-Real-IP`
    /// headers are believed (a load balancer in front), as CIDR ranges such
    /// as `10.0.0.0/8`; from any other client they are replaced with what
    /// the proxy saw. Applies to the proxy of each host of this role.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The largest request body this role accepts, e.g. `10MB` or
    /// `512KiB`; a larger one is answered `413` before it reaches the app
    /// [default: no limit].
    #[serde(default)]
    pub max_request_body: Option<String>,
    /// The largest response body this role may send, e.g. `100MB`; a larger
    /// one is answered `502` (or cut off once it passes the limit)
    /// [default: no limit].
    #[serde(default)]
    pub max_response_body: Option<String>,
}

/// The certificate the proxy serves HTTPS for the role's `proxy.hosts`
/// with: either files (`cert` and `key`) or `acme`, not both.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyTls {
    /// PEM certificate chain, relative to the config file; its names must
    /// cover the role's `proxy.hosts`. Give `key` with it.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key, relative to the config file; it travels to the
    /// hosts' proxies through their admin API over SSH, is kept readable by
    /// root only, and is never printed.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Obtain and renew the certificate from an ACME CA (HTTP-01, answered
    /// by every host's proxy on its HTTP port) instead of `cert` and `key`.
    #[serde(default)]
    pub acme: Option<Acme>,
    /// Port the proxy listens on for HTTPS on each host.
    #[serde(default = "defaults::proxy_https_port")]
    #[schemars(range(min = 1))]
    pub https_port: u16,
}

/// Where a role's certificate comes from (the two forms of `tls`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TlsSource<'a> {
    /// Certificate and key files on the operator's machine.
    Files {
        cert: &'a std::path::Path,
        key: &'a std::path::Path,
    },
    /// Obtained and renewed through ACME.
    Acme(&'a Acme),
}

impl ProxyTls {
    /// Which form this is; `None` for a config that mixes or lacks both
    /// (refused by validation, so a loaded config always has one).
    pub fn source(&self) -> Option<TlsSource<'_>> {
        match (&self.cert, &self.key, &self.acme) {
            (Some(cert), Some(key), None) => Some(TlsSource::Files { cert, key }),
            (None, None, Some(acme)) => Some(TlsSource::Acme(acme)),
            _ => None,
        }
    }
}

/// An ACME CA that issues the role's certificate (Let's Encrypt, a
/// private CA, Pebble).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// Contact address of the ACME account (the CA writes about expiry).
    pub email: String,
    /// The CA's directory URL, e.g.
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// PEM bundle of the CA certificates to trust for the directory's own
    /// HTTPS, relative to the config file (a private CA, Pebble)
    /// [default: the system's roots].
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Renew when the certificate expires within this long.
    #[serde(default = "defaults::renew_before", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub renew_before: Duration,
}

/// One host of a role.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum HostEntry {
    /// Just the address or ssh alias.
    Address(String),
    /// An address with variables only this host gets.
    WithEnv(HostWithEnv),
}

/// A host with its own environment variables.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostWithEnv {
    /// Address or ssh alias.
    pub host: String,
    /// Variables added to (or overriding) the role's clear environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl HostEntry {
    pub fn address(&self) -> &str {
        match self {
            HostEntry::Address(a) => a,
            HostEntry::WithEnv(h) => &h.host,
        }
    }
}

/// Environment variables of a role.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Env {
    /// Variables given in clear. Never put secrets here. A value may name
    /// hosts and ports of this config, resolved when it is loaded (`ballast
    /// plan` and `ballast config` show the result): `{{ roles.NAME.hosts }}`
    /// (the role's addresses, comma-separated), `{{ roles.NAME.port }}`,
    /// `{{ accessories.NAME.host }}` and `{{ accessories.NAME.port }}` (its
    /// first published host port), e.g. `"{{ accessories.db.host }}:{{
    /// accessories.db.port }}"`. Only such paths: no expressions, filters or
    /// loops, and never a secret (`{{ secrets.X }}` is an error). Per-host
    /// `env` values may use them too.
    #[serde(default)]
    pub clear: BTreeMap<String, String>,
    /// Names of secret variables. Values come from the environment of the
    /// operator or from `.ballast/secrets` beside the config file; they reach
    /// containers at run time and are never printed. A changed value rolls
    /// out: the containers' digest takes each value keyed (HMAC-SHA256 with
    /// a key kept on each host in `/var/lib/ballast/<service>/digest.key`).
    #[serde(default)]
    pub secret: Vec<String>,
}

/// The health check of a role.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// HTTP path that answers 2xx when the app is ready.
    #[serde(default = "defaults::health_path")]
    pub path: String,
    /// Port of the check [default: the role's `port`].
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Time between checks.
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub interval: Duration,
    /// Deadline of one check.
    #[serde(default = "defaults::check_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub timeout: Duration,
}

/// How a deploy rolls.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploySettings {
    /// Hosts switched together in one step: a count (`2`) or a share of
    /// each role's hosts (`"25%"`).
    #[serde(default = "defaults::batch")]
    pub batch: Batch,
    /// How long a new container may take to become healthy.
    #[serde(default = "defaults::health_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("format" = "duration"))]
    pub health_timeout: Duration,
    /// How many releases (stopped containers and their images) each host
    /// keeps for rollback, the running one included.
    #[serde(default = "defaults::retain")]
    pub retain: usize,
    /// What a deploy does when a host fails: its new container does not
    /// become healthy, or a step of its switch fails.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Create and start the new containers of roles behind the proxy on
    /// every host before the first batch switches: they take no traffic
    /// until their batch's proxy switch proves them, and the batches then
    /// only switch; each host's old container, drained at its switch,
    /// stops while the later batches switch. Set to false where a host
    /// cannot hold two versions of a role at once: each batch then starts
    /// its own and stops the old.
    #[serde(default = "defaults::yes")]
    pub start_ahead: bool,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            batch: defaults::batch(),
            health_timeout: defaults::health_timeout(),
            retain: defaults::retain(),
            on_failure: OnFailure::default(),
            start_ahead: true,
        }
    }
}

/// What a deploy does when a host fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The failed host keeps its previous version, later batches are not
    /// touched, and hosts already switched in this deploy stay on the new
    /// version.
    #[default]
    Stop,
    /// Hosts already switched in this deploy go back to the release they ran
    /// before, through the same health gate and proxy switch, so the fleet
    /// does not stay on mixed versions.
    Revert,
}

/// Batch size: a count of hosts or a percentage of a role's hosts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Batch {
    /// This many hosts at a time.
    Count(usize),
    /// A percentage such as `"25%"`, rounded up, at least one host.
    Percent(String),
}

/// Container logging: where the containers' output goes. `ballast config`
/// shows the options Docker gets: those written, with the rotation defaults
/// of the drivers that keep files on the host.
// Read through `LoggingAsWritten`, which documents the keys (the
// reference's source) and adds those defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, from = "LoggingAsWritten")]
pub struct Logging {
    pub driver: LogDriver,
    pub options: BTreeMap<String, String>,
}

/// `logging` as the file writes it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Logging")]
pub struct LoggingAsWritten {
    /// Docker log driver.
    #[serde(default)]
    driver: LogDriver,
    /// Options of the driver, handed to Docker as they are (`--log-opt`).
    /// `local` and `json-file` rotate at `max-size: 10m` keeping
    /// `max-file: "5"` unless these say otherwise; `gelf` needs
    /// `gelf-address`.
    #[serde(default)]
    options: BTreeMap<String, String>,
}

impl From<LoggingAsWritten> for Logging {
    fn from(written: LoggingAsWritten) -> Logging {
        let mut options = match written.driver {
            LogDriver::Local | LogDriver::JsonFile => defaults::log_options(),
            _ => BTreeMap::new(),
        };
        options.extend(written.options);
        Logging {
            driver: written.driver,
            options,
        }
    }
}

impl Logging {
    /// The options Docker gets: those written, with the rotation defaults
    /// of drivers that keep files on the host (added when read).
    pub fn effective_options(&self) -> BTreeMap<String, String> {
        self.options.clone()
    }
}

impl Default for Logging {
    fn default() -> Self {
        LoggingAsWritten::default().into()
    }
}

impl Config {
    /// The logging of `role`: its own, else the service's.
    pub fn logging_of(&self, role: &str) -> &Logging {
        self.roles
            .get(role)
            .and_then(|r| r.logging.as_ref())
            .unwrap_or(&self.logging)
    }
}

/// The Docker log drivers ballast supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    /// Files on the host in Docker's compact format, rotated; `ballast
    /// logs` reads them.
    #[default]
    Local,
    /// Files on the host as JSON lines, rotated; `ballast logs` reads them.
    JsonFile,
    /// The host's systemd journal (systemd-journald must run there);
    /// `ballast logs` reads it, and so does `journalctl CONTAINER_NAME=...`.
    Journald,
    /// A syslog server at `syslog-address` (`udp://`, `tcp://`,
    /// `tcp+tls://`, `unix://` or `unixgram://`) [default: the host's
    /// syslog socket].
    Syslog,
    /// A GELF endpoint such as Graylog or Logstash at `gelf-address`
    /// (`udp://HOST:PORT` or `tcp://HOST:PORT`, required).
    Gelf,
    /// A Fluentd or Fluent Bit collector at `fluentd-address` (`HOST:PORT`,
    /// `tcp://HOST:PORT` or `unix:///PATH`) [default: `localhost:24224`].
    /// A container does not start while the collector is unreachable,
    /// unless `fluentd-async: "true"`.
    Fluentd,
}

impl LogDriver {
    /// Every driver, in the order the reference lists them.
    pub const ALL: [LogDriver; 6] = [
        LogDriver::Local,
        LogDriver::JsonFile,
        LogDriver::Journald,
        LogDriver::Syslog,
        LogDriver::Gelf,
        LogDriver::Fluentd,
    ];

    /// The driver's name, as Docker and the config write it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogDriver::Local => "local",
            LogDriver::JsonFile => "json-file",
            LogDriver::Journald => "journald",
            LogDriver::Syslog => "syslog",
            LogDriver::Gelf => "gelf",
            LogDriver::Fluentd => "fluentd",
        }
    }

    /// Whether the logs stay on the host, where Docker reads them back;
    /// the others send them away, and Docker keeps only a local copy of
    /// the recent lines (its "dual logging" cache) unless
    /// `cache-disabled` is set.
    pub fn stays_on_host(self) -> bool {
        matches!(
            self,
            LogDriver::Local | LogDriver::JsonFile | LogDriver::Journald
        )
    }
}

impl std::fmt::Display for LogDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defaults, named so serde and the reference agree.
pub mod defaults {
    use super::*;

    pub fn context() -> PathBuf {
        PathBuf::from(".")
    }
    pub fn dockerfile() -> String {
        "Dockerfile".into()
    }
    pub fn health_path() -> String {
        "/up".into()
    }
    pub fn interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn check_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn batch() -> Batch {
        Batch::Count(1)
    }
    pub fn health_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn retain() -> usize {
        5
    }
    pub fn yes() -> bool {
        true
    }
    pub fn persist() -> Duration {
        Duration::from_secs(60)
    }
    pub fn stop_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn concurrency() -> usize {
        10
    }
    pub fn proxy_http_port() -> u16 {
        80
    }
    pub fn proxy_https_port() -> u16 {
        443
    }
    pub fn renew_before() -> Duration {
        Duration::from_secs(30 * 24 * 3600)
    }
    pub fn hook_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn init() -> bool {
        true
    }
    /// Rotation of the drivers that write files on the host.
    pub fn log_options() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("max-size".to_string(), "10m".to_string()),
            ("max-file".to_string(), "5".to_string()),
        ])
    }
}
