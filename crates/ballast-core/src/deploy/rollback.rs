//! Which release a rollback returns to, from what the hosts retain.

use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::release::AppContainer;

/// The release to roll back to: `wanted`, or the newest retained version
/// that no host runs now. Returns version, image ID and each role's digest.
pub(super) fn choose_rollback(
    observed: &HashMap<String, Vec<AppContainer>>,
    wanted: Option<&str>,
) -> Result<(String, String, HashMap<String, String>)> {
    let all: Vec<&AppContainer> = observed.values().flatten().collect();
    let running: Vec<&str> = all
        .iter()
        .filter(|c| c.running)
        .map(|c| c.version.as_str())
        .collect();
    let mut candidates: Vec<&&AppContainer> = all
        .iter()
        .filter(|c| match wanted {
            Some(v) => c.version == v,
            None => !running.contains(&c.version.as_str()),
        })
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.created));
    let Some(chosen) = candidates.first() else {
        let mut versions: Vec<&str> = all.iter().map(|c| c.version.as_str()).collect();
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
    let digests = all
        .iter()
        .filter(|c| c.version == chosen.version)
        .map(|c| (c.role.clone(), c.config_digest.clone()))
        .collect();
    Ok((chosen.version.clone(), chosen.image_id.clone(), digests))
}
