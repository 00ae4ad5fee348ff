//! ballast-core: the domain of ballast, without its command line.
//!
//! # Layout
//! - [`accessory`]: accessories (a database, a cache) on their hosts:
//!   boot, upgrade with rollback, stop, remove; data kept unless told.
//! - [`acme`]: certificates from an ACME CA (HTTP-01 answered by every
//!   host's proxy), the account kept on the role's first host.
//! - [`backup`]: a container's data streamed to a checksummed file on the
//!   operator's machine (a dump command, or an archive of its data
//!   directories), and put back after the file is verified.
//! - [`certificate`]: a certificate and key checked before they are sent.
//! - [`change`]: a locked, audited change outside a rollout (setup, proxy).
//! - [`container`]: plain operations on one container of a host (look,
//!   create, start, stop, rename, remove), shared by rollouts, accessories
//!   and the proxy.
//! - [`config`]: `ballast.yml`: schema, loading, validation, secrets, reference.
//! - [`deploy`]: a whole deploy or rollback: lock, deliver, plan, roll, audit.
//! - [`doctor`]: hosts and config checked against known Docker failure modes.
//! - [`delivery`]: getting an image onto hosts, sending only missing layers.
//! - [`error`]: the one error type: host, step, cause, hint.
//! - [`engine`]: a Docker engine reached through a unix socket (bollard).
//! - [`exec`]: a command run in a role's running container (`ballast exec`).
//! - [`plan`]: the pure rollout plan: per-host steps in batches; the
//!   executor's whole contract.
//! - [`setup`]: each host's machine made ready: the distribution checked,
//!   Docker installed at the pinned version and held, dockerd's settings.
//! - [`scope`]: the hosts and roles a command works on (`--hosts`, `--roles`).
//! - [`faults`]: faults injected on purpose by tests (`BALLAST_FAILPOINTS`).
//! - [`proxy`]: ballast-proxy on the hosts: image, container, admin socket.
//! - [`prune`]: what `ballast prune` removes from a host (releases past
//!   `retain`, images nothing uses), decided as data, then removed.
//! - [`redact`]: the one layer that hides secret values from every output.
//! - [`remove`]: `ballast remove`: the service taken off its hosts (routes,
//!   containers, images, ballast's files), never its data.
//! - [`release`]: app containers and the labels that record releases; the
//!   releases table.
//! - [`status`]: what each host runs, role by role: the status table.
//! - [`logs`]: the containers' logs, merged across hosts.
//! - [`lock`]: the deploy lock: on every host a command changes, leased,
//!   released only by its holder's token.
//! - [`state`]: the audit log (and the old one-host lock), files on the hosts.
//! - [`rollout`]: one host's steps, undone if one fails.
//! - [`spec`]: a role's container definition and its digest.
//! - [`digest_key`]: the per-service key on each host that the digest of
//!   secrets is keyed with.
//! - [`version`]: which image and version a deploy rolls out.
//! - [`watch`]: `ballast watch`: looks, heals within bounds, and alerts
//!   through incidents that open, escalate and recover.
//! - [`ssh`]: a remote host over system OpenSSH, its Docker socket forwarded.
//! - [`fleet`]: every host of a service, connected with bounded concurrency.
//! - [`hooks`]: the operator's executables run around a deploy.
//! - [`health`]: waiting for a new container to be healthy.
//! - [`host`]: a host, local or over SSH: engine, commands, tunnels.
//! - [`image`]: building images from a context, copying them between engines.

pub mod accessory;
pub mod acme;
pub mod backup;
pub mod certificate;
pub mod change;
pub mod config;
pub mod container;
pub mod delivery;
pub mod deploy;
pub mod digest_key;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod exec;
pub mod faults;
pub mod fleet;
pub mod health;
pub mod hooks;
pub mod host;
pub mod image;
pub mod lock;
pub mod logs;
pub mod plan;
pub mod proxy;
pub mod prune;
pub mod redact;
pub mod release;
pub mod remove;
pub mod rollout;
pub mod scope;
pub mod setup;
pub mod spec;
pub mod ssh;
pub mod state;
pub mod status;
pub mod version;
pub mod watch;

#[cfg(test)]
mod testing;

pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
