//! The image of a private registry for lab tests of registry delivery:
//! Debian's `docker-registry` (distribution 2.8) and `htpasswd` (for its
//! password file), installed from Debian's package registry on top of the
//! lab's bookworm host image, tagged after that image so it is built once.
//! A test runs it on its lab's network with its own certificate, key,
//! settings and password file mounted at [`CONFIG_DIR`].

use std::time::Duration;

use ballast_core::{Engine, Error, Result};

use crate::engines::Distro;

/// Repository of the image; the tag is the host image's.
pub const REPO: &str = "ballast-lab-registry";
/// Where a test mounts `config.yml`, the certificate, key and `htpasswd`.
pub const CONFIG_DIR: &str = "/etc/ballast-registry";
/// The port the registry serves HTTPS on.
pub const PORT: u16 = 5000;
/// How long installing the packages may take.
const DEADLINE: Duration = Duration::from_secs(600);
/// The packages, installed without the recommended ones.
const INSTALL: &[&str] = &[
    "sh",
    "-c",
    "apt-get update -q && apt-get install -y -q --no-install-recommends docker-registry apache2-utils && rm -rf /var/lib/apt/lists/*",
];

/// The registry image's tag, built unless it is there.
pub async fn ensure_image(engine: &Engine) -> Result<String> {
    let host_tag = crate::recipe::ensure(engine, Distro::Bookworm, &mut |_| {}).await?;
    let version = host_tag.rsplit(':').next().unwrap_or(&host_tag);
    let tag = format!("{REPO}:{version}");
    let step = format!("build {tag}");
    let install = serde_json::to_string(INSTALL).map_err(|e| Error::failed(&step, e))?;
    let serve = serde_json::to_string(&[
        "/usr/bin/docker-registry",
        "serve",
        &format!("{CONFIG_DIR}/config.yml"),
    ])
    .map_err(|e| Error::failed(&step, e))?;
    let dockerfile = format!("FROM {host_tag}\nRUN {install}\nEXPOSE {PORT}\nCMD {serve}\n");
    crate::rootfs::build_on_top(engine, &tag, &dockerfile, &[], DEADLINE).await?;
    Ok(tag)
}

/// The registry's settings: TLS with the mounted certificate and key,
/// htpasswd auth, storage inside the container.
pub fn config_yml() -> String {
    format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/docker-registry\n  delete:\n    enabled: true\nhttp:\n  addr: :{PORT}\n  tls:\n    certificate: {CONFIG_DIR}/cert.pem\n    key: {CONFIG_DIR}/key.pem\nauth:\n  htpasswd:\n    realm: ballast-lab\n    path: {CONFIG_DIR}/htpasswd\n"
    )
}
