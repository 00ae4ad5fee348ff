//! The words of shape errors: what was expected and found, "did you mean"
//! suggestions for misspelt keys and choices, where a misplaced key belongs,
//! and a hint for each kind of mistake.

use super::error::{ConfigError, Source};
use super::node::{shorten, Located, Node};
use super::reference::sections;

/// "roles.web.port: " before a message, or nothing at the top.
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

pub(crate) fn unknown_key(
    src: &Source,
    key: &str,
    known: &[&str],
    node: &Located,
    path: &str,
) -> ConfigError {
    // A key spelt right but placed wrong is told where it belongs, before
    // any look-alike here (`batch` at the top level is not `watch`).
    let home = sections()
        .into_iter()
        .find(|s| s.path != path && s.keys.iter().any(|k| k.name == key));
    let hint = if let Some(c) = closest(key, known.iter().copied()).filter(|_| home.is_none()) {
        format!("did you mean `{c}`?")
    } else if let Some(home) = home {
        let home = if home.path.is_empty() {
            "the top level".to_string()
        } else {
            format!("`{}`", home.path)
        };
        format!(
            "`{key}` belongs under {home}; valid keys here: {}",
            list(known)
        )
    } else {
        format!("valid keys here: {}", list(known))
    };
    let place = if path.is_empty() {
        String::new()
    } else {
        format!(" in `{path}`")
    };
    src.error(node, format!("unknown key `{}`{place}", shorten(key)))
        .with_label("unknown key")
        .with_hint(hint)
}

pub(crate) fn missing_key(
    src: &Source,
    key: &str,
    about: &str,
    owner: &Located,
    path: &str,
) -> ConfigError {
    let place = if path.is_empty() {
        "the top level".to_string()
    } else {
        format!("`{path}`")
    };
    src.error(owner, format!("{}missing key `{key}`", at(path)))
        .with_label(format!("`{key}` is missing here"))
        .with_hint(format!(
            "add `{key}:` to {place}. {}",
            first_sentence(about)
        ))
}

pub(crate) fn wrong_type(src: &Source, types: &[&str], node: &Located, path: &str) -> ConfigError {
    let mut expected: Vec<&str> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| kind(t))
        .collect();
    expected.dedup();
    let expected = expected.join(" or ");
    let first = types
        .iter()
        .find(|t| **t != "null")
        .copied()
        .unwrap_or("string");
    let hint = match (first, &node.value) {
        ("string", Node::Int(_) | Node::Float(_) | Node::Bool(_)) => "quote it to make it a string",
        (_, Node::Null) => "give it a value, or remove the key to use its default",
        ("array", _) => "write a list: `[a, b]` on one line, or one `- item` per line",
        ("object", _) => "write a mapping: `key: value` lines, indented under this key",
        ("integer", _) => "write a whole number without quotes, e.g. `8080`",
        _ => "see docs/config.md for what this key takes",
    };
    let found = node.value.describe();
    src.error(
        node,
        format!("{}expected {expected}, found {found}", at(path)),
    )
    .with_label(format!("expected {expected}"))
    .with_hint(hint)
}

pub(crate) fn out_of_range(
    src: &Source,
    min: Option<i128>,
    max: Option<i128>,
    node: &Located,
    path: &str,
) -> ConfigError {
    let range = match (min, max) {
        (Some(a), Some(b)) => format!("a whole number from {a} to {b}"),
        (Some(a), None) => format!("a whole number of at least {a}"),
        _ => "a whole number".to_string(),
    };
    let found = node.value.describe();
    src.error(node, format!("{}expected {range}, found {found}", at(path)))
        .with_label("out of range")
        .with_hint(format!("use {range}"))
}

pub(crate) fn unknown_choice(
    src: &Source,
    choices: &[String],
    node: &Located,
    path: &str,
) -> ConfigError {
    let typed = node.value.scalar_text().unwrap_or_default();
    let listed = list(&choices.iter().map(String::as_str).collect::<Vec<_>>());
    let hint = match closest(&typed, choices.iter().map(String::as_str)) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!("use one of {listed}"),
    };
    let found = node.value.describe();
    src.error(
        node,
        format!("{}expected one of {listed}, found {found}", at(path)),
    )
    .with_label("unknown choice")
    .with_hint(hint)
}

pub(crate) fn bad_duration(src: &Source, node: &Located, path: &str) -> ConfigError {
    let found = node.value.describe();
    let message = format!(
        "{}expected a duration such as `30s`, `1m30s` or `500ms`, found {found}",
        at(path)
    );
    src.error(node, message)
        .with_label("not a duration")
        .with_hint("write a number followed by a unit: `ms`, `s`, `m` or `h` (e.g. `30s`)")
}

/// JSON-schema type names in the words of the messages.
fn kind(t: &str) -> &str {
    match t {
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "`true` or `false`",
        "array" => "a list",
        "object" => "a mapping",
        other => other,
    }
}

fn list(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    quoted.join(", ")
}

fn first_sentence(s: &str) -> String {
    let s = super::reference::one_line(s);
    match s.find(". ") {
        Some(i) => s[..=i].to_string(),
        None => s,
    }
}

/// The known name closest to a misspelt one, if it is close enough.
pub(crate) fn closest<'a>(typed: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let typed = typed.to_lowercase();
    known
        .map(|k| (k, strsim::jaro_winkler(&typed, &k.to_lowercase())))
        .filter(|(k, score)| *score >= 0.8 || strsim::damerau_levenshtein(&typed, k) <= 1)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::super::schema::{Compression, Delivery, OnFailure};
    use super::super::testing::{assert_error, parse_yaml};
    use super::*;

    const HEAD: &str = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a]\n";

    #[test]
    fn unknown_keys_suggest_the_closest_known_key() {
        let yaml = format!("{HEAD}    prot: 80\n");
        assert_error(
            &yaml,
            6,
            5,
            "unknown key `prot` in `roles.web`",
            "did you mean `port`?",
        );
        let yaml = format!("{HEAD}    hosts_: [b]\n");
        assert_error(&yaml, 6, 5, "unknown key `hosts_`", "did you mean `hosts`?");
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [{host: a, evn: {}}]\n";
        assert_error(
            yaml,
            5,
            23,
            "unknown key `evn` in `roles.web.hosts[0]`",
            "did you mean `env`?",
        );
    }

    #[test]
    fn unknown_keys_list_the_valid_ones_or_say_where_they_belong() {
        let yaml = format!("{HEAD}extras: {{}}\n");
        assert_error(&yaml, 6, 1, "unknown key `extras`", "valid keys here: `service`, `image`, `build`, `ssh`, `delivery`, `docker`, `roles`, `accessories`, `data_roots`, `deploy`, `logging`");
        let yaml = format!("{HEAD}batch: 2\n");
        assert_error(
            &yaml,
            6,
            1,
            "unknown key `batch`",
            "`batch` belongs under `deploy`",
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected_and_found() {
        let yaml = format!("{HEAD}    port: eighty\n");
        assert_error(
            &yaml,
            6,
            11,
            "roles.web.port: expected a whole number, found the string `eighty`",
            "without quotes",
        );
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: 10.0.0.1\n";
        assert_error(
            yaml,
            5,
            12,
            "roles.web.hosts: expected a list, found the string `10.0.0.1`",
            "write a list",
        );
        let yaml = "service: shop\nimage: shop\nroles: [web]\n";
        assert_error(
            yaml,
            3,
            8,
            "roles: expected a mapping, found a list",
            "write a mapping",
        );
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [1]\n";
        assert_error(
            yaml,
            5,
            13,
            "expected a string or a mapping, found the number `1`",
            "quote it",
        );
        let yaml = format!("{HEAD}    env:\n");
        assert_error(
            &yaml,
            6,
            8,
            "roles.web.env: expected a mapping, found an empty value",
            "remove the key",
        );
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        let yaml = format!("{HEAD}    port: 70000\n");
        assert_error(
            &yaml,
            6,
            11,
            "expected a whole number from 1 to 65535, found the number `70000`",
            "use a whole number from 1 to 65535",
        );
        let yaml = format!("{HEAD}    port: 0\n");
        assert_error(
            &yaml,
            6,
            11,
            "roles.web.port: expected a whole number from 1 to 65535",
            "1 to 65535",
        );
        let yaml = format!("{HEAD}ssh: {{port: -22}}\n");
        assert_error(
            &yaml,
            6,
            13,
            "ssh.port: expected a whole number from 1 to 65535, found the number `-22`",
            "1 to 65535",
        );
    }

    #[test]
    fn delivery_is_a_method_or_a_mapping_with_its_compression() {
        let config = parse_yaml(&format!("{HEAD}delivery: direct\n")).unwrap();
        assert_eq!(config.config.delivery.compression(), Compression::Auto);
        let yaml = format!("{HEAD}delivery: {{ method: direct, compression: none }}\n");
        let config = parse_yaml(&yaml).unwrap();
        assert_eq!(config.config.delivery.method(), Delivery::Direct);
        assert_eq!(config.config.delivery.compression(), Compression::None);
        let config = parse_yaml(&format!("{HEAD}delivery:\n  compression: gzip\n")).unwrap();
        assert_eq!(config.config.delivery.method(), Delivery::Direct);
        assert_eq!(config.config.delivery.compression(), Compression::Gzip);
        let yaml = format!("{HEAD}delivery:\n  compression: zip\n");
        assert_error(
            &yaml,
            7,
            16,
            "delivery.compression: expected one of `auto`, `gzip-fast`, `gzip`, `none`",
            "did you mean `gzip`?",
        );
        let yaml = format!("{HEAD}delivery:\n  compresion: none\n");
        assert_error(
            &yaml,
            7,
            3,
            "unknown key `compresion`",
            "did you mean `compression`?",
        );
    }

    #[test]
    fn a_docker_version_is_read_and_a_bad_one_is_refused_where_it_is() {
        let yaml = format!("{HEAD}docker: {{ version: \"20.10.24+dfsg1-1+deb12u1\" }}\n");
        let config = parse_yaml(&yaml).unwrap();
        assert_eq!(
            config.config.docker.version.as_deref(),
            Some("20.10.24+dfsg1-1+deb12u1")
        );
        let yaml = format!("{HEAD}docker:\n  version: \"latest; reboot\"\n");
        assert_error(
            &yaml,
            7,
            12,
            "`latest; reboot` is not a package version",
            "give the version as the package manager lists it, e.g. `apt-cache madison docker.io` on Debian: `docker: { version: \"20.10.24+dfsg1-1+deb12u1\" }`",
        );
        let yaml = format!("{HEAD}docker:\n  versoin: \"1.0\"\n");
        assert_error(
            &yaml,
            7,
            3,
            "unknown key `versoin`",
            "did you mean `version`?",
        );
    }

    #[test]
    fn choices_and_durations_are_checked() {
        let yaml = format!("{HEAD}delivery: ftp\n");
        assert_error(
            &yaml,
            6,
            11,
            "delivery: expected one of `direct`, `registry`, found the string `ftp`",
            "use one of `direct`, `registry`",
        );
        let yaml = format!("{HEAD}delivery: drect\n");
        assert_error(&yaml, 6, 11, "expected one of", "did you mean `direct`?");
        let yaml = format!("{HEAD}    stop_timeout: 5 parsecs\n");
        assert_error(
            &yaml,
            6,
            19,
            "roles.web.stop_timeout: expected a duration",
            "`ms`, `s`, `m` or `h`",
        );
        let yaml = format!("{HEAD}deploy: {{health_timeout: 30}}\n");
        assert_error(
            &yaml,
            6,
            26,
            "deploy.health_timeout: expected a duration",
            "(e.g. `30s`)",
        );
    }

    #[test]
    fn an_unknown_failure_policy_lists_the_choices() {
        let yaml = format!("{HEAD}deploy:\n  on_failure: rollback\n");
        assert_error(
            &yaml,
            7,
            15,
            "deploy.on_failure: expected one of `stop`, `revert`, found the string `rollback`",
            "use one of `stop`, `revert`",
        );
        let yaml = format!("{HEAD}deploy: {{on_failure: revrt}}\n");
        assert_error(
            &yaml,
            6,
            22,
            "expected one of `stop`, `revert`",
            "did you mean `revert`?",
        );
        let loaded = parse_yaml(&format!("{HEAD}deploy: {{on_failure: revert}}\n")).unwrap();
        assert_eq!(loaded.config.deploy.on_failure, OnFailure::Revert);
        let loaded = parse_yaml(HEAD).unwrap();
        assert_eq!(loaded.config.deploy.on_failure, OnFailure::Stop);
    }

    #[test]
    fn closest_finds_typos_only() {
        let keys = ["hosts", "port", "publish", "env", "volumes", "healthcheck"];
        assert_eq!(closest("prot", keys.into_iter()), Some("port"));
        assert_eq!(closest("hots", keys.into_iter()), Some("hosts"));
        assert_eq!(
            closest("health_check", keys.into_iter()),
            Some("healthcheck")
        );
        assert_eq!(closest("evn", keys.into_iter()), Some("env"));
        assert_eq!(closest("image", keys.into_iter()), None);
    }
}
