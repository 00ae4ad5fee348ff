//! The commented starter `ballast.yml` that `ballast init` writes. A test
//! proves it loads as is (given its one secret), so it cannot drift from the
//! schema.

/// A commented `ballast.yml` to start from.
pub fn starter() -> &'static str {
    STARTER
}

const STARTER: &str = r#"# ballast.yml: what to deploy, and where.
# Every key is described in docs/config.md; `ballast config` prints this file
# as ballast reads it, defaults filled in.

# Name of the service: containers, the lock, the audit log and the state
# directory on each host (/var/lib/ballast/<service>) are named after it.
service: app

# The image to deploy. With `build` below, this is the repository name and
# each version becomes its tag; without it, an existing image reference such
# as `ghcr.io/acme/app:1.4`.
image: app

# Build the image on this machine (remove to deploy `image` as is).
build:
  context: .
  dockerfile: Dockerfile

# How to reach the hosts; anything left out comes from ~/.ssh/config.
ssh:
  user: root

# Images travel over SSH, and only the layers a host lacks are sent.
delivery: direct

# Roles: named sets of identical containers on the hosts you list.
roles:
  web:
    hosts:
      - 192.0.2.11
      - 192.0.2.12
    # The port the app listens on inside the container. New containers are
    # checked with GET /up on it before they take over.
    port: 8080
    healthcheck:
      path: /up
    # Served by ballast-proxy on port 80 of each host: a new version takes
    # traffic only once healthy, and the old one drains before it stops, so
    # no request fails during a deploy. `hosts` routes by name; add
    # `tls: { acme: { email: ..., directory: ... } }` for HTTPS.
    proxy:
      hosts: [app.example.com]
      drain_timeout: 30s
    env:
      clear:
        RUST_LOG: info
      # Names only. Values come from your environment or from
      # .ballast/secrets beside this file (one NAME=value per line; keep it
      # out of version control).
      secret:
        - DATABASE_PASSWORD
  worker:
    hosts:
      - 192.0.2.13
    cmd: [app, worker]

# How deploys roll: one host at a time (or a share: "25%"), each given 30s
# to become healthy; each host keeps 5 releases for `ballast rollback`. When
# a host fails, the deploy stops there; `on_failure: revert` also puts the
# hosts it already switched back on their previous release.
deploy:
  batch: 1
  health_timeout: 30s
  retain: 5
  on_failure: stop

# Container logs rotate: at most 5 files of 10 MB per container.
logging:
  driver: local
  options:
    max-size: 10m
    max-file: "5"
"#;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::super::{parse, SecretSource};
    use super::*;

    #[test]
    fn the_starter_loads_without_error() {
        let secrets = BTreeMap::from([("DATABASE_PASSWORD".to_string(), "x".to_string())]);
        let loaded = parse(
            Path::new("ballast.yml"),
            starter(),
            SecretSource::Map(secrets),
        )
        .unwrap_or_else(|e| panic!("starter does not load: {e}"));
        assert_eq!(loaded.config.role_names(), ["web", "worker"]);
        // A newcomer's first deploy is zero-downtime.
        assert!(loaded.config.roles["web"].proxy.is_some());
        assert_eq!(
            loaded.secrets.names().collect::<Vec<_>>(),
            ["DATABASE_PASSWORD"]
        );
    }

    #[test]
    fn the_starter_without_its_secret_says_which() {
        let e = parse(
            Path::new("ballast.yml"),
            starter(),
            SecretSource::Map(BTreeMap::new()),
        )
        .unwrap_err();
        assert!(e.message().contains("`DATABASE_PASSWORD` is not defined"));
    }
}

/// Makes sure `.dockerignore` in `dir` leaves out `.ballast/` (secrets and
/// hooks), writing or extending it; returns whether it changed. ballast
/// leaves `.ballast/` out of every build context anyway: this keeps plain
/// `docker build` safe too.
pub fn ensure_dockerignore(dir: &std::path::Path) -> std::io::Result<bool> {
    let path = dir.join(".dockerignore");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let listed = text.lines().map(str::trim).any(|l| {
        matches!(
            l.trim_start_matches('/'),
            ".ballast" | ".ballast/" | ".ballast/*" | ".ballast/**"
        )
    });
    if listed {
        return Ok(false);
    }
    let mut out = text;
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# secrets and hooks of ballast: never in an image\n.ballast/\n");
    std::fs::write(&path, out)?;
    Ok(true)
}

#[cfg(test)]
mod dockerignore_tests {
    use super::ensure_dockerignore;

    #[test]
    fn the_secrets_directory_is_ignored_once() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_dockerignore(dir.path()).unwrap());
        assert!(!ensure_dockerignore(dir.path()).unwrap());
        let text = std::fs::read_to_string(dir.path().join(".dockerignore")).unwrap();
        assert_eq!(text.matches(".ballast/").count(), 1);
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(".dockerignore"), "target").unwrap();
        assert!(ensure_dockerignore(other.path()).unwrap());
        let text = std::fs::read_to_string(other.path().join(".dockerignore")).unwrap();
        assert!(text.starts_with("target\n#"), "{text}");
    }
}
