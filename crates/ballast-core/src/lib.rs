//! ballast-core: the domain of ballast, without its command line.
//!
//! # Layout
//! - [`config`]: `ballast.yml`: schema, loading, validation, secrets, reference.
//! - [`delivery`]: getting an image onto hosts, sending only missing layers.
//! - [`error`]: the one error type: host, step, cause, hint.
//! - [`engine`]: a Docker engine reached through a unix socket (bollard).
//! - [`ssh`]: a remote host over system OpenSSH, its Docker socket forwarded.
//! - [`image`]: building images from a context, copying them between engines.

pub mod config;
pub mod delivery;
pub mod engine;
pub mod error;
pub mod image;
pub mod ssh;

pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
