//! Redaction of event fields, applied in place on the event's JSON values (no string round-trip).

use std::borrow::Cow;

use regex::Regex;
use serde_json::Value;
use tamma_events::{Event, EventMetadata};

use crate::config::{RedactionConfig, path_problem};
use crate::error::{Error, Result};

/// What a redacted field is replaced by.
pub const REDACTED: &str = "[REDACTED]";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A path into `data` (empty = the whole payload).
    Data(Vec<Seg>),
    /// A metadata key (`None` = every metadata string).
    Metadata(Option<String>),
}

fn parse(path: &str) -> Target {
    let mut parts = path.split('.');
    let root = parts.next();
    let rest: Vec<&str> = parts.collect();
    if root == Some("metadata") {
        return Target::Metadata(rest.first().map(|s| (*s).to_owned()));
    }
    Target::Data(
        rest.into_iter()
            .map(|s| {
                if s == "*" {
                    Seg::Any
                } else {
                    Seg::Key(s.to_owned())
                }
            })
            .collect(),
    )
}

/// Redaction compiled from a [`RedactionConfig`]: field paths replaced by `"[REDACTED]"`, regex
/// replacements inside string values. Applied to an event in place, walking its `serde_json::Value`s.
///
/// ```
/// use tamma_emitter::{RedactionConfig, RedactionPattern, Redactor};
/// use tamma_events::Event;
///
/// let redactor = Redactor::new(&RedactionConfig {
///     enabled: true,
///     fields: vec!["data.password".into(), "data.cards.*.number".into()],
///     patterns: vec![RedactionPattern {
///         field: "data".into(),
///         regex: r"\b\d{3}-\d{2}-\d{4}\b".into(),
///         replacement: "***-**-****".into(),
///     }],
/// })
/// .unwrap();
/// let mut event = Event::new("USER.SIGNED_UP").data(serde_json::json!({
///     "password": "hunter2",
///     "cards": [{"number": "4111", "brand": "visa"}],
///     "note": "ssn 123-45-6789",
/// }));
/// redactor.apply(&mut event);
/// assert_eq!(event.data.to_value()["password"], "[REDACTED]");
/// assert_eq!(event.data.to_value()["cards"][0]["number"], "[REDACTED]");
/// assert_eq!(event.data.to_value()["cards"][0]["brand"], "visa");
/// assert_eq!(event.data.to_value()["note"], "ssn ***-**-****");
/// ```
#[derive(Clone, Debug)]
pub struct Redactor {
    enabled: bool,
    fields: Vec<Target>,
    patterns: Vec<(Target, Regex, String)>,
}

impl Redactor {
    /// Compiles `config`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad path or regex (`redaction.patterns[0].regex`).
    pub fn new(config: &RedactionConfig) -> Result<Self> {
        let mut fields = Vec::with_capacity(config.fields.len());
        for (i, f) in config.fields.iter().enumerate() {
            if let Some(message) = path_problem(f).or_else(|| {
                (f == "data" || f == "metadata")
                    .then(|| "names a whole section; name a field inside it".to_owned())
            }) {
                return Err(Error::Config {
                    path: format!("redaction.fields[{i}]"),
                    message,
                });
            }
            fields.push(parse(f));
        }
        let mut patterns = Vec::with_capacity(config.patterns.len());
        for (i, p) in config.patterns.iter().enumerate() {
            if let Some(message) = path_problem(&p.field) {
                return Err(Error::Config {
                    path: format!("redaction.patterns[{i}].field"),
                    message,
                });
            }
            let re = Regex::new(&p.regex).map_err(|e| Error::Config {
                path: format!("redaction.patterns[{i}].regex"),
                message: format!("is not a valid regular expression: {e}"),
            })?;
            patterns.push((parse(&p.field), re, p.replacement.clone()));
        }
        Ok(Self {
            enabled: config.enabled,
            fields,
            patterns,
        })
    }

    /// A redactor that changes nothing.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            fields: Vec::new(),
            patterns: Vec::new(),
        }
    }

    /// Whether applying it can change anything.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.enabled && !(self.fields.is_empty() && self.patterns.is_empty())
    }

    /// Redacts `event` in place.
    pub fn apply(&self, event: &mut Event) {
        if !self.is_active() {
            return;
        }
        // The payload is kept as JSON text: parsed once, only when a data rule applies, and written
        // back after every rule ran.
        let mut data: Option<Value> = None;
        for f in &self.fields {
            match f {
                Target::Data(path) => {
                    mask_at(data.get_or_insert_with(|| event.data.to_value()), path);
                }
                Target::Metadata(Some(key)) => {
                    if let Some(v) = metadata_value(&mut event.metadata, key) {
                        REDACTED.clone_into(v);
                    }
                }
                Target::Metadata(None) => {}
            }
        }
        for (target, re, replacement) in &self.patterns {
            match target {
                Target::Data(path) => {
                    let root = data.get_or_insert_with(|| event.data.to_value());
                    visit_at(root, path, &mut |v| {
                        replace_strings(v, re, replacement);
                    });
                }
                Target::Metadata(Some(key)) => {
                    if let Some(v) = metadata_value(&mut event.metadata, key) {
                        replace_one(v, re, replacement);
                    }
                }
                Target::Metadata(None) => {
                    for v in metadata_strings(&mut event.metadata) {
                        replace_one(v, re, replacement);
                    }
                }
            }
        }
        if let Some(data) = data {
            event.data = data.into();
        }
    }
}

/// Replaces the value at `path` (when present) with `"[REDACTED]"`.
fn mask_at(root: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    visit_at(root, parents, &mut |parent| match (parent, last) {
        (Value::Object(m), Seg::Key(k)) => {
            if let Some(v) = m.get_mut(k) {
                *v = Value::String(REDACTED.to_owned());
            }
        }
        (Value::Object(m), Seg::Any) => {
            for v in m.values_mut() {
                *v = Value::String(REDACTED.to_owned());
            }
        }
        (Value::Array(a), Seg::Key(k)) => {
            if let Some(v) = k.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *v = Value::String(REDACTED.to_owned());
            }
        }
        (Value::Array(a), Seg::Any) => {
            for v in a {
                *v = Value::String(REDACTED.to_owned());
            }
        }
        _ => {}
    });
}

/// Calls `f` on every value reached by `path` (`*` fans out over object values and array elements).
fn visit_at(v: &mut Value, path: &[Seg], f: &mut dyn FnMut(&mut Value)) {
    let Some((first, rest)) = path.split_first() else {
        f(v);
        return;
    };
    match (v, first) {
        (Value::Object(m), Seg::Key(k)) => {
            if let Some(child) = m.get_mut(k) {
                visit_at(child, rest, f);
            }
        }
        (Value::Object(m), Seg::Any) => {
            for child in m.values_mut() {
                visit_at(child, rest, f);
            }
        }
        (Value::Array(a), Seg::Key(k)) => {
            if let Some(child) = k.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                visit_at(child, rest, f);
            }
        }
        (Value::Array(a), Seg::Any) => {
            for child in a {
                visit_at(child, rest, f);
            }
        }
        _ => {}
    }
}

/// Applies the regex to every string at or below `v`.
fn replace_strings(v: &mut Value, re: &Regex, replacement: &str) {
    match v {
        Value::String(s) => replace_one(s, re, replacement),
        Value::Array(a) => a
            .iter_mut()
            .for_each(|c| replace_strings(c, re, replacement)),
        Value::Object(m) => m
            .values_mut()
            .for_each(|c| replace_strings(c, re, replacement)),
        _ => {}
    }
}

fn replace_one(s: &mut String, re: &Regex, replacement: &str) {
    if let Cow::Owned(new) = re.replace_all(s, replacement) {
        *s = new;
    }
}

fn metadata_value<'a>(m: &'a mut EventMetadata, key: &str) -> Option<&'a mut String> {
    match key {
        "workflowVersion" => m.workflow_version.as_mut(),
        "userId" => m.user_id.as_mut(),
        "sessionId" => m.session_id.as_mut(),
        "requestId" => m.request_id.as_mut(),
        "correlationId" => m.correlation_id.as_mut(),
        "causationId" => m.causation_id.as_mut(),
        other => m.extra.get_mut(other),
    }
}

fn metadata_strings(m: &mut EventMetadata) -> impl Iterator<Item = &mut String> {
    [
        m.workflow_version.as_mut(),
        m.user_id.as_mut(),
        m.session_id.as_mut(),
        m.request_id.as_mut(),
        m.correlation_id.as_mut(),
        m.causation_id.as_mut(),
    ]
    .into_iter()
    .flatten()
    .chain(m.extra.values_mut())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedactionPattern;
    use serde_json::json;

    fn redactor(fields: &[&str], patterns: &[(&str, &str, &str)]) -> Redactor {
        Redactor::new(&RedactionConfig {
            enabled: true,
            fields: fields.iter().map(|s| (*s).to_owned()).collect(),
            patterns: patterns
                .iter()
                .map(|(f, r, p)| RedactionPattern {
                    field: (*f).to_owned(),
                    regex: (*r).to_owned(),
                    replacement: (*p).to_owned(),
                })
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn fields_arrays_wildcards_and_missing_paths() {
        let r = redactor(
            &[
                "data.user.password",
                "data.items.1",
                "data.tokens.*",
                "data.absent.deep",
                "metadata.userId",
                "metadata.team",
            ],
            &[],
        );
        let mut md = EventMetadata {
            user_id: Some("u-1".into()),
            ..EventMetadata::default()
        };
        md.extra.insert("team".into(), "blue".into());
        let mut e = Event::new("A").metadata(md).data(json!({
            "user": {"name": "ann", "password": "pw"},
            "items": ["a", "b", "c"],
            "tokens": {"x": 1, "y": [2]},
            "n": 3
        }));
        r.apply(&mut e);
        assert_eq!(
            e.data,
            json!({
                "user": {"name": "ann", "password": REDACTED},
                "items": ["a", REDACTED, "c"],
                "tokens": {"x": REDACTED, "y": REDACTED},
                "n": 3
            })
        );
        assert_eq!(e.metadata.user_id.as_deref(), Some(REDACTED));
        assert_eq!(e.metadata.extra["team"], REDACTED);
        // A path that is absent adds nothing.
        assert!(e.data.to_value().get("absent").is_none());
    }

    #[test]
    fn patterns_recurse_under_their_field() {
        let r = redactor(
            &[],
            &[
                ("data", r"\d{4}-\d{4}", "####"),
                ("data.keep", "x", "y"),
                ("metadata", "secret-(\\w+)", "s-$1"),
            ],
        );
        let mut e = Event::new("A")
            .metadata(EventMetadata {
                session_id: Some("secret-abc".into()),
                ..EventMetadata::default()
            })
            .data(json!({"a": "card 1234-5678", "b": [{"c": "1111-2222 and 3333-4444"}], "keep": "x", "n": 12345678}));
        r.apply(&mut e);
        assert_eq!(e.data.to_value()["a"], "card ####");
        assert_eq!(e.data.to_value()["b"][0]["c"], "#### and ####");
        assert_eq!(e.data.to_value()["keep"], "y");
        assert_eq!(e.data.to_value()["n"], 12_345_678);
        assert_eq!(e.metadata.session_id.as_deref(), Some("s-abc"));
    }

    #[test]
    fn disabled_and_errors() {
        let mut cfg = RedactionConfig {
            enabled: false,
            fields: vec!["data.a".into()],
            patterns: vec![],
        };
        let r = Redactor::new(&cfg).unwrap();
        let mut e = Event::new("A").data(json!({"a": 1}));
        r.apply(&mut e);
        assert_eq!(e.data.to_value()["a"], 1);
        assert!(!Redactor::disabled().is_active());
        cfg.enabled = true;
        cfg.fields = vec!["password".into()];
        let err = Redactor::new(&cfg).unwrap_err();
        assert!(err.to_string().contains("redaction.fields[0]"), "{err}");
        cfg.fields.clear();
        cfg.patterns = vec![RedactionPattern {
            field: "data".into(),
            regex: "(".into(),
            replacement: String::new(),
        }];
        let err = Redactor::new(&cfg).unwrap_err();
        assert!(
            err.to_string().contains("redaction.patterns[0].regex"),
            "{err}"
        );
    }
}
