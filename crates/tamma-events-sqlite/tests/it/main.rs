//! Integration tests of the SQLite event store.

mod conformance;
mod durability;
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
