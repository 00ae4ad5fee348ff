//! The image `ballast watch` runs from as an accessory on a host, built
//! offline on the operator's machine like the proxy's: `FROM scratch`, the
//! static ballast binary, and what watch needs besides that a scratch
//! image lacks: the machine's own `ssh` client with the shared libraries
//! it loads (watch reaches hosts through OpenSSH), a passwd entry for root
//! (ssh refuses a user it cannot name), `/tmp` for its control sockets,
//! and the machine's CA bundle (for `https://` webhooks). Tagged
//! `ballast-watch:<build>`, a hash of everything in it, so a changed
//! binary or ssh gives a new tag and an unchanged one is found again.
//! Its health check is the binary itself ([`check`]): there is no curl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::image::{self, BuildSpec};

pub const IMAGE_REPO: &str = "ballast-watch";
/// Where the image expects the config (an accessory `files:` entry).
pub const CONFIG: &str = "/etc/ballast/ballast.yml";
/// Where it keeps its state file (an accessory `directories:` entry).
pub const STATE_DIR: &str = "/var/lib/ballast-watch";
const BUILD_LABEL: &str = "io.ballast.watch.build";
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The image, as staged: every file by its path in the image.
struct Staged {
    dir: tempfile::TempDir,
    build: String,
}

/// The watch image of this ballast on `local`: its tag, built when
/// missing.
pub async fn image(local: &Engine) -> Result<String> {
    let staged = stage()?;
    let tag = format!("{IMAGE_REPO}:{}", staged.build);
    if local.docker().inspect_image(&tag).await.is_ok() {
        return Ok(tag);
    }
    let mut spec = BuildSpec::new(staged.dir.path(), &tag);
    spec.labels
        .insert(BUILD_LABEL.to_string(), staged.build.clone());
    image::build(local, &spec, &mut |_| {}).await?;
    Ok(tag)
}

/// The Dockerfile: watch with the config at [`CONFIG`], its state in
/// [`STATE_DIR`], checked through its own `/healthz` on the default
/// `watch.listen`. `WORKDIR` makes the empty directories (`/tmp` for the
/// tunnels' sockets, `HOME`), which a build context of files alone lacks.
fn dockerfile() -> String {
    let check = r#"["/ballast", "watch", "--check", "http://127.0.0.1:9465/healthz"]"#;
    format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         WORKDIR /tmp\n\
         WORKDIR /root\n\
         ENV PATH=/usr/bin:/bin HOME=/root\n\
         HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=3 CMD {check}\n\
         ENTRYPOINT [\"/ballast\", \"--config\", \"{CONFIG}\", \"watch\"]\n\
         CMD [\"--state\", \"{STATE_DIR}/watch-state.json\"]\n"
    )
}

/// Lays out the build context in a temporary directory and hashes it.
fn stage() -> Result<Staged> {
    let step = "stage the watch image";
    let dir = tempfile::tempdir().map_err(|e| Error::failed(step, e))?;
    let root = dir.path().join("rootfs");
    let binary = crate::proxy::image::static_binary()?;
    let mut files: Vec<(PathBuf, PathBuf)> = vec![(binary, PathBuf::from("ballast"))];
    for path in ssh_files()? {
        let inside = path.strip_prefix("/").unwrap_or(&path).to_path_buf();
        files.push((path, inside));
    }
    if Path::new(CA_BUNDLE).is_file() {
        files.push((CA_BUNDLE.into(), CA_BUNDLE.trim_start_matches('/').into()));
    }
    let mut hash = Sha256::new();
    hash.update(dockerfile());
    for (from, inside) in &files {
        let bytes = std::fs::read(from)
            .map_err(|e| Error::failed(step, format_args!("{}: {e}", from.display())))?;
        hash.update(inside.to_string_lossy().as_bytes());
        hash.update(&bytes);
        write(&root.join(inside), &bytes, 0o755)?;
    }
    write(
        &root.join("etc/passwd"),
        b"root:x:0:0:root:/root:/ballast\n",
        0o644,
    )?;
    write(&root.join("etc/group"), b"root:x:0:\n", 0o644)?;
    std::fs::write(dir.path().join("Dockerfile"), dockerfile())
        .map_err(|e| Error::failed(step, e))?;
    let build = hash
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Staged { dir, build })
}

/// The `ssh` client on `PATH` and every shared object it loads (as `ldd`
/// lists them, the dynamic loader included).
fn ssh_files() -> Result<Vec<PathBuf>> {
    let step = "find the ssh client for the watch image";
    let ssh = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("ssh"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::input(step, "no `ssh` on PATH").hint("install the OpenSSH client (Debian: openssh-client): watch reaches the hosts through it")
        })?;
    let out = std::process::Command::new("ldd")
        .arg(&ssh)
        .output()
        .map_err(|e| Error::failed(step, format_args!("ldd {}: {e}", ssh.display())))?;
    if !out.status.success() {
        return Err(Error::failed(
            step,
            format_args!(
                "ldd {} failed: {}",
                ssh.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let mut files = vec![ssh];
    files.extend(libraries(&String::from_utf8_lossy(&out.stdout)));
    Ok(files)
}

/// The absolute paths in `ldd`'s output: `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)`
/// and the loader's `/lib64/ld-linux-x86-64.so.2 (0x…)`; the kernel's
/// `linux-vdso.so.1` has no file.
fn libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let step = "stage the watch image";
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::failed(step, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| Error::failed(step, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::failed(step, e))
}

/// The health check of a running watch: `GET url` (its `/healthz`, on
/// loopback) answers 200 within `deadline`.
pub async fn check(url: &str, deadline: Duration) -> Result<()> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let step = format!("check {url}");
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Error::input(&step, format_args!("not a URL: {e}")))?;
    let local = uri.host().is_some_and(|h| {
        h.trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    });
    if uri.scheme_str() != Some("http") || !local {
        return Err(
            Error::input(&step, "only http:// on a loopback address is checked")
                .hint("give watch's own address, e.g. http://127.0.0.1:9465/healthz"),
        );
    }
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let work = async {
        let response = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        match status.is_success() {
            true => Ok(()),
            false => Err(format!("answered {status}")),
        }
    };
    match tokio::time::timeout(deadline, work).await {
        Err(_) => Err(Error::timeout(&step, deadline)),
        Ok(Err(e)) => Err(Error::failed(&step, e)),
        Ok(Ok(())) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_ldd_names_is_found() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibcrypto.so.3 => /lib/x86_64-linux-gnu/libcrypto.so.3 (0x00007f)\n\
                   \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            libraries(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libcrypto.so.3"),
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn the_image_runs_watch_on_the_mounted_config_and_checks_itself() {
        let d = dockerfile();
        assert!(d.starts_with("FROM scratch\n"), "{d}");
        assert!(
            d.contains(
                r#"ENTRYPOINT ["/ballast", "--config", "/etc/ballast/ballast.yml", "watch"]"#
            ),
            "{d}"
        );
        assert!(
            d.contains(r#"CMD ["/ballast", "watch", "--check", "http://127.0.0.1:9465/healthz"]"#),
            "{d}"
        );
    }

    #[tokio::test]
    async fn the_check_passes_on_200_and_fails_otherwise() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let url = format!("http://127.0.0.1:{port}/healthz");
        let second = Duration::from_secs(1);
        check(&url, second).await.unwrap();
        let e = check(&url, second).await.unwrap_err();
        assert!(e.cause.contains("503"), "{e}");
        // Nobody listens any more.
        assert!(check(&url, second).await.is_err());
        let e = check("http://10.0.0.1:9465/healthz", second)
            .await
            .unwrap_err();
        assert!(e.cause.contains("loopback"), "{e}");
    }
}
