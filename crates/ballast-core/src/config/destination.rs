//! Destinations: `-d staging` reads `ballast.staging.yml` beside
//! `ballast.yml` and lays it over it. Mappings merge key by key, as deep as
//! they go; anything else (a list, a string, a number) in the destination
//! replaces the base's value whole — so `roles.web.hosts` in a destination
//! is that destination's host list, not an addition to the base's.
//!
//! The destination file is checked on its own first (unknown keys, wrong
//! types and limits are located in that file); the merged document is then
//! loaded like any config, and `ballast config -d NAME` prints it, so the
//! line of any later error can be found there. Secrets come from the
//! environment, then `.ballast/secrets.NAME`, then `.ballast/secrets`. The
//! lock and the audit log live on the hosts: destinations with their own
//! hosts have their own; destinations sharing a host share it, as they
//! share its containers.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Source};
use super::names::is_valid_name;
use super::node::{self, Node};
use super::shape;

/// The file of `destination` beside `base` (`ballast.yml` →
/// `ballast.staging.yml`).
pub fn file_of(base: &Path, destination: &str) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ballast".into());
    let ext = base
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    base.with_file_name(format!("{stem}.{destination}{ext}"))
}

/// Refuses the base file alone when it says `require_destination: true`,
/// before anything else is checked (its hosts may live in the destination
/// files only), naming the destinations found beside it.
pub(crate) fn refuse_if_required(path: &Path, base: &str) -> Result<(), ConfigError> {
    let Ok(root) = node::parse(base) else {
        return Ok(()); // the usual load reports the syntax error
    };
    let Some((key, Node::Bool(true))) = root
        .value
        .entry("require_destination")
        .map(|(k, v)| (k, &v.value))
    else {
        return Ok(());
    };
    let found = found_beside(path);
    let src = Source::new(path, base);
    Err(src
        .error(
            key,
            "this config requires a destination: pass -d NAME".to_string(),
        )
        .with_label("set here")
        .with_hint(if found.is_empty() {
            format!(
                "write {} for a destination called NAME, then pass -d NAME",
                file_of(path, "NAME").display()
            )
        } else {
            format!("destinations beside it: {}", found.join(", "))
        }))
}

/// The destinations whose files sit beside `base`, sorted.
fn found_beside(base: &Path) -> Vec<String> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = base
        .file_stem()
        .map(|s| format!("{}.", s.to_string_lossy()))
        .unwrap_or_default();
    let ext = base
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| Some(n.strip_prefix(&stem)?.strip_suffix(&ext)?.to_string()))
        .filter(|d| is_valid_name(d))
        .collect();
    found.sort();
    found
}

/// The base text with the destination's laid over it, as YAML text, after
/// checking the destination file on its own.
pub(crate) fn merged_text(
    base_path: &Path,
    base: &str,
    destination: &str,
) -> Result<(PathBuf, String), ConfigError> {
    let path = file_of(base_path, destination);
    if !is_valid_name(destination) {
        return Err(ConfigError::whole_file(
            &path,
            format!("`{destination}` is not a valid destination name"),
        )
        .with_hint("use lowercase letters, digits and hyphens, e.g. `-d staging`"));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError::whole_file(
            &path,
            format!("cannot read the file of destination `{destination}`: {e}"),
        )
        .with_hint(format!(
            "write {} with what differs for {destination} (hosts, env...), or check the name given to -d",
            path.display()
        ))
    })?;
    let src = Source::new(&path, &text);
    let over = node::parse(&text).map_err(|e| src.yaml_error(&e, false))?;
    shape::check_overlay(&over, &src)?;
    let base_src = Source::new(base_path, base);
    let under = node::parse(base).map_err(|e| base_src.yaml_error(&e, false))?;
    let merged = merge(under.value, over.value);
    let yaml = serde_saphyr::to_string(&merged).map_err(|e| {
        ConfigError::whole_file(&path, format!("cannot merge it with the base config: {e}"))
    })?;
    Ok((path, yaml))
}

/// `over` laid over `under`: mappings merge by key (keys of `under` keep
/// their order, new keys follow), anything else is replaced. An empty
/// value in `over` (`key:` alone) keeps `under`'s.
fn merge(under: Node, over: Node) -> Node {
    match (under, over) {
        (Node::Map(mut base), Node::Map(top)) => {
            for (k, v) in top {
                let key = k.value.scalar_text();
                match base
                    .iter_mut()
                    .find(|(bk, _)| bk.value.scalar_text() == key)
                {
                    Some((_, bv)) => {
                        let old = std::mem::replace(&mut bv.value, Node::Null);
                        bv.value = merge(old, v.value);
                    }
                    None => base.push((k, v)),
                }
            }
            Node::Map(base)
        }
        (under, Node::Null) => under,
        (_, over) => over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(base: &str, over: &str) -> String {
        let (base, over) = (node::parse(base).unwrap(), node::parse(over).unwrap());
        serde_saphyr::to_string(&merge(base.value, over.value)).unwrap()
    }

    #[test]
    fn the_destination_file_sits_beside_the_base() {
        assert_eq!(
            file_of(Path::new("/srv/shop/ballast.yml"), "staging"),
            Path::new("/srv/shop/ballast.staging.yml")
        );
        assert_eq!(
            file_of(Path::new("deploy.yaml"), "prod"),
            Path::new("deploy.prod.yaml")
        );
    }

    #[test]
    fn mappings_merge_deeply_and_the_rest_is_replaced() {
        let base = "service: shop\nroles:\n  web:\n    hosts: [a, b]\n    env:\n      clear: {MODE: prod, LOG: info}\ndeploy: {batch: 2}\n";
        let over =
            "roles:\n  web:\n    hosts: [s1]\n    env:\n      clear: {MODE: staging}\ndeploy:\n";
        assert_eq!(
            merged(base, over),
            merged(
                "service: shop\nroles:\n  web:\n    hosts: [s1]\n    env:\n      clear: {MODE: staging, LOG: info}\ndeploy: {batch: 2}\n",
                "{}"
            )
        );
    }

    #[test]
    fn an_unknown_key_is_located_in_the_destination_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("ballast.yml");
        std::fs::write(
            dir.path().join("ballast.staging.yml"),
            "roles:\n  web:\n    hostz: [s1]\n",
        )
        .unwrap();
        let e = merged_text(&base, "service: shop\n", "staging").unwrap_err();
        assert_eq!(e.path(), dir.path().join("ballast.staging.yml"));
        assert_eq!((e.line(), e.column()), (3, 5));
        assert!(e.message().contains("hostz"), "{e}");
    }

    #[test]
    fn a_config_that_requires_a_destination_names_the_ones_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("ballast.yml");
        for d in ["production", "staging"] {
            std::fs::write(file_of(&base, d), "{}\n").unwrap();
        }
        let text = "service: shop\nrequire_destination: true\n";
        let e = refuse_if_required(&base, text).unwrap_err();
        assert_eq!((e.line(), e.column()), (2, 1));
        assert!(e.message().contains("pass -d NAME"), "{e}");
        assert_eq!(
            e.hint().unwrap(),
            "destinations beside it: production, staging"
        );
        assert!(refuse_if_required(&base, "service: shop\n").is_ok());
    }

    #[test]
    fn a_missing_destination_file_says_which_and_how() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("ballast.yml");
        let e = merged_text(&base, "service: shop\n", "prod").unwrap_err();
        assert!(e.message().contains("destination `prod`"), "{e}");
        assert!(e.hint().unwrap().contains("ballast.prod.yml"));
        let e = merged_text(&base, "service: shop\n", "Prod!").unwrap_err();
        assert!(e.message().contains("not a valid destination name"), "{e}");
    }
}
