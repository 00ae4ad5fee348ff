//! What names and references in `ballast.yml` look like: service, role and
//! variable names, Docker image references (Docker's own grammar), published
//! ports and batch percentages. Pure functions, used by the checks and by
//! the helpers on `Config`.

use std::sync::OnceLock;

use regex::Regex;

use super::node::shorten;

/// Lowercase letters, digits and hyphens, starting with a letter or digit:
/// safe in container names, paths and labels.
pub(crate) fn is_valid_name(name: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^[a-z0-9][a-z0-9-]{0,62}$").expect("name regex"));
    re.is_match(name)
}

/// A name made valid: lowercased, other characters turned into hyphens.
pub(crate) fn suggest_name(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').to_string()
}

/// A valid environment variable name.
pub(crate) fn is_env_name(name: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("env regex"));
    re.is_match(name)
}

/// Docker's image reference grammar (distribution/reference):
/// `[HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST]`, path components lowercase.
fn image_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let alnum = "[a-z0-9]+";
        let sep = "(?:[._]|__|[-]+)";
        let component = format!("{alnum}(?:{sep}{alnum})*");
        let dc = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let host = format!(r"(?:{dc}(?:\.{dc})*|\[[a-fA-F0-9:]+\])");
        let domain = format!("{host}(?::[0-9]+)?");
        let name = format!("(?:{domain}/)?{component}(?:/{component})*");
        let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let digest = "sha256:[a-f0-9]{64}";
        Regex::new(&format!("^(?P<name>{name})(?::{tag})?(?:@{digest})?$")).expect("image regex")
    })
}

/// Why `image` is not a valid reference, and how to fix it; `None` if valid.
pub fn image_problem(image: &str) -> Option<(String, String)> {
    let usage = "write `[REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST]`, e.g. `shop`, `shop:1.4` or `ghcr.io/acme/shop:1.4`";
    if image.is_empty() {
        return Some(("image is empty".into(), usage.into()));
    }
    if let Some(caps) = image_regex().captures(image) {
        if caps["name"].len() > 255 {
            return Some((
                "image name is longer than 255 characters".into(),
                usage.into(),
            ));
        }
        return None;
    }
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let ok = d.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !ok {
            return Some((
                format!("image digest `{}` is not valid", shorten(d)),
                "a digest is `sha256:` followed by 64 lowercase hex digits".into(),
            ));
        }
    }
    let last = rest.rsplit('/').next().unwrap_or(rest);
    if let Some((_, tag)) = last.split_once(':') {
        let tag_ok =
            Regex::new("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").is_ok_and(|r| r.is_match(tag));
        if !tag_ok {
            return Some((
                format!("image tag `{}` is not valid", shorten(tag)),
                "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
                    .into(),
            ));
        }
    }
    let lower = image.to_lowercase();
    if lower != image && image_regex().is_match(&lower) {
        return Some((
            format!(
                "image `{}` is not valid: repository names are lowercase",
                shorten(image)
            ),
            format!("use `{}`", shorten(&lower)),
        ));
    }
    Some((
        format!("image `{}` is not a valid image reference", shorten(image)),
        usage.into(),
    ))
}

/// `HOST_PORT:CONTAINER_PORT`, both from 1 to 65535.
pub(crate) fn parse_publish(entry: &str) -> Option<(u16, u16)> {
    let (host, container) = entry.split_once(':')?;
    let port = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u16>().ok())
            .flatten()
            .filter(|p| *p > 0)
    };
    Some((port(host)?, port(container)?))
}

/// `"25%"` to 25; `None` unless the text is digits then `%`.
pub(crate) fn parse_percent(s: &str) -> Option<u32> {
    let digits = s.trim().strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_follow_dockers_grammar() {
        for ok in [
            "shop",
            "shop:1.4",
            "acme/shop",
            "ghcr.io/acme/shop:v1.4.2",
            "localhost:5000/shop",
            "registry.example.com:443/a/b/c:latest",
            "my_app",
            "a__b",
            "a---b",
            "postgres:16.4",
            &format!("shop@sha256:{}", "a".repeat(64)),
            &format!("shop:1@sha256:{}", "0".repeat(64)),
        ] {
            assert!(image_problem(ok).is_none(), "{ok} should be valid");
        }
        let problem = |s: &str| image_problem(s).unwrap().0;
        assert!(problem("Shop").contains("lowercase"));
        assert!(problem("shop:").contains("tag"));
        assert!(problem("shop:-x").contains("tag"));
        assert!(problem("shop@sha256:abc").contains("digest"));
        assert!(problem("shop@md5:abc").contains("digest"));
        assert!(problem("").contains("empty"));
        assert!(problem("-shop").contains("not a valid image"));
        assert!(problem("shop/").contains("not a valid image"));
        assert!(problem("a b").contains("not a valid image"));
        assert!(problem(&format!("shop:{}", "x".repeat(129))).contains("tag"));
    }

    #[test]
    fn names_and_ports_parse() {
        assert!(is_valid_name("shop-2"));
        assert!(!is_valid_name("Shop"));
        assert!(!is_valid_name("-shop"));
        assert!(!is_valid_name("shop_api"));
        assert_eq!(suggest_name("Shop_API"), "shop-api");
        assert_eq!(parse_publish("80:8080"), Some((80, 8080)));
        assert_eq!(parse_publish("80"), None);
        assert_eq!(parse_publish("0:80"), None);
        assert_eq!(parse_publish("80:70000"), None);
        assert_eq!(parse_publish("+80:80"), None);
        assert_eq!(parse_percent("25%"), Some(25));
        assert_eq!(parse_percent("25"), None);
        assert_eq!(parse_percent("%"), None);
    }
}
