//! Making a [`Recipe`]'s image: a Debian root filesystem made with
//! debootstrap, the recipe's files written and its prunes removed, streamed
//! as a tar into the engine's image import (with the settings an import
//! takes), then a one-line build for those it does not (STOPSIGNAL). One
//! build per image at a time on this machine, under a file lock of that
//! image's tag; different images build side by side.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use tokio::process::Command;

use ballast_core::{Engine, Error, Result};

use crate::recipe::{Recipe, RecipeEvent};

/// How long making the root filesystem may take (downloads included).
const DEBOOTSTRAP_DEADLINE: Duration = Duration::from_secs(20 * 60);
/// How long streaming the root filesystem into the engine may take.
const IMPORT_DEADLINE: Duration = Duration::from_secs(10 * 60);
/// How long the build that adds what an import cannot set may take.
const FINISH_DEADLINE: Duration = Duration::from_secs(5 * 60);
impl Recipe {
    /// Makes sure this recipe's image exists on `engine`, building it if
    /// needed, and returns its tag.
    pub async fn ensure(
        &self,
        engine: &Engine,
        on_event: &mut (dyn FnMut(RecipeEvent) + Send),
    ) -> Result<String> {
        let tag = self.tag();
        if engine.image_id(&tag).await?.is_some() {
            on_event(RecipeEvent::Cached { tag: tag.clone() });
            return Ok(tag);
        }
        // Several runs at once (parallel tests) build the image only once:
        // the first holds the lock, the others find the image when they get it.
        // The lock is the image's own: other recipes build meanwhile.
        let _lock = build_lock(&tag).await?;
        if engine.image_id(&tag).await?.is_some() {
            on_event(RecipeEvent::Cached { tag: tag.clone() });
            return Ok(tag);
        }
        let started = Instant::now();
        let work = tempfile::Builder::new()
            .prefix(&format!("{}-root-", self.repo))
            .tempdir_in("/var/tmp")
            .map_err(|e| Error::failed("make a directory for the root filesystem", e))?;
        let root = work.path().join("root");
        ensure_debootstrap(on_event).await?;
        on_event(RecipeEvent::Phase(format!(
            "debootstrap {} ({} + {} packages) for {}, about a minute",
            self.suite,
            self.variant,
            self.packages.len(),
            self.repo
        )));
        self.debootstrap(&root).await?;
        self.customize(&root)?;
        on_event(RecipeEvent::Phase(format!("importing {tag}")));
        let (mut imported, rest) = self.config.split_changes();
        let version = tag.split_once(':').map_or("", |(_, v)| v);
        imported.push(format!("LABEL io.ballast.recipe={version}"));
        let import_tag = if rest.is_empty() {
            tag.clone()
        } else {
            format!("{tag}-import")
        };
        let import = self.import(engine, &root, &import_tag, imported);
        match tokio::time::timeout(IMPORT_DEADLINE, import).await {
            Err(_) => return Err(Error::timeout(format!("import {tag}"), IMPORT_DEADLINE)),
            Ok(result) => result?,
        }
        if !rest.is_empty() {
            finish(engine, &import_tag, &rest, &tag).await?;
        }
        on_event(RecipeEvent::Built {
            tag: tag.clone(),
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(tag)
    }

    async fn debootstrap(&self, root: &Path) -> Result<()> {
        let step = format!("make the root filesystem of {} (debootstrap)", self.repo);
        let mut cmd = Command::new("debootstrap");
        cmd.arg(format!("--variant={}", self.variant));
        if !self.packages.is_empty() {
            cmd.arg(format!("--include={}", self.packages.join(",")));
        }
        cmd.arg(self.suite).arg(root);
        if let Some(mirror) = crate::mirror::mirror() {
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

    /// Writes the recipe's files and removes what it prunes and the package
    /// caches.
    fn customize(&self, root: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let step = format!("prepare the root filesystem of {}", self.repo);
        for f in self.files {
            let path = root.join(f.path.trim_start_matches('/'));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::failed(&step, e))?;
            }
            std::fs::write(&path, f.body)
                .map_err(|e| Error::failed(&step, format_args!("{}: {e}", path.display())))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
                .map_err(|e| Error::failed(&step, e))?;
        }
        let remove_matching = |dir: &str, remove: &dyn Fn(&str) -> bool| -> Result<()> {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                return Ok(());
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !remove(&name) {
                    continue;
                }
                let path = e.path();
                let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed
                    .map_err(|e| Error::failed(&step, format_args!("{}: {e}", path.display())))?;
            }
            Ok(())
        };
        for (dir, prefix) in self.prune {
            remove_matching(dir, &|n| n.starts_with(prefix))?;
        }
        let cache = |n: &str| n != "partial" && n != "lock";
        remove_matching("var/cache/apt/archives", &cache)?;
        remove_matching("var/lib/apt/lists", &cache)?;
        Ok(())
    }

    /// Streams the root filesystem as a tar into the engine's image import.
    async fn import(
        &self,
        engine: &Engine,
        root: &Path,
        tag: &str,
        changes: Vec<String>,
    ) -> Result<()> {
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
            .changes(changes)
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
}

/// Builds `tag` from the imported image plus `instructions`, then drops the
/// import's own tag (the image stays, as the parent).
async fn finish(engine: &Engine, imported: &str, instructions: &[String], tag: &str) -> Result<()> {
    let step = format!("finish {tag}");
    let dir = tempfile::tempdir().map_err(|e| Error::failed(&step, e))?;
    let mut dockerfile = format!("FROM {imported}\n");
    for line in instructions {
        dockerfile.push_str(line);
        dockerfile.push('\n');
    }
    std::fs::write(dir.path().join("Dockerfile"), dockerfile)
        .map_err(|e| Error::failed(&step, e))?;
    let spec = ballast_core::image::BuildSpec {
        deadline: FINISH_DEADLINE,
        ..ballast_core::image::BuildSpec::new(dir.path(), tag)
    };
    ballast_core::image::build(engine, &spec, &mut |_| {}).await?;
    let untag = bollard::query_parameters::RemoveImageOptionsBuilder::default()
        .noprune(true)
        .build();
    engine
        .call(
            &step,
            engine.docker().remove_image(imported, Some(untag), None),
        )
        .await?;
    Ok(())
}

/// Builds `tag` from `dockerfile` (FROM another lab image) and the
/// context's `files` (name, body, mode), unless the engine has it: the
/// lab's images made on top of its host image.
pub(crate) async fn build_on_top(
    engine: &Engine,
    tag: &str,
    dockerfile: &str,
    files: &[(&str, &str, u32)],
    deadline: Duration,
) -> Result<()> {
    let _lock = build_lock(tag).await?;
    if engine.docker().inspect_image(tag).await.is_ok() {
        return Ok(());
    }
    let step = format!("build {tag}");
    let dir = tempfile::tempdir().map_err(|e| Error::failed(&step, e))?;
    let write = |name: &str, body: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.path().join(name);
        std::fs::write(&path, body)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| Error::failed(&step, e))
    };
    write("Dockerfile", dockerfile, 0o644)?;
    for (name, body, mode) in files {
        write(name, body, *mode)?;
    }
    let spec = ballast_core::image::BuildSpec {
        deadline,
        ..ballast_core::image::BuildSpec::new(dir.path(), tag)
    };
    ballast_core::image::build(engine, &spec, &mut |_| {}).await?;
    Ok(())
}

/// An exclusive lock on a file beside the build directories, one per image
/// repository, held (by the open file) until dropped; the OS releases it if
/// the process dies.
async fn build_lock(tag: &str) -> Result<std::fs::File> {
    let step = format!("lock the build of {tag}");
    let path = Path::new("/var/tmp").join(format!("{}-image.lock", tag.replace(':', "-")));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::failed(&step, format_args!("{}: {e}", path.display())))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| Error::failed(&step, e))?
        .map_err(|e| Error::failed(&step, format_args!("{}: {e}", path.display())))
}

async fn ensure_debootstrap(on_event: &mut (dyn FnMut(RecipeEvent) + Send)) -> Result<()> {
    if on_path("debootstrap") {
        return Ok(());
    }
    let hint = "install it with `apt-get install debootstrap` (as root), then run again";
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
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(DEBOOTSTRAP_DEADLINE, out).await {
            Err(_) => return Err(Error::timeout("install debootstrap", DEBOOTSTRAP_DEADLINE)),
            Ok(out) => out.map_err(|e| Error::failed("install debootstrap", e).hint(hint))?,
        };
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

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use crate::recipe::{Recipe, HOST, INIT_PATH};

    #[test]
    fn customize_writes_files_and_prunes_host_keys_and_caches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::write(root.join("etc/ssh/ssh_host_rsa_key"), "secret").unwrap();
        std::fs::write(root.join("etc/ssh/sshd_config"), "x").unwrap();
        std::fs::create_dir_all(root.join("var/cache/apt/archives/partial")).unwrap();
        std::fs::write(root.join("var/cache/apt/archives/x.deb"), "deb").unwrap();
        HOST.customize(root).unwrap();
        assert!(!root.join("etc/ssh/ssh_host_rsa_key").exists());
        assert!(root.join("etc/ssh/sshd_config").exists());
        assert!(!root.join("var/cache/apt/archives/x.deb").exists());
        assert!(root.join("var/cache/apt/archives/partial").is_dir());
        let init = std::fs::read_to_string(root.join(INIT_PATH.trim_start_matches('/'))).unwrap();
        assert!(init.contains("exec /usr/sbin/sshd -D"));
    }

    #[test]
    fn customize_prunes_whole_trees() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("var/lib/postgresql/15/main/base")).unwrap();
        std::fs::write(root.join("var/lib/postgresql/15/main/PG_VERSION"), "15").unwrap();
        std::fs::write(root.join("var/lib/postgresql/.keep"), "").unwrap();
        let recipe = Recipe {
            files: &[],
            prune: &[("var/lib/postgresql", "15")],
            ..HOST
        };
        recipe.customize(root).unwrap();
        assert!(!root.join("var/lib/postgresql/15").exists());
        assert!(root.join("var/lib/postgresql/.keep").exists());
    }
}
