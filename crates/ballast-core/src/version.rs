//! Which image and version a deploy rolls out: built here from the config's
//! `build` section (versioned by the context's git commit, marked when the
//! tree is dirty, else by a hash of the context), or an image that already
//! exists on this machine.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::Loaded;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::image::{self, BuildSpec, ImageEvent};
use crate::release::check_version;

/// The image reference on this machine and the version it deploys as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub image: String,
    pub version: String,
    /// Whether it was built just now.
    pub built: bool,
}

/// The image and version a deploy would roll out, without building anything.
pub async fn choose(loaded: &Loaded, version: Option<&str>) -> Result<Resolved> {
    let config = &loaded.config;
    if let Some(v) = version {
        check_version(v)?;
    }
    let Some(build) = &config.build else {
        return existing(&config.image, version);
    };
    let context = loaded.dir.join(&build.context);
    let version = match version {
        Some(v) => v.to_string(),
        None => match git_version(&context).await {
            Some(v) => v,
            None => content_version(&context, &build.dockerfile)?,
        },
    };
    Ok(Resolved {
        image: format!("{}:{version}", config.image),
        version,
        built: false,
    })
}

/// Builds (when the config says how) or finds the image to deploy.
pub async fn resolve(
    loaded: &Loaded,
    version: Option<&str>,
    on_event: &mut (dyn FnMut(ImageEvent) + Send),
) -> Result<Resolved> {
    let chosen = choose(loaded, version).await?;
    let Some(build) = &loaded.config.build else {
        return Ok(chosen);
    };
    let context = loaded.dir.join(&build.context);
    let (tag, version) = (chosen.image, chosen.version);
    let mut spec = BuildSpec::new(&context, &tag);
    spec.dockerfile = build.dockerfile.clone();
    spec.build_args = build.args.clone().into_iter().collect();
    let engine = Engine::local().await?;
    image::build(&engine, &spec, on_event).await?;
    Ok(Resolved {
        image: tag,
        version,
        built: true,
    })
}

/// An image that exists here: `image:version` when a version is given and the
/// image has no tag, else the image as written (its tag is the version).
fn existing(image: &str, version: Option<&str>) -> Result<Resolved> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last.split_once(':').map(|(_, t)| t.to_string());
    let (image, version) = match (tag, version) {
        (Some(t), None) => (image.to_string(), t),
        (Some(_), Some(v)) => (image.to_string(), v.to_string()),
        (None, Some(v)) => (format!("{image}:{v}"), v.to_string()),
        (None, None) => {
            return Err(Error::input("choose the version", format_args!("{image} has no tag and no --version was given"))
                .hint("pass --version V to deploy IMAGE:V, or add `build:` to the config so ballast builds and versions it"))
        }
    };
    check_version(&version)?;
    Ok(Resolved {
        image,
        version,
        built: false,
    })
}

/// The short commit of the context's git checkout, `-dirty` when it has
/// uncommitted changes; `None` outside git.
async fn git_version(context: &Path) -> Option<String> {
    let run = |args: &'static [&'static str]| {
        tokio::process::Command::new("git")
            .arg("-C")
            .arg(context)
            .args(args)
            .output()
    };
    let head = run(&["rev-parse", "--short=12", "HEAD"]).await.ok()?;
    if !head.status.success() {
        return None;
    }
    let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let status = run(&["status", "--porcelain", "--", "."]).await.ok()?;
    let dirty = !status.stdout.is_empty();
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// A hash of the packed context, for contexts outside git.
fn content_version(context: &Path, dockerfile: &str) -> Result<String> {
    let (tar, _) = image::pack_context(context, dockerfile)?;
    let digest = Sha256::digest(&tar);
    Ok(digest.iter().take(6).map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_images_take_their_version_from_the_tag_or_the_flag() {
        assert_eq!(existing("hello:v1", None).unwrap().version, "v1");
        let r = existing("hello", Some("v2")).unwrap();
        assert_eq!((r.image.as_str(), r.version.as_str()), ("hello:v2", "v2"));
        let r = existing("registry:5000/team/app", Some("v3")).unwrap();
        assert_eq!(r.image, "registry:5000/team/app:v3");
        let e = existing("hello", None).unwrap_err();
        assert!(e.hint.unwrap().contains("--version"));
    }

    #[tokio::test]
    async fn contexts_outside_git_are_versioned_by_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        assert_eq!(git_version(dir.path()).await, None);
        let a = content_version(dir.path(), "Dockerfile").unwrap();
        std::fs::write(dir.path().join("x"), "changed").unwrap();
        let b = content_version(dir.path(), "Dockerfile").unwrap();
        assert_eq!(a.len(), 12);
        assert_ne!(a, b);
    }
}
