//! Emitting: batching by size and time, backpressure, recovery, isolation, redaction, dispose, health,
//! retention and the audit notifier.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tamma_core::{Check, CheckStatus, DurationMs};
use tamma_emitter::{
    AuditNotifier, ESCALATION_RAISED, Emitter, EmitterConfig, Error, RedactionPattern, RetentionJob,
};
use tamma_events::{Event, EventFilter, EventStore, EventsConfig, MemoryStore, Tags};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tamma_resilience::{Escalation, Escalator, MonotonicClock, Notifier, Severity};

use crate::support::{Mode, Switch, all_events, eventually, resilience};

fn events_config(batch_size: u32, flush_ms: u64) -> EventsConfig {
    EventsConfig {
        batch_size,
        flush_interval: DurationMs::from_millis(flush_ms),
        ..EventsConfig::default()
    }
}

fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
    Arc::new(SqliteStore::open(dir.path().join("events.db"), SqliteOptions::default()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nowait_batches_by_size() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let emitter = Emitter::builder(Arc::clone(&store), EmitterConfig::default())
        .events(&events_config(10, 3_600_000))
        .build()
        .unwrap();
    for i in 0..25 {
        emitter.emit_nowait(Event::new("A").data(json!(i))).unwrap();
    }
    eventually(10, "two full batches stored", || async {
        store.head().await.unwrap() == 20
    })
    .await;
    // The last 5 wait for a full batch or the (one hour) interval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.head().await.unwrap(), 20);
    assert_eq!(emitter.pending(), 5);
    emitter.flush().await;
    assert_eq!(store.head().await.unwrap(), 25);
    let report = emitter.dispose(Duration::from_secs(5)).await;
    assert_eq!((report.stored, report.failed), (25, 0));
    assert!(report.is_complete());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nowait_batches_by_time() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let emitter = Emitter::builder(Arc::clone(&store), EmitterConfig::default())
        .events(&events_config(1000, 1000))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    for i in 0..3 {
        emitter.emit_nowait(Event::new("A").data(json!(i))).unwrap();
    }
    assert_eq!(
        store.head().await.unwrap(),
        0,
        "flushed before the interval"
    );
    eventually(10, "the interval flushed the batch", || async {
        store.head().await.unwrap() == 3
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(1000));
    emitter.dispose(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_keeps_pending_bounded_while_the_store_is_stuck() {
    let switch = Switch::new(Arc::new(MemoryStore::new()));
    let store: Arc<dyn EventStore> = switch.clone();
    let config = EmitterConfig {
        max_pending: 8,
        enqueue_timeout: DurationMs::from_millis(100),
        ..EmitterConfig::default()
    };
    let emitter = Emitter::builder(Arc::clone(&store), config)
        .resilience(&resilience(2))
        .build()
        .unwrap();
    switch.set(Mode::Blocked);
    // 40 producers keep calling; only 8 events can be pending at once, the others are refused after
    // the enqueue timeout and call again.
    let mut producers = Vec::new();
    for p in 0..40 {
        let emitter = emitter.clone();
        producers.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0;
            for i in 0..5 {
                let e = Event::new("WORK").data(json!({"p": p, "i": i}));
                let id = e.id;
                match emitter.emit(e).await {
                    Ok(_) => accepted.push(id),
                    Err(Error::Unavailable { .. }) => refused += 1,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            (accepted, refused)
        }));
    }
    let mut most = 0;
    for _ in 0..50 {
        most = most.max(emitter.pending());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most, 8, "pending reached {most}");
    assert_eq!(switch.max_in_flight.load(Ordering::Relaxed), 8);
    assert!(matches!(
        emitter.emit_nowait(Event::new("X")),
        Err(Error::Unavailable { .. })
    ));
    let health = emitter.health_check().check().await;
    assert_eq!(health.status, CheckStatus::Degraded, "{health:?}");
    switch.set(Mode::Up);
    let mut accepted = HashSet::new();
    let mut refused = 0;
    for p in producers {
        let (a, r) = p.await.unwrap();
        accepted.extend(a);
        refused += r;
    }
    assert!(refused >= 100, "only {refused} refusals");
    assert!(switch.max_in_flight.load(Ordering::Relaxed) <= 8);
    let stored = all_events(&*store).await;
    let ids: Vec<_> = stored.iter().map(|e| e.event.id).collect();
    let unique: HashSet<_> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "an event was stored twice");
    assert_eq!(
        unique, accepted,
        "stored events differ from the accepted ones"
    );
    emitter.dispose(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_stores_every_accepted_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new(sqlite(&dir));
    let store: Arc<dyn EventStore> = switch.clone();
    let emitter = Emitter::builder(Arc::clone(&store), EmitterConfig::default())
        .events(&events_config(16, 20))
        .resilience(&resilience(1000))
        .build()
        .unwrap();
    switch.set(Mode::Down);
    let mut accepted = HashSet::new();
    for i in 0..60 {
        accepted.insert(emitter.emit_nowait(Event::new("N").data(json!(i))).unwrap());
    }
    let durable: Vec<_> = (0..6)
        .map(|i| {
            let emitter = emitter.clone();
            let e = Event::new("D").data(json!(i));
            let id = e.id;
            (id, tokio::spawn(async move { emitter.emit(e).await }))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.head().await.unwrap(), 0);
    assert_eq!(emitter.pending(), 66);
    // Writes land but their acknowledgements are lost: the retries must not store anything twice.
    switch.set(Mode::LoseAck);
    tokio::time::sleep(Duration::from_millis(200)).await;
    switch.set(Mode::Up);
    tokio::time::timeout(Duration::from_secs(20), emitter.flush())
        .await
        .unwrap();
    for (id, task) in durable {
        task.await.unwrap().unwrap();
        accepted.insert(id);
    }
    let stored = all_events(&*store).await;
    let ids: Vec<_> = stored.iter().map(|e| e.event.id).collect();
    let unique: HashSet<_> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "stored twice");
    assert_eq!(unique, accepted);
    let report = emitter.dispose(Duration::from_secs(2)).await;
    assert_eq!(report.stored, 60);
    assert!(report.is_complete());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_event_does_not_fail_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    let emitter = Emitter::new(Arc::clone(&store), EmitterConfig::default()).unwrap();
    let taken = Event::new("TAKEN").data(json!(1));
    emitter.emit(taken.clone()).await.unwrap();
    // 30 producers at once, in the same group commits as a conflicting and an invalid event.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let emitter = emitter.clone();
        tasks.push(tokio::spawn(async move {
            emitter.emit(Event::new("OK").data(json!(i))).await
        }));
    }
    let conflicting = {
        let emitter = emitter.clone();
        let e = taken.clone().data(json!(2));
        tokio::spawn(async move { emitter.emit(e).await })
    };
    let invalid = emitter.emit(Event::new("").data(json!("no type"))).await;
    let empty_tag = emitter.emit_nowait(Event::new("A").tag(""));
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let e = conflicting.await.unwrap().unwrap_err();
    assert_eq!(e.code(), "duplicate_event_id", "{e}");
    assert_eq!(invalid.unwrap_err().code(), "invalid_event");
    assert_eq!(empty_tag.unwrap_err().code(), "invalid_event");
    // A retry of the stored event with the same content is not a conflict.
    assert_eq!(emitter.emit(taken).await.unwrap(), 1);
    assert_eq!(store.head().await.unwrap(), 31);
    // A batch is atomic: one bad event fails only its own batch.
    let bad_batch = emitter
        .emit_batch(vec![Event::new("B1"), Event::new("B2").tag("")])
        .await;
    assert!(bad_batch.is_err());
    let ok = emitter
        .emit_batch(vec![Event::new("B1"), Event::new("B2")])
        .await
        .unwrap();
    assert_eq!(ok.positions, vec![32, 33]);
    emitter.dispose(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_is_applied_before_storage() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    let mut config = EmitterConfig::default();
    config.redaction.fields = vec!["data.password".into(), "metadata.userId".into()];
    config.redaction.patterns = vec![RedactionPattern {
        field: "data".into(),
        regex: r"\b(\d{4})\d{8}(\d{4})\b".into(),
        replacement: "$1********$2".into(),
    }];
    let emitter = Emitter::new(Arc::clone(&store), config).unwrap();
    let mut e = Event::new("USER.PAID").data(json!({
        "password": "hunter2", "card": "paid with 4111111111111111", "nested": [{"c": "5500000000000004"}]
    }));
    e.metadata.user_id = Some("alice".into());
    let durable = e.id;
    emitter.emit(e).await.unwrap();
    let nowait = emitter
        .emit_nowait(Event::new("USER.PAID").data(json!({"password": "pw2"})))
        .unwrap();
    emitter.flush().await;
    let stored = emitter.get_event(durable).await.unwrap().unwrap().event;
    assert_eq!(stored.data.to_value()["password"], "[REDACTED]");
    assert_eq!(stored.data.to_value()["card"], "paid with 4111********1111");
    assert_eq!(stored.data.to_value()["nested"][0]["c"], "5500********0004");
    assert_eq!(stored.metadata.user_id.as_deref(), Some("[REDACTED]"));
    let raw = serde_json::to_string(&all_events(&*store).await).unwrap();
    assert!(!raw.contains("hunter2") && !raw.contains("pw2") && !raw.contains("alice"));
    assert!(!raw.contains("4111111111111111"));
    assert_eq!(
        emitter
            .get_event(nowait)
            .await
            .unwrap()
            .unwrap()
            .event
            .data
            .to_value()["password"],
        "[REDACTED]"
    );
    // Reloaded rules apply to later events.
    emitter
        .reload_redaction(&tamma_emitter::RedactionConfig::default())
        .unwrap();
    let id = emitter
        .emit(Event::new("X").data(json!({"password": "shown"})))
        .await
        .unwrap();
    assert_eq!(
        all_events(&*store).await[usize::try_from(id).unwrap() - 1]
            .event
            .data
            .to_value()["password"],
        "shown"
    );
    emitter.dispose(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispose_reports_what_it_could_not_flush() {
    let switch = Switch::new(Arc::new(MemoryStore::new()));
    let store: Arc<dyn EventStore> = switch.clone();
    let emitter = Emitter::builder(Arc::clone(&store), EmitterConfig::default())
        .events(&events_config(5, 10))
        .resilience(&resilience(3))
        .build()
        .unwrap();
    emitter.emit(Event::new("FIRST")).await.unwrap();
    switch.set(Mode::Down);
    let ids: Vec<_> = (0..7)
        .map(|i| {
            emitter
                .emit_nowait(Event::new("LATE").data(json!(i)))
                .unwrap()
        })
        .collect();
    let report = emitter.dispose(Duration::from_millis(300)).await;
    assert!(!report.is_complete());
    let mut back: Vec<_> = report.unflushed.iter().map(|e| e.id).collect();
    let mut want = ids.clone();
    back.sort();
    want.sort();
    assert_eq!(back, want);
    assert!(matches!(
        emitter.emit(Event::new("A")).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        emitter.emit_nowait(Event::new("A")),
        Err(Error::Closed)
    ));
    switch.set(Mode::Up);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store.head().await.unwrap(),
        1,
        "an aborted event was stored after dispose"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_health_and_audit() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let emitter = Emitter::new(Arc::clone(&store), EmitterConfig::default()).unwrap();
    for i in 0..5 {
        emitter
            .emit(
                Event::new(if i % 2 == 0 {
                    "TASK.STARTED"
                } else {
                    "USER.LOGIN"
                })
                .tag("w:1"),
            )
            .await
            .unwrap();
    }
    let f = EventFilter {
        type_pattern: Some("TASK.*".into()),
        tags: Tags::from(["w:1"]),
        ..EventFilter::default()
    };
    assert_eq!(emitter.get_events(&f).await.unwrap().len(), 3);
    assert!(
        emitter
            .get_event(uuid::Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
    let check = emitter.health_check();
    assert_eq!(check.name(), "events:emitter");
    let r = check.check().await;
    assert_eq!(r.status, CheckStatus::Healthy, "{r:?}");
    assert_eq!(r.details["head"], 5);

    // Escalations become system events through the escalator.
    let escalator = Escalator::new(
        true,
        Severity::Low,
        Duration::from_millis(0),
        MonotonicClock::shared(),
    )
    .with_notifier(Arc::new(AuditNotifier::new(emitter.clone())));
    escalator
        .escalate(Escalation::new(
            "breaker:events.append",
            Severity::High,
            "the breaker opened",
        ))
        .await;
    let audit = AuditNotifier::new(emitter.clone());
    assert_eq!(audit.name(), "audit");
    audit
        .notify(&Escalation::new(
            "forwarder.ship",
            Severity::Critical,
            "stuck",
        ))
        .await
        .unwrap();
    let got = emitter
        .get_events(&EventFilter {
            types: vec![ESCALATION_RAISED.into()],
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].event.tags.contains("component:events"));
    assert!(got[0].event.tags.contains("severity:high"));
    assert_eq!(
        got[0].event.metadata.event_source,
        Some(tamma_events::EventSource::System)
    );
    assert!(got[1].event.tags.contains("severity:critical"));
    emitter.dispose(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_job_removes_old_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir);
    for i in 0..10 {
        store
            .append(vec![Event::new("OLD").data(json!(i))], None)
            .await
            .unwrap();
    }
    let off = RetentionJob::new(
        Arc::clone(&store),
        &EventsConfig::default(),
        &EmitterConfig::default(),
    );
    assert!(!off.is_enabled());
    assert_eq!(off.run_once().await.unwrap(), 0);
    let events = EventsConfig {
        retention_days: 30,
        ..EventsConfig::default()
    };
    let job = RetentionJob::new(Arc::clone(&store), &events, &EmitterConfig::default());
    assert_eq!(
        job.run_once().await.unwrap(),
        0,
        "nothing is 30 days old yet"
    );
    let later = chrono::Utc::now() + chrono::Duration::days(31);
    assert_eq!(job.run_once_at(later).await.unwrap(), 10);
    assert_eq!(store.head().await.unwrap(), 10, "the head never goes down");
    // In the background: runs at once, stops on request.
    let handle = job.clone().spawn();
    handle.stop().await;
}
