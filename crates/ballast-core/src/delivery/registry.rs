//! Delivery through a registry (`delivery: { method: registry }`): the
//! image is pushed once from this machine's engine and pulled on each
//! host by its manifest digest, so every host runs exactly what was
//! pushed. The password travels only in the Docker API's auth header
//! (never a process argument, a log line or `docker inspect`); a push the
//! registry refuses stops the deploy before any host is touched.

use std::fmt;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;

use super::{survey, tag_parts, DeliveryReport, Store};
use crate::config::Registry;
use crate::engine::{config_tag, Engine};
use crate::error::{Error, ErrorKind, Result};

/// How long a push or a pull may take.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Who logs in where. Its `Debug` never shows the password.
#[derive(Clone)]
pub struct Login {
    pub server: String,
    pub username: String,
    password: String,
    /// The secret the password came from, for messages.
    secret: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Login {
    pub fn new(registry: &Registry, password: &str) -> Login {
        Login {
            server: registry.server.clone(),
            username: registry.username.clone(),
            password: password.to_string(),
            secret: registry.password_secret.clone(),
        }
    }

    fn credentials(&self) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(self.server.clone()),
            ..Default::default()
        }
    }
}

/// The image as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `SERVER/REPOSITORY@sha256:...`: what hosts pull.
    pub by_digest: String,
    /// The local reference it was pushed from (`app:v2`), the name hosts
    /// give it after the pull.
    pub reference: String,
    /// Its config digest: the image ID releases are named by.
    pub image_id: String,
}

impl Pushed {
    /// The image a release's containers record as pulled from
    /// (`SERVER/REPOSITORY@sha256:…`), to pull again on a host that lost
    /// it: named `SERVER/REPOSITORY:VERSION` there. Refused unless it is a
    /// digest reference on `login`'s server: the password goes to no
    /// other.
    pub fn recorded(source: &str, version: &str, image_id: &str, login: &Login) -> Result<Pushed> {
        let step = "read where the release's image was pulled from";
        let hint = "deploy the release again (its image is pushed and pulled anew)";
        let Some((remote, digest)) = source.split_once('@') else {
            return Err(Error::input(
                step,
                format_args!("{source:?} is not an image digest reference"),
            )
            .hint(hint));
        };
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::input(
                step,
                format_args!("{source:?} is not an image digest reference"),
            )
            .hint(hint));
        }
        let server = remote.split('/').next().unwrap_or_default();
        if server != login.server || !remote.contains('/') {
            return Err(Error::input(
                step,
                format_args!(
                    "the release was pulled from {source}, not from the configured registry {}",
                    login.server
                ),
            )
            .hint(hint));
        }
        Ok(Pushed {
            by_digest: source.to_string(),
            reference: format!("{remote}:{version}"),
            image_id: image_id.to_string(),
        })
    }
}

/// The image a deploy planned with, as this machine's engine has it.
#[derive(Debug, Clone, Copy)]
pub struct Planned<'a> {
    /// The name it was asked for by (`app:v2`).
    pub reference: &'a str,
    /// Its ID here when the deploy planned: the config digest on the
    /// classic store, the manifest's on the containerd store.
    pub local_id: &'a str,
    /// Its config digest: the release's ID.
    pub image_id: &'a str,
    pub version: &'a str,
}

/// Pushes the `planned` image of `local` as `SERVER/REPOSITORY:VERSION`.
/// Tagged by the release's version, not the reference's tag (`app:latest`
/// deployed as v5): a registry's garbage collection deletes untagged
/// manifests, and a rollback pulls an older release by its digest.
pub async fn push(
    local: &Engine,
    planned: Planned<'_>,
    repository: &str,
    login: &Login,
) -> Result<Pushed> {
    let Planned {
        reference,
        local_id,
        image_id,
        version,
    } = planned;
    let step = format!("push {reference} to {}", login.server);
    let now = local.image_id(reference).await?.ok_or_else(|| {
        Error::failed(&step, format_args!("this machine has no image {reference}"))
    })?;
    if now != local_id {
        return Err(Error::failed(
            &step,
            format_args!(
                "{reference} is {now} here now, not {local_id} as when the deploy planned"
            ),
        )
        .hint("another build moved the tag meanwhile: deploy again"));
    }
    let tag = version.to_string();
    let remote = format!("{}/{repository}", login.server);
    let options = TagImageOptionsBuilder::default()
        .repo(&remote)
        .tag(&tag)
        .build();
    local
        .call(&step, local.docker().tag_image(local_id, Some(options)))
        .await?;
    let options = PushImageOptionsBuilder::default().tag(&tag).build();
    let mut stream = local
        .docker()
        .push_image(&remote, Some(options), Some(login.credentials()));
    let mut digest = None;
    let work = async {
        while let Some(item) = stream.next().await {
            let item = item.map_err(|e| refused(&step, login, &e.to_string(), local.host()))?;
            if let Some(detail) = item.error_detail.and_then(|d| d.message) {
                return Err(refused(&step, login, &detail, local.host()));
            }
            if let Some(d) = item.status.as_deref().and_then(digest_in) {
                digest = Some(d);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(TRANSFER_DEADLINE, work).await {
        Err(_) => return Err(Error::timeout(&step, TRANSFER_DEADLINE)),
        Ok(r) => r?,
    }
    let digest = match digest {
        Some(d) => d,
        None => repo_digest(local, &format!("{remote}:{tag}"), &remote)
            .await?
            .ok_or_else(|| {
                Error::failed(&step, "the registry gave no digest for the pushed image")
            })?,
    };
    Ok(Pushed {
        by_digest: format!("{remote}@{digest}"),
        reference: reference.to_string(),
        image_id: image_id.to_string(),
    })
}

/// Pulls `pushed` by digest on `to`, names it as its local reference (and,
/// on the containerd store, by config digest), and checks it is the
/// image pushed.
pub async fn pull(to: &Engine, pushed: &Pushed, login: &Login) -> Result<DeliveryReport> {
    let step = format!("pull {} from {}", pushed.reference, login.server);
    let mut report = DeliveryReport {
        host: to.host().to_string(),
        image_id: pushed.image_id.clone(),
        layers_total: 0,
        layers_sent: 0,
        bytes_sent: 0,
        full: false,
        skipped: false,
    };
    if to.resolve_image(&pushed.image_id).await?.is_none() {
        let options = CreateImageOptionsBuilder::default()
            .from_image(&pushed.by_digest)
            .build();
        let mut stream = to
            .docker()
            .create_image(Some(options), None, Some(login.credentials()));
        let work = async {
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| refused(&step, login, &e.to_string(), to.host()))?;
                if let Some(detail) = item.error_detail.and_then(|d| d.message) {
                    return Err(refused(&step, login, &detail, to.host()));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(TRANSFER_DEADLINE, work).await {
            Err(_) => return Err(Error::timeout(&step, TRANSFER_DEADLINE).on(to.host())),
            Ok(r) => r?,
        }
    } else {
        report.skipped = true;
    }
    name(to, pushed, &step).await?;
    Ok(report)
}

/// Gives the pulled image its local reference (and config tag on the
/// containerd store), then checks both name the pushed image.
async fn name(to: &Engine, pushed: &Pushed, step: &str) -> Result<()> {
    let store = survey::store(to).await?;
    let source = match store {
        Store::Classic => pushed.image_id.clone(),
        Store::Containerd => match to.resolve_image(&pushed.image_id).await? {
            Some(tag) => tag,
            None => pushed.by_digest.clone(),
        },
    };
    let mut names = Vec::new();
    if let Some((repo, tag)) = tag_parts(&pushed.reference, &pushed.image_id) {
        names.push((repo, tag));
    }
    if store == Store::Containerd {
        if let Some(config) = config_tag(&pushed.image_id) {
            let (r, t) = config.split_once(':').expect("a tag");
            names.push((r.to_string(), t.to_string()));
        }
    }
    for (repo, tag) in &names {
        let options = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        to.call(step, to.docker().tag_image(&source, Some(options)))
            .await?;
    }
    let wanted = Some(pushed.image_id.clone());
    let resolved = to.resolve_image(&pushed.image_id).await?;
    if resolved.is_none() {
        return Err(Error::failed(
            step,
            format_args!("the host has no image {} after the pull", pushed.image_id),
        )
        .on(to.host()));
    }
    if store == Store::Classic && to.image_id(&pushed.reference).await? != wanted {
        return Err(Error::failed(
            step,
            format_args!(
                "{} is not {} on the host after the pull",
                pushed.reference, pushed.image_id
            ),
        )
        .on(to.host()));
    }
    Ok(())
}

/// The digest in a push's last status line: "v2: digest: sha256:… size: 528".
fn digest_in(status: &str) -> Option<String> {
    let rest = status.split("digest: ").nth(1)?;
    let digest = rest.split_whitespace().next()?;
    (digest.starts_with("sha256:") && digest.len() == 71).then(|| digest.to_string())
}

/// The repository digest `reference` has for `remote`, after a push.
async fn repo_digest(local: &Engine, reference: &str, remote: &str) -> Result<Option<String>> {
    let image = local
        .call(
            "inspect the pushed image",
            local.docker().inspect_image(reference),
        )
        .await?;
    Ok(image.repo_digests.unwrap_or_default().iter().find_map(|d| {
        d.strip_prefix(remote)
            .and_then(|r| r.strip_prefix('@'))
            .map(str::to_string)
    }))
}

/// A registry's refusal in the operator's words: bad credentials, an
/// untrusted certificate, or what the engine said.
fn refused(step: &str, login: &Login, said: &str, host: &str) -> Error {
    let lower = said.to_ascii_lowercase();
    let e = if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
        || lower.contains("denied")
    {
        Error::new(
            ErrorKind::Input,
            step,
            format_args!("the registry {} refused user {}'s credentials", login.server, login.username),
        )
        .hint(format!(
            "check the user and the password in secret {} (nothing was changed on the hosts if this was the push)",
            login.secret
        ))
    } else if lower.contains("x509") || lower.contains("certificate") {
        Error::failed(
            step,
            format_args!("the engine does not trust the registry {}'s certificate: {said}", login.server),
        )
        .hint(format!(
            "give the registry's CA as `delivery.registry.ca` and run `ballast setup` (hosts), and copy it to /etc/docker/certs.d/{}/ca.crt on this machine",
            login.server
        ))
    } else {
        Error::failed(
            step,
            format_args!("the registry {} said: {said}", login.server),
        )
    };
    if host.is_empty() || host == crate::host::LOCAL {
        e
    } else {
        e.on(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_read_from_the_push_status() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(digest_in(&format!("v2: digest: {d} size: 528")), Some(d));
        assert_eq!(digest_in("Pushed"), None);
        assert_eq!(digest_in("v2: digest: sha256:abc size: 1"), None);
    }

    fn registry() -> Registry {
        Registry {
            server: "r:5000".into(),
            repository: None,
            username: "deploy".into(),
            password_secret: "REGISTRY_PASSWORD".into(),
            ca: None,
        }
    }

    #[test]
    fn a_recorded_source_is_pulled_only_from_the_configured_registry() {
        let login = Login::new(&registry(), "pw");
        let digest = format!("sha256:{}", "b".repeat(64));
        let id = "sha256:cfg";
        let source = format!("r:5000/team/app@{digest}");
        let again = Pushed::recorded(&source, "v1", id, &login).unwrap();
        assert_eq!(again.by_digest, source);
        assert_eq!(again.reference, "r:5000/team/app:v1");
        assert_eq!(again.image_id, id);
        for bad in [
            format!("evil:5000/team/app@{digest}"),
            format!("r:5000@{digest}"),
            "r:5000/team/app:v1".to_string(),
            "r:5000/team/app@sha256:abc".to_string(),
            String::new(),
        ] {
            let e = Pushed::recorded(&bad, "v1", id, &login).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Input, "{bad}");
            assert!(
                e.hint.unwrap().contains("deploy the release again"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_login_never_debugs_its_password() {
        let login = Login::new(&registry(), "hunter2-secret");
        assert!(!format!("{login:?}").contains("hunter2"));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let login = Login::new(&registry(), "pw");
        let e = refused(
            "push",
            &login,
            "unauthorized: authentication required",
            "local",
        );
        assert_eq!(
            e.cause,
            "the registry r:5000 refused user deploy's credentials"
        );
        assert!(e.hint.unwrap().contains("REGISTRY_PASSWORD"));
        let e = refused(
            "pull",
            &login,
            "x509: certificate signed by unknown authority",
            "h1",
        );
        assert!(e.cause.starts_with("the engine does not trust"));
        assert_eq!(e.host.as_deref(), Some("h1"));
    }
}
