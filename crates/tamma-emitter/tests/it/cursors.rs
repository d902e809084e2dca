//! `load_cursor` / `save_cursor` on every backend.

use std::sync::Arc;

use tamma_events::{EventStore, MemoryStore};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

use crate::support::TestDb;

async fn round_trip(store: &dyn EventStore) {
    assert_eq!(store.load_cursor("route:a").await.unwrap(), None);
    store.save_cursor("route:a", 7).await.unwrap();
    store.save_cursor("route:b", 1).await.unwrap();
    assert_eq!(store.load_cursor("route:a").await.unwrap(), Some(7));
    store.save_cursor("route:a", 3).await.unwrap();
    assert_eq!(store.load_cursor("route:a").await.unwrap(), Some(3));
    assert_eq!(store.load_cursor("route:b").await.unwrap(), Some(1));
    store
        .save_cursor("route:b", u64::from(u32::MAX) * 4)
        .await
        .unwrap();
    assert_eq!(
        store.load_cursor("route:b").await.unwrap(),
        Some(u64::from(u32::MAX) * 4)
    );
}

#[tokio::test]
async fn memory() {
    round_trip(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_reopen_and_is_shared_by_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    round_trip(&store).await;
    let other = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(other.load_cursor("route:a").await.unwrap(), Some(3));
    drop((store, other));
    let again: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    assert_eq!(again.load_cursor("route:a").await.unwrap(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = db.store().await;
    round_trip(&store).await;
    let other = db.store().await;
    assert_eq!(other.load_cursor("route:a").await.unwrap(), Some(3));
}
