//! ballast's end-to-end tests, as one test program: the CLI's surface and
//! output (`cli_surface`, `cli_snapshots`, no Docker needed) and the lab
//! tests, one module per subject, each bringing up its own lab of Docker
//! hosts ([`common`] is their shared harness).
//!
//! One program, not one per file: each program linked the whole of ballast
//! and compiled the harness again, which was most of CI's build. Run one
//! subject with its module's name as the filter: `cargo test -p ballast
//! --test e2e -- data::` (`.ci/run` runs each lab module in a process of
//! its own, as when they were separate programs).

#[macro_use]
mod common;
mod accessory;
mod certs;
mod cli_snapshots;
mod cli_surface;
mod connections;
mod converge;
mod data;
mod delivery;
mod deploy;
mod doctor;
mod doctor_faults;
mod engines;
mod lab;
mod postgres;
mod process;
mod proxy;
mod proxy_upgrade;
mod prune_remove;
mod registry;
mod secrets;
mod setup;
mod watch;
mod watch_events;
mod watch_faults;
mod watch_page;
mod watch_rollback;
