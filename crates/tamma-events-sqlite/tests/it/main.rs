//! Integration tests of the SQLite event store.

mod backup;
mod conformance;
mod durability;
mod environment;
mod writer;

use std::sync::Arc;

use tamma_events::{Limits, StoreHooks};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tamma_events_testkit::Fresh;

/// A fresh store in its own temp dir, with test hooks.
pub(crate) async fn fresh(hooks: StoreHooks) -> Fresh {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions {
        limits: Limits::default(),
        hooks,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(dir.path().join("events.db"), options).expect("open");
    Fresh::new(Arc::new(store)).keep(dir)
}

/// A run row: key, first and last position.
pub(crate) type Run = (String, i64, i64);

/// The run rows `sql` selects (key, first, last).
pub(crate) fn runs(conn: &rusqlite::Connection, sql: &str) -> Vec<Run> {
    let mut stmt = conn.prepare(sql).expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// The run of `key` from `first` to `last`.
pub(crate) fn run(key: &str, first: i64, last: i64) -> Run {
    (key.to_owned(), first, last)
}
