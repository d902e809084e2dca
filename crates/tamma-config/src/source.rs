//! Where a config value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The layer that set a value. Later layers win: `Default` < `StandardEnv` < `File` < `Env` < `Cli` <
/// `Runtime`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The built-in default.
    Default,
    /// A standard variable (`RUST_LOG`, `NO_COLOR`, `OTEL_*`), which loses to any explicit tamma setting.
    StandardEnv {
        /// Variable name.
        var: String,
    },
    /// A config file.
    File {
        /// The file's path as given.
        path: PathBuf,
    },
    /// A `TAMMA_*` environment variable (or a `…_FILE` variable naming a file that holds a secret).
    Env {
        /// Variable name.
        var: String,
    },
    /// A command-line flag (`--set logging.level=debug`, `--listen …`).
    Cli {
        /// The flag as the user wrote it.
        flag: String,
    },
    /// Set at runtime through `ConfigManager::set`.
    Runtime,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::StandardEnv { var } | Self::Env { var } => write!(f, "env {var}"),
            Self::File { path } => write!(f, "file {}", path.display()),
            Self::Cli { flag } => write!(f, "cli {flag}"),
            Self::Runtime => f.write_str("runtime"),
        }
    }
}

/// For every leaf path of the merged config (dotted, as `ConfigManager::get` takes it), the layer
/// that set it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    map: BTreeMap<String, Source>,
}

impl Provenance {
    /// The source of `path`, or of the closest ancestor that was set as a whole.
    #[must_use]
    pub fn source_of(&self, path: &str) -> Option<&Source> {
        let mut p = path;
        loop {
            if let Some(s) = self.map.get(p) {
                return Some(s);
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }

    /// The source of `path`, or of any value below it (the most explicit layer wins).
    #[must_use]
    pub fn source_at_or_below(&self, path: &str) -> Option<&Source> {
        if let Some(s) = self.source_of(path)
            && !matches!(s, Source::Default)
        {
            return Some(s);
        }
        let below = self
            .map
            .range(path.to_owned()..)
            .take_while(|(k, _)| k.starts_with(path))
            .filter(|(k, _)| is_below(k, path))
            .map(|(_, s)| s)
            .max_by_key(|s| rank(s));
        below.or_else(|| self.source_of(path))
    }

    /// Iterates `(path, source)` in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Source)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub(crate) fn set(&mut self, path: &str, source: Source) {
        self.remove_below(path);
        self.map.insert(path.to_owned(), source);
    }

    pub(crate) fn remove_below(&mut self, path: &str) {
        let doomed: Vec<String> = self
            .map
            .range(path.to_owned()..)
            .take_while(|(k, _)| k.starts_with(path))
            .filter(|(k, _)| k.as_str() == path || is_below(k, path))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.map.remove(&k);
        }
    }

    pub(crate) fn copy_from(&mut self, other: &Self, path: &str) {
        self.remove_below(path);
        for (k, v) in &other.map {
            if k == path || is_below(k, path) {
                self.map.insert(k.clone(), v.clone());
            }
        }
    }
}

fn is_below(candidate: &str, path: &str) -> bool {
    path.is_empty()
        || candidate.len() > path.len()
            && candidate.starts_with(path)
            && matches!(candidate.as_bytes()[path.len()], b'.' | b'[')
}

fn rank(s: &Source) -> u8 {
    match s {
        Source::Default => 0,
        Source::StandardEnv { .. } => 1,
        Source::File { .. } => 2,
        Source::Env { .. } => 3,
        Source::Cli { .. } => 4,
        Source::Runtime => 5,
    }
}
