//! In-process subscriptions: only stored events, in order, from other processes too; slow and failing
//! subscribers lag on their own; unsubscribe.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use tamma_core::DurationMs;
use tamma_emitter::{Emitter, EmitterConfig, SubscriptionDefaults};
use tamma_events::{Event, EventStore, SequencedEvent, Tags};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

use crate::support::{all_events, eventually};

type Seen = Arc<Mutex<Vec<SequencedEvent>>>;

fn recorder(
    seen: &Seen,
) -> impl Fn(SequencedEvent) -> std::future::Ready<Result<(), std::io::Error>> + Send + Sync + 'static
{
    let seen = Arc::clone(seen);
    move |e| {
        seen.lock().push(e);
        std::future::ready(Ok(()))
    }
}

fn fast_config() -> EmitterConfig {
    EmitterConfig {
        subscriptions: SubscriptionDefaults {
            retry_delay: DurationMs::from_millis(10),
            max_retry_delay: DurationMs::from_millis(50),
        },
        lag_interval: DurationMs::from_millis(50),
        ..EmitterConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_only_stored_events_in_order_including_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let opts = SqliteOptions {
        poll_interval: Duration::from_millis(50),
        ..SqliteOptions::default()
    };
    let ours: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&path, opts.clone()).unwrap());
    // Another "process": a second store over the same file with its own writer.
    let theirs = SqliteStore::open(&path, opts).unwrap();
    let emitter = Emitter::new(Arc::clone(&ours), fast_config()).unwrap();
    let all: Seen = Seen::default();
    let tasks: Seen = Seen::default();
    let tagged: Seen = Seen::default();
    emitter
        .subscribe("*", Tags::new(), recorder(&all))
        .await
        .unwrap();
    emitter
        .subscribe("TASK.*", Tags::new(), recorder(&tasks))
        .await
        .unwrap();
    emitter
        .subscribe("TASK.DONE", Tags::from(["team:a"]), recorder(&tagged))
        .await
        .unwrap();
    let taken = Event::new("TASK.DONE").tag("team:a");
    emitter.emit(taken.clone()).await.unwrap();
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            theirs
                .append(vec![Event::new("TASK.STARTED").data(json!(i))], None)
                .await
                .unwrap();
        }
        theirs
    });
    for i in 0..20 {
        let t = if i % 2 == 0 {
            "TASK.DONE"
        } else {
            "USER.LOGIN"
        };
        emitter
            .emit(Event::new(t).tag("team:a").data(json!(i)))
            .await
            .unwrap();
    }
    // Never stored: invalid, and an id reused with other content.
    assert!(emitter.emit(Event::new("")).await.is_err());
    assert!(
        emitter
            .emit(taken.clone().data(json!("changed")))
            .await
            .is_err()
    );
    let _theirs = writer.await.unwrap();
    let stored = all_events(&*ours).await;
    assert_eq!(stored.len(), 41);
    eventually(10, "every subscriber caught up", || async {
        all.lock().len() == 41 && tasks.lock().len() == 31 && tagged.lock().len() == 11
    })
    .await;
    assert_eq!(
        *all.lock(),
        stored,
        "the catch-all saw exactly the stored events, in order"
    );
    let want: Vec<_> = stored
        .iter()
        .filter(|e| e.event.event_type.starts_with("TASK."))
        .cloned()
        .collect();
    assert_eq!(*tasks.lock(), want);
    assert!(
        tagged
            .lock()
            .iter()
            .all(|e| e.event.event_type == "TASK.DONE" && e.event.tags.contains("team:a"))
    );
    let lags = emitter.lags().await.unwrap();
    assert_eq!(lags.len(), 3);
    assert!(lags.values().all(|l| *l == 0), "{lags:?}");
    emitter.dispose(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_failing_subscribers_lag_alone() {
    let store: Arc<dyn EventStore> = Arc::new(tamma_events::MemoryStore::new());
    let emitter = Emitter::new(Arc::clone(&store), fast_config()).unwrap();
    let fast: Seen = Seen::default();
    let slow: Seen = Seen::default();
    let flaky: Seen = Seen::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    emitter
        .subscribe("*", Tags::new(), recorder(&fast))
        .await
        .unwrap();
    {
        let slow = Arc::clone(&slow);
        let gate = Arc::clone(&gate);
        emitter
            .subscribe("*", Tags::new(), move |e: SequencedEvent| {
                let slow = Arc::clone(&slow);
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.map_err(|_| "closed")?.forget();
                    slow.lock().push(e);
                    Ok::<(), &'static str>(())
                }
            })
            .await
            .unwrap();
    }
    let attempts = Arc::new(AtomicU32::new(0));
    {
        let flaky = Arc::clone(&flaky);
        let attempts = Arc::clone(&attempts);
        emitter
            .subscribe("*", Tags::new(), move |e: SequencedEvent| {
                let n = attempts.fetch_add(1, Ordering::Relaxed);
                let flaky = Arc::clone(&flaky);
                async move {
                    if n.is_multiple_of(3) {
                        return Err("flaky");
                    }
                    if n % 7 == 1 {
                        panic!("handler bug");
                    }
                    flaky.lock().push(e);
                    Ok(())
                }
            })
            .await
            .unwrap();
    }
    for i in 0..20 {
        emitter.emit(Event::new("E").data(json!(i))).await.unwrap();
    }
    eventually(10, "the fast subscriber got everything", || async {
        fast.lock().len() == 20
    })
    .await;
    assert!(slow.lock().is_empty(), "the blocked subscriber moved");
    let label = emitter.subscriptions()[1].label();
    eventually(5, "the slow subscriber's lag is measured", || async {
        emitter.lags().await.unwrap()[&label] == 20
    })
    .await;
    gate.add_permits(20);
    eventually(10, "slow and flaky subscribers caught up", || async {
        slow.lock().len() == 20 && flaky.lock().len() == 20
    })
    .await;
    for seen in [&fast, &slow, &flaky] {
        let positions: Vec<u64> = seen.lock().iter().map(|e| e.position).collect();
        assert_eq!(positions, (1..=20).collect::<Vec<_>>());
    }
    assert!(attempts.load(Ordering::Relaxed) > 20);
    emitter.dispose(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_by_handle_and_pattern() {
    let store: Arc<dyn EventStore> = Arc::new(tamma_events::MemoryStore::new());
    let emitter = Emitter::new(Arc::clone(&store), fast_config()).unwrap();
    let a: Seen = Seen::default();
    let b: Seen = Seen::default();
    let c: Seen = Seen::default();
    let ha = emitter
        .subscribe("A.*", Tags::new(), recorder(&a))
        .await
        .unwrap();
    emitter
        .subscribe("B.*", Tags::new(), recorder(&b))
        .await
        .unwrap();
    emitter
        .subscribe("B.*", Tags::new(), recorder(&c))
        .await
        .unwrap();
    assert_eq!(ha.pattern(), "A.*");
    emitter.emit(Event::new("A.1")).await.unwrap();
    emitter.emit(Event::new("B.1")).await.unwrap();
    eventually(5, "delivered", || async {
        a.lock().len() == 1 && b.lock().len() == 1 && c.lock().len() == 1
    })
    .await;
    assert!(emitter.unsubscribe(&ha));
    assert!(!emitter.unsubscribe(&ha));
    assert_eq!(emitter.unsubscribe_pattern("B.*"), 2);
    assert!(emitter.subscriptions().is_empty());
    emitter.emit(Event::new("A.2")).await.unwrap();
    emitter.emit(Event::new("B.2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((a.lock().len(), b.lock().len(), c.lock().len()), (1, 1, 1));
    assert!(
        emitter
            .subscribe("", Tags::new(), recorder(&a))
            .await
            .is_err()
    );
    // From an explicit position: the whole history.
    let from_start: Seen = Seen::default();
    emitter
        .subscribe_after("*", Tags::new(), 0, recorder(&from_start))
        .unwrap();
    eventually(5, "history replayed", || async {
        from_start.lock().len() == 4
    })
    .await;
    emitter.dispose(Duration::from_secs(1)).await;
    assert!(
        emitter
            .subscribe("*", Tags::new(), recorder(&a))
            .await
            .is_err()
    );
}
