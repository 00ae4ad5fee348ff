//! Which release a rollback returns to, from what the hosts retain.

use std::collections::HashMap;

use super::targets::Release;
use crate::error::{Error, ErrorKind, Result};
use crate::fleet::Fleet;
use crate::release::AppContainer;

/// The release to roll back to: `wanted`, or the newest retained version
/// that no host runs now; with the digest of each host's retained
/// container, so it is started as it is, and where its image can be pulled
/// again (on the registry `server` configured now, when one is).
pub(super) fn choose_rollback(
    observed: &HashMap<String, Vec<AppContainer>>,
    wanted: Option<&str>,
    server: Option<&str>,
) -> Result<Release> {
    let all: Vec<(&String, &AppContainer)> = observed
        .iter()
        .flat_map(|(h, cs)| cs.iter().map(move |c| (h, c)))
        .collect();
    let running: Vec<&str> = all
        .iter()
        .filter(|(_, c)| c.state.is_active())
        .map(|(_, c)| c.version.as_str())
        .collect();
    let mut candidates: Vec<&AppContainer> = all
        .iter()
        .map(|(_, c)| *c)
        .filter(|c| match wanted {
            Some(v) => c.version == v,
            None => !running.contains(&c.version.as_str()),
        })
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.created));
    let Some(chosen) = candidates.first() else {
        let mut versions: Vec<&str> = all.iter().map(|(_, c)| c.version.as_str()).collect();
        versions.sort();
        versions.dedup();
        return Err(Error::new(
            ErrorKind::NotFound,
            "choose the release to roll back to",
            match wanted {
                Some(v) => format!("no host retains release {v}"),
                None => "no host retains a release other than the current one".to_string(),
            },
        )
        .hint(format!(
            "`ballast releases` lists what the hosts keep (seen: {})",
            versions.join(", ")
        )));
    };
    let same: Vec<&(&String, &AppContainer)> = all
        .iter()
        .filter(|(_, c)| c.version == chosen.version && c.image_id == chosen.image_id)
        .collect();
    let retained = same
        .iter()
        .map(|(h, c)| ((c.role.clone(), h.to_string()), c.config_digest.clone()))
        .collect();
    // On the configured registry first, the chosen container's own record
    // before the others', in one order every run.
    let mut sources: Vec<(bool, bool, &str)> = same
        .iter()
        .map(|(_, c)| {
            let s = c.image_source.as_str();
            let elsewhere = server.is_none_or(|server| !s.starts_with(&format!("{server}/")));
            (elsewhere, c.id != chosen.id, s)
        })
        .filter(|(_, _, s)| !s.is_empty())
        .collect();
    sources.sort_unstable();
    let source = sources.first().map(|(_, _, s)| s.to_string());
    Ok(Release {
        version: chosen.version.clone(),
        image_id: chosen.image_id.clone(),
        image_healthcheck: false,
        retained,
        source,
    })
}

/// Fills in whether the release's image has a HEALTHCHECK, asking a host
/// that holds it.
pub(super) async fn with_healthcheck(fleet: &Fleet, mut release: Release) -> Release {
    for host in fleet.hosts.values() {
        let engine = host.engine();
        let Ok(Some(reference)) = engine.resolve_image(&release.image_id).await else {
            continue;
        };
        if let Ok(image) = engine
            .call(
                "inspect the image",
                engine.docker().inspect_image(&reference),
            )
            .await
        {
            release.image_healthcheck = crate::image::has_healthcheck(&image);
            break;
        }
    }
    release
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::ContainerState;
    use crate::testing::app_container;

    fn on(hosts: &[(&str, Vec<AppContainer>)]) -> HashMap<String, Vec<AppContainer>> {
        hosts
            .iter()
            .map(|(h, cs)| (h.to_string(), cs.clone()))
            .collect()
    }

    #[test]
    fn the_release_keeps_where_its_image_was_pulled_from() {
        let pulled = AppContainer {
            image_source: "r:5000/shop@sha256:1".into(),
            created: 1,
            ..app_container("web", "v1", ContainerState::Exited)
        };
        let observed = on(&[
            (
                "h1",
                vec![app_container("web", "v2", ContainerState::Running), pulled],
            ),
            // h2 no longer holds v1: it is pulled there again.
            (
                "h2",
                vec![app_container("web", "v2", ContainerState::Running)],
            ),
        ]);
        let release = choose_rollback(&observed, None, Some("r:5000")).unwrap();
        assert_eq!(release.version, "v1");
        assert_eq!(release.source.as_deref(), Some("r:5000/shop@sha256:1"));
        assert_eq!(release.retained.len(), 1);
        // Its own record is on a registry no longer configured; another
        // container of the same release has one on the configured one.
        let moved = on(&[
            (
                "h1",
                vec![
                    app_container("web", "v2", ContainerState::Running),
                    AppContainer {
                        image_source: "old:5000/shop@sha256:1".into(),
                        created: 2,
                        ..app_container("web", "v1", ContainerState::Exited)
                    },
                ],
            ),
            (
                "h2",
                vec![AppContainer {
                    id: "other".into(),
                    image_source: "r:5000/shop@sha256:1".into(),
                    created: 1,
                    ..app_container("web", "v1", ContainerState::Exited)
                }],
            ),
        ]);
        let release = choose_rollback(&moved, None, Some("r:5000")).unwrap();
        assert_eq!(release.source.as_deref(), Some("r:5000/shop@sha256:1"));
        let release = choose_rollback(&moved, None, Some("old:5000")).unwrap();
        assert_eq!(release.source.as_deref(), Some("old:5000/shop@sha256:1"));
        // A release sent directly records nothing.
        let direct = on(&[(
            "h1",
            vec![
                app_container("web", "v2", ContainerState::Running),
                app_container("web", "v1", ContainerState::Exited),
            ],
        )]);
        assert_eq!(choose_rollback(&direct, None, None).unwrap().source, None);
    }
}
