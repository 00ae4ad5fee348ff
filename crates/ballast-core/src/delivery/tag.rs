//! Naming an image on a host once it is there: the reference it was
//! prepared by, and on the containerd image store also the config tag
//! releases are named by; then a check that each name is the image sent.

use bollard::query_parameters::{RemoveImageOptionsBuilder, TagImageOptionsBuilder};

use super::{Named, Prepared, Store};
use crate::engine::{config_tag, Engine};
use crate::error::{Error, ErrorKind, Result};

impl Prepared {
    /// Tags the image on `to` as the prepared reference (when that is a
    /// name), then checks what the host now calls by it.
    pub(super) async fn tag(&self, to: &Engine, store: Store, named: Named) -> Result<()> {
        if store == Store::Containerd {
            return self.tag_containerd(to, named).await;
        }
        let id = self.image_id();
        let step = format!("verify image {} on the host", self.reference);
        let name = match tag_parts(&self.reference, id) {
            Some((repo, tag)) => {
                let options = TagImageOptionsBuilder::default()
                    .repo(&repo)
                    .tag(&tag)
                    .build();
                to.call(
                    &format!("tag image {id} as {repo}:{tag}"),
                    to.docker().tag_image(id, Some(options)),
                )
                .await?;
                format!("{repo}:{tag}")
            }
            None => id.to_string(),
        };
        let found = to.image_id(&name).await?;
        if found.as_deref() == Some(id) {
            Ok(())
        } else {
            let cause = match found {
                None => format!("the host has no image {name} after loading it"),
                Some(other) => format!("{name} is {other} on the host, not {id}"),
            };
            Err(Error::failed(step, cause)
                .on(to.host())
                .hint("deliver again; if it fails the same way, load the image by hand (`docker load`) and report it"))
        }
    }

    /// On the containerd store, which names images by manifest: gives the
    /// image both its reference's tag and the [`config_tag`] that names it
    /// by config digest, as releases do; then checks both name one image.
    /// Which of the two is right when they differ is `named`'s: a load of
    /// the save tarball just applied the reference's tag; a kept image, or
    /// one loaded from the OCI layout, is known by its config tag (the
    /// reference may have moved to another build since).
    async fn tag_containerd(&self, to: &Engine, named: Named) -> Result<()> {
        let id = self.image_id();
        let step = format!("verify image {} on the host", self.reference);
        let refuse = |cause: String| {
            Error::failed(&step, cause)
                .on(to.host())
                .hint("deliver again; if it fails the same way, load the image by hand (`docker load`) and report it")
        };
        let config =
            config_tag(id).ok_or_else(|| refuse(format!("{id} is not an image config digest")))?;
        let Some((repo, tag)) = tag_parts(&self.reference, id) else {
            return Err(Error::input(&step, format_args!("{} names an image by ID, which the containerd image store on this host cannot load under a name", self.reference))
                .on(to.host())
                .hint("deploy an image by name (`image: app` and a version), as ballast builds them"));
        };
        let name = format!("{repo}:{tag}");
        let by_name = to.image_id(&name).await?;
        let by_config = to.image_id(&config).await?;
        let to_config = || {
            let (r, t) = config.split_once(':').expect("a tag");
            (name.clone(), r.to_string(), t.to_string())
        };
        let (from, repo, tag) = match (&by_name, &by_config) {
            (Some(a), Some(b)) if a == b => return Ok(()),
            (_, Some(_)) if named == Named::ByConfig => (config.clone(), repo, tag),
            // Known by its config tag, which it lacks: the name may be
            // another build's, and must not become this release's.
            (_, None) if named == Named::ByConfig => {
                return Err(refuse(format!("the host has no {config} after loading it")))
            }
            (Some(_), _) => to_config(),
            (None, Some(_)) => (config.clone(), repo, tag),
            (None, None) => {
                return Err(refuse(format!(
                    "the host has neither {name} nor {config} after loading it"
                )))
            }
        };
        let options = TagImageOptionsBuilder::default()
            .repo(&repo)
            .tag(&tag)
            .build();
        to.call(
            &format!("tag image {from} as {repo}:{tag}"),
            to.docker().tag_image(&from, Some(options)),
        )
        .await?;
        let (a, b) = (to.image_id(&name).await?, to.image_id(&config).await?);
        match (a, b) {
            (Some(a), Some(b)) if a == b => Ok(()),
            _ => Err(refuse(format!("{name} and {config} do not name one image"))),
        }
    }
}

impl Prepared {
    /// Gives the image loaded as `unproven` (and proven since) the
    /// [`config_tag`] releases find it by.
    pub(super) async fn promote(&self, to: &Engine, unproven: &str) -> Result<()> {
        let id = self.image_id();
        let config = config_tag(id).ok_or_else(|| {
            Error::failed(
                format!("name image {} on the host", self.reference),
                format_args!("{id} is not an image config digest"),
            )
        })?;
        let (repo, tag) = config.split_once(':').expect("a tag");
        let options = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        to.call(
            &format!("tag image {unproven} as {config}"),
            to.docker().tag_image(unproven, Some(options)),
        )
        .await
    }
}

/// Takes the name `tag` off whatever it names on `to`, leaving the image
/// to its other names (best effort: a name left behind is only litter).
pub(super) async fn untag(to: &Engine, tag: &str) {
    let options = RemoveImageOptionsBuilder::default().noprune(true).build();
    let removed = to
        .call(
            &format!("remove the name {tag}"),
            to.docker().remove_image(tag, Some(options), None),
        )
        .await;
    match removed {
        Ok(_) => {}
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(host = to.host(), error = %e, "a delivery's temporary name stays"),
    }
}

/// Splits a reference into repository and tag, if it names an image by name
/// (`app`, `app:2`, `registry:5000/app:2`): IDs and digests are no tags.
pub fn tag_parts(reference: &str, image_id: &str) -> Option<(String, String)> {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    let id_like = reference.starts_with("sha256:")
        || (reference.len() >= 12
            && hex.starts_with(reference)
            && reference.bytes().all(|b| b.is_ascii_hexdigit()));
    if reference.is_empty() || reference.contains('@') || id_like {
        return None;
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.rsplit_once(':') {
        Some((_, tag)) => {
            let repo = &reference[..reference.len() - tag.len() - 1];
            Some((repo.to_string(), tag.to_string()))
        }
        None => Some((reference.to_string(), "latest".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_tag() {
        let id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let parts = |r: &str| tag_parts(r, id);
        let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(parts("hello:dlv-1"), pair("hello", "dlv-1"));
        assert_eq!(parts("hello"), pair("hello", "latest"));
        assert_eq!(
            parts("registry.local:5000/shop/web:1.2"),
            pair("registry.local:5000/shop/web", "1.2")
        );
        assert_eq!(
            parts("registry.local:5000/shop"),
            pair("registry.local:5000/shop", "latest")
        );
        assert_eq!(parts("shop@sha256:abcd"), None);
        assert_eq!(parts(id), None);
        assert_eq!(parts("0123456789abcdef"), None);
        assert_eq!(parts(""), None);
    }
}
