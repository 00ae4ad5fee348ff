//! The config reference, generated from the schema: schemars turns the types
//! of `schema.rs` (and their doc comments) into a JSON schema, and this file
//! turns that into `docs/config.md`: every key with its type, default and
//! description, one section per nested mapping, then the limits of
//! durations and counts from `bounds`. The shape check reads the same JSON
//! schema and limits, so the reference and the validation cannot disagree.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_json::Value;

use super::bounds::{limit_for, LimitRange, LIMITS};
use super::schema::*;

/// The JSON schema of `ballast.yml`, built once.
pub(crate) fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| schemars::schema_for!(Config).to_value())
}

/// Follows `$ref`s to the schema they name; returns it with the name of its
/// type (`Role`), if it is a named definition.
pub(crate) fn deref(mut s: &Value) -> (&Value, Option<&str>) {
    let mut name = None;
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let def = r.trim_start_matches("#/$defs/");
        match schema().pointer(&format!("/$defs/{def}")) {
            Some(target) => {
                s = target;
                name = Some(def);
            }
            None => break,
        }
    }
    (s, name)
}

/// The keys of an object schema in the order the struct declares them (the
/// JSON schema keeps them sorted).
pub(crate) fn ordered_keys<'a>(s: &'a Value, type_name: Option<&str>) -> Vec<&'a str> {
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    if let Some(order) = type_name.and_then(|n| declared_fields().get(n)) {
        keys.sort_by_key(|k| order.iter().position(|f| f == k).unwrap_or(usize::MAX));
    }
    keys
}

/// Field names as declared, per struct, read from serde's own derive.
fn declared_fields() -> &'static BTreeMap<&'static str, &'static [&'static str]> {
    static FIELDS: OnceLock<BTreeMap<&'static str, &'static [&'static str]>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        BTreeMap::from([
            ("Config", fields_of::<Config>()),
            ("Build", fields_of::<Build>()),
            ("Ssh", fields_of::<Ssh>()),
            ("Role", fields_of::<Role>()),
            ("RoleProxy", fields_of::<RoleProxy>()),
            ("ProxyTls", fields_of::<ProxyTls>()),
            ("HostWithEnv", fields_of::<HostWithEnv>()),
            ("Env", fields_of::<Env>()),
            ("Healthcheck", fields_of::<Healthcheck>()),
            ("DeploySettings", fields_of::<DeploySettings>()),
            ("Logging", fields_of::<Logging>()),
            ("Accessory", fields_of::<super::accessories::Accessory>()),
            (
                "DataDirectory",
                fields_of::<super::accessories::DataDirectory>(),
            ),
            (
                "AccessoryFile",
                fields_of::<super::accessories::AccessoryFile>(),
            ),
            (
                "HealthCommand",
                fields_of::<super::accessories::HealthCommand>(),
            ),
            (
                "AccessoryBackup",
                fields_of::<super::backup::AccessoryBackup>(),
            ),
            ("Watch", fields_of::<super::watch::Watch>()),
            ("WatchBackoff", fields_of::<super::watch::WatchBackoff>()),
            ("WatchBreaker", fields_of::<super::watch::WatchBreaker>()),
            ("AlertChannel", fields_of::<super::watch::AlertChannel>()),
        ])
    })
}

/// Asks a derived `Deserialize` for its field list, without any input.
fn fields_of<T: Deserialize<'static>>() -> &'static [&'static str] {
    struct Grab(&'static [&'static str]);
    impl<'de> Deserializer<'de> for &mut Grab {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut grab = Grab(&[]);
    let _ = T::deserialize(&mut grab);
    grab.0
}

/// One mapping of the file: its keys.
pub(crate) struct Section {
    /// Where it sits: `""` for the top level, `deploy`, `roles.<name>`.
    pub(crate) path: String,
    pub(crate) description: String,
    pub(crate) keys: Vec<Key>,
}

/// One key of a section.
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) ty: String,
    pub(crate) default: Option<String>,
    pub(crate) required: bool,
    pub(crate) description: String,
}

/// Every section of the file, top level first, each followed by the
/// sections nested in it.
pub(crate) fn sections() -> Vec<Section> {
    let mut out = Vec::new();
    collect(schema(), Some("Config"), "", &mut out);
    out
}

fn collect(s: &Value, type_name: Option<&str>, path: &str, out: &mut Vec<Section>) {
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let index = out.len();
    out.push(Section {
        path: path.to_string(),
        description: text(s),
        keys: Vec::new(),
    });
    for name in ordered_keys(s, type_name) {
        let prop = &s["properties"][name];
        let child = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        let mut nested = Vec::new();
        let ty = describe(prop, &child, &mut nested);
        let mut description = text(prop);
        for (value, what) in variants(prop) {
            description.push_str(&format!(" `{value}`: {what}"));
        }
        out[index].keys.push(Key {
            name: name.to_string(),
            default: if nested.is_empty() {
                prop.get("default").and_then(render_default)
            } else {
                None
            },
            ty,
            required: required.contains(&name),
            description,
        });
        for (s, type_name, path) in nested {
            collect(s, type_name, &path, out);
        }
    }
}

/// The type of a key in words; nested mappings found on the way are pushed
/// to `nested` with the path of their section.
fn describe<'a>(
    s: &'a Value,
    path: &str,
    nested: &mut Vec<(&'a Value, Option<&'a str>, String)>,
) -> String {
    let (s, type_name) = deref(s);
    if let Some(branches) = s.get("anyOf").or(s.get("oneOf")).and_then(Value::as_array) {
        let real: Vec<&Value> = branches.iter().filter(|b| !is_null(b)).collect();
        if real.iter().all(|b| deref(b).0.get("const").is_some()) {
            let values: Vec<String> = real
                .iter()
                .map(|b| format!("`{}`", scalar(&deref(b).0["const"])))
                .collect();
            return format!("one of {}", values.join(", "));
        }
        let words: Vec<String> = real.iter().map(|b| describe(b, path, nested)).collect();
        let optional = real.len() < branches.len();
        return format!(
            "{}{}",
            words.join(" or "),
            if optional { ", optional" } else { "" }
        );
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let optional = if types.contains(&"null") {
        ", optional"
    } else {
        ""
    };
    let word = match types.iter().find(|t| **t != "null").copied() {
        Some("string") if s.get("format").and_then(Value::as_str) == Some("duration") => {
            match limit_for(path) {
                Some(limit) => {
                    let (min, max) = limit.range.ends();
                    format!("duration (`{min}` to `{max}`)")
                }
                None => "duration (`500ms`, `30s`, `2m`)".to_string(),
            }
        }
        Some("integer") => {
            let (min, max) = match limit_for(path).map(|l| l.range) {
                Some(LimitRange::Count { min, max }) => (min, Some(max)),
                _ => (
                    s.get("minimum").and_then(Value::as_u64).unwrap_or(0),
                    s.get("maximum").and_then(Value::as_u64),
                ),
            };
            match max {
                Some(max) => format!("integer ({min} to {max})"),
                None if min > 0 => format!("integer (at least {min})"),
                None => "integer".to_string(),
            }
        }
        Some("array") => {
            let item = s
                .get("items")
                .map(|i| describe(i, &format!("{path}[]"), nested));
            format!("list of {}", item.unwrap_or_else(|| "values".into()))
        }
        Some("object") if s.get("properties").is_some() => {
            nested.push((s, type_name, path.to_string()));
            format!("mapping (section `{path}`)")
        }
        Some("object") => match s.get("additionalProperties") {
            Some(v @ Value::Object(_)) => {
                format!(
                    "map of name to {}",
                    describe(v, &format!("{path}.<name>"), nested)
                )
            }
            _ => "mapping".to_string(),
        },
        Some(other) => other.to_string(),
        None => "value".to_string(),
    };
    format!("{word}{optional}")
}

/// The choices of an enum or untagged type, with their descriptions.
fn variants(s: &Value) -> Vec<(String, String)> {
    let (s, _) = deref(s);
    let Some(branches) = s.get("anyOf").or(s.get("oneOf")).and_then(Value::as_array) else {
        return Vec::new();
    };
    let real: Vec<&Value> = branches.iter().filter(|b| !is_null(b)).collect();
    if real.len() < 2 {
        return Vec::new();
    }
    real.iter()
        .filter_map(|b| {
            let desc = b.get("description").and_then(Value::as_str)?;
            let (target, _) = deref(b);
            let label = match target.get("const") {
                Some(c) => scalar(c),
                None => describe(b, "", &mut Vec::new()),
            };
            Some((label, one_line(desc)))
        })
        .collect()
}

fn is_null(s: &Value) -> bool {
    s.get("type").and_then(Value::as_str) == Some("null")
}

fn text(s: &Value) -> String {
    s.get("description")
        .and_then(Value::as_str)
        .map(one_line)
        .unwrap_or_default()
}

/// Doc comments wrap; a table cell must not.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_default(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(format!("`{s}`")),
        Value::Object(m) if !m.is_empty() => {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            Some(format!("`{{ {} }}`", parts.join(", ")))
        }
        other => Some(format!("`{other}`")),
    }
}

/// `docs/config.md`: the reference of every key of `ballast.yml`.
pub fn reference_markdown() -> String {
    let mut md = String::from(
        "# `ballast.yml` reference\n\n\
         <!-- Generated from crates/ballast-core/src/config/schema.rs by\n     \
         ballast_core::config::reference_markdown(). Do not edit: run\n     \
         UPDATE_DOCS=1 cargo test -p ballast-core config::reference\n     \
         to regenerate. -->\n\n",
    );
    md.push_str(
        "Keys marked **required** must be given; every other key may be left out \
         and takes its default. Unknown keys are errors. Durations are a number \
         and a unit, such as `500ms`, `30s`, `2m` or `1h30m`; every duration and \
         count has a least and a most value, listed under [Limits](#limits). \
         `ballast init` writes a commented starter file; `ballast config` prints \
         the file as ballast understood it, defaults filled in.\n",
    );
    for section in sections() {
        let title = if section.path.is_empty() {
            "Top level".to_string()
        } else {
            format!("`{}`", section.path)
        };
        md.push_str(&format!("\n## {title}\n\n{}\n\n", section.description));
        md.push_str("| Key | Type | Default | Description |\n|---|---|---|---|\n");
        for key in &section.keys {
            let default = match (&key.default, key.required) {
                (_, true) => "**required**".to_string(),
                (Some(d), false) => d.clone(),
                (None, false) => "—".to_string(),
            };
            md.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                key.name,
                cell(&key.ty),
                cell(&default),
                cell(&key.description)
            ));
        }
    }
    md.push_str(
        "\n## Limits\n\n\
         A value outside its limits is refused when the file is read, with \
         the key, the limit and where it was written.\n\n\
         | Key | From | To | Why not less | Why not more |\n|---|---|---|---|---|\n",
    );
    for limit in LIMITS {
        let (min, max) = limit.range.ends();
        let (min, max) = match limit.range {
            LimitRange::Duration { .. } => (format!("`{min}`"), format!("`{max}`")),
            LimitRange::Count { .. } => (min, max),
        };
        md.push_str(&format!(
            "| `{}` | {min} | {max} | {} | {} |\n",
            limit.key,
            cell(&sentence(limit.below)),
            cell(&sentence(limit.above))
        ));
    }
    md
}

/// A reason as a sentence of its own; `—` for none.
fn sentence(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => "—".to_string(),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_in_declaration_order() {
        let top = &sections()[0];
        let names: Vec<&str> = top.keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "service",
                "image",
                "build",
                "ssh",
                "delivery",
                "docker",
                "roles",
                "accessories",
                "data_roots",
                "deploy",
                "logging",
                "hooks",
                "aliases",
                "require_destination",
                "watch"
            ]
        );
    }

    #[test]
    fn every_nested_mapping_has_a_section() {
        let paths: Vec<String> = sections().into_iter().map(|s| s.path).collect();
        for want in [
            "",
            "build",
            "ssh",
            "roles.<name>",
            "roles.<name>.hosts[]",
            "roles.<name>.env",
            "roles.<name>.healthcheck",
            "deploy",
            "logging",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "no section {want:?} in {paths:?}"
            );
        }
    }

    #[test]
    fn reference_shows_type_default_and_description() {
        let md = reference_markdown();
        assert!(md.contains("| `service` | string | **required** | Name of the service."));
        assert!(
            md.contains("| `retain` | integer (1 to 100) | `5` |"),
            "{md}"
        );
        assert!(md.contains("| `concurrency` | integer (1 to 1000), optional | — |"));
        assert!(md.contains("| `health_timeout` | duration (`5s` to `1h`) | `30s` |"));
        assert!(md.contains("| `batch` | integer (1 to 10000) or string | `1` |"));
        assert!(md.contains("| `on_failure` | one of `stop`, `revert` | `stop` |"));
        assert!(md.contains("one of `direct`, `registry`"));
        assert!(md.contains("| `hosts` | list of string or mapping (section `roles.<name>.hosts[]`) | **required** |"), "{md}");
    }

    #[test]
    fn reference_lists_every_limit_with_its_reasons() {
        let md = reference_markdown();
        let limits = &md[md.find("## Limits").expect("a Limits section")..];
        assert!(limits.contains("| `deploy.retain` | 1 | 100 | 0 would keep no release"));
        assert!(limits.contains("| `roles.<name>.stop_timeout` | `0s` | `1h` | — | A deploy waits"));
        assert_eq!(limits.matches("\n| `").count(), LIMITS.len());
    }

    /// `docs/config.md` is generated; this fails when it is stale.
    #[test]
    fn docs_config_md_is_up_to_date() {
        crate::testing::check_generated_doc(
            "docs/config.md",
            &reference_markdown(),
            "cargo test -p ballast-core config::reference",
        );
    }
}
