//! Small helpers the cases share.

use futures::TryStreamExt;
use tamma_events::{Event, EventStore, Query, QueryItem, ReadOptions, SequencedEvent};

/// Appends `events` without a condition; panics with the error otherwise.
pub(crate) async fn put(store: &dyn EventStore, events: Vec<Event>) -> Vec<u64> {
    store
        .append(events, None)
        .await
        .expect("unconditional append")
        .positions
}

/// Reads everything `query` and `options` select.
pub(crate) async fn read(
    store: &dyn EventStore,
    query: Query,
    options: ReadOptions,
) -> Vec<SequencedEvent> {
    store
        .read(query, options)
        .try_collect()
        .await
        .expect("read")
}

/// The positions of what `query` and `options` select.
pub(crate) async fn positions(
    store: &dyn EventStore,
    query: Query,
    options: ReadOptions,
) -> Vec<u64> {
    read(store, query, options)
        .await
        .iter()
        .map(|e| e.position)
        .collect()
}

/// A query of one item with these types.
pub(crate) fn types(types: &[&str]) -> Query {
    Query::item(QueryItem::types(types.iter().copied()))
}

/// A query of one item with these tags.
pub(crate) fn tags(tags: &[&str]) -> Query {
    Query::item(QueryItem::tags(
        tags.iter().copied().collect::<tamma_events::Tags>(),
    ))
}

/// Ten events: positions 1..=10, type `A` at odd positions and `B` at even ones, tag `n:<position>`,
/// `parity:odd|even`, and `third` on multiples of three.
pub(crate) async fn seed_ten(store: &dyn EventStore) {
    let events = (1..=10u64)
        .map(|p| {
            let mut e = Event::new(if p % 2 == 1 { "A" } else { "B" })
                .tag(format!("n:{p}"))
                .tag(if p % 2 == 1 {
                    "parity:odd"
                } else {
                    "parity:even"
                })
                .data(serde_json::json!({ "n": p }));
            if p % 3 == 0 {
                e = e.tag("third");
            }
            e
        })
        .collect();
    assert_eq!(put(store, events).await, (1..=10).collect::<Vec<_>>());
}

/// A small deterministic pseudo-random generator (xorshift), so cases need no extra dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.below(items.len() as u64);
        // `i` is below `items.len()`, so it fits a usize.
        &items[usize::try_from(i).expect("index below a usize length")]
    }
}
