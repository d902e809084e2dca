//! Routes deliver each stored event exactly once to a real webhook (across a receiver restart and an
//! emitter restart) and to a real NATS JetStream stream (which de-duplicates by event id).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tamma_emitter::{
    Emitter, EmitterConfig, NatsRouteConfig, RouteConfig, StartAt, WebhookRouteConfig,
    route_cursor_name,
};
use tamma_events::{Event, EventStore, Tags};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

use crate::support::{all_events, eventually, resilience, service_up, slow_webhook, webhook};

fn route_config(route: RouteConfig) -> EmitterConfig {
    EmitterConfig {
        routes: vec![route],
        ..EmitterConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_route_delivers_each_event_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let (mut receiver, log) = webhook().await;
    let route = RouteConfig::Webhook(WebhookRouteConfig {
        name: "audit-hook".into(),
        url: format!("{}/hook", receiver.url()),
        headers: [(
            "Authorization".to_owned(),
            tamma_core::Secret::new("Bearer s3cret"),
        )]
        .into_iter()
        .collect(),
        type_pattern: Some("TASK.*".into()),
        tags: Tags::new(),
        start_at: StartAt::Earliest,
        batch_size: 7,
        timeout: tamma_core::DurationMs::from_secs(2),
    });
    let config = route_config(route);
    // Stored before the route ever ran: `earliest` delivers them too.
    store
        .append(
            vec![Event::new("TASK.EARLY"), Event::new("USER.SKIPPED")],
            None,
        )
        .await
        .unwrap();
    let emitter = Emitter::builder(Arc::clone(&store), config.clone())
        .resilience(&resilience(3))
        .build()
        .unwrap();
    for i in 0..20 {
        emitter
            .emit(Event::new("TASK.A").data(json!(i)))
            .await
            .unwrap();
    }
    eventually(10, "first events delivered", || async {
        log.lock().iter().map(|r| r.events.len()).sum::<usize>() >= 21
    })
    .await;
    receiver.stop().await;
    for i in 20..40 {
        emitter
            .emit(Event::new("TASK.B").data(json!(i)))
            .await
            .unwrap();
        emitter
            .emit(Event::new("OTHER").data(json!(i)))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    receiver.restart().await;
    eventually(15, "delivered after the receiver restart", || async {
        log.lock().iter().map(|r| r.events.len()).sum::<usize>() >= 41
    })
    .await;
    // Restart the emitter: the route resumes from its saved cursor.
    emitter.dispose(Duration::from_secs(2)).await;
    let emitter = Emitter::builder(Arc::clone(&store), config)
        .resilience(&resilience(3))
        .build()
        .unwrap();
    for i in 40..45 {
        emitter
            .emit(Event::new("TASK.C").data(json!(i)))
            .await
            .unwrap();
    }
    eventually(10, "delivered after the emitter restart", || async {
        log.lock().iter().map(|r| r.events.len()).sum::<usize>() >= 46
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    emitter.dispose(Duration::from_secs(2)).await;
    receiver.stop().await;

    let requests = log.lock().clone();
    let delivered: Vec<_> = requests.iter().flat_map(|r| r.events.clone()).collect();
    let want: Vec<_> = all_events(&*store)
        .await
        .into_iter()
        .filter(|e| e.event.event_type.starts_with("TASK."))
        .collect();
    assert_eq!(want.len(), 46);
    assert_eq!(delivered, want, "every matching event once, in order");
    for r in &requests {
        assert!(r.events.len() <= 7);
        let ids: Vec<String> = r.events.iter().map(|e| e.event.id.to_string()).collect();
        assert_eq!(r.header_ids, ids);
        assert!(
            r.idempotency_key
                .as_deref()
                .is_some_and(|k| k.starts_with("tamma-"))
        );
    }
    assert_eq!(
        store
            .load_cursor(&route_cursor_name("audit-hook"))
            .await
            .unwrap(),
        Some(want.last().unwrap().position)
    );
}

/// Disposing the emitter while a webhook request is on the wire waits for its answer and records
/// the cursor, so the restarted route does not send the batch again; a route waiting between
/// retries stops at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_stopped_mid_delivery_records_what_the_sink_took() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("events.db"), SqliteOptions::default()).unwrap(),
    );
    let (mut receiver, log) = slow_webhook(Duration::from_millis(600)).await;
    let config = route_config(RouteConfig::Webhook(WebhookRouteConfig {
        name: "slow-hook".into(),
        url: format!("{}/hook", receiver.url()),
        headers: Default::default(),
        type_pattern: None,
        tags: Tags::new(),
        start_at: StartAt::Earliest,
        batch_size: 10,
        timeout: tamma_core::DurationMs::from_secs(5),
    }));
    let cursor = route_cursor_name("slow-hook");
    let emitter = Emitter::builder(Arc::clone(&store), config.clone())
        .resilience(&resilience(3))
        .build()
        .unwrap();
    emitter.emit(Event::new("TASK.FIRST")).await.unwrap();
    eventually(10, "the receiver holds the first batch", || async {
        !log.lock().is_empty()
    })
    .await;
    // The receiver has the batch and has not answered yet.
    let report = emitter.dispose(Duration::from_secs(5)).await;
    assert!(report.is_complete(), "{report:?}");
    let first = all_events(&*store).await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        store.load_cursor(&cursor).await.unwrap(),
        Some(first[0].position),
        "the answered batch is recorded"
    );

    let emitter = Emitter::builder(Arc::clone(&store), config.clone())
        .resilience(&resilience(3))
        .build()
        .unwrap();
    emitter.emit(Event::new("TASK.SECOND")).await.unwrap();
    eventually(10, "the second event delivered", || async {
        log.lock().len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // With the receiver down the route waits between attempts; dispose does not wait for it.
    receiver.stop().await;
    emitter.emit(Event::new("TASK.THIRD")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    emitter.dispose(Duration::from_secs(5)).await;

    let delivered: Vec<_> = log
        .lock()
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.event.event_type.clone()))
        .collect();
    assert_eq!(delivered, ["TASK.FIRST", "TASK.SECOND"], "each batch once");
    let stored = all_events(&*store).await;
    assert_eq!(
        store.load_cursor(&cursor).await.unwrap(),
        Some(stored[1].position),
        "the undelivered third event stays after the cursor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_route_publishes_each_event_once() {
    if !service_up("127.0.0.1:4222", "NATS").await {
        return;
    }
    let client = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let stream_name = format!("TAMMA_TEST_{tag}");
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("tamma.test.{tag}.>")],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("JetStream must be enabled (nats-server -js)");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("events.db"), SqliteOptions::default()).unwrap(),
    );
    let config = route_config(RouteConfig::Nats(NatsRouteConfig {
        name: "bus".into(),
        url: "nats://127.0.0.1:4222".into(),
        subject: format!("tamma.test.{tag}.{{type}}"),
        type_pattern: None,
        tags: Tags::new(),
        start_at: StartAt::Earliest,
        batch_size: 8,
        timeout: tamma_core::DurationMs::from_secs(5),
    }));
    let emitter = Emitter::builder(Arc::clone(&store), config.clone())
        .resilience(&resilience(3))
        .build()
        .unwrap();
    for i in 0..30 {
        emitter
            .emit(Event::new("JOB.DONE").data(json!(i)))
            .await
            .unwrap();
    }
    let messages = |js: async_nats::jetstream::Context, name: String| async move {
        js.get_stream(&name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    };
    eventually(15, "30 messages in the stream", || {
        let f = messages(js.clone(), stream_name.clone());
        async move { f.await == 30 }
    })
    .await;
    // Replay everything (as after losing the cursor): JetStream drops the duplicates by message id.
    emitter.dispose(Duration::from_secs(2)).await;
    store
        .save_cursor(&route_cursor_name("bus"), 0)
        .await
        .unwrap();
    let emitter = Emitter::builder(Arc::clone(&store), config)
        .resilience(&resilience(3))
        .build()
        .unwrap();
    for i in 30..35 {
        emitter
            .emit(Event::new("JOB.DONE").data(json!(i)))
            .await
            .unwrap();
    }
    eventually(15, "the replay reached the end", || async {
        store.load_cursor(&route_cursor_name("bus")).await.unwrap() == Some(35)
    })
    .await;
    emitter.dispose(Duration::from_secs(2)).await;
    assert_eq!(messages(js.clone(), stream_name.clone()).await, 35);
    let stored: HashSet<String> = all_events(&*store)
        .await
        .iter()
        .map(|e| e.event.id.to_string())
        .collect();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.fetch().max_messages(100).messages().await.unwrap();
    let mut seen = HashSet::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(2), messages.next())
        .await
        .ok()
        .flatten()
    {
        let m = m.unwrap();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .unwrap()
            .to_string();
        let body: tamma_events::SequencedEvent = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body.event.id.to_string(), id);
        assert_eq!(m.subject.as_str(), format!("tamma.test.{tag}.JOB.DONE"));
        assert!(seen.insert(id), "a message was published twice");
        m.ack().await.unwrap();
    }
    assert_eq!(seen, stored);
    js.delete_stream(&stream_name).await.unwrap();
}
