//! Cross-field validation of config sections.

use std::fmt;

/// One problem found in a config: the dotted path of the offending value and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path from the root, e.g. `monitoring.healthChecks.timeout`.
    pub path: String,
    /// What is wrong, as a sentence fragment: `must be less than interval (5s ≥ 3s)`.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Cross-field rules of a config section (the shape and types are checked against the JSON Schema
/// before the typed load; this is for what a schema cannot say).
pub trait Validate {
    /// Pushes every problem found to `out`. `path` is the section's dotted path from the root
    /// (`""` for the root); use [`join_path`] to name fields below it.
    fn validate(&self, path: &str, out: &mut Vec<Problem>);
}

/// Joins a parent path and a key: `join_path("monitoring", "metrics")` = `"monitoring.metrics"`.
/// A key containing a dot is quoted: `resilience.breakers."events.append"`.
#[must_use]
pub fn join_path(parent: &str, key: &str) -> String {
    let key = if key.contains('.') {
        format!("\"{key}\"")
    } else {
        key.to_owned()
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_quotes() {
        assert_eq!(join_path("", "mode"), "mode");
        assert_eq!(join_path("a.b", "c"), "a.b.c");
        assert_eq!(
            join_path("resilience.breakers", "events.append"),
            "resilience.breakers.\"events.append\""
        );
        assert_eq!(
            Problem::new("a.b", "must be positive").to_string(),
            "a.b: must be positive"
        );
    }
}
