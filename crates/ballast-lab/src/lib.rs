//! ballast-lab: several real Docker hosts on one machine, for tests, examples
//! and benchmarks. Each host is a container running sshd and its own dockerd
//! on a private network; clients reach it exactly as they reach a real host.
//!
//! # Layout
//! - [`name`]: lab names and the Docker objects named after them.
//! - [`recipe`]: the host image, built offline with debootstrap, cached by hash.
//! - [`subnet`]: the lab network's subnet and host addresses.
//! - [`files`]: the lab directory: key, known_hosts, ssh config, inventory.
//! - `host`: one lab host: its container, key and readiness checks.
//! - [`lab`]: `up` and `down` of a whole lab.
//! - [`status`]: `status`, with a live check of every host.

pub mod files;
mod host;
pub mod lab;
pub mod name;
pub mod recipe;
pub mod status;
pub mod subnet;

pub use files::{default_base, Inventory, LabDir, LabHost};
pub use lab::{down, up, HostOverrides, LabEvent, Removed, UpRequest};
pub use name::LabName;
