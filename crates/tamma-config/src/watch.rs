//! Hot reload: watch the config file's directory and reload on change.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::error::{ConfigError, Result};
use crate::manager::{ConfigManager, ConfigRoot};

/// Keeps the file watcher running; dropping it stops watching.
pub struct FileWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    path: PathBuf,
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<T: ConfigRoot> ConfigManager<T> {
    /// Watches the config file and reloads after changes settle for `debounce`. The file's
    /// *directory* is watched, so editors' atomic saves (write a temp file, rename over) and Kubernetes
    /// ConfigMap updates (a `..data` symlink swap) are seen. A reload that fails keeps the old config
    /// (see [`ConfigManager::reload`]).
    ///
    /// # Errors
    /// No config file is in use, or the watcher could not start.
    pub fn watch_file(&self, debounce: Duration) -> Result<FileWatcher> {
        let path = self.file().ok_or_else(|| ConfigError::Watch {
            path: PathBuf::new(),
            reason: "no config file is in use".into(),
        })?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let name: OsString = path.file_name().map(OsString::from).unwrap_or_default();
        let manager = self.clone();
        let err = |reason: String| ConfigError::Watch {
            path: path.clone(),
            reason,
        };
        let file = path.clone();
        // One save can raise several events (write, close, rename): reload once per distinct content.
        let mut last_seen = content_hash(&file);
        let mut debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            let relevant = events.iter().flat_map(|e| e.paths.iter()).any(|p| {
                p.file_name()
                    .is_some_and(|f| f == name || f.to_string_lossy().starts_with(".."))
            });
            let now = content_hash(&file);
            if relevant && now != last_seen {
                last_seen = now;
                // Problems are logged, counted and kept in the reload status by `reload` itself.
                let _ = manager.reload();
            }
        })
        .map_err(|e| err(e.to_string()))?;
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| err(e.to_string()))?;
        Ok(FileWatcher {
            _debouncer: debouncer,
            path,
        })
    }
}

/// A hash of the file's bytes (`None` when it cannot be read, which also counts as a change).
fn content_hash(path: &std::path::Path) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}
