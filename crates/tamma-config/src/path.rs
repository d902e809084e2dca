//! Dotted paths into a config tree: `a.b."key.with.dots".c`, and array indexes as `outputs[0]`.

use std::fmt::Write as _;

/// Splits a dotted path into its segments. A quoted segment may contain dots:
/// `resilience.breakers."events.append".failureRate` → `["resilience", "breakers", "events.append",
/// "failureRate"]`. Array indexes are written `outputs[0]` and become their own segment (`"0"`).
///
/// # Errors
/// An empty path, an empty segment or an unclosed quote.
pub fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    if path.is_empty() {
        return Err("empty path".into());
    }
    loop {
        let mut seg = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == '"' {
                    closed = true;
                    break;
                }
                seg.push(c);
            }
            if !closed {
                return Err(format!("unclosed quote in path {path:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c == '[' {
                    break;
                }
                seg.push(c);
                chars.next();
            }
        }
        if seg.is_empty() {
            return Err(format!("empty segment in path {path:?}"));
        }
        out.push(seg);
        while chars.peek() == Some(&'[') {
            chars.next();
            let mut idx = String::new();
            for c in chars.by_ref() {
                if c == ']' {
                    break;
                }
                idx.push(c);
            }
            if idx.parse::<usize>().is_err() {
                return Err(format!("bad array index [{idx}] in path {path:?}"));
            }
            out.push(idx);
        }
        match chars.next() {
            None => return Ok(out),
            Some('.') => {}
            Some(c) => return Err(format!("unexpected {c:?} in path {path:?}")),
        }
    }
}

/// Joins segments back into the dotted form; numeric segments below an array print as `[i]`.
#[must_use]
pub fn format_path(segments: &[String], tree: Option<&serde_json::Value>) -> String {
    let mut out = String::new();
    let mut node = tree;
    for seg in segments {
        let is_index = node.is_some_and(serde_json::Value::is_array);
        if is_index {
            let _ = write!(out, "[{seg}]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            if seg.contains('.') || seg.contains('[') || seg.is_empty() {
                let _ = write!(out, "\"{seg}\"");
            } else {
                out.push_str(seg);
            }
        }
        node = node.and_then(|n| match n {
            serde_json::Value::Object(m) => m.get(seg),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        });
    }
    out
}

/// Appends a key to a dotted path, quoting it when it contains a dot.
#[must_use]
pub(crate) fn child(path: &str, key: &str) -> String {
    tamma_core::join_path(path, key)
}

/// Appends an array index to a path.
#[must_use]
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_indexed() {
        assert_eq!(parse_path("a.b.c").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            parse_path("resilience.breakers.\"events.append\".x").unwrap(),
            ["resilience", "breakers", "events.append", "x"]
        );
        assert_eq!(
            parse_path("logging.outputs[1].type").unwrap(),
            ["logging", "outputs", "1", "type"]
        );
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("a.\"b").is_err());
        assert!(parse_path("").is_err());
    }

    #[test]
    fn formats_back() {
        let tree = serde_json::json!({"logging": {"outputs": [{"type": "x"}]}, "m": {"a.b": 1}});
        let segs = parse_path("logging.outputs[0].type").unwrap();
        assert_eq!(format_path(&segs, Some(&tree)), "logging.outputs[0].type");
        let segs = parse_path("m.\"a.b\"").unwrap();
        assert_eq!(format_path(&segs, Some(&tree)), "m.\"a.b\"");
    }
}
