//! What `ballast config` prints: the config as ballast understood it, every
//! default filled in, keys in declaration order, unset options left out, and
//! no secret value anywhere (secrets appear by name only).

use super::node::{self, Node};
use super::secrets::{Secrets, REDACTED};
use super::Loaded;

/// The resolved config as YAML, secret values never present.
pub fn redacted_yaml(loaded: &Loaded) -> String {
    // Serializing the typed config fills in defaults; reading the result
    // back as a tree keeps its order and lets us drop unset options.
    let full = serde_saphyr::to_string(&loaded.config).unwrap_or_default();
    let mut body = match node::parse(&full) {
        Ok(mut tree) => {
            scrub(&mut tree.value, &loaded.secrets);
            serde_saphyr::to_string(&tree.value).unwrap_or(full)
        }
        Err(_) => full,
    };
    body = loaded.secrets.redact(&body);
    let mut out = format!(
        "# {} as ballast reads it, defaults filled in.\n\
         # Secrets are listed by name (env.secret); their values are never shown.\n",
        loaded.path.display()
    );
    out.push_str(&body);
    if !loaded.secrets.is_empty() {
        let names: Vec<&str> = loaded.secrets.names().collect();
        out.push_str(&format!("# secrets resolved: {}\n", names.join(", ")));
    }
    out
}

/// Replaces any string that is, or contains, a secret value.
fn scrub(node: &mut Node, secrets: &Secrets) {
    match node {
        Node::Str(s) => {
            let leaks = secrets
                .names()
                .filter_map(|n| secrets.get(n))
                .any(|v| !v.is_empty() && (s.as_str() == v || (v.len() >= 4 && s.contains(v))));
            if leaks {
                *s = REDACTED.to_string();
            }
        }
        Node::Seq(items) => items.iter_mut().for_each(|i| scrub(&mut i.value, secrets)),
        Node::Map(entries) => entries
            .iter_mut()
            .for_each(|(_, v)| scrub(&mut v.value, secrets)),
        Node::Null | Node::Bool(_) | Node::Int(_) | Node::Float(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn prints_defaults_in_order_without_unset_options() {
        let out = redacted_yaml(&parse_yaml(VALID).unwrap());
        let service = out.find("service: shop").unwrap();
        let roles = out.find("roles:").unwrap();
        let deploy = out.find("deploy:").unwrap();
        assert!(service < roles && roles < deploy, "{out}");
        assert!(out.contains("retain: 5"), "{out}");
        assert!(out.contains("health_timeout: 30s"), "{out}");
        assert!(out.contains("max-size: 10m"), "{out}");
        assert!(!out.contains("null"), "{out}");
        assert!(out.contains("- DB_PASSWORD"), "{out}");
        assert!(out.contains("# secrets resolved: DB_PASSWORD"), "{out}");
    }

    #[test]
    fn never_shows_a_secret_value_even_if_pasted_in_clear() {
        let yaml = VALID.replace(
            "RUST_LOG: info",
            &format!("RUST_LOG: info, DSN: \"postgres://u:{SECRET_VALUE}@db\""),
        );
        let loaded = parse_yaml(&yaml).unwrap();
        let out = redacted_yaml(&loaded);
        assert!(!out.contains(SECRET_VALUE), "{out}");
        assert!(
            out.contains("DSN: '[redacted]'") || out.contains("DSN: \"[redacted]\""),
            "{out}"
        );
    }

    #[test]
    fn output_loads_back_to_the_same_config() {
        let loaded = parse_yaml(VALID).unwrap();
        let again = parse_yaml(&redacted_yaml(&loaded)).unwrap();
        assert_eq!(again.config, loaded.config);
    }
}
