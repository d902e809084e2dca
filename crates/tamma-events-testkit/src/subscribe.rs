//! Subscriptions: catch-up then live, no gap or duplicate, slow subscribers lag on their own cursor.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tamma_events::{Event, EventStore, EventStream, Query, SequencedEvent};

use crate::support::{put, tags, types};

/// How long a case waits for an event it expects before failing.
const PATIENCE: Duration = Duration::from_secs(20);

/// Takes the next `n` events from `stream`, failing if one does not come within [`PATIENCE`].
pub(crate) async fn take(stream: &mut EventStream, n: usize) -> Vec<SequencedEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(Ok(e))) => out.push(e),
            Ok(Some(Err(e))) => panic!("subscription failed after {} events: {e}", out.len()),
            Ok(None) => panic!("subscription ended after {} events", out.len()),
            Err(_) => panic!("no event within {PATIENCE:?} after {} events", out.len()),
        }
    }
    out
}

fn pos(events: &[SequencedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// A subscription delivers the stored events after `after`, then live ones, across the seam without gap
/// or duplicate, and only those matching its query.
pub async fn subscription_catch_up_then_live(store: Arc<dyn EventStore>) {
    for i in 1..=5u64 {
        put(
            &*store,
            vec![Event::new("A").tag(if i % 2 == 0 { "even" } else { "odd" })],
        )
        .await;
    }
    let mut all = store.subscribe(Query::all(), 2);
    let mut odd = store.subscribe(tags(&["odd"]), 0);
    assert_eq!(pos(&take(&mut all, 3).await), vec![3, 4, 5]);
    assert_eq!(pos(&take(&mut odd, 3).await), vec![1, 3, 5]);
    // Live: appended while the subscriptions wait, from another task.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 6..=40u64 {
                put(
                    &*store,
                    vec![Event::new("A").tag(if i % 2 == 0 { "even" } else { "odd" })],
                )
                .await;
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    assert_eq!(pos(&take(&mut all, 35).await), (6..=40).collect::<Vec<_>>());
    assert_eq!(
        pos(&take(&mut odd, 17).await),
        (7..=39).step_by(2).collect::<Vec<_>>()
    );
    writer.await.unwrap();
    // Nothing more is pending: the next event to come is the next append.
    put(&*store, vec![Event::new("B").tag("odd")]).await;
    assert_eq!(take(&mut all, 1).await[0].position, 41);
    assert_eq!(take(&mut odd, 1).await[0].position, 41);
}

/// A subscription with a query that matches rarely still moves on, and one after the head waits for new
/// events only.
pub async fn subscription_sparse_query_and_after_head(store: Arc<dyn EventStore>) {
    let noise: Vec<_> = (0..300).map(|_| Event::new("NOISE")).collect();
    put(&*store, noise).await;
    let mut rare = store.subscribe(types(&["RARE"]), 0);
    let mut from_head = store.subscribe(Query::all(), 300);
    put(&*store, vec![Event::new("RARE")]).await;
    put(&*store, (0..300).map(|_| Event::new("NOISE")).collect()).await;
    put(&*store, vec![Event::new("RARE")]).await;
    assert_eq!(pos(&take(&mut rare, 2).await), vec![301, 602]);
    assert_eq!(pos(&take(&mut from_head, 3).await), vec![301, 302, 303]);
}

/// A subscription after the largest position (`u64::MAX`, say a bogus `Last-Event-ID`) delivers nothing,
/// not the store from its start, and stays open as any live subscription does.
pub async fn subscription_after_the_largest_position_delivers_nothing(store: Arc<dyn EventStore>) {
    put(&*store, vec![Event::new("A")]).await;
    let mut s = store.subscribe(Query::all(), u64::MAX);
    put(&*store, vec![Event::new("B")]).await;
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(500), s.next()).await {
        panic!("expected nothing after u64::MAX, got {got:?}");
    }
}

/// A subscriber that does not consume holds nobody up: appends go on, another subscriber receives
/// everything, and the slow one later resumes from its own cursor without losing an event.
pub async fn slow_subscriber_lags_without_loss(store: Arc<dyn EventStore>) {
    put(&*store, vec![Event::new("A")]).await;
    let mut slow = store.subscribe(Query::all(), 0);
    assert_eq!(take(&mut slow, 1).await[0].position, 1);
    let mut fast = store.subscribe(Query::all(), 0);
    for chunk in 0..20 {
        let events = (0..100)
            .map(|i| Event::new("B").data(serde_json::json!({"i": chunk * 100 + i})))
            .collect();
        put(&*store, events).await;
    }
    assert_eq!(
        pos(&take(&mut fast, 2001).await),
        (1..=2001).collect::<Vec<_>>()
    );
    let rest = take(&mut slow, 2000).await;
    match rest.iter().map(|e| e.position).collect::<Vec<_>>() {
        p if p == (2..=2001).collect::<Vec<_>>() => {}
        p => panic!(
            "slow subscriber lost or repeated events: first {:?}, len {}",
            p.first(),
            p.len()
        ),
    }
}
