//! Operations on the untyped config tree (`serde_json::Value`) that keep provenance in step.

use serde_json::{Map, Value};

use crate::path::{child, index};
use crate::source::{Provenance, Source};

/// Merges `value` into `tree` at `segments`: objects merge key by key, anything else replaces. Every
/// leaf written is recorded in `prov` with `source`.
pub(crate) fn merge_at(
    tree: &mut Value,
    prov: &mut Provenance,
    segments: &[String],
    value: Value,
    source: &Source,
) {
    let mut node = tree;
    let mut path = String::new();
    for seg in segments {
        path = if node.is_array() {
            seg.parse::<usize>()
                .map_or_else(|_| child(&path, seg), |i| index(&path, i))
        } else {
            child(&path, seg)
        };
        let array_index = match &*node {
            Value::Array(a) => seg.parse::<usize>().ok().filter(|i| *i < a.len()),
            _ => None,
        };
        if let Some(i) = array_index {
            // `array_index` is only Some for an array holding index `i`.
            let Value::Array(a) = node else {
                unreachable!("checked to be an array above")
            };
            node = &mut a[i];
            continue;
        }
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        // Just made sure `node` is an object.
        let Value::Object(m) = node else {
            unreachable!("node was set to an object above")
        };
        node = m.entry(seg.clone()).or_insert(Value::Null);
        if node.is_null() {
            *node = Value::Object(Map::new());
            prov.remove_below(&path);
        }
    }
    merge_value(node, prov, &path, value, source);
}

fn merge_value(node: &mut Value, prov: &mut Provenance, path: &str, value: Value, source: &Source) {
    match (node, value) {
        (Value::Object(dst), Value::Object(src)) if !src.is_empty() => {
            for (k, v) in src {
                let p = child(path, &k);
                let slot = dst.entry(k).or_insert(Value::Null);
                merge_value(slot, prov, &p, v, source);
            }
        }
        (node, value) => {
            prov.remove_below(path);
            record_leaves(prov, path, &value, source);
            *node = value;
        }
    }
}

fn record_leaves(prov: &mut Provenance, path: &str, value: &Value, source: &Source) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                record_leaves(prov, &child(path, k), v, source);
            }
        }
        _ => prov.set(path, source.clone()),
    }
}

/// The value at `segments`, if any.
pub(crate) fn get<'a>(tree: &'a Value, segments: &[String]) -> Option<&'a Value> {
    let mut node = tree;
    for seg in segments {
        node = match node {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Replaces the value at `segments` (which must exist up to the parent).
pub(crate) fn replace(tree: &mut Value, segments: &[String], value: Value) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        *tree = value;
        return true;
    };
    let mut node = tree;
    for seg in parents {
        node = match node {
            Value::Object(m) => match m.get_mut(seg) {
                Some(n) => n,
                None => return false,
            },
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            true
        }
        _ => false,
    }
}

/// Every leaf path whose value differs between `old` and `new` (dotted, with `[i]` for arrays; an
/// array that changed is reported as a whole).
pub(crate) fn diff(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => diff(va, vb, &child(path, k), out),
                    None => out.push(child(path, k)),
                }
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(child(path, k));
            }
        }
        (a, b) if a != b => out.push(path.to_owned()),
        _ => {}
    }
}

/// Flattens a tree to `(path, leaf value)` pairs (arrays and empty objects are leaves).
pub(crate) fn flatten(value: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(v, &child(path, k), out);
            }
        }
        v => out.push((path.to_owned(), v.clone())),
    }
}

/// The value at `segments`, mutably.
pub(crate) fn get_mut<'a>(tree: &'a mut Value, segments: &[String]) -> Option<&'a mut Value> {
    let mut node = tree;
    for seg in segments {
        node = match node {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn segs(p: &str) -> Vec<String> {
        crate::path::parse_path(p).unwrap()
    }

    #[test]
    fn merge_records_provenance_and_replaces_arrays() {
        let mut tree = json!({"a": {"b": 1, "c": [1, 2]}, "d": null});
        let mut prov = Provenance::default();
        let defaults = tree.clone();
        merge_at(&mut tree, &mut prov, &[], defaults, &Source::Default);
        let file = Source::File {
            path: "x.toml".into(),
        };
        merge_at(
            &mut tree,
            &mut prov,
            &[],
            json!({"a": {"c": [3]}, "d": {"e": true}}),
            &file,
        );
        assert_eq!(tree, json!({"a": {"b": 1, "c": [3]}, "d": {"e": true}}));
        assert_eq!(prov.source_of("a.b"), Some(&Source::Default));
        assert_eq!(prov.source_of("a.c"), Some(&file));
        assert_eq!(prov.source_of("d.e"), Some(&file));
        let env = Source::Env {
            var: "TAMMA_A__B".into(),
        };
        merge_at(&mut tree, &mut prov, &segs("a.b"), json!(5), &env);
        assert_eq!(get(&tree, &segs("a.b")), Some(&json!(5)));
        assert_eq!(prov.source_of("a.b"), Some(&env));
        assert_eq!(prov.source_at_or_below("a"), Some(&env));
    }

    #[test]
    fn diff_lists_changed_leaves() {
        let mut out = vec![];
        diff(
            &json!({"a": {"b": 1, "c": 2}, "x": [1]}),
            &json!({"a": {"b": 1, "c": 3}, "x": [2]}),
            "",
            &mut out,
        );
        assert_eq!(out, ["a.c", "x"]);
    }
}
