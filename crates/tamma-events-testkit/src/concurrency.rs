//! Behaviour under concurrency: linearizable conditions, gapless delivery with a slow committer.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tamma_events::{
    AppendCondition, Error, Event, EventStore, Query, QueryItem, ReadOptions, StoreHooks,
};

use crate::StoreFactory;
use crate::subscribe::take;
use crate::support::{Rng, put, read, types};

const TYPES: [&str; 2] = ["X", "Y"];
const TAGS: [&str; 3] = ["t:0", "t:1", "t:2"];

/// Many tasks do conditional appends over a few types and tags, each embedding the last matching position
/// it read and using it as `after`. Afterwards every stored event's embedded position must equal the last
/// matching position before it, recomputed from the log: no two conflicting appends both succeeded, and
/// each success saw every earlier conflicting event.
pub async fn linearizable_under_concurrency(store: Arc<dyn EventStore>) {
    const TASKS: u64 = 12;
    const ROUNDS: u64 = 25;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut rng = Rng::new(task + 1);
            let (mut won, mut lost) = (0u64, 0u64);
            for round in 0..ROUNDS {
                let ty = *rng.pick(&TYPES);
                let tag = *rng.pick(&TAGS);
                let query = Query::item(QueryItem::types([ty]).with_tag(tag));
                let last = read(&*store, query.clone(), ReadOptions::backwards().limit(1)).await;
                let seen = last.first().map_or(0, |e| e.position);
                // Some appends carry two events: the second, of another tag, must not disturb the check.
                let mut events = vec![
                    Event::new(ty)
                        .tag(tag)
                        .data(serde_json::json!({"seen": seen, "task": task, "round": round})),
                ];
                if rng.below(4) == 0 {
                    events.push(Event::new("Z").tag(*rng.pick(&TAGS)));
                }
                match store
                    .append(events, Some(AppendCondition::new(query).after(seen)))
                    .await
                {
                    Ok(_) => won += 1,
                    Err(Error::AppendConditionFailed { position }) => {
                        assert!(
                            position > seen,
                            "conflict at {position} is not after {seen}"
                        );
                        lost += 1;
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
                if rng.below(3) == 0 {
                    tokio::task::yield_now().await;
                }
            }
            (won, lost)
        }));
    }
    let (mut won, mut lost) = (0, 0);
    for h in handles {
        let (w, l) = h.await.unwrap();
        won += w;
        lost += l;
    }
    assert_eq!(won + lost, TASKS * ROUNDS);
    assert!(
        won >= 6,
        "each attempted (type, tag) pair has a winner: {won}"
    );
    let all = read(&*store, Query::all(), ReadOptions::forwards()).await;
    let mut last_match: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut checked = 0;
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1, "positions are gapless");
        if e.event.event_type == "Z" {
            continue;
        }
        let tag = e.event.tags.iter().next().expect("one tag").to_owned();
        let key = (e.event.event_type.clone(), tag);
        let expected = last_match.get(&key).copied().unwrap_or(0);
        let seen = e.event.data.to_value()["seen"].as_u64().expect("seen");
        assert_eq!(
            seen, expected,
            "event at {} decided on {seen} but the last match before it was {expected}",
            e.position
        );
        last_match.insert(key, e.position);
        checked += 1;
    }
    assert_eq!(checked, won);
}

/// Concurrent writers, one of them with an artificially slow commit, and a subscriber that must receive
/// every position exactly once, in order, and every appended event.
pub async fn gap_free_delivery_with_slow_writer(factory: &dyn StoreFactory) {
    let hooks = StoreHooks::delay_commits_where(Duration::from_millis(40), |events| {
        events[0].event_type == "SLOW"
    });
    let fresh = factory.open(hooks).await;
    let store = fresh.store.clone();
    let mut sub = store.subscribe(Query::all(), 0);
    const FAST_WRITERS: usize = 3;
    const FAST_EVENTS: usize = 40;
    const SLOW_EVENTS: usize = 6;
    let mut handles = Vec::new();
    for w in 0..=FAST_WRITERS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let (ty, n) = if w == FAST_WRITERS {
                ("SLOW", SLOW_EVENTS)
            } else {
                ("FAST", FAST_EVENTS)
            };
            let mut ids = Vec::new();
            for i in 0..n {
                let e = Event::new(ty)
                    .tag(format!("writer:{w}"))
                    .data(serde_json::json!({"i": i}));
                ids.push(e.id);
                put(&*store, vec![e]).await;
                if ty == "FAST" && i % 8 == 0 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            ids
        }));
    }
    let total = FAST_WRITERS * FAST_EVENTS + SLOW_EVENTS;
    let got = take(&mut sub, total).await;
    let mut appended = HashSet::new();
    for h in handles {
        appended.extend(h.await.unwrap());
    }
    let positions: Vec<u64> = got.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (1..=total as u64).collect::<Vec<_>>(),
        "every position once, in order"
    );
    let delivered: HashSet<_> = got.iter().map(|e| e.event.id).collect();
    assert_eq!(delivered, appended);
    assert_eq!(store.head().await.unwrap(), total as u64);
}

/// Many concurrent appends of several events each get distinct, consecutive positions, and together
/// cover the log without gaps.
pub async fn concurrent_appends_get_distinct_positions(store: Arc<dyn EventStore>) {
    let mut handles = Vec::new();
    for t in 0..16u64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut all = Vec::new();
            for _ in 0..10 {
                let events = vec![
                    Event::new("P").tag(format!("task:{t}")),
                    Event::new("Q").tag(format!("task:{t}")),
                ];
                let p = put(&*store, events).await;
                assert_eq!(p[1], p[0] + 1, "one append's positions are consecutive");
                all.extend(p);
            }
            all
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=320).collect::<Vec<_>>());
    assert_eq!(store.head().await.unwrap(), 320);
}

/// Among concurrent appends, the ones whose condition fails fail alone: the others are written.
pub async fn failing_condition_does_not_fail_concurrent_appends(store: Arc<dyn EventStore>) {
    put(&*store, vec![Event::new("TAKEN")]).await;
    let mut handles = Vec::new();
    for i in 0..24u64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let cond = (i % 2 == 0).then(|| AppendCondition::new(types(&["TAKEN"])));
            (
                i,
                store
                    .append(vec![Event::new("TRY").data(serde_json::json!(i))], cond)
                    .await,
            )
        }));
    }
    for h in handles {
        let (i, r) = h.await.unwrap();
        if i % 2 == 0 {
            assert!(
                matches!(r, Err(Error::AppendConditionFailed { position: 1 })),
                "{i}: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    assert_eq!(store.head().await.unwrap(), 13);
}
