//! Reading: order, `from`, `limit`, direction, `get`, `head`.

use tamma_events::{Error, EventStore, Query, QueryItem, ReadOptions};
use uuid::Uuid;

use crate::support::{positions, put, read, seed_ten};

/// An empty store: head 0, reads return nothing, `get` finds nothing, health says head 0.
pub async fn empty_store(store: &dyn EventStore) {
    assert_eq!(store.head().await.unwrap(), 0);
    assert!(
        read(store, Query::all(), ReadOptions::forwards())
            .await
            .is_empty()
    );
    assert!(
        read(store, Query::all(), ReadOptions::backwards())
            .await
            .is_empty()
    );
    assert!(
        read(
            store,
            crate::support::types(&["A"]),
            ReadOptions::forwards()
        )
        .await
        .is_empty()
    );
    assert!(store.get(Uuid::now_v7()).await.unwrap().is_none());
    assert_eq!(store.health().await.unwrap().head, 0);
}

/// Positions start at 1 and are gapless across appends of different sizes; `head` is the last one.
pub async fn positions_start_at_one_and_are_gapless(store: &dyn EventStore) {
    use tamma_events::Event;
    let r = store.append(vec![Event::new("A")], None).await.unwrap();
    assert_eq!(
        (r.positions.as_slice(), r.last_position(), r.duplicate),
        (&[1][..], 1, false)
    );
    assert_eq!(
        put(
            store,
            vec![Event::new("B"), Event::new("C"), Event::new("D")]
        )
        .await,
        vec![2, 3, 4]
    );
    assert_eq!(
        put(store, vec![Event::new("E"), Event::new("F")]).await,
        vec![5, 6]
    );
    assert_eq!(store.head().await.unwrap(), 6);
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards()).await,
        (1..=6).collect::<Vec<_>>()
    );
    let types: Vec<_> = read(store, Query::all(), ReadOptions::forwards())
        .await
        .into_iter()
        .map(|e| e.event.event_type)
        .collect();
    assert_eq!(types, ["A", "B", "C", "D", "E", "F"]);
}

/// A forward read of everything returns every event once, in position order, with its content.
pub async fn read_all_in_order(store: &dyn EventStore) {
    seed_ten(store).await;
    let all = read(store, Query::all(), ReadOptions::forwards()).await;
    assert_eq!(all.len(), 10);
    for (i, e) in all.iter().enumerate() {
        let p = i as u64 + 1;
        assert_eq!(e.position, p);
        assert_eq!(e.event.data, serde_json::json!({ "n": p }));
        assert!(e.event.tags.contains(&format!("n:{p}")));
    }
}

/// `from` is inclusive.
pub async fn read_from_is_inclusive(store: &dyn EventStore) {
    seed_ten(store).await;
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards().from(4)).await,
        (4..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards().from(10)).await,
        vec![10]
    );
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards().from(0))
            .await
            .len(),
        10
    );
    assert_eq!(
        positions(
            store,
            crate::support::types(&["A"]),
            ReadOptions::forwards().from(4)
        )
        .await,
        vec![5, 7, 9]
    );
}

/// `limit` caps the result; a limit of 0 returns nothing.
pub async fn read_with_limit(store: &dyn EventStore) {
    seed_ten(store).await;
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards().limit(3)).await,
        vec![1, 2, 3]
    );
    assert!(
        positions(store, Query::all(), ReadOptions::forwards().limit(0))
            .await
            .is_empty()
    );
    assert_eq!(
        positions(store, Query::all(), ReadOptions::forwards().limit(100))
            .await
            .len(),
        10
    );
    assert_eq!(
        positions(
            store,
            Query::all(),
            ReadOptions::forwards().from(5).limit(2)
        )
        .await,
        vec![5, 6]
    );
    assert_eq!(
        positions(
            store,
            crate::support::types(&["B"]),
            ReadOptions::forwards().limit(2)
        )
        .await,
        vec![2, 4]
    );
}

/// Backwards reads go from the head (or `from`, inclusive) down, and honour `limit`.
pub async fn read_backwards_with_from_and_limit(store: &dyn EventStore) {
    seed_ten(store).await;
    assert_eq!(
        positions(store, Query::all(), ReadOptions::backwards()).await,
        (1..=10).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        positions(
            store,
            Query::all(),
            ReadOptions::backwards().from(7).limit(3)
        )
        .await,
        vec![7, 6, 5]
    );
    assert_eq!(
        positions(store, Query::all(), ReadOptions::backwards().limit(1)).await,
        vec![10]
    );
    assert_eq!(
        positions(
            store,
            Query::all(),
            ReadOptions::backwards().from(1_000).limit(2)
        )
        .await,
        vec![10, 9]
    );
    assert!(
        positions(store, Query::all(), ReadOptions::backwards().limit(0))
            .await
            .is_empty()
    );
    assert!(
        positions(store, Query::all(), ReadOptions::backwards().from(0))
            .await
            .is_empty()
    );
    assert_eq!(
        positions(
            store,
            crate::support::types(&["A"]),
            ReadOptions::backwards().from(8).limit(2)
        )
        .await,
        vec![7, 5]
    );
}

/// A forward read from past the head returns nothing.
pub async fn read_from_past_head(store: &dyn EventStore) {
    seed_ten(store).await;
    assert!(
        positions(store, Query::all(), ReadOptions::forwards().from(11))
            .await
            .is_empty()
    );
    assert!(
        positions(store, Query::all(), ReadOptions::forwards().from(u64::MAX))
            .await
            .is_empty()
    );
    assert!(
        positions(
            store,
            crate::support::types(&["A"]),
            ReadOptions::forwards().from(11)
        )
        .await
        .is_empty()
    );
}

/// An item with neither types nor tags is rejected, naming the item.
pub async fn read_with_invalid_query_is_rejected(store: &dyn EventStore) {
    use futures::StreamExt;
    let q = Query::from_items([QueryItem::types(["A"]), QueryItem::default()]);
    let first = store
        .read(q.clone(), ReadOptions::forwards())
        .next()
        .await
        .expect("one error item");
    match first {
        Err(Error::InvalidQuery { path, .. }) => assert_eq!(path, "query.items[1]"),
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
    let first = store.subscribe(q, 0).next().await.expect("one error item");
    assert!(
        matches!(first, Err(Error::InvalidQuery { .. })),
        "{first:?}"
    );
    // Queries over the size limits, and strings no event can hold: named, never a database error.
    let many_items = Query::from_items((0..101).map(|i| QueryItem::tags([format!("t:{i}")])));
    let many_terms = Query::item(QueryItem::types((0..257).map(|i| format!("T{i}"))));
    for (q, path) in [
        (many_items, "query.items"),
        (many_terms, "query"),
        (
            Query::item(QueryItem::tags(["a\0b"])),
            "query.items[0].tags",
        ),
        (
            Query::item(QueryItem::types(["A", "x\0"])),
            "query.items[0].types[1]",
        ),
        (
            Query::item(QueryItem::tags(["t".repeat(1025)])),
            "query.items[0].tags",
        ),
    ] {
        let first = store
            .read(q, ReadOptions::forwards())
            .next()
            .await
            .expect("one error item");
        match first {
            Err(Error::InvalidQuery { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected InvalidQuery at {path}, got {other:?}"),
        }
    }
}

/// Queries at the size limits (100 items, 256 types and tags in all) run on every backend and find what
/// they name: 256 types in one item, 256 tags in one item, 100 items.
pub async fn queries_at_the_size_limits_run(store: &dyn EventStore) {
    use tamma_events::Event;
    let tags: Vec<String> = (0..256).map(|i| format!("t:{i}")).collect();
    put(
        store,
        vec![
            Event::new("T7"),
            tags.iter()
                .fold(Event::new("ALL"), |e, t| e.tag(t.as_str())),
            Event::new("T255").tag("t:3"),
        ],
    )
    .await;
    let types = Query::item(QueryItem::types((0..256).map(|i| format!("T{i}"))));
    assert_eq!(
        positions(store, types, ReadOptions::forwards()).await,
        vec![1, 3]
    );
    let all_tags = Query::item(QueryItem::tags(
        tags.iter().cloned().collect::<tamma_events::Tags>(),
    ));
    assert_eq!(
        positions(store, all_tags, ReadOptions::forwards()).await,
        vec![2]
    );
    let items = Query::from_items(
        (0..100).map(|i| QueryItem::tags([format!("t:{i}")]).with_tag(format!("t:{}", 255 - i))),
    );
    assert_eq!(
        positions(store, items, ReadOptions::backwards()).await,
        vec![2]
    );
}

/// `get` finds an event by id, with its position; an unknown id finds nothing.
pub async fn get_by_id(store: &dyn EventStore) {
    use tamma_events::Event;
    let a = Event::new("A").tag("k:v");
    let b = Event::new("B");
    put(store, vec![a.clone(), b.clone()]).await;
    let got = store.get(b.id).await.unwrap().expect("stored");
    assert_eq!(got.position, 2);
    assert_eq!(got.event.id, b.id);
    assert_eq!(got.event.event_type, "B");
    assert_eq!(
        store.get(a.id).await.unwrap().expect("stored").event.tags,
        a.tags
    );
    assert!(store.get(Uuid::now_v7()).await.unwrap().is_none());
}

/// `health` reports the head and an idle writer.
pub async fn health_reports_head(store: &dyn EventStore) {
    seed_ten(store).await;
    let h = store.health().await.unwrap();
    assert_eq!(h.head, 10);
    assert_eq!(h.queue_depth, 0);
    assert!(h.last_commit_age.is_some());
}
