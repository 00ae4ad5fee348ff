//! `ballast init` and `ballast config`: the config file itself.

use std::path::Path;

use ballast_core::config;
use ballast_core::{Error, ErrorKind, Result};

use crate::commands::service;
use crate::output::Printer;

pub fn init(path: &Path, out: &Printer) -> Result<()> {
    if path.exists() {
        return Err(Error::new(
            ErrorKind::Conflict,
            "write the starter config",
            format_args!("{} already exists", path.display()),
        )
        .hint("edit it, or give another path with --config"));
    }
    std::fs::write(path, config::starter()).map_err(|e| {
        Error::failed(
            "write the starter config",
            format_args!("{}: {e}", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let ignored = config::ensure_dockerignore(dir).map_err(|e| {
        Error::failed(
            "keep .ballast/ out of images",
            format_args!("{}: {e}", dir.join(".dockerignore").display()),
        )
    })?;
    let mut text = format!(
        "wrote {}: fill in your hosts, then run `ballast plan`",
        path.display()
    );
    if ignored {
        text.push_str("\n.dockerignore leaves out .ballast/ (secrets and hooks)");
    }
    out.result(
        &serde_json::json!({"written": path, "dockerignore": ignored}),
        &text,
    );
    Ok(())
}

pub fn show(path: &Path, reference: bool, out: &Printer) -> Result<()> {
    if reference {
        let text = config::reference_markdown();
        out.result(&serde_json::json!({"reference": text}), &text);
        return Ok(());
    }
    let loaded = service::load(path)?;
    let text = config::redacted_yaml(&loaded);
    out.result(&serde_json::json!({"config": text}), &text);
    Ok(())
}
