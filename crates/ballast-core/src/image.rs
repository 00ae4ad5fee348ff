//! Images: building one from a context directory through the engine API, and
//! copying one from an engine to another without a registry.
//!
//! Copying here sends the whole image; sending only the layers a host lacks
//! belongs to delivery, which builds on [`copy`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{BuildImageOptionsBuilder, ImportImageOptionsBuilder};
use futures_util::StreamExt;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::engine::Engine;
use crate::error::{Error, Result};

/// What to build: a context directory, the Dockerfile in it, a tag.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub context: PathBuf,
    /// Path of the Dockerfile relative to the context.
    pub dockerfile: String,
    pub tag: String,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    /// How long the whole build may take.
    pub deadline: Duration,
}

impl BuildSpec {
    pub fn new(context: impl Into<PathBuf>, tag: impl Into<String>) -> BuildSpec {
        BuildSpec {
            context: context.into(),
            dockerfile: "Dockerfile".into(),
            tag: tag.into(),
            build_args: HashMap::new(),
            labels: HashMap::new(),
            deadline: Duration::from_secs(1800),
        }
    }
}

/// Progress of a build or copy, for whoever draws it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageEvent {
    /// The context was packed: how many files and bytes go to the engine.
    ContextPacked { files: usize, bytes: u64 },
    /// A line of build output ("Step 2/4 : COPY hello /hello").
    BuildLine(String),
    /// Bytes of an image sent to a host so far.
    Sent { host: String, bytes: u64 },
}

/// The result of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub id: String,
    pub tag: String,
}

/// Builds `spec` on `engine`, reporting progress to `on_event`.
pub async fn build(
    engine: &Engine,
    spec: &BuildSpec,
    on_event: &mut (dyn FnMut(ImageEvent) + Send),
) -> Result<Built> {
    let step = format!("build {}", spec.tag);
    let context = spec.context.clone();
    let dockerfile = spec.dockerfile.clone();
    let (tar, files) = tokio::task::spawn_blocking(move || pack_context(&context, &dockerfile))
        .await
        .map_err(|e| Error::failed(&step, e))??;
    on_event(ImageEvent::ContextPacked {
        files,
        bytes: tar.len() as u64,
    });

    let options = BuildImageOptionsBuilder::default()
        .dockerfile(&spec.dockerfile)
        .t(&spec.tag)
        .rm(true)
        .forcerm(true)
        .buildargs(&spec.build_args)
        .labels(&spec.labels)
        .build();
    let work = async {
        let mut stream =
            engine
                .docker()
                .build_image(options, None, Some(bollard::body_full(tar.into())));
        let mut last_lines: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| engine.error(&step, e))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                let mut cause = detail;
                if !last_lines.is_empty() {
                    cause = format!("{cause}\n{}", last_lines.join("\n"));
                }
                return Err(Error::failed(&step, cause)
                    .on(engine.host())
                    .hint("fix the Dockerfile or the context, then build again"));
            }
            if let Some(line) = info.stream.as_deref().map(str::trim_end) {
                if !line.trim().is_empty() {
                    last_lines.push(line.to_string());
                    if last_lines.len() > 10 {
                        last_lines.remove(0);
                    }
                    on_event(ImageEvent::BuildLine(line.to_string()));
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(spec.deadline, work).await {
        Err(_) => return Err(Error::timeout(&step, spec.deadline).on(engine.host())),
        Ok(r) => r?,
    }
    let id = engine.image_id(&spec.tag).await?.ok_or_else(|| {
        Error::failed(&step, "the engine reported success but has no such image").on(engine.host())
    })?;
    Ok(Built {
        id,
        tag: spec.tag.clone(),
    })
}

/// Packs a build context as a tar, leaving out what `.dockerignore` excludes
/// and, always, `.ballast/` (secrets and hooks). The Dockerfile and
/// `.dockerignore` are always sent: the engine needs them.
/// Returns the tar and how many files it holds.
pub fn pack_context(context: &Path, dockerfile: &str) -> Result<(Vec<u8>, usize)> {
    let step = "pack the build context";
    if !context.is_dir() {
        return Err(Error::input(
            step,
            format_args!("{} is not a directory", context.display()),
        )
        .hint("give the directory that holds the Dockerfile and the files it copies"));
    }
    if !context.join(dockerfile).is_file() {
        return Err(Error::input(
            step,
            format_args!("no {dockerfile} in {}", context.display()),
        )
        .hint("create the Dockerfile, or name the right one"));
    }
    let ignore = dockerignore(context)?;
    let mut files = Vec::new();
    collect(context, context, &ignore, &mut files)
        .map_err(|e| Error::failed(step, format_args!("{}: {e}", context.display())))?;
    // Secrets and hooks live in `.ballast/`: never in an image, whatever
    // `.dockerignore` says.
    files.retain(|f| !f.starts_with(".ballast"));
    for always in [dockerfile, ".dockerignore"] {
        let path = PathBuf::from(always);
        if context.join(&path).is_file() && !files.contains(&path) {
            files.push(path);
        }
    }
    files.sort();

    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    // No GNU sparse entries (type `S`): Docker 20.10 refuses them ("unhandled
    // tar header type 83"), and a linked binary may have a hole or two.
    tar.sparse(false);
    for rel in &files {
        tar.append_path_with_name(context.join(rel), rel)
            .map_err(|e| Error::failed(step, format_args!("{}: {e}", rel.display())))?;
    }
    let bytes = tar.into_inner().map_err(|e| Error::failed(step, e))?;
    Ok((bytes, files.len()))
}

/// Reads `.dockerignore`. Its patterns are relative to the context root, so
/// each is anchored before it goes to the gitignore matcher.
fn dockerignore(context: &Path) -> Result<Gitignore> {
    let mut builder = GitignoreBuilder::new(context);
    let file = context.join(".dockerignore");
    if let Ok(text) = std::fs::read_to_string(&file) {
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (neg, pattern) = match line.strip_prefix('!') {
                Some(p) => ("!", p),
                None => ("", line),
            };
            let anchored = format!(
                "{neg}/{}",
                pattern.trim_start_matches("./").trim_start_matches('/')
            );
            builder
                .add_line(Some(file.clone()), &anchored)
                .map_err(|e| {
                    Error::input(
                        "read .dockerignore",
                        format_args!("{}:{}: {e}", file.display(), n + 1),
                    )
                    .hint("fix or remove that pattern")
                })?;
        }
    }
    builder
        .build()
        .map_err(|e| Error::input("read .dockerignore", e))
}

fn collect(
    root: &Path,
    dir: &Path,
    ignore: &Gitignore,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        let rel = path
            .strip_prefix(root)
            .expect("walked below the root")
            .to_path_buf();
        if ignore.matched(&rel, kind.is_dir()).is_ignore() {
            continue;
        }
        if kind.is_dir() {
            collect(root, &path, ignore, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// Copies `reference` from `from` to `to` as a whole (save, then load),
/// reporting bytes sent. Returns how many bytes crossed.
pub async fn copy(
    from: &Engine,
    to: &Engine,
    reference: &str,
    deadline: Duration,
    on_event: &mut (dyn FnMut(ImageEvent) + Send),
) -> Result<u64> {
    let step = format!("copy image {reference}");
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let source = from.docker().export_image(reference).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        chunk
    });
    let options = ImportImageOptionsBuilder::default().quiet(true).build();
    let work = async {
        let mut answers = to.docker().import_image_stream(options, source, None);
        while let Some(answer) = answers.next().await {
            answer.map_err(|e| to.error(&step, e))?;
            on_event(ImageEvent::Sent {
                host: to.host().to_string(),
                bytes: sent.load(Ordering::Relaxed),
            });
        }
        Ok::<_, Error>(())
    };
    match tokio::time::timeout(deadline, work).await {
        Err(_) => return Err(Error::timeout(&step, deadline).on(to.host())),
        Ok(r) => r?,
    }
    let total = sent.load(Ordering::Relaxed);
    if to.image_id(reference).await?.is_none() {
        return Err(
            Error::failed(&step, "the image is missing after loading it")
                .on(to.host())
                .hint(format!("check that {reference} exists on {}", from.host())),
        );
    }
    on_event(ImageEvent::Sent {
        host: to.host().to_string(),
        bytes: total,
    });
    Ok(total)
}

/// Whether an image defines its own HEALTHCHECK (one that is not `NONE`).
pub fn has_healthcheck(image: &bollard::models::ImageInspect) -> bool {
    image
        .config
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| !t.is_empty() && t[0] != "NONE")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        names
    }

    fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        dir
    }

    #[test]
    fn packs_every_file_without_dockerignore() {
        let dir = context(&[
            ("Dockerfile", "FROM scratch"),
            ("app/bin", "x"),
            ("VERSION", "1"),
        ]);
        let (tar, n) = pack_context(dir.path(), "Dockerfile").unwrap();
        assert_eq!(n, 3);
        assert_eq!(entries(&tar), ["Dockerfile", "VERSION", "app/bin"]);
    }

    #[test]
    fn dockerignore_patterns_are_relative_to_the_root() {
        let dir = context(&[
            ("Dockerfile", "FROM scratch"),
            (
                ".dockerignore",
                "# comment\ntarget\n*.log\n!keep.log\nDockerfile\n",
            ),
            ("target/big", "x"),
            ("src/target/small", "y"),
            ("a.log", "z"),
            ("keep.log", "k"),
        ]);
        let (tar, _) = pack_context(dir.path(), "Dockerfile").unwrap();
        assert_eq!(
            entries(&tar),
            [
                ".dockerignore",
                "Dockerfile",
                "keep.log",
                "src/target/small"
            ]
        );
    }

    #[test]
    fn the_secrets_directory_never_reaches_the_engine() {
        let dir = context(&[
            ("Dockerfile", "FROM scratch\nCOPY . /app\n"),
            (".dockerignore", "!.ballast\n"),
            (".ballast/secrets", "DB_PASSWORD=hunter2"),
            (".ballast/hooks/pre-deploy", "#!/bin/sh"),
            ("app.py", "print()"),
        ]);
        let (tar, _) = pack_context(dir.path(), "Dockerfile").unwrap();
        assert_eq!(entries(&tar), [".dockerignore", "Dockerfile", "app.py"]);
    }

    #[test]
    fn missing_context_or_dockerfile_is_a_clear_input_error() {
        let e = pack_context(Path::new("/no/such/dir"), "Dockerfile").unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Input);
        assert!(e.cause.contains("/no/such/dir"));
        let dir = context(&[("x", "y")]);
        let e = pack_context(dir.path(), "Dockerfile").unwrap_err();
        assert!(e.cause.contains("no Dockerfile"), "{e}");
        assert!(e.hint.is_some());
    }
}
