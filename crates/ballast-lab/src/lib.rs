//! ballast-lab: several real Docker hosts on one machine, for tests, examples
//! and benchmarks. Each host is a container running sshd and its own dockerd
//! on a private network; clients reach it exactly as they reach a real host.
//!
//! # Layout
//! - [`name`]: lab names and the Docker objects named after them.
//! - [`engines`]: which Debian release (so which Docker) and which image
//!   store each host runs.
//! - [`recipe`]: images built offline with debootstrap, cached by their
//!   recipe's hash; the host image's recipe.
//! - `bare`: a host image without Docker, for `ballast setup` to install it.
//! - [`registry`]: a private registry's image (Debian's docker-registry),
//!   for tests of registry delivery.
//! - `rootfs`: making a recipe's image: debootstrap, files, import.
//! - `mirror`: the Debian mirror debootstrap fetches from.
//! - [`postgres`]: the PostgreSQL accessory image's recipe and entrypoint.
//! - [`subnet`]: the lab network's subnet and host addresses.
//! - [`files`]: the lab directory: key, known_hosts, ssh config, inventory.
//! - `host`: one lab host: its container, key and readiness checks.
//! - [`lab`]: `up` of a whole lab.
//! - `teardown`: `down`: every object of a lab, found by label, removed.
//! - [`load`]: a load client that counts every request, for
//!   zero-downtime proofs.
//! - [`status`]: `status`, with a live check of every host.

mod bare;
pub mod engines;
pub mod files;
mod host;
pub mod lab;
pub mod load;
mod mirror;
pub mod name;
pub mod postgres;
pub mod recipe;
pub mod registry;
mod rootfs;
pub mod status;
pub mod subnet;
mod teardown;

pub use engines::{Distro, HostEngine, ImageStore, LabEngines};
pub use files::{default_base, Inventory, LabDir, LabHost};
pub use lab::{down, up, up_with, HostOverrides, LabEvent, Removed, UpRequest};
pub use name::LabName;
