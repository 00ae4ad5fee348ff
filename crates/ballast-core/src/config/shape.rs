//! The shape check: walks the located YAML tree alongside the JSON schema
//! of `Config` and reports, at the offending node, unknown keys, missing
//! required keys, wrong types, out-of-range numbers, unknown choices and
//! malformed durations (the words are in `hints`), and durations and counts
//! outside their limits (the table and its words are in `bounds`). It runs
//! before serde so these errors get precise places and helpful hints, and
//! so serde never reads a duration humantime cannot add up; serde then only
//! fails on what this check does not cover.

use serde_json::Value;

use super::bounds::{self, BadDuration};
use super::error::{ConfigError, Source};
use super::hints;
use super::node::{Located, Node};
use super::reference::{deref, ordered_keys};

/// Checks `root` against the schema of `Config`.
pub(crate) fn check(root: &Located, src: &Source) -> Result<(), ConfigError> {
    let (schema, _) = deref(super::reference::schema());
    Walker {
        src,
        partial: false,
    }
    .walk(schema, Some("Config"), root, "", root)
}

/// Checks `root` as an overlay of `Config` (a destination file): what it
/// says must fit the schema, but nothing is required.
pub(crate) fn check_overlay(root: &Located, src: &Source) -> Result<(), ConfigError> {
    let (schema, _) = deref(super::reference::schema());
    Walker { src, partial: true }.walk(schema, Some("Config"), root, "", root)
}

struct Walker<'a> {
    src: &'a Source<'a>,
    /// Required keys may be missing (an overlay).
    partial: bool,
}

impl Walker<'_> {
    /// `owner` is the key whose value `node` is (the root for the root); a
    /// missing key is reported there.
    fn walk(
        &self,
        s: &Value,
        type_name: Option<&str>,
        node: &Located,
        path: &str,
        owner: &Located,
    ) -> Result<(), ConfigError> {
        let (s, name) = deref(s);
        let type_name = name.or(type_name);
        if let Some(e) = bounds::violation(self.src, s, node, path) {
            return Err(e);
        }
        if let Some(branches) = s.get("anyOf").or(s.get("oneOf")).and_then(Value::as_array) {
            return self.walk_choice(branches, node, path, owner);
        }
        let types = types(s);
        if !types.is_empty() && !types.iter().any(|t| accepts(t, &node.value, false)) {
            return Err(hints::wrong_type(self.src, &types, node, path));
        }
        match &node.value {
            Node::Map(entries) => self.walk_map(s, type_name, entries, path, owner),
            Node::Seq(items) => match s.get("items") {
                Some(item) => items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, n)| self.walk(item, None, n, &format!("{path}[{i}]"), n)),
                None => Ok(()),
            },
            Node::Int(_) | Node::Str(_) if types.contains(&"integer") => {
                let value = match &node.value {
                    Node::Int(i) => Some(*i),
                    Node::Str(t) => t.trim().parse::<i128>().ok(),
                    _ => None,
                };
                let min = s.get("minimum").and_then(Value::as_i64).map(i128::from);
                let max = s.get("maximum").and_then(Value::as_i64).map(i128::from);
                let fits = |v: i128| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m);
                match value {
                    Some(v) if fits(v) => Ok(()),
                    _ => Err(hints::out_of_range(self.src, min, max, node, path)),
                }
            }
            Node::Str(_) | Node::Int(_) | Node::Float(_) | Node::Bool(_)
                if s.get("format").and_then(Value::as_str) == Some("duration") =>
            {
                let text = node.value.scalar_text().unwrap_or_default();
                match bounds::parse_duration(&text) {
                    Ok(_) => Ok(()),
                    Err(BadDuration::Malformed) => Err(hints::bad_duration(self.src, node, path)),
                    Err(BadDuration::TooLong) => Err(bounds::too_long(self.src, node, path)),
                }
            }
            _ => Ok(()),
        }
    }

    /// An untagged enum or a choice of constants: picks the branch that
    /// fits the node and walks it.
    fn walk_choice(
        &self,
        branches: &[Value],
        node: &Located,
        path: &str,
        owner: &Located,
    ) -> Result<(), ConfigError> {
        if let Some(branch) = branches.iter().find(|b| fits(b, &node.value)) {
            return self.walk(branch, None, node, path, owner);
        }
        let mut consts = Vec::new();
        for b in branches {
            constants(b, &mut consts);
        }
        if !consts.is_empty() {
            return Err(hints::unknown_choice(self.src, &consts, node, path));
        }
        let mut all = Vec::new();
        for b in branches {
            all.extend(types(deref(b).0));
        }
        Err(hints::wrong_type(self.src, &all, node, path))
    }

    /// Unknown keys first (a misspelt key also looks missing), then
    /// missing keys, then each value.
    fn walk_map(
        &self,
        s: &Value,
        type_name: Option<&str>,
        entries: &[(Located, Located)],
        path: &str,
        owner: &Located,
    ) -> Result<(), ConfigError> {
        let props = s.get("properties").and_then(Value::as_object);
        let extra = s.get("additionalProperties");
        let key_of = |k: &Located| k.value.scalar_text().unwrap_or_default();
        if let (Some(props), Some(Value::Bool(false))) = (props, extra) {
            for (k, _) in entries {
                let key = key_of(k);
                if !props.contains_key(&key) {
                    let known = ordered_keys(s, type_name);
                    return Err(hints::unknown_key(self.src, &key, &known, k, path));
                }
            }
        }
        for want in required(s).into_iter().filter(|_| !self.partial) {
            if !entries.iter().any(|(k, _)| key_of(k) == want) {
                let about = props
                    .and_then(|p| p.get(want))
                    .and_then(|p| p.get("description"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(hints::missing_key(self.src, want, about, owner, path));
            }
        }
        for (k, v) in entries {
            let key = key_of(k);
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let sub = props.and_then(|p| p.get(&key)).or(match extra {
                Some(e @ Value::Object(_)) => Some(e),
                _ => None,
            });
            if let Some(sub) = sub {
                self.walk(sub, None, v, &child, k)?;
            }
        }
        Ok(())
    }
}

/// Whether a branch of a choice takes `value`: a branch that is itself a
/// choice (an enum of constants inside an untagged enum) takes what one of
/// its own branches takes.
fn fits(branch: &Value, value: &Node) -> bool {
    let (b, _) = deref(branch);
    if let Some(inner) = b.get("anyOf").or(b.get("oneOf")).and_then(Value::as_array) {
        return inner.iter().any(|i| fits(i, value));
    }
    let types = types(b);
    let type_ok = types.is_empty() || types.iter().any(|t| accepts(t, value, true));
    let const_ok = match b.get("const") {
        Some(c) => Some(scalar(c)) == value.scalar_text(),
        None => true,
    };
    type_ok && const_ok
}

/// The constants a branch of a choice takes, its own branches' included.
fn constants(branch: &Value, out: &mut Vec<String>) {
    let (b, _) = deref(branch);
    if let Some(c) = b.get("const") {
        out.push(scalar(c));
    }
    if let Some(inner) = b.get("anyOf").or(b.get("oneOf")).and_then(Value::as_array) {
        for i in inner {
            constants(i, out);
        }
    }
}

fn types(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn required(s: &Value) -> Vec<&str> {
    s.get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether a node can be read as JSON-schema type `t`. `strict` is for
/// untagged enums, where serde sees YAML's own types (`1` is no string).
fn accepts(t: &str, node: &Node, strict: bool) -> bool {
    match (t, node) {
        ("null", Node::Null) => true,
        ("string", Node::Str(_)) => true,
        ("string", Node::Int(_) | Node::Float(_) | Node::Bool(_)) => !strict,
        ("integer", Node::Int(_)) => true,
        ("integer", Node::Str(s)) => !strict && s.trim().parse::<i128>().is_ok(),
        ("number", Node::Int(_) | Node::Float(_)) => true,
        ("boolean", Node::Bool(_)) => true,
        ("array", Node::Seq(_)) => true,
        ("object", Node::Map(_)) => true,
        _ => false,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_error, parse_yaml, VALID};

    #[test]
    fn a_valid_file_passes() {
        assert!(parse_yaml(VALID).is_ok());
        let both = "service: shop\nimage: shop\nroles:\n  web:\n    hosts: [a, {host: b, env: {X: \"1\"}}]\n    port: \"8080\"\n";
        assert!(parse_yaml(both).is_ok());
    }

    #[test]
    fn missing_required_keys_are_named_where_they_belong() {
        assert_error(
            "image: shop\nroles: {}\n",
            1,
            1,
            "missing key `service`",
            "add `service:` to the top level",
        );
        assert_error(
            "service: shop\nroles: {}\n",
            1,
            1,
            "missing key `image`",
            "add `image:`",
        );
        assert_error(
            "service: shop\nimage: shop\n",
            1,
            1,
            "missing key `roles`",
            "add `roles:`",
        );
        let yaml = "service: shop\nimage: shop\nroles:\n  web:\n    port: 80\n";
        assert_error(
            yaml,
            4,
            3,
            "roles.web: missing key `hosts`",
            "add `hosts:` to `roles.web`",
        );
    }
}
