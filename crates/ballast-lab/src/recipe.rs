//! The lab host image: a Debian root filesystem made with debootstrap from
//! Debian's package registry, with sshd and dockerd, imported into the local
//! engine under a tag derived from the recipe's hash, so it is built once and
//! found again by every later `lab up`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::process::Command;

use ballast_core::{Engine, Error, Result};

/// Repository part of the host image's tag.
pub const IMAGE_REPO: &str = "ballast-lab-host";
const SUITE: &str = "bookworm";
const VARIANT: &str = "minbase";
/// Everything a lab host needs beyond minbase. python3 and python3-docker are
/// for Ansible, a peer in the benchmarks.
const PACKAGES: &[&str] = &[
    "openssh-server",
    "docker.io",
    "iproute2",
    "iptables",
    "ca-certificates",
    "procps",
    "python3",
    "python3-docker",
];
/// Where the init script lives in the image; it is the containers' command.
pub const INIT_PATH: &str = "/usr/local/sbin/ballast-lab-init";
/// PID 1 is docker-init (`--init`); this script starts dockerd in the
/// background and runs sshd in the foreground. Host keys are made on first
/// boot so each host has its own; only ed25519 is offered, so known_hosts
/// needs one line per host.
const INIT_SCRIPT: &str = r#"#!/bin/sh
set -e
if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
  ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
fi
mkdir -p /run/sshd
dockerd >>/var/log/dockerd.log 2>&1 &
exec /usr/sbin/sshd -D -e
"#;
/// sshd settings: keys only, many parallel sessions (benchmarks fan out).
const SSHD_CONFIG: &str = "\
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
MaxStartups 200:30:400
MaxSessions 200
AllowStreamLocalForwarding yes
";
/// Bump when the recipe changes in a way the hash of the data above misses.
const RECIPE_REVISION: u32 = 1;
/// How long making the root filesystem may take (downloads included).
const DEBOOTSTRAP_DEADLINE: Duration = Duration::from_secs(20 * 60);

/// Progress of preparing the host image.
#[derive(Debug, Clone, PartialEq)]
pub enum RecipeEvent {
    /// The image was already there.
    Cached { tag: String },
    /// Building it: a phase began (debootstrap, import...).
    Phase(String),
    /// Built and imported in this many seconds.
    Built { tag: String, seconds: f64 },
}

/// The tag of the host image for the current recipe.
pub fn image_tag() -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{RECIPE_REVISION}\n{SUITE}\n{VARIANT}\n{}\n",
        PACKAGES.join(",")
    ));
    h.update(INIT_SCRIPT);
    h.update(SSHD_CONFIG);
    let hex: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{IMAGE_REPO}:{hex}")
}

/// Makes sure the host image exists on `engine`, building it if needed.
pub async fn ensure(
    engine: &Engine,
    on_event: &mut (dyn FnMut(RecipeEvent) + Send),
) -> Result<String> {
    let tag = image_tag();
    if engine.image_id(&tag).await?.is_some() {
        on_event(RecipeEvent::Cached { tag: tag.clone() });
        return Ok(tag);
    }
    // Several `lab up` at once (parallel tests) build the image only once:
    // the first holds the lock, the others find the image when they get it.
    let _lock = build_lock().await?;
    if engine.image_id(&tag).await?.is_some() {
        on_event(RecipeEvent::Cached { tag: tag.clone() });
        return Ok(tag);
    }
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("ballast-lab-root-")
        .tempdir_in("/var/tmp")
        .map_err(|e| Error::failed("make a directory for the host root filesystem", e))?;
    let root = work.path().join("root");
    ensure_debootstrap(on_event).await?;
    on_event(RecipeEvent::Phase(format!(
        "debootstrap {SUITE} ({VARIANT} + {} packages), about a minute",
        PACKAGES.len()
    )));
    debootstrap(&root).await?;
    customize(&root)?;
    on_event(RecipeEvent::Phase(format!("importing {tag}")));
    import(engine, &root, &tag).await?;
    on_event(RecipeEvent::Built {
        tag: tag.clone(),
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(tag)
}

/// An exclusive lock on a file beside the build directories, held (by the
/// open file) until dropped; the OS releases it if the process dies.
async fn build_lock() -> Result<std::fs::File> {
    let path = Path::new("/var/tmp/ballast-lab-host-image.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| {
            Error::failed(
                "lock the host image build",
                format_args!("{}: {e}", path.display()),
            )
        })?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| Error::failed("lock the host image build", e))?
        .map_err(|e| {
            Error::failed(
                "lock the host image build",
                format_args!("{}: {e}", path.display()),
            )
        })
}

async fn ensure_debootstrap(on_event: &mut (dyn FnMut(RecipeEvent) + Send)) -> Result<()> {
    if on_path("debootstrap") {
        return Ok(());
    }
    let hint = "install it with `apt-get install debootstrap` (as root), then run lab up again";
    if !on_path("apt-get") {
        return Err(Error::failed("find debootstrap", "debootstrap is not installed").hint(hint));
    }
    on_event(RecipeEvent::Phase(
        "installing debootstrap with apt-get".into(),
    ));
    for args in [
        &["update", "-qq"][..],
        &[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "debootstrap",
        ][..],
    ] {
        let out = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .await
            .map_err(|e| Error::failed("install debootstrap", e).hint(hint))?;
        if !out.status.success() {
            return Err(Error::failed("install debootstrap", tail(&out.stderr, 5)).hint(hint));
        }
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

async fn debootstrap(root: &Path) -> Result<()> {
    let step = "make the host root filesystem (debootstrap)";
    let include = format!("--include={}", PACKAGES.join(","));
    let variant = format!("--variant={VARIANT}");
    let mut cmd = Command::new("debootstrap");
    cmd.arg(&variant).arg(&include).arg(SUITE).arg(root);
    if let Some(mirror) = mirror() {
        cmd.arg(mirror);
    }
    cmd.kill_on_drop(true);
    let out = match tokio::time::timeout(DEBOOTSTRAP_DEADLINE, cmd.output()).await {
        Err(_) => return Err(Error::timeout(step, DEBOOTSTRAP_DEADLINE)),
        Ok(Err(e)) => return Err(Error::failed(step, e)),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let mut log = tail(&out.stdout, 8);
        let debootstrap_log = root.join("debootstrap/debootstrap.log");
        if let Ok(text) = std::fs::read(&debootstrap_log) {
            log = format!("{log}\n{}", tail(&text, 8));
        }
        return Err(Error::failed(step, log)
            .hint("check that Debian's package registry is reachable (apt-get update), or set BALLAST_LAB_MIRROR"));
    }
    Ok(())
}

/// The Debian mirror this machine's apt already uses (or `BALLAST_LAB_MIRROR`);
/// `None` lets debootstrap use its own default.
fn mirror() -> Option<String> {
    if let Ok(m) = std::env::var("BALLAST_LAB_MIRROR") {
        if !m.trim().is_empty() {
            return Some(m.trim().to_string());
        }
    }
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str());
            if matches!(ext, Some("list") | Some("sources")) {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    texts.push(t);
                }
            }
        }
    }
    texts.iter().find_map(|t| mirror_in(t))
}

/// Finds the main Debian archive in an apt sources text, in either the
/// one-line (`deb URI suite ...`) or the deb822 (`URIs:`) format. Security and
/// updates archives are skipped: debootstrap needs the main one.
pub fn mirror_in(text: &str) -> Option<String> {
    let main_suite =
        |s: &str| !s.contains("-security") && !s.contains("-updates") && !s.contains("-backports");
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        // Skip an options block such as [signed-by=...].
        let rest: Vec<&str> = if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
            rest[end + 1..].to_vec()
        } else {
            rest
        };
        if let [uri, suite, ..] = rest[..] {
            if main_suite(suite) && uri.contains("debian") {
                return Some(uri.to_string());
            }
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
        };
        if field("Enabled:").is_some_and(|v| v == "no") {
            continue;
        }
        let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
            continue;
        };
        if suites.split_whitespace().any(main_suite) {
            if let Some(uri) = uris.split_whitespace().find(|u| u.contains("debian")) {
                return Some(uri.to_string());
            }
        }
    }
    None
}

/// Writes the init script and sshd settings, drops host keys made by the
/// package scripts (each host makes its own) and package caches.
fn customize(root: &Path) -> Result<()> {
    let step = "prepare the host root filesystem";
    let write = |rel: &str, body: &str, mode: u32| -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = root.join(rel.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::failed(step, e))?;
        }
        std::fs::write(&path, body)
            .map_err(|e| Error::failed(step, format_args!("{}: {e}", path.display())))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::failed(step, e))
    };
    write(INIT_PATH, INIT_SCRIPT, 0o755)?;
    write(
        "/etc/ssh/sshd_config.d/ballast-lab.conf",
        SSHD_CONFIG,
        0o644,
    )?;
    let remove_matching = |dir: &str, keep: &dyn Fn(&str) -> bool| {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    };
    remove_matching("etc/ssh", &|n| !n.starts_with("ssh_host_"));
    remove_matching("var/cache/apt/archives", &|n| n == "partial" || n == "lock");
    remove_matching("var/lib/apt/lists", &|n| n == "partial" || n == "lock");
    Ok(())
}

/// Streams the root filesystem as a tar into the engine's image import.
async fn import(engine: &Engine, root: &Path, tag: &str) -> Result<()> {
    let step = format!("import {tag}");
    let mut child = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(root)
        .arg("-c")
        .arg(".")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::failed(&step, format_args!("cannot run tar: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(stdout));
    let (repo, version) = tag.split_once(':').expect("tag has a version");
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(version)
        .changes(vec![
            format!("CMD [\"{INIT_PATH}\"]"),
            format!("LABEL io.ballast.recipe={version}"),
        ])
        .build();
    let mut answers = engine
        .docker()
        .create_image(Some(options), Some(body), None);
    while let Some(answer) = answers.next().await {
        answer.map_err(|e| engine.error(&step, e))?;
    }
    let status = child.wait().await.map_err(|e| Error::failed(&step, e))?;
    if !status.success() {
        return Err(Error::failed(
            &step,
            format_args!("tar exited with {status}"),
        ));
    }
    if engine.image_id(tag).await?.is_none() {
        return Err(Error::failed(
            &step,
            "the engine has no such image after the import",
        ));
    }
    Ok(())
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_stable_and_looks_like_a_hash() {
        let tag = image_tag();
        assert_eq!(tag, image_tag());
        let (repo, version) = tag.split_once(':').unwrap();
        assert_eq!(repo, IMAGE_REPO);
        assert_eq!(version.len(), 16);
        assert!(version.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn mirror_from_one_line_sources() {
        let text = "# comment\ndeb [signed-by=/k.gpg] http://mirror.example/debian-security bookworm-security main\ndeb http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn mirror_from_deb822_sources() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in("Types: deb\nURIs: http://x/debian-security\nSuites: bookworm-security\n"),
            None
        );
        assert_eq!(mirror_in(""), None);
    }

    #[test]
    fn customize_writes_init_and_drops_host_keys() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::write(root.join("etc/ssh/ssh_host_rsa_key"), "secret").unwrap();
        std::fs::write(root.join("etc/ssh/sshd_config"), "x").unwrap();
        customize(root).unwrap();
        assert!(!root.join("etc/ssh/ssh_host_rsa_key").exists());
        assert!(root.join("etc/ssh/sshd_config").exists());
        let init = std::fs::read_to_string(root.join(INIT_PATH.trim_start_matches('/'))).unwrap();
        assert!(init.contains("exec /usr/sbin/sshd -D"));
    }
}
