//! Errors of opening the SQLite store, and how SQLite errors map onto the contract's classes.

use std::path::PathBuf;

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
    /// The writer thread could not be started.
    #[error("cannot start the event store writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Whether SQLite's error is worth retrying: the database is busy or locked by another connection.
#[must_use]
pub fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Maps a SQLite error onto the contract's error: BUSY and LOCKED are transient, the rest is not.
pub(crate) fn backend(e: rusqlite::Error) -> tamma_events::Error {
    let transient = is_transient(&e);
    metrics::counter!(tamma_core::metric_names::EVENTS_STORE_ERRORS_TOTAL, "category" => if transient { "transient" } else { "internal" }).increment(1);
    tamma_events::Error::backend(e, transient)
}

impl From<Error> for tamma_events::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Open { source, .. } if is_transient(&source) => Self::backend(source, true),
            other => Self::Unavailable {
                message: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}
