//! A Markdown reference of every config key, generated from the schema and the defaults.

use std::fmt::Write as _;

use serde_json::Value;

use crate::path::child;
use crate::schema::SchemaIndex;

/// The environment variable that sets `path` (`logging.rotation.maxSize` →
/// `TAMMA_LOGGING__ROTATION__MAX_SIZE`).
#[must_use]
pub fn env_var_for(path: &str) -> String {
    let mut out = String::from("TAMMA_");
    for (i, seg) in path.split('.').enumerate() {
        if i > 0 {
            out.push_str("__");
        }
        let mut prev_lower = false;
        for c in seg.chars() {
            if c.is_ascii_uppercase() && prev_lower {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_uppercase());
        }
    }
    out
}

/// One row of the reference.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceRow {
    /// Dotted path.
    pub path: String,
    /// Type, as the schema says.
    pub kind: String,
    /// Default value (JSON), if any.
    pub default: Option<Value>,
    /// Whether a change needs a restart.
    pub restart: bool,
    /// Whether the value is a secret.
    pub secret: bool,
    /// The field's documentation.
    pub description: String,
}

/// Every key of `schema`, with defaults from `defaults` (the default config exported as JSON).
#[must_use]
pub fn reference_rows(schema: &Value, defaults: &Value) -> Vec<ReferenceRow> {
    let index = SchemaIndex::new(schema.clone());
    let mut rows = Vec::new();
    walk(
        &index,
        index.root(),
        Some(defaults),
        "",
        false,
        &mut rows,
        0,
    );
    rows
}

/// The reference as a Markdown table per top-level section.
#[must_use]
pub fn reference_markdown(schema: &Value, defaults: &Value) -> String {
    let mut rows = reference_rows(schema, defaults);
    rows.sort_by_key(|r| r.path.contains(['.', '[']));
    let mut out = String::new();
    let mut section = String::new();
    for r in rows {
        let top = if r.path.contains(['.', '[']) {
            format!("`{}`", r.path.split(['.', '[']).next().unwrap_or(""))
        } else {
            "Top level".to_owned()
        };
        if top != section {
            let _ = write!(
                out,
                "\n### {top}\n\n| key | type | default | environment variable | reload | description |\n|---|---|---|---|---|---|\n"
            );
            section = top;
        }
        let default = r.default.as_ref().map_or_else(String::new, |d| {
            format!("`{}`", d.to_string().replace('|', "\\|"))
        });
        let reload = if r.restart { "restart" } else { "live" };
        let secret = if r.secret {
            " **Secret**: never printed; `_FILE` variant accepted."
        } else {
            ""
        };
        let desc = r.description.replace('\n', " ").replace('|', "\\|");
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | `{}` | {} | {}{} |",
            r.path,
            r.kind,
            default,
            env_var_for(&r.path),
            reload,
            desc,
            secret
        );
    }
    out
}

fn kind_of(index: &SchemaIndex, s: &Value) -> String {
    let r = index.resolve(s);
    if let Some(Value::Array(e)) = r.get("enum") {
        return e
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    for k in ["oneOf", "anyOf"] {
        if let Some(Value::Array(bs)) = r.get(k) {
            let consts: Vec<String> = bs
                .iter()
                .map(|b| index.resolve(b))
                .filter_map(|b| {
                    b.get("const").or_else(|| {
                        b.get("enum")
                            .and_then(|e| e.get(0))
                            .filter(|_| b["enum"].as_array().is_some_and(|a| a.len() == 1))
                    })
                })
                .map(|v| format!("`{v}`"))
                .collect();
            if !consts.is_empty() && consts.len() == bs.len() {
                return consts.join(" \\| ");
            }
        }
    }
    if let Some(name) = s
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        && matches!(name, "Duration" | "ByteSize" | "Secret")
    {
        return match name {
            "Duration" => "duration (ms or `\"30s\"`)".into(),
            "ByteSize" => "size (`\"100MB\"`, `\"64MiB\"`)".into(),
            _ => "secret string".into(),
        };
    }
    match r.get("type") {
        Some(Value::String(t)) => match t.as_str() {
            "array" => "list".into(),
            "object" if r.get("properties").is_none() => "map".into(),
            other => other.into(),
        },
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => {
            for k in ["anyOf", "oneOf"] {
                if let Some(Value::Array(bs)) = r.get(k) {
                    let non_null: Vec<&Value> = bs
                        .iter()
                        .filter(|b| {
                            index.resolve(b).get("type").and_then(Value::as_str) != Some("null")
                        })
                        .collect();
                    if let [one] = non_null.as_slice() {
                        return format!("{} (optional)", kind_of(index, one));
                    }
                    if non_null.iter().all(|b| {
                        index
                            .resolve(b)
                            .get("properties")
                            .and_then(|p| p.get("type"))
                            .is_some()
                    }) {
                        return "`{type, config}`".into();
                    }
                }
            }
            "value".into()
        }
    }
}

fn walk(
    index: &SchemaIndex,
    s: &Value,
    default: Option<&Value>,
    path: &str,
    restart: bool,
    rows: &mut Vec<ReferenceRow>,
    depth: usize,
) {
    if depth > 12 {
        return;
    }
    let restart = restart || s.get("x-tamma-restart") == Some(&Value::Bool(true));
    let r = index.resolve(s);
    // Descend into plain sections (objects with properties), and optional sections.
    let mut target = r;
    if r.get("properties").is_none() {
        for k in ["anyOf", "oneOf"] {
            if let Some(Value::Array(bs)) = r.get(k) {
                let non_null: Vec<&Value> = bs
                    .iter()
                    .filter(|b| {
                        index.resolve(b).get("type").and_then(Value::as_str) != Some("null")
                    })
                    .collect();
                if let [one] = non_null.as_slice() {
                    let resolved = index.resolve(one);
                    if resolved.get("properties").is_some()
                        && resolved
                            .get("properties")
                            .and_then(|p| p.get("type"))
                            .is_none()
                    {
                        target = resolved;
                    }
                }
            }
        }
    }
    if let Some(props) = target
        .get("properties")
        .and_then(Value::as_object)
        .filter(|_| !path.is_empty() || depth == 0)
        && (target
            .get("properties")
            .and_then(|p| p.get("type"))
            .is_none()
            || depth == 0)
    {
        for (k, ps) in props {
            let d = default.and_then(|d| d.get(k));
            walk(index, ps, d, &child(path, k), restart, rows, depth + 1);
        }
        return;
    }
    let description = s
        .get("description")
        .or_else(|| r.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    rows.push(ReferenceRow {
        path: path.to_owned(),
        kind: kind_of(index, s),
        default: default.cloned(),
        restart,
        secret: index.is_secret(s),
        description,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names() {
        assert_eq!(
            env_var_for("logging.rotation.maxSize"),
            "TAMMA_LOGGING__ROTATION__MAX_SIZE"
        );
        assert_eq!(
            env_var_for("monitoring.healthChecks.timeout"),
            "TAMMA_MONITORING__HEALTH_CHECKS__TIMEOUT"
        );
        assert_eq!(env_var_for("dataDir"), "TAMMA_DATA_DIR");
    }
}
