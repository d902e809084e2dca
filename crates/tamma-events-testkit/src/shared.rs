//! Behaviours of two stores writing one storage (two processes sharing a SQLite file or a PostgreSQL
//! database). Not in [`conformance_tests!`](crate::conformance_tests): the backend's test opens both.
//!
//! Like the rest of the testkit these are assertions: a step that fails (`unwrap`) fails the calling test.

use tamma_events::{AppendCondition, Error, Event, EventStore, Query, QueryItem};

/// A writer passes conditions it can rule out from the positions it wrote itself without a query; once
/// `b` (another store on the same storage) writes, `a`'s conditions must see it, by tag, by type and
/// through the empty query; a later append of a batch sees an earlier one of the same batch.
///
/// # Panics
/// When a condition passes that must fail, or the reverse.
pub async fn conditions_see_another_writer(a: &dyn EventStore, b: &dyn EventStore) {
    let x = Query::item(QueryItem::tags(["order:x"]));
    let first = a
        .append(vec![Event::new("A.WROTE").tag("order:x")], None)
        .await
        .unwrap()
        .last_position();
    // `a` passes a condition after its own last write (ruled out, not checked)...
    let mine = a
        .append(
            vec![Event::new("A.WROTE").tag("order:y")],
            Some(AppendCondition::new(x.clone()).after(first)),
        )
        .await
        .unwrap();
    // ...until `b` writes to the same stream.
    let theirs = b
        .append(vec![Event::new("B.WROTE").tag("order:x")], None)
        .await
        .unwrap()
        .last_position();
    assert_eq!(theirs, mine.last_position() + 1);
    let r = a
        .append(
            vec![Event::new("A.WROTE").tag("order:x")],
            Some(AppendCondition::new(x.clone()).after(first)),
        )
        .await;
    assert!(
        matches!(r, Err(Error::AppendConditionFailed { position }) if position == theirs),
        "{r:?}"
    );
    // A type only `b` wrote, and the whole log.
    let r = a
        .append(
            vec![Event::new("A.WROTE")],
            Some(AppendCondition::new(Query::item(QueryItem::types(["B.WROTE"]))).after(first)),
        )
        .await;
    assert!(matches!(r, Err(Error::AppendConditionFailed { position }) if position == theirs));
    let r = a
        .append(
            vec![Event::new("A.WROTE")],
            Some(AppendCondition::new(Query::all()).after(mine.last_position())),
        )
        .await;
    assert!(matches!(r, Err(Error::AppendConditionFailed { position }) if position == theirs));
    // Within one batch, a later append's condition sees an earlier one of the same batch.
    let (one, two) = tokio::join!(
        a.append(vec![Event::new("A.WROTE").tag("order:z")], None),
        a.append(
            vec![Event::new("A.WROTE")],
            Some(AppendCondition::new(Query::item(QueryItem::tags(["order:z"]))).after(theirs)),
        )
    );
    let one = one.unwrap().last_position();
    match two {
        // Queued behind the first in the same batch or the next: either way it saw it.
        Err(Error::AppendConditionFailed { position }) => assert_eq!(position, one),
        // Ran first (its batch did not hold the other).
        Ok(r) => assert!(r.last_position() < one, "{r:?} after {one}"),
        Err(e) => panic!("{e}"),
    }
    // Read up to the head, `a` passes again.
    let head = a.head().await.unwrap();
    a.append(
        vec![Event::new("A.WROTE").tag("order:x")],
        Some(AppendCondition::new(x).after(head)),
    )
    .await
    .unwrap();
}
