//! Errors of opening the SQLite store, and how SQLite errors map onto the contract's classes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::ErrorCode;

/// Why the SQLite store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file could not be opened or set up (permissions, a missing directory, not a
    /// database, a lock held too long).
    #[error("cannot open the event store at {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The directory of the database file could not be created.
    #[error("cannot create the directory of the event store {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was written by a newer Tamma with a schema this version does not know.
    #[error(
        "the event store at {path} has schema version {found}; this Tamma knows up to {supported}"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// SQLite did not apply a setting the store's guarantees depend on.
    #[error("the event store at {path} refused {setting}: got {got:?}")]
    Setting {
        /// The database file.
        path: PathBuf,
        /// The setting (`journal_mode=WAL`).
        setting: &'static str,
        /// What SQLite reported instead.
        got: String,
    },
    /// SQLite opened the file read-only (its permissions or owner, or a read-only filesystem): the store
    /// could not take a single append.
    #[error(
        "the event store at {path} can only be opened read-only: check that the user running Tamma may \
         write the file and its directory, and that the filesystem is mounted read-write"
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// The writer thread could not be started.
    #[error("cannot start the event store writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Whether SQLite's error is worth retrying: the database is busy or locked by another connection, or
/// the disk is full (the store takes appends again once space is freed, without reopening).
#[must_use]
pub fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull)
    )
}

/// Whether another connection holds the lock SQLite needed.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// A SQLite error of the store, naming its file. Its message includes SQLite's (so it is not also given
/// as the error's source: a printed chain would repeat it).
#[derive(Debug, thiserror::Error)]
#[error("{error} (event store {path})")]
pub struct StoreFailure {
    /// The database file.
    pub path: PathBuf,
    /// SQLite's error.
    pub error: Arc<rusqlite::Error>,
}

/// Maps a SQLite error of the store at `path` onto the contract's error, naming the file. A full disk and
/// a file that cannot be written are `Unavailable` (the store recovers by itself once space is freed or
/// the file is writable again; reads go on meanwhile); BUSY and LOCKED are transient backend errors; the
/// rest are internal.
pub(crate) fn store_error(path: &Path, e: Arc<rusqlite::Error>) -> tamma_events::Error {
    let unavailable = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => Some(format!(
            "the disk under the event store {} is full ({e}); appends succeed again once space is freed",
            path.display()
        )),
        Some(ErrorCode::ReadOnly) => Some(format!(
            "the event store {} cannot be written ({e}): check its permissions and that its filesystem \
             is mounted read-write",
            path.display()
        )),
        _ => None,
    };
    let category = match (&unavailable, is_transient(&e)) {
        (Some(_), _) => "unavailable",
        (None, true) => "transient",
        (None, false) => "internal",
    };
    metrics::counter!(tamma_core::metric_names::EVENTS_STORE_ERRORS_TOTAL, "category" => category)
        .increment(1);
    let failure = StoreFailure {
        path: path.to_path_buf(),
        error: e,
    };
    match unavailable {
        Some(message) => tamma_events::Error::Unavailable {
            message,
            source: Some(Box::new(failure)),
        },
        None => {
            let transient = is_transient(&failure.error);
            tamma_events::Error::backend(failure, transient)
        }
    }
}

impl From<Error> for tamma_events::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Open { source, path } if is_transient(&source) => Self::backend(
                StoreFailure {
                    path,
                    error: Arc::new(source),
                },
                true,
            ),
            other => Self::Unavailable {
                message: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}
