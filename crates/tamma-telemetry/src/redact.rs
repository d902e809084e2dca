//! Redaction of keys and values before anything is written.

use std::borrow::Cow;

use regex::{Regex, RegexBuilder, RegexSet};
use tamma_core::{Problem, REDACTED};

use crate::config::RedactionConfig;
use crate::error::{Error, Result};

/// The built-in value redactors: name, pattern, replacement.
pub(crate) const BUILTIN_REDACTORS: &[(&str, &str, &str)] = &[
    (
        "bearer",
        r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}",
        "$1 [REDACTED]",
    ),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        "[REDACTED]",
    ),
    (
        "aws_access_key",
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
        "[REDACTED]",
    ),
    (
        "url_password",
        r"(://[^/\s:@]+:)[^/\s@]+@",
        "${1}[REDACTED]@",
    ),
];

/// A compiled redaction policy. Cheap to share; replaced as a whole when the config changes.
#[derive(Debug)]
pub(crate) struct Redactor {
    enabled: bool,
    keys: Option<Regex>,
    /// `key=value` / `"key": "value"` pairs inside free text whose key matches a pattern.
    pairs: Option<Regex>,
    values: Vec<(Regex, String)>,
    /// Every value pattern plus `pairs`, for a single quick "anything to do?" test.
    any: Option<RegexSet>,
}

impl Redactor {
    /// A redactor that changes nothing.
    pub(crate) fn disabled() -> Self {
        Self {
            enabled: false,
            keys: None,
            pairs: None,
            values: Vec::new(),
            any: None,
        }
    }

    /// Compiles a policy; an invalid pattern is an [`Error::InvalidConfig`] naming its path.
    pub(crate) fn new(config: &RedactionConfig, path: &str) -> Result<Self> {
        if !config.enabled {
            return Ok(Self::disabled());
        }
        let mut problems = Vec::new();
        let mut key_alts = Vec::new();
        for (i, p) in config.patterns.iter().enumerate() {
            match Regex::new(p) {
                Ok(_) => key_alts.push(format!("(?:{p})")),
                Err(e) => problems.push(Problem::new(
                    format!("{path}.patterns[{i}]"),
                    format!("invalid regular expression: {e}"),
                )),
            }
        }
        let mut values = Vec::new();
        if config.builtin_redactors {
            for (_, p, r) in BUILTIN_REDACTORS {
                // The built-in patterns are constants covered by the unit tests.
                values.push((
                    Regex::new(p).expect("built-in pattern compiles"),
                    (*r).to_owned(),
                ));
            }
        }
        for (i, c) in config.custom_redactors.iter().enumerate() {
            match Regex::new(&c.pattern) {
                Ok(re) if !c.pattern.is_empty() => {
                    let replacement = if c.replacement.is_empty() {
                        REDACTED.to_owned()
                    } else {
                        c.replacement.clone()
                    };
                    values.push((re, replacement));
                }
                Ok(_) => problems.push(Problem::new(
                    format!("{path}.customRedactors[{i}].pattern"),
                    "must not be empty",
                )),
                Err(e) => problems.push(Problem::new(
                    format!("{path}.customRedactors[{i}].pattern"),
                    format!("invalid regular expression ({}): {e}", c.name),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(Error::InvalidConfig { problems });
        }
        let (keys, pairs) = if key_alts.is_empty() {
            (None, None)
        } else {
            let alts = key_alts.join("|");
            let keys = RegexBuilder::new(&alts)
                .case_insensitive(true)
                .build()
                .map_err(|e| Error::InvalidConfig {
                    problems: vec![Problem::new(format!("{path}.patterns"), e.to_string())],
                })?;
            // A pattern with anchors cannot match inside text; then only keys are redacted.
            // `(?i)` inside the pattern (not a builder flag), so the quick-check set agrees.
            let pairs = Regex::new(&format!(
                r#"(?i)([A-Za-z0-9_.-]*(?:{alts})[A-Za-z0-9_.-]*"?\s*[=:]\s*)("(?:[^"\\]|\\.)*"|[^\s,;&"']+)"#
            ))
            .ok();
            (Some(keys), pairs)
        };
        let mut all: Vec<&str> = values.iter().map(|(r, _)| r.as_str()).collect();
        if let Some(p) = &pairs {
            all.push(p.as_str());
        }
        let any = if all.is_empty() {
            None
        } else {
            RegexSet::new(all).ok()
        };
        Ok(Self {
            enabled: true,
            keys,
            pairs,
            values,
            any,
        })
    }

    /// Whether values under this key print as `[REDACTED]`.
    pub(crate) fn is_sensitive_key(&self, key: &str) -> bool {
        self.enabled && self.keys.as_ref().is_some_and(|k| k.is_match(key))
    }

    /// Rewrites secrets inside a value or message.
    pub(crate) fn value<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let Some(any) = &self.any else {
            return Cow::Borrowed(s);
        };
        if s.len() < 6 || !any.is_match(s) {
            return Cow::Borrowed(s);
        }
        let mut out = Cow::Borrowed(s);
        for (re, rep) in &self.values {
            if let Cow::Owned(o) = re.replace_all(&out, rep.as_str()) {
                out = Cow::Owned(o);
            }
        }
        if let Some(p) = &self.pairs
            && let Cow::Owned(o) = p.replace_all(&out, "${1}[REDACTED]")
        {
            out = Cow::Owned(o);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CustomRedactorConfig;

    fn default() -> Redactor {
        Redactor::new(&RedactionConfig::default(), "logging.redaction").unwrap()
    }

    #[test]
    fn keys_match_case_insensitively() {
        let r = default();
        for k in [
            "password",
            "apiKey",
            "X-Auth-Token",
            "Authorization",
            "db.credentials",
            "cookie",
        ] {
            assert!(r.is_sensitive_key(k), "{k}");
        }
        for k in ["user", "count", "path"] {
            assert!(!r.is_sensitive_key(k), "{k}");
        }
    }

    #[test]
    fn builtins_rewrite_values() {
        let r = default();
        assert_eq!(
            r.value("Authorization: Bearer abcdef123456"),
            "Authorization: [REDACTED] [REDACTED]"
        );
        assert_eq!(
            r.value("sent bearer abcdef123456 ok"),
            "sent bearer [REDACTED] ok"
        );
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl";
        assert_eq!(r.value(&format!("jwt {jwt} end")), "jwt [REDACTED] end");
        assert_eq!(
            r.value("key id AKIAIOSFODNN7EXAMPLE used"),
            "key id [REDACTED] used"
        );
        assert_eq!(
            r.value("postgres://u:hunter2@db/x"),
            "postgres://u:[REDACTED]@db/x"
        );
        assert_eq!(
            r.value("login password=hunter2 user=bob"),
            "login password=[REDACTED] user=bob"
        );
        assert_eq!(
            r.value(r#"{"token": "abc def"}"#),
            r#"{"token": [REDACTED]}"#
        );
        assert!(matches!(r.value("nothing to see here"), Cow::Borrowed(_)));
    }

    #[test]
    fn custom_redactors_and_errors() {
        let cfg = RedactionConfig {
            custom_redactors: vec![CustomRedactorConfig {
                name: "card".into(),
                pattern: r"\b\d{4}-\d{4}-\d{4}-\d{4}\b".into(),
                replacement: "[CARD]".into(),
            }],
            ..RedactionConfig::default()
        };
        let r = Redactor::new(&cfg, "logging.redaction").unwrap();
        assert_eq!(r.value("paid with 1234-5678-9012-3456"), "paid with [CARD]");

        let bad = RedactionConfig {
            patterns: vec!["(".into()],
            ..RedactionConfig::default()
        };
        let Err(Error::InvalidConfig { problems }) = Redactor::new(&bad, "logging.redaction")
        else {
            panic!("expected an error")
        };
        assert_eq!(problems[0].path, "logging.redaction.patterns[0]");
    }

    #[test]
    fn disabled_changes_nothing() {
        let cfg = RedactionConfig {
            enabled: false,
            ..RedactionConfig::default()
        };
        let r = Redactor::new(&cfg, "x").unwrap();
        assert!(!r.is_sensitive_key("password"));
        assert_eq!(r.value("password=hunter2"), "password=hunter2");
    }
}
