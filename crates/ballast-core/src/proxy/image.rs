//! The proxy's image and its identity. The image is `FROM scratch` with a
//! static ballast binary in it, built offline on the operator's machine and
//! tagged `ballast-proxy:<version>-<build>`; labels record the version and
//! the build (a hash of the binary). The build is in the tag because two
//! builds of one version on one machine (an operator's and a CI's, or a
//! test's) would otherwise move one tag under each other between building
//! and shipping, and a host would run a build other than the one named. The identity is the version and build, not
//! the tag alone, so two operators with the same version but different
//! builds see each other's proxies as "another build" and a deploy says
//! `ballast proxy upgrade` is due instead of flipping proxies back and forth.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::image::{self, BuildSpec};

const IMAGE_REPO: &str = "ballast-proxy";
pub(super) const VERSION_LABEL: &str = "io.ballast.proxy.version";
pub(super) const BUILD_LABEL: &str = "io.ballast.proxy.build";

/// Which ballast a proxy runs: its version and the hash of its binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub version: String,
    /// The first bytes of the binary's SHA-256, in hex.
    pub build: String,
}

impl std::fmt::Display for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (build {})", self.version, self.build)
    }
}

impl Build {
    /// Reads a build back from image or container labels.
    pub(super) fn from_labels(labels: &std::collections::HashMap<String, String>) -> Option<Build> {
        Some(Build {
            version: labels.get(VERSION_LABEL)?.clone(),
            build: labels.get(BUILD_LABEL)?.clone(),
        })
    }

    pub(super) fn labels(&self) -> [(String, String); 2] {
        [
            (VERSION_LABEL.to_string(), self.version.clone()),
            (BUILD_LABEL.to_string(), self.build.clone()),
        ]
    }
}

/// A static ballast binary to build the proxy image from:
/// `BALLAST_PROXY_BINARY`, else this very binary when it is static.
pub fn static_binary() -> Result<PathBuf> {
    let step = "find a static ballast binary for the proxy image";
    let candidate = match std::env::var_os("BALLAST_PROXY_BINARY").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().map_err(|e| Error::failed(step, e))?,
    };
    let bytes = std::fs::read(&candidate)
        .map_err(|e| Error::failed(step, format_args!("{}: {e}", candidate.display())))?;
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| {
        Error::input(
            step,
            format_args!("{} is not an ELF binary: {e}", candidate.display()),
        )
    })?;
    if elf.interpreter.is_some() {
        return Err(Error::input(step, format_args!("{} is dynamically linked; a FROM scratch image needs a static one", candidate.display()))
            .hint("build ballast as the README says (`cargo build --release -p ballast` is static on x86_64 Linux), or point BALLAST_PROXY_BINARY at a static ballast built for the hosts"));
    }
    Ok(candidate)
}

fn build_of(bytes: &[u8]) -> Build {
    let hash: String = Sha256::digest(bytes)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    Build {
        version: env!("CARGO_PKG_VERSION").to_string(),
        build: hash,
    }
}

fn read_binary() -> Result<(PathBuf, Vec<u8>)> {
    let binary = static_binary()?;
    let bytes = std::fs::read(&binary).map_err(|e| Error::failed("read the ballast binary", e))?;
    Ok((binary, bytes))
}

/// The build this ballast ships as its proxy, known without Docker (so
/// `plan` can compare it with what the hosts run).
pub fn available() -> Result<Build> {
    read_binary().map(|(_, bytes)| build_of(&bytes))
}

fn tag(build: &Build) -> String {
    format!("{IMAGE_REPO}:{}-{}", build.version, build.build)
}

/// The proxy image of this build on this machine: its tag and build. Built
/// when the tag is missing (or, after a hand-made retag, holds another
/// build), so `proxy upgrade` always ships the binary the operator has.
pub async fn image(local: &Engine) -> Result<(String, Build)> {
    let (_, bytes) = read_binary()?;
    let build = build_of(&bytes);
    let tag = tag(&build);
    if let Ok(found) = local.docker().inspect_image(&tag).await {
        let labels = found.config.and_then(|c| c.labels).unwrap_or_default();
        if Build::from_labels(&labels).as_ref() == Some(&build) {
            return Ok((tag, build));
        }
    }
    let step = "stage the proxy image";
    let context = tempfile::tempdir().map_err(|e| Error::failed(step, e))?;
    std::fs::write(context.path().join("ballast"), &bytes).map_err(|e| Error::failed(step, e))?;
    set_executable(&context.path().join("ballast"))?;
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY ballast /ballast\nENTRYPOINT [\"/ballast\", \"proxy\", \"run\"]\n",
    )
    .map_err(|e| Error::failed(step, e))?;
    let mut spec = BuildSpec::new(context.path(), &tag);
    spec.labels.extend(build.labels());
    image::build(local, &spec, &mut |_| {}).await?;
    Ok((tag, build))
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::failed("stage the proxy image", e))
}
