//! `ballast.yml`: its schema, loading with located errors, secrets, the
//! starter file and the generated reference.

pub mod schema;

pub use schema::*;
