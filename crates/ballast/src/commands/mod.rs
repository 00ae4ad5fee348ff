//! One module per command: each turns parsed arguments into domain requests,
//! runs them, and reports through the printer.

pub mod build;
pub mod lab;
