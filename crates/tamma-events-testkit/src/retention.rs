//! Retention removes a prefix of the log.

use std::time::Duration;

use futures::StreamExt;
use tamma_events::{AppendCondition, Event, EventStore, Query, ReadOptions};

use crate::support::{positions, put, read, types};

/// `delete_before` removes every event recorded before the cutoff and everything before them; the
/// others keep their positions, the head never goes down, numbering continues, and removed events no
/// longer count for conditions.
pub async fn retention_removes_exactly_a_prefix(store: &dyn EventStore) {
    let first = vec![
        Event::new("OLD").tag("k:1"),
        Event::new("OLD"),
        Event::new("OLD"),
    ];
    let ids: Vec<_> = first.iter().map(|e| e.id).collect();
    put(store, first).await;
    let third = read(
        store,
        Query::all(),
        ReadOptions::forwards().from(3).limit(1),
    )
    .await
    .remove(0);
    tokio::time::sleep(Duration::from_millis(30)).await;
    put(store, vec![Event::new("NEW"), Event::new("NEW")]).await;
    let cutoff = third.recorded_at + chrono::Duration::milliseconds(1);
    assert_eq!(store.delete_before(cutoff).await.unwrap(), 3);
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards()).await,
        vec![4, 5]
    );
    assert_eq!(
        positions(store, Query::all(), ReadOptions::backwards()).await,
        vec![5, 4]
    );
    assert!(
        positions(store, types(&["OLD"]), ReadOptions::forwards())
            .await
            .is_empty()
    );
    for id in ids {
        assert!(store.get(id).await.unwrap().is_none());
    }
    assert_eq!(store.head().await.unwrap(), 5);
    assert_eq!(
        store.delete_before(cutoff).await.unwrap(),
        0,
        "nothing more is older"
    );
    // Removed history no longer counts for conditions.
    let ok = store
        .append(
            vec![Event::new("C")],
            Some(AppendCondition::new(types(&["OLD"]))),
        )
        .await;
    assert_eq!(ok.unwrap().positions, vec![6]);
    // Removing everything keeps the head, and numbering continues.
    let future = chrono::Utc::now() + chrono::Duration::days(1);
    assert_eq!(store.delete_before(future).await.unwrap(), 3);
    assert_eq!(store.head().await.unwrap(), 6);
    assert!(
        positions(store, Query::all(), ReadOptions::forwards())
            .await
            .is_empty()
    );
    assert_eq!(
        put(store, vec![Event::new("D"), Event::new("E")]).await,
        vec![7, 8]
    );
    let mut sub = store.subscribe(Query::all(), 0);
    let next = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("an event")
        .expect("open");
    assert_eq!(next.unwrap().position, 7);
}
