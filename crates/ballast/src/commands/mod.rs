//! One module per command family: each turns parsed arguments into domain
//! requests, runs them, and reports through the printer.

pub mod accessory;
pub mod build;
pub mod certs;
pub mod deploy;
pub mod docs;
pub mod doctor;
pub mod exec;
pub mod inspect;
pub mod lab;
pub mod lock;
pub mod logs;
pub mod maintain;
pub mod proxy;
pub mod secrets;
pub mod service;
pub mod setup;
pub mod watch;
