//! Tags: the set of opaque strings an event carries and queries select on.

use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of tags, by convention `key:value` (`workflow:wf-1`). Duplicates collapse; iteration is sorted.
/// Kept as a sorted vector: events carry a handful of tags, for which that is one small allocation
/// instead of a tree node.
///
/// On the wire it is an array of strings; input may also be an object, `{"workflow": "wf-1"}` being read
/// as `["workflow:wf-1"]` (a `null` value is no tag).
///
/// ```
/// use tamma_events::Tags;
///
/// let a: Tags = serde_json::from_str(r#"["workflow:wf-1", "task:t-7", "workflow:wf-1"]"#).unwrap();
/// let b: Tags = serde_json::from_str(r#"{"task": "t-7", "workflow": "wf-1", "user": null}"#).unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.len(), 2);
/// assert_eq!(serde_json::to_string(&a).unwrap(), r#"["task:t-7","workflow:wf-1"]"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tags(Vec<String>);

impl Tags {
    /// No tags.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tag; returns whether it was new.
    pub fn insert(&mut self, tag: impl Into<String>) -> bool {
        let tag = tag.into();
        match self.0.binary_search(&tag) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, tag);
                true
            }
        }
    }

    /// Adds `key:value`.
    #[must_use]
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.insert(format!("{key}:{value}"));
        self
    }

    /// Whether the set holds `tag`.
    #[must_use]
    pub fn contains(&self, tag: &str) -> bool {
        self.0.binary_search_by(|t| t.as_str().cmp(tag)).is_ok()
    }

    /// Whether every tag of `other` is in this set.
    #[must_use]
    pub fn contains_all(&self, other: &Tags) -> bool {
        other.0.iter().all(|t| self.contains(t))
    }

    /// The number of tags.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no tags.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags in sorted order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(String::as_str)
    }
}

impl<S: Into<String>> FromIterator<S> for Tags {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut tags: Vec<String> = iter.into_iter().map(Into::into).collect();
        tags.sort_unstable();
        tags.dedup();
        Self(tags)
    }
}

impl<S: Into<String>, const N: usize> From<[S; N]> for Tags {
    fn from(tags: [S; N]) -> Self {
        tags.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of tag strings or an object of string values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tags, A::Error> {
                let mut tags = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(tag) = seq.next_element::<String>()? {
                    tags.push(tag);
                }
                Ok(tags.into_iter().collect())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tags, A::Error> {
                let mut tags = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Option<String>>()? {
                    if let Some(value) = value {
                        tags.push(format!("{key}:{value}"));
                    }
                }
                Ok(tags.into_iter().collect())
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Tags {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Tags".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Tags: an array of strings (`key:value` by convention), or an object of string values.",
            "oneOf": [
                {"type": "array", "items": {"type": "string"}},
                {"type": "object", "additionalProperties": {"type": ["string", "null"]}}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_string_values() {
        let e = serde_json::from_str::<Tags>(r#"{"a": 1}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = serde_json::from_str::<Tags>(r"[1]").unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        assert!(serde_json::from_str::<Tags>("\"a\"").is_err());
    }

    #[test]
    fn subset() {
        let t = Tags::from(["a:1", "b:2"]);
        assert!(t.contains_all(&Tags::from(["a:1"])));
        assert!(t.contains_all(&Tags::new()));
        assert!(!t.contains_all(&Tags::from(["a:1", "c:3"])));
        assert_eq!(Tags::new().with("a", "1"), Tags::from(["a:1"]));
    }

    #[test]
    fn a_set_whatever_the_order_it_was_built_in() {
        let mut built = Tags::new();
        assert!(built.insert("c:3"));
        assert!(built.insert("a:1"));
        assert!(!built.insert("c:3"), "a duplicate is not new");
        assert!(built.insert("b:2"));
        let collected = Tags::from(["b:2", "a:1", "c:3", "a:1"]);
        assert_eq!(built, collected);
        assert_eq!(built.len(), 3);
        assert_eq!(built.iter().collect::<Vec<_>>(), ["a:1", "b:2", "c:3"]);
        assert!(built.contains("b:2") && !built.contains("b:3"));
        let parsed: Tags = serde_json::from_str(r#"["c:3", "b:2", "a:1", "b:2"]"#).unwrap();
        assert_eq!(parsed, built);
        assert!(Tags::from(["a:1"]) < Tags::from(["a:2"]));
    }
}
