//! Checks an untyped config tree against the JSON Schema of the typed config, collecting *every*
//! problem (serde stops at the first), binds relaxed environment names to schema paths, and coerces
//! string values (environment, `--set`) to the schema's types.

use serde_json::{Map, Value};
use tamma_core::Problem;

use crate::path::{child, index};

/// The JSON Schema of a config type, with helpers that walk it.
#[derive(Clone, Debug)]
pub(crate) struct SchemaIndex {
    root: Value,
}

/// How a relaxed environment name bound to the schema.
#[derive(Debug)]
pub(crate) struct Binding {
    /// The exact path segments.
    pub(crate) segments: Vec<String>,
    /// The schema node at that path (refs resolved).
    pub(crate) node: Value,
    /// Whether the node holds a secret.
    pub(crate) secret: bool,
}

const MAX_DEPTH: usize = 64;

impl SchemaIndex {
    pub(crate) fn new(root: Value) -> Self {
        Self { root }
    }

    pub(crate) fn root(&self) -> &Value {
        &self.root
    }

    /// Follows `$ref`s (local `#/$defs/...` and `#/definitions/...`).
    pub(crate) fn resolve<'a>(&'a self, mut s: &'a Value) -> &'a Value {
        for _ in 0..MAX_DEPTH {
            let Some(r) = s.get("$ref").and_then(Value::as_str) else {
                return s;
            };
            let Some(target) = r
                .strip_prefix("#/")
                .map(|p| p.split('/').try_fold(&self.root, |node, key| node.get(key)))
            else {
                return s;
            };
            match target {
                Some(t) => s = t,
                None => return s,
            }
        }
        s
    }

    /// The non-null branches of an `anyOf`/`oneOf`, or the node itself.
    fn branches<'a>(&'a self, s: &'a Value) -> Vec<&'a Value> {
        let s = self.resolve(s);
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(bs)) = s.get(key) {
                return bs
                    .iter()
                    .map(|b| self.resolve(b))
                    .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                    .collect();
            }
        }
        vec![s]
    }

    fn properties<'a>(&'a self, s: &'a Value) -> Option<&'a Map<String, Value>> {
        self.resolve(s).get("properties").and_then(Value::as_object)
    }

    /// The schema node for an exact path, if the schema has one.
    pub(crate) fn node_at(&self, segments: &[String]) -> Option<Value> {
        let mut node = self.root.clone();
        for seg in segments {
            let mut next = None;
            for b in self.branches(&node) {
                if let Some(p) = self.properties(b).and_then(|p| p.get(seg)) {
                    next = Some(p.clone());
                    break;
                }
                if let Some(ap) = b.get("additionalProperties").filter(|a| a.is_object()) {
                    next = Some(ap.clone());
                    break;
                }
                if let Some(items) = b.get("items").filter(|_| seg.parse::<usize>().is_ok()) {
                    next = Some(items.clone());
                    break;
                }
            }
            node = next?;
        }
        Some(node)
    }

    pub(crate) fn is_secret(&self, s: &Value) -> bool {
        self.branches(s)
            .iter()
            .any(|b| b.get("x-tamma-secret") == Some(&Value::Bool(true)))
            || self.resolve(s).get("x-tamma-secret") == Some(&Value::Bool(true))
    }

    /// Binds relaxed segments (case-insensitive, `_` and `-` ignored) to exact property names.
    ///
    /// # Errors
    /// A sentence saying which segment did not bind, with the closest key when there is one.
    pub(crate) fn bind_relaxed(&self, raw: &[String]) -> Result<Binding, String> {
        let mut node = self.root.clone();
        let mut segments = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            let want = normalize(seg);
            let here = crate::path::format_path(&segments, None);
            let mut found = None;
            let mut is_map = false;
            let mut is_list = false;
            let mut candidates: Vec<String> = Vec::new();
            for b in self.branches(&node) {
                if let Some(props) = self.properties(b) {
                    for (name, s) in props {
                        candidates.push(name.clone());
                        if normalize(name) == want {
                            found = Some((name.clone(), s.clone()));
                        }
                    }
                }
                is_map |= b.get("additionalProperties").is_some_and(Value::is_object);
                is_list |= b.get("items").is_some();
            }
            match found {
                Some((name, s)) => {
                    segments.push(name);
                    node = s;
                }
                None if is_map || is_list => {
                    return Err(format!(
                        "{here} is a {}: set it as a whole, as JSON",
                        if is_map { "map" } else { "list" }
                    ));
                }
                None => {
                    let prefix = crate::path::format_path(&segments, None);
                    let suggestion = self
                        .suggest_path(raw)
                        .or_else(|| {
                            closest(seg, candidates.iter().map(String::as_str))
                                .map(|c| child(&prefix, c))
                        })
                        .map(|c| format!(" (did you mean {c}?)"))
                        .unwrap_or_default();
                    let what = if i == 0 {
                        "no config section".to_owned()
                    } else {
                        format!("no key under {prefix}")
                    };
                    return Err(format!("{what} matches {seg:?}{suggestion}"));
                }
            }
        }
        let secret = self.is_secret(&node);
        Ok(Binding {
            segments,
            node: self.resolve(&node).clone(),
            secret,
        })
    }

    /// The existing path closest to `raw` (each segment matched exactly, relaxed, or as the closest
    /// plausible typo), when every segment finds one.
    pub(crate) fn suggest_path(&self, raw: &[String]) -> Option<String> {
        let mut node = self.root.clone();
        let mut out = Vec::new();
        for seg in raw {
            let mut names: Vec<(String, Value)> = Vec::new();
            for b in self.branches(&node) {
                if let Some(props) = self.properties(b) {
                    names.extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            let pick = names
                .iter()
                .find(|(k, _)| normalize(k) == normalize(seg))
                .or_else(|| {
                    let c = closest(seg, names.iter().map(|(k, _)| k.as_str()))?;
                    names.iter().find(|(k, _)| k == c)
                })?
                .clone();
            out.push(pick.0);
            node = pick.1;
        }
        Some(crate::path::format_path(&out, None))
    }

    /// Turns a string from the environment or the command line into the JSON value the schema wants
    /// (best effort: when nothing fits, the string itself, which validation then reports).
    pub(crate) fn coerce(&self, s: &Value, raw: &str) -> Value {
        let mut types = Vec::new();
        for b in self.branches(s) {
            collect_types(b, &mut types);
            if b.get("oneOf").is_some() || b.get("anyOf").is_some() {
                types.push("object");
            }
        }
        let trimmed = raw.trim();
        if types.contains(&"integer") {
            if let Ok(n) = trimmed.parse::<i64>() {
                return Value::from(n);
            }
            if let Ok(n) = trimmed.parse::<u64>() {
                return Value::from(n);
            }
        }
        if types.contains(&"number")
            && let Some(n) = trimmed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
        {
            return Value::Number(n);
        }
        if types.contains(&"boolean") {
            match trimmed.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => return Value::Bool(true),
                "false" | "no" | "off" | "0" => return Value::Bool(false),
                _ => {}
            }
        }
        if (types.contains(&"object") || types.contains(&"array"))
            && (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(v) = serde_json::from_str(trimmed)
        {
            return v;
        }
        if types.contains(&"null") && trimmed == "null" {
            return Value::Null;
        }
        Value::String(raw.to_owned())
    }

    /// Validates `value` against schema node `s`, pushing every problem found.
    pub(crate) fn validate(&self, value: &Value, s: &Value, path: &str, out: &mut Vec<Problem>) {
        self.validate_depth(value, s, path, out, 0);
    }

    fn validate_depth(
        &self,
        value: &Value,
        s: &Value,
        path: &str,
        out: &mut Vec<Problem>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        if self.is_secret(s) {
            // Never echo a secret's value in a problem, whatever is wrong with it.
            if !value.is_string() {
                out.push(Problem::new(
                    path,
                    "expected a string (the secret's value is not shown)",
                ));
            }
            return;
        }
        let s = self.resolve(s);
        if s == &Value::Bool(true) || s.as_object().is_some_and(Map::is_empty) {
            return;
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            for b in all {
                self.validate_depth(value, b, path, out, depth + 1);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = s.get(key) {
                self.validate_union(value, s, branches, path, out, depth);
                return;
            }
        }
        if let Some(t) = s.get("type") {
            let allowed: Vec<&str> = match t {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !allowed.is_empty() && !allowed.iter().any(|t| type_matches(t, value)) {
                out.push(Problem::new(
                    path,
                    format!(
                        "expected {}, found {}",
                        allowed.join(" or "),
                        describe(value)
                    ),
                ));
                return;
            }
        }
        if let Some(Value::Array(options)) = s.get("enum")
            && !options.contains(value)
        {
            let list: Vec<String> = options.iter().map(short).collect();
            out.push(Problem::new(
                path,
                format!("{} is not one of {}", short(value), list.join(", ")),
            ));
            return;
        }
        if let Some(c) = s.get("const")
            && c != value
        {
            out.push(Problem::new(path, format!("must be {}", short(c))));
            return;
        }
        match value {
            Value::Number(n) => check_number(n, s, path, out),
            Value::String(st) => {
                if let Some(p) = s.get("pattern").and_then(Value::as_str)
                    && regex::Regex::new(p).is_ok_and(|re| !re.is_match(st))
                {
                    let what = s
                        .get("description")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("must match {p}"), |d| format!("invalid: {d}"));
                    out.push(Problem::new(path, format!("{st:?} {what}")));
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.validate_depth(item, item_schema, &index(path, i), out, depth + 1);
                    }
                }
            }
            Value::Object(map) => self.validate_object(map, s, path, out, depth),
            _ => {}
        }
    }

    fn validate_object(
        &self,
        map: &Map<String, Value>,
        s: &Value,
        path: &str,
        out: &mut Vec<Problem>,
        depth: usize,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties");
        if let Some(Value::Array(required)) = s.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    out.push(Problem::new(child(path, r), "is required"));
                }
            }
        }
        for (k, v) in map {
            let p = child(path, k);
            if let Some(ps) = props.and_then(|ps| ps.get(k)) {
                self.validate_depth(v, ps, &p, out, depth + 1);
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let names = props
                        .into_iter()
                        .flat_map(|ps| ps.keys().map(String::as_str));
                    let hint = closest(k, names)
                        .map(|c| format!(" (did you mean {c:?}?)"))
                        .unwrap_or_default();
                    out.push(Problem::new(p, format!("unknown key{hint}")));
                }
                Some(extra @ Value::Object(_)) => self.validate_depth(v, extra, &p, out, depth + 1),
                _ => {}
            }
        }
    }

    fn validate_union(
        &self,
        value: &Value,
        s: &Value,
        branches: &[Value],
        path: &str,
        out: &mut Vec<Problem>,
        depth: usize,
    ) {
        let mut attempts = Vec::new();
        for b in branches {
            let mut probs = Vec::new();
            self.validate_depth(value, b, path, &mut probs, depth + 1);
            if probs.is_empty() {
                return;
            }
            attempts.push((b, probs));
        }
        // A tagged union (`{type, config}`): pick the branch whose `type` matches and report its problems.
        if let Some(tag) = value.get("type").and_then(Value::as_str) {
            let mut tags = Vec::new();
            for (b, probs) in &attempts {
                let b = self.resolve(b);
                let Some(t) = b.get("properties").and_then(|p| p.get("type")) else {
                    continue;
                };
                let t = self.resolve(t);
                let names: Vec<&str> = t
                    .get("const")
                    .and_then(Value::as_str)
                    .into_iter()
                    .chain(
                        t.get("enum")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str),
                    )
                    .collect();
                if names.contains(&tag) {
                    out.extend(probs.iter().cloned());
                    return;
                }
                tags.extend(names.into_iter().map(str::to_owned));
            }
            if !tags.is_empty() {
                let hint = closest(tag, tags.iter().map(String::as_str))
                    .map(|c| format!(" (did you mean {c:?}?)"))
                    .unwrap_or_default();
                out.push(Problem::new(
                    child(path, "type"),
                    format!(
                        "unknown type {tag:?}{hint}; expected one of {}",
                        tags.join(", ")
                    ),
                ));
                return;
            }
        }
        // An enum whose variants are documented: a union of constants.
        let consts: Vec<&Value> = branches
            .iter()
            .map(|b| self.resolve(b))
            .filter_map(|b| {
                b.get("const").or_else(|| match b.get("enum") {
                    Some(Value::Array(e)) if e.len() == 1 => e.first(),
                    _ => None,
                })
            })
            .collect();
        if !consts.is_empty() && consts.len() == branches.len() {
            let list: Vec<String> = consts.iter().map(|c| short(c)).collect();
            out.push(Problem::new(
                path,
                format!("{} is not one of {}", short(value), list.join(", ")),
            ));
            return;
        }
        // Only one branch besides null: its problems are the clearest.
        let non_null: Vec<_> = attempts
            .iter()
            .filter(|(b, _)| self.resolve(b).get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [(_, probs)] = non_null.as_slice() {
            out.extend(probs.iter().cloned());
            return;
        }
        let expected = s.get("description").and_then(Value::as_str).map_or_else(
            || {
                let mut types = Vec::new();
                for b in branches {
                    collect_types(self.resolve(b), &mut types);
                }
                types.join(" or ")
            },
            str::to_owned,
        );
        out.push(Problem::new(
            path,
            format!("invalid value {}: expected {expected}", short(value)),
        ));
    }
}

fn collect_types<'a>(s: &'a Value, out: &mut Vec<&'a str>) {
    match s.get("type") {
        Some(Value::String(t)) => out.push(t),
        Some(Value::Array(ts)) => out.extend(ts.iter().filter_map(Value::as_str)),
        _ => {
            if s.get("properties").is_some() || s.get("additionalProperties").is_some() {
                out.push("object");
            }
        }
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn check_number(n: &serde_json::Number, s: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(x) = n.as_f64() else { return };
    let bound = |k: &str| s.get(k).and_then(Value::as_f64);
    let (min, max) = match s.get("format").and_then(Value::as_str) {
        Some("uint8") => (Some(0.0), Some(f64::from(u8::MAX))),
        Some("uint16") => (Some(0.0), Some(f64::from(u16::MAX))),
        Some("uint32" | "uint") => (Some(0.0), Some(f64::from(u32::MAX))),
        Some("uint64") => (Some(0.0), None),
        Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
        _ => (None, None),
    };
    if let Some(m) = bound("minimum").or(min)
        && x < m
    {
        out.push(Problem::new(
            path,
            format!("must be at least {m} (found {n})"),
        ));
    }
    if let Some(m) = bound("maximum").or(max)
        && x > m
    {
        out.push(Problem::new(
            path,
            format!("must be at most {m} (found {n})"),
        ));
    }
    if let Some(m) = bound("exclusiveMinimum")
        && x <= m
    {
        out.push(Problem::new(
            path,
            format!("must be greater than {m} (found {n})"),
        ));
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a table".into(),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.floor_char_boundary(57)])
    } else {
        s
    }
}

/// Lowercases and drops `_` and `-`, for relaxed binding.
pub(crate) fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let w = normalize(word);
    candidates
        .map(|c| {
            let n = normalize(c);
            let score = if n == w {
                1.0
            } else {
                strsim::jaro_winkler(&w, &n)
            };
            (c, score)
        })
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> SchemaIndex {
        SchemaIndex::new(json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "level": {"enum": ["info", "debug"]},
                "size": {"type": "integer", "format": "uint32", "minimum": 0},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "out": {"type": "array", "items": {"$ref": "#/$defs/Out"}},
                "maxSize": {"type": "string"}
            },
            "$defs": {"Out": {"oneOf": [
                {"type": "object", "properties": {"type": {"const": "stdout"}}, "required": ["type"], "additionalProperties": false},
                {"type": "object", "properties": {"type": {"const": "file"}, "config": {"type": "object", "properties": {"path": {"type": "string"}}, "additionalProperties": false}}, "required": ["type"], "additionalProperties": false}
            ]}}
        }))
    }

    #[test]
    fn collects_every_problem_with_paths() {
        let s = schema();
        let v = json!({"level": "loud", "size": -1, "labels": {"a": 1}, "out": [{"type": "file", "config": {"pth": "x"}}, {"type": "syslg"}], "maxsize": "1"});
        let mut out = vec![];
        s.validate(&v, s.root(), "", &mut out);
        let text: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"level: \"loud\" is not one of \"info\", \"debug\"".to_owned()),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("size: must be at least 0")),
            "{text:?}"
        );
        assert!(
            text.contains(&"labels.a: expected string, found number 1".to_owned()),
            "{text:?}"
        );
        assert!(
            text.contains(&"out[0].config.pth: unknown key (did you mean \"path\"?)".to_owned()),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("out[1].type: unknown type \"syslg\"")),
            "{text:?}"
        );
        assert!(
            text.contains(&"maxsize: unknown key (did you mean \"maxSize\"?)".to_owned()),
            "{text:?}"
        );
        assert_eq!(out.len(), 6, "{text:?}");
    }

    #[test]
    fn binds_relaxed_names_and_coerces() {
        let s = schema();
        let b = s.bind_relaxed(&["MAX_SIZE".into()]).unwrap();
        assert_eq!(b.segments, ["maxSize"]);
        let b = s.bind_relaxed(&["SIZE".into()]).unwrap();
        assert_eq!(s.coerce(&b.node, "42"), json!(42));
        assert!(
            s.bind_relaxed(&["LABELS".into(), "X".into()])
                .unwrap_err()
                .contains("map")
        );
        assert!(
            s.bind_relaxed(&["LEVL".into()])
                .unwrap_err()
                .contains("did you mean level")
        );
    }
}
