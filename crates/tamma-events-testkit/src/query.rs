//! Query semantics: tags AND, items OR, types, each event once and in order.

use tamma_events::{EventStore, Query, QueryItem, ReadOptions};

use crate::support::{positions, seed_ten, tags, types};

/// One tag selects exactly the events carrying it.
pub async fn query_by_one_tag(store: &dyn EventStore) {
    seed_ten(store).await;
    assert_eq!(
        positions(store, tags(&["third"]), ReadOptions::forwards()).await,
        vec![3, 6, 9]
    );
    assert_eq!(
        positions(store, tags(&["n:4"]), ReadOptions::forwards()).await,
        vec![4]
    );
}

/// Several tags in one item must all be present.
pub async fn query_tag_and_tag(store: &dyn EventStore) {
    seed_ten(store).await;
    assert_eq!(
        positions(
            store,
            tags(&["third", "parity:even"]),
            ReadOptions::forwards()
        )
        .await,
        vec![6]
    );
    assert!(
        positions(store, tags(&["n:1", "n:2"]), ReadOptions::forwards())
            .await
            .is_empty()
    );
}

/// Items are OR'd.
pub async fn query_item_or_item(store: &dyn EventStore) {
    seed_ten(store).await;
    let q = Query::from_items([QueryItem::tags(["n:2"]), QueryItem::tags(["n:7"])]);
    assert_eq!(
        positions(store, q, ReadOptions::forwards()).await,
        vec![2, 7]
    );
}

/// One type selects exactly the events of that type.
pub async fn query_by_type(store: &dyn EventStore) {
    seed_ten(store).await;
    assert_eq!(
        positions(store, types(&["B"]), ReadOptions::forwards()).await,
        vec![2, 4, 6, 8, 10]
    );
}

/// Several types in one item: any of them.
pub async fn query_by_several_types(store: &dyn EventStore) {
    seed_ten(store).await;
    assert_eq!(
        positions(store, types(&["A", "B"]), ReadOptions::forwards())
            .await
            .len(),
        10
    );
    assert_eq!(
        positions(store, types(&["B", "Z"]), ReadOptions::forwards()).await,
        vec![2, 4, 6, 8, 10]
    );
}

/// Type and tag in one item: both must hold.
pub async fn query_type_and_tag(store: &dyn EventStore) {
    seed_ten(store).await;
    let q = Query::item(QueryItem::types(["A"]).with_tag("third"));
    assert_eq!(
        positions(store, q, ReadOptions::forwards()).await,
        vec![3, 9]
    );
    let q = Query::item(
        QueryItem::types(["A", "B"])
            .with_tag("third")
            .with_tag("parity:even"),
    );
    assert_eq!(positions(store, q, ReadOptions::forwards()).await, vec![6]);
}

/// An unknown type or tag matches nothing.
pub async fn query_unknown_type_matches_nothing(store: &dyn EventStore) {
    seed_ten(store).await;
    assert!(
        positions(store, types(&["NOPE"]), ReadOptions::forwards())
            .await
            .is_empty()
    );
    assert!(
        positions(store, tags(&["nope:1"]), ReadOptions::forwards())
            .await
            .is_empty()
    );
    assert!(
        positions(store, types(&["NOPE"]), ReadOptions::backwards())
            .await
            .is_empty()
    );
}

/// An event matching two items comes back once, in position order, forwards and backwards, with limits.
pub async fn event_matching_two_items_returned_once_in_order(store: &dyn EventStore) {
    seed_ten(store).await;
    let q = Query::from_items([
        QueryItem::tags(["third"]),
        QueryItem::types(["B"]),
        QueryItem::tags(["n:6"]),
    ]);
    assert_eq!(
        positions(store, q.clone(), ReadOptions::forwards()).await,
        vec![2, 3, 4, 6, 8, 9, 10]
    );
    assert_eq!(
        positions(store, q.clone(), ReadOptions::backwards()).await,
        vec![10, 9, 8, 6, 4, 3, 2]
    );
    assert_eq!(
        positions(store, q.clone(), ReadOptions::forwards().from(4).limit(3)).await,
        vec![4, 6, 8]
    );
    assert_eq!(
        positions(store, q, ReadOptions::backwards().from(8).limit(3)).await,
        vec![8, 6, 4]
    );
}
