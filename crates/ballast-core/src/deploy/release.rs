//! The release a deploy goes to, from this machine's image: its ID (the
//! config digest, on either image store) and, through a registry, where
//! its containers already record it can be pulled again.

use std::collections::HashMap;

use super::targets::Release;
use super::Context;
use crate::delivery::{self, survey, Prepared, Store};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::release::AppContainer;

/// Where containers of image `image_id` record it was pulled from on the
/// registry `server`, if any does (a deploy through it need not push it
/// again for that).
pub(super) fn recorded_source(
    observed: &HashMap<String, Vec<AppContainer>>,
    image_id: &str,
    server: &str,
) -> Option<String> {
    let prefix = format!("{server}/");
    let mut sources: Vec<&str> = observed
        .values()
        .flatten()
        .filter(|c| c.image_id == image_id && c.image_source.starts_with(&prefix))
        .map(|c| c.image_source.as_str())
        .collect();
    sources.sort_unstable();
    sources.first().map(|s| s.to_string())
}

/// A deploy's release and the local image it comes from.
pub(super) struct Local {
    pub release: Release,
    /// The image's ID on this machine's engine (the config digest, or on
    /// the containerd store the manifest's): it must not move before the
    /// image leaves.
    pub id: String,
    /// The image saved to read its config digest, kept for delivery.
    pub saved: Option<Box<Prepared>>,
}

/// The release of a local image: its ID (the config digest) and whether
/// it has a HEALTHCHECK. An engine on the containerd store names images
/// by manifest and reports no config digest: the image is saved to read
/// it, and the save is kept for delivery.
pub(super) async fn local_release(ctx: &Context<'_>, image: &str, version: &str) -> Result<Local> {
    let local = Engine::local().await?;
    let inspected = local
        .call("inspect the image", local.docker().inspect_image(image))
        .await;
    let (mut image_id, image_healthcheck) = match inspected {
        Ok(i) => (
            i.id.clone().unwrap_or_default(),
            crate::image::has_healthcheck(&i),
        ),
        // `plan` before a build: every host will need the new image.
        Err(e) if e.kind == ErrorKind::NotFound && ctx.dry_run => {
            ("(not built yet)".to_string(), false)
        }
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(Error::input("find the image", format_args!("{image} is not on this machine"))
                .hint("build it first (ballast builds it when the config has `build`), or give an image that exists locally"))
        }
        Err(e) => return Err(e),
    };
    let id = image_id.clone();
    let mut saved = None;
    if image_id.starts_with("sha256:") && survey::store(&local).await? == Store::Containerd {
        let prepared = delivery::prepare(&local, image).await?;
        image_id = prepared.image_id().to_string();
        saved = Some(Box::new(prepared));
    }
    let release = Release {
        version: version.to_string(),
        image_id,
        image_healthcheck,
        retained: Default::default(),
        source: None,
    };
    Ok(Local { release, id, saved })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ContainerState;
    use crate::testing::app_container;

    #[test]
    fn a_source_is_reused_only_for_the_same_image_on_the_same_registry() {
        let with = |version: &str, source: &str| AppContainer {
            image_source: source.into(),
            ..app_container("web", version, ContainerState::Running)
        };
        let observed = HashMap::from([
            (
                "h1".to_string(),
                vec![
                    with("v2", "r:5000/shop@sha256:2"),
                    with("v1", "r:5000/shop@sha256:1"),
                ],
            ),
            ("h2".to_string(), vec![with("v2", "old:5000/shop@sha256:9")]),
            ("h3".to_string(), vec![with("v2", "")]),
        ]);
        assert_eq!(
            recorded_source(&observed, "sha256:v2", "r:5000").as_deref(),
            Some("r:5000/shop@sha256:2")
        );
        assert_eq!(
            recorded_source(&observed, "sha256:v2", "old:5000").as_deref(),
            Some("old:5000/shop@sha256:9")
        );
        assert_eq!(recorded_source(&observed, "sha256:v3", "r:5000"), None);
        // `r:5000/…` is not on the server `r:50`.
        assert_eq!(recorded_source(&observed, "sha256:v2", "r:50"), None);
    }
}
