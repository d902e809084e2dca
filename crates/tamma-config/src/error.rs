//! Errors of the config layer.

use std::fmt;
use std::path::PathBuf;

use tamma_core::Problem;

use crate::source::Source;

/// One problem in a config, with the layer that set the offending value.
#[derive(Clone, Debug, PartialEq)]
pub struct SourcedProblem {
    /// Dotted path of the value (`monitoring.healthChecks.timeout`); empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// Which layer set the value, when known.
    pub source: Option<Source>,
}

impl SourcedProblem {
    pub(crate) fn from_problem(p: Problem, source: Option<Source>) -> Self {
        Self {
            path: p.path,
            message: p.message,
            source,
        }
    }
}

impl fmt::Display for SourcedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(s) = &self.source {
            write!(f, " [{s}]")?;
        }
        Ok(())
    }
}

/// What can go wrong loading, reloading or changing config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config has problems; every one is listed.
    #[error("invalid configuration: {} problem{}{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list(.0))]
    Invalid(Vec<SourcedProblem>),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A path given to `get`/`set`/`watch` is malformed.
    #[error("bad config path {path:?}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file watcher could not be started.
    #[error("cannot watch config file {path}: {reason}")]
    Watch {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// The problems, when the error is [`ConfigError::Invalid`].
    #[must_use]
    pub fn problems(&self) -> &[SourcedProblem] {
        match self {
            Self::Invalid(p) => p,
            _ => &[],
        }
    }

    /// A one-line summary (`invalid configuration: 3 problems`), without the details.
    #[must_use]
    pub fn summary(&self) -> String {
        match self {
            Self::Invalid(p) => format!(
                "invalid configuration: {} problem{}",
                p.len(),
                if p.len() == 1 { "" } else { "s" }
            ),
            other => other.to_string(),
        }
    }
}

fn list(problems: &[SourcedProblem]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// `Result` with [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
