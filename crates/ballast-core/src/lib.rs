//! ballast-core: the domain of ballast, without its command line.
//!
//! # Layout
//! - [`error`]: the one error type: host, step, cause, hint.
//! - [`engine`]: a Docker engine reached through a unix socket (bollard).
//! - [`ssh`]: a remote host over system OpenSSH, its Docker socket forwarded.
//! - [`image`]: building images from a context, copying them between engines.

pub mod engine;
pub mod error;
pub mod image;
pub mod ssh;

pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
