//! Conditions about the service's own config, judged per role on each of
//! its hosts: data without a host directory, unpinned images, secrets in
//! clear, published ports without a health check.

use regex::Regex;

use super::knowledge::{NOT_SECRET_WORDS, SECRET_SUFFIXES, SECRET_WORDS, STATEFUL_IMAGES};
use super::RoleView;
use crate::config::HostEntry;

/// An image reference cut into what rules need.
struct Reference<'a> {
    /// Last path component without tag: `postgres` of `docker.io/library/postgres:16`.
    name: &'a str,
    tag: Option<&'a str>,
    digest: bool,
}

fn reference(image: &str) -> Reference<'_> {
    let (rest, digest) = match image.split_once('@') {
        Some((r, _)) => (r, true),
        None => (image, false),
    };
    let last = rest.rsplit('/').next().unwrap_or(rest);
    let (name, tag) = match last.split_once(':') {
        Some((n, t)) => (n, Some(t)),
        None => (last, None),
    };
    Reference { name, tag, digest }
}

/// Where the role's container keeps data: the image's declared volumes
/// and, for images known to keep data, their data directory.
fn data_paths(view: &RoleView) -> Vec<String> {
    let mut paths: Vec<String> = view.image.map(|i| i.volumes.clone()).unwrap_or_default();
    let name = reference(&view.config.image).name;
    if let Some((_, path)) = STATEFUL_IMAGES.iter().find(|(n, _)| *n == name) {
        paths.push(path.to_string());
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Whether a mount at `mounted` (inside the container) holds `path`.
fn covers(mounted: &str, path: &str) -> bool {
    let m = mounted.trim_end_matches('/');
    let p = path.trim_end_matches('/');
    m.is_empty() || p == m || p.strip_prefix(m).is_some_and(|r| r.starts_with('/'))
}

pub fn stateful_without_volume(view: &RoleView) -> Option<String> {
    let mounted: Vec<&str> = view
        .spec
        .volumes
        .iter()
        .filter_map(|v| v.split(':').nth(1))
        .collect();
    let bare: Vec<String> = data_paths(view)
        .into_iter()
        .filter(|p| !mounted.iter().any(|m| covers(m, p)))
        .collect();
    (!bare.is_empty()).then(|| {
        format!(
            "role `{}` runs `{}`, which keeps data in {}, and mounts no host directory there",
            view.name,
            view.config.image,
            bare.join(", ")
        )
    })
}

pub fn image_unpinned(view: &RoleView) -> Option<String> {
    if view.config.build.is_some() {
        // A built image is tagged with the release's version.
        return None;
    }
    let image = &view.config.image;
    let r = reference(image);
    if r.digest {
        return None;
    }
    match r.tag {
        None => Some(format!("image `{image}` has no tag, so it means `latest`")),
        Some("latest") => Some(format!("image `{image}` uses the `latest` tag")),
        Some(_) => None,
    }
}

/// Whether a variable's name says it holds a secret.
pub fn secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let parts: Vec<&str> = upper
        .split(['_', '-', '.'])
        .filter(|p| !p.is_empty())
        .collect();
    if parts.iter().any(|p| NOT_SECRET_WORDS.contains(p)) {
        return false;
    }
    parts.iter().any(|p| SECRET_WORDS.contains(p))
        || parts.last().is_some_and(|p| SECRET_SUFFIXES.contains(p))
}

/// Whether a value embeds a password, as URLs do: `scheme://user:pass@host`.
pub fn secret_value(value: &str) -> bool {
    static URL: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        Regex::new(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:[^/@\s]+@").expect("static regex")
    })
    .is_match(value)
}

pub fn secret_in_clear(view: &RoleView) -> Option<String> {
    let mut clear: Vec<(&str, &str, &str)> = view
        .spec
        .env
        .clear
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str(), "env.clear"))
        .collect();
    for entry in &view.spec.hosts {
        if let HostEntry::WithEnv(h) = entry {
            if h.host == view.host {
                clear.extend(
                    h.env
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str(), "hosts[].env")),
                );
            }
        }
    }
    let mut found: Vec<String> = clear
        .into_iter()
        .filter_map(|(k, v, place)| {
            if secret_name(k) {
                Some(format!("`{k}` ({place})"))
            } else if secret_value(v) {
                Some(format!("`{k}` ({place}, its value embeds a password)"))
            } else {
                None
            }
        })
        .collect();
    found.dedup();
    (!found.is_empty()).then(|| format!("role `{}` sets {} in clear", view.name, found.join(", ")))
}

pub fn published_without_healthcheck(view: &RoleView) -> Option<String> {
    let role = view.spec;
    if role.publish.is_empty() || role.port.is_some() || role.healthcheck.is_some() {
        // With `port`, ballast checks `GET /up` on it by default.
        return None;
    }
    if view.image.is_some_and(|i| i.healthcheck) {
        return None;
    }
    Some(format!(
        "role `{}` publishes {} but has no health check: a container counts as healthy when it is still running after 5 s",
        view.name,
        role.publish.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = reference("docker.io/library/postgres:16.4");
        assert_eq!((r.name, r.tag, r.digest), ("postgres", Some("16.4"), false));
        let r = reference("localhost:5000/team/redis");
        assert_eq!((r.name, r.tag), ("redis", None));
        let r = reference("mysql@sha256:abc");
        assert_eq!((r.name, r.tag, r.digest), ("mysql", None, true));
    }

    #[test]
    fn secret_names() {
        for yes in [
            "DB_PASSWORD",
            "SECRET_KEY_BASE",
            "API_KEY",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "SMTP_PASS",
            "db-password",
        ] {
            assert!(secret_name(yes), "{yes}");
        }
        for no in [
            "RUST_LOG",
            "CACHE_KEY_PREFIX",
            "DB_PASSWORD_FILE",
            "PUBLIC_KEY",
            "TOKEN_TTL",
            "BYPASS_CACHE",
            "KEYBOARD",
            "DATABASE_URL",
        ] {
            assert!(!secret_name(no), "{no}");
        }
    }

    #[test]
    fn secret_values() {
        assert!(secret_value("postgres://app:hunter2@db:5432/app"));
        assert!(!secret_value("postgres://app@db:5432/app"));
        assert!(!secret_value("http://example.com:8080/x"));
    }

    #[test]
    fn mounts_cover_paths() {
        assert!(covers(
            "/var/lib/postgresql/data",
            "/var/lib/postgresql/data"
        ));
        assert!(covers("/var/lib/postgresql", "/var/lib/postgresql/data"));
        assert!(!covers("/var/lib/postgres", "/var/lib/postgresql/data"));
        assert!(!covers("/data/db2", "/data/db"));
    }
}
