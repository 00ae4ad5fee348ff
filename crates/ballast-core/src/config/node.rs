//! The located YAML tree: every node of `ballast.yml` with the line, column
//! and span it came from. serde-saphyr parses the file (we never parse YAML
//! ourselves); each node is deserialized as a `serde_saphyr::Spanned<Node>`,
//! which records where it was. The shape check and the semantic checks use
//! this tree to point errors at the offending key or value; `redacted_yaml`
//! uses it (with `Serialize`) to print values in their declared order.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_saphyr::Spanned;

/// A node with where it was found.
pub(crate) type Located = Spanned<Node>;

/// One YAML node, typed as YAML resolved it (`8080` is an integer, `"8080"`
/// and `eighty` are strings).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Located>),
    /// Entries in the order they were written.
    Map(Vec<(Located, Located)>),
}

impl Node {
    /// The text of a scalar, as a map key or a string value would see it.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Str(s) => Some(s.clone()),
            Node::Null | Node::Seq(_) | Node::Map(_) => None,
        }
    }

    /// The value of `key` in a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Located> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node of `key` in a mapping.
    pub(crate) fn entry(&self, key: &str) -> Option<(&Located, &Located)> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.value.scalar_text().as_deref() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// How an error message names this node ("the string `eighty`").
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Null => "an empty value".into(),
            Node::Bool(b) => format!("the boolean `{b}`"),
            Node::Int(i) => format!("the number `{i}`"),
            Node::Float(f) => format!("the number `{f}`"),
            Node::Str(s) => format!("the string `{}`", shorten(s)),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a mapping".into(),
        }
    }
}

/// Cuts long values so a message stays one readable line.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// Parses `source` into the located tree. Fails only on YAML errors
/// (syntax, duplicate keys, several documents), never on the shape.
pub(crate) fn parse(source: &str) -> Result<Located, serde_saphyr::Error> {
    serde_saphyr::from_str::<Located>(source)
}

/// Follows `path` from `root`: mapping keys by name, list items by index.
/// Returns the deepest node reached and whether the whole path was found.
pub(crate) fn find<'a>(root: &'a Located, path: &[&str]) -> (&'a Located, bool) {
    let mut at = root;
    for seg in path {
        let next = match &at.value {
            Node::Map(_) => at.value.get(seg),
            Node::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return (at, false),
        }
    }
    (at, true)
}

/// Like [`find`], but returns the key node of the last segment (for errors
/// about a key rather than its value).
pub(crate) fn find_key<'a>(root: &'a Located, path: &[&str]) -> Option<&'a Located> {
    let (last, parent) = path.split_last()?;
    match find(root, parent) {
        (node, true) => node.value.entry(last).map(|(k, _)| k),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Node, E> {
        i128::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Located>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Located>()? {
            let value = map.next_value::<Located>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// Writes the tree back out in its own order, leaving out empty (null)
/// mapping values.
impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Int(i) => s.serialize_i128(*i),
            Node::Float(f) => s.serialize_f64(*f),
            Node::Str(v) => s.serialize_str(v),
            Node::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&item.value)?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let kept: Vec<_> = entries
                    .iter()
                    .filter(|(_, v)| v.value != Node::Null)
                    .collect();
                let mut map = s.serialize_map(Some(kept.len()))?;
                for (k, v) in kept {
                    map.serialize_entry(&k.value, &v.value)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_line_and_column() {
        let root = parse("a: 1\nb:\n  - x\n  - {c: \"y\"}\n").unwrap();
        let (b1, found) = find(&root, &["b", "1", "c"]);
        assert!(found);
        assert_eq!(b1.value, Node::Str("y".into()));
        assert_eq!((b1.referenced.line(), b1.referenced.column()), (4, 9));
        let key = find_key(&root, &["b"]).unwrap();
        assert_eq!((key.referenced.line(), key.referenced.column()), (2, 1));
    }

    #[test]
    fn find_stops_at_the_deepest_node_reached() {
        let root = parse("a:\n  b: 1\n").unwrap();
        let (node, found) = find(&root, &["a", "zz", "q"]);
        assert!(!found);
        assert_eq!(node.referenced.line(), 2);
    }

    #[test]
    fn scalars_keep_the_type_yaml_gave_them() {
        let root = parse("p: 8080\nq: \"8080\"\nr: eighty\ns: 80:8080\nt:\n").unwrap();
        assert_eq!(root.value.get("p").unwrap().value, Node::Int(8080));
        assert_eq!(root.value.get("q").unwrap().value, Node::Str("8080".into()));
        assert_eq!(
            root.value.get("r").unwrap().value,
            Node::Str("eighty".into())
        );
        assert_eq!(
            root.value.get("s").unwrap().value,
            Node::Str("80:8080".into())
        );
        assert_eq!(root.value.get("t").unwrap().value, Node::Null);
    }

    #[test]
    fn serializing_keeps_order_and_drops_nulls() {
        let root = parse("z: 1\na: ~\nm: [x, 2]\n").unwrap();
        let out = serde_saphyr::to_string(&root.value).unwrap();
        assert_eq!(out, "z: 1\nm:\n- x\n- 2\n");
    }
}
