//! Importing: a copy of another store's events, positions and commit times kept; cursors listed.

use std::time::Duration;

use futures::StreamExt;
use tamma_events::{
    AppendCondition, Error, Event, EventMetadata, EventSource, EventStore, MemoryStore, Query,
    ReadOptions, SequencedEvent,
};

use crate::support::{positions, put, read, tags, types};

/// A source store whose retention removed its first two events: it holds positions 3 to 5.
async fn trimmed_source() -> MemoryStore {
    let source = MemoryStore::new();
    put(&source, vec![Event::new("OLD"), Event::new("OLD")]).await;
    let cutoff = read(&source, Query::all(), ReadOptions::backwards().limit(1)).await[0]
        .recorded_at
        + chrono::Duration::milliseconds(1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let metadata = EventMetadata {
        event_source: Some(EventSource::User),
        user_id: Some("u-7".into()),
        correlation_id: Some("c-1".into()),
        ..EventMetadata::default()
    };
    put(
        &source,
        vec![
            Event::new("ORDER.PLACED")
                .tags(["order:o-1", "customer:c-9"])
                .metadata(metadata)
                .data(serde_json::json!({"total": 12.5, "lines": [1, 2]})),
            Event::new("ORDER.PAID").tag("order:o-1"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    put(&source, vec![Event::new("ORDER.PLACED").tag("order:o-2")]).await;
    assert_eq!(source.delete_before(cutoff).await.unwrap(), 2);
    source
}

/// Imported events keep their positions, ids, contents and `recorded_at` times — also when the source's
/// retention removed its first events (the positions before count as removed here too) —; queries,
/// `get`, conditions and subscriptions see them as appended events; appends and further imports go on
/// from their head.
pub async fn import_keeps_positions_ids_and_recorded_at(store: &dyn EventStore) {
    let source = trimmed_source().await;
    let copied = read(&source, Query::all(), ReadOptions::forwards()).await;
    assert_eq!(copied.first().map(|e| e.position), Some(3));
    // Live before the import: it is woken by it.
    let mut sub = store.subscribe(Query::all(), 0);
    assert_eq!(store.import(copied.clone()).await.unwrap(), 5);
    assert_eq!(store.head().await.unwrap(), 5);
    assert_eq!(
        read(store, Query::all(), ReadOptions::forwards()).await,
        copied
    );
    assert_eq!(
        positions(store, Query::all(), ReadOptions::backwards()).await,
        vec![5, 4, 3]
    );
    assert_eq!(
        positions(store, tags(&["order:o-1"]), ReadOptions::forwards()).await,
        vec![3, 4]
    );
    assert_eq!(
        positions(store, types(&["ORDER.PLACED"]), ReadOptions::forwards()).await,
        vec![3, 5]
    );
    assert_eq!(
        store.get(copied[1].event.id).await.unwrap().as_ref(),
        Some(&copied[1])
    );
    // Conditions see the imported events.
    let hit = store
        .append(
            vec![Event::new("ORDER.SHIPPED").tag("order:o-1")],
            Some(AppendCondition::new(tags(&["order:o-1"])).after(3)),
        )
        .await;
    assert!(
        matches!(hit, Err(Error::AppendConditionFailed { position: 4 })),
        "{hit:?}"
    );
    let ok = store
        .append(
            vec![Event::new("ORDER.SHIPPED").tag("order:o-1")],
            Some(AppendCondition::new(tags(&["order:o-1"])).after(4)),
        )
        .await
        .unwrap();
    assert_eq!(ok.positions, vec![6]);
    // An import must follow this store's head, which its own append moved on: the source's next event
    // (at 6 there too) no longer fits.
    put(&source, vec![Event::new("ORDER.PAID").tag("order:o-2")]).await;
    let newer = read(&source, Query::all(), ReadOptions::forwards().from(6)).await;
    let refused = store.import(newer).await;
    assert!(
        matches!(&refused, Err(e) if e.path() == Some("events[0].position")),
        "{refused:?}"
    );
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("an event within 20 s")
            .expect("open")
            .expect("no error");
        seen.push(next.position);
    }
    assert_eq!(seen, vec![3, 4, 5, 6]);
}

/// An import whose positions do not follow the head (or each other), that reuses a stored id, that is
/// empty, or that starts anywhere but after the head of a store that held events once (even if retention
/// emptied it) is refused with the field named, and nothing of it is written.
pub async fn import_refuses_what_does_not_follow_on(store: &dyn EventStore) {
    put(store, vec![Event::new("A"), Event::new("B")]).await;
    let before = read(store, Query::all(), ReadOptions::forwards()).await;
    let at = |position: u64, event: Event| SequencedEvent {
        position,
        recorded_at: chrono::Utc::now(),
        event: event.timestamp(chrono::Utc::now()),
    };
    let cases = vec![
        (vec![at(4, Event::new("C"))], "events[0].position"),
        (vec![at(2, Event::new("C"))], "events[0].position"),
        (
            vec![at(3, Event::new("C")), at(5, Event::new("D"))],
            "events[1].position",
        ),
        (vec![at(3, Event::new(""))], "events[0].type"),
    ];
    for (events, path) in cases {
        let r = store.import(events).await;
        assert!(
            matches!(&r, Err(Error::InvalidEvent { .. }) if r.as_ref().unwrap_err().path() == Some(path)),
            "{path}: {r:?}"
        );
    }
    let mut reused = before[0].event.clone();
    reused.event_type = "OTHER".into();
    let r = store
        .import(vec![at(3, Event::new("C")), at(4, reused.clone())])
        .await;
    assert!(
        matches!(&r, Err(Error::DuplicateEventId { ids }) if ids == &vec![reused.id]),
        "{r:?}"
    );
    let r = store.import(Vec::new()).await;
    assert!(matches!(r, Err(Error::EmptyAppend)), "{r:?}");
    assert_eq!(store.head().await.unwrap(), 2);
    assert_eq!(
        read(store, Query::all(), ReadOptions::forwards()).await,
        before
    );
    // Emptied by retention, the store still has a head: an import must follow it.
    let future = chrono::Utc::now() + chrono::Duration::days(1);
    assert_eq!(store.delete_before(future).await.unwrap(), 2);
    let r = store.import(vec![at(1, Event::new("C"))]).await;
    assert!(
        matches!(&r, Err(e) if e.path() == Some("events[0].position")),
        "{r:?}"
    );
    assert_eq!(store.import(vec![at(3, Event::new("C"))]).await.unwrap(), 3);
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards()).await,
        vec![3]
    );
}

/// `cursors` lists every saved cursor with its position, by name.
pub async fn cursors_are_listed(store: &dyn EventStore) {
    assert!(store.cursors().await.unwrap().is_empty());
    store.save_cursor("route:webhook", 7).await.unwrap();
    store.save_cursor("forwarder:acked", 3).await.unwrap();
    store.save_cursor("route:webhook", 9).await.unwrap();
    assert_eq!(
        store.cursors().await.unwrap(),
        vec![
            ("forwarder:acked".to_owned(), 3),
            ("route:webhook".to_owned(), 9)
        ]
    );
}
