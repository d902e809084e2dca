//! The spool survives kill -9 of a real child process mid-flush, and the forwarder then delivers every
//! spooled event exactly once after the remote recovers.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tamma_core::DurationMs;
use tamma_emitter::{ACKED_CURSOR, BATCH_CURSOR, Forwarder, Spool, SpoolConfig};
use tamma_events::{Event, EventStore, Limits};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{all_events, eventually, remote, resilience};

const WORKER: &str = env!("CARGO_BIN_EXE_tamma-spool-worker");

fn worker(spool: &std::path::Path, url: &str, count: u64) -> Child {
    Command::new(WORKER)
        .args([spool.to_str().unwrap(), url, &count.to_string(), "16"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_survives_kill_9_and_forwarder_delivers_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool_path = dir.path().join("spool.db");
    let remote_store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("remote.db"), SqliteOptions::default()).unwrap(),
    );
    let (mut server, state) = remote(Arc::clone(&remote_store)).await;
    // Slow answers, so batches are in flight when the worker dies.
    state.delay_ms.store(30, Ordering::Relaxed);

    let mut child = worker(&spool_path, &server.url(), 400);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked_by_worker = Vec::new();
    while acked_by_worker.len() < 150 {
        let line = lines.next_line().await.unwrap().expect("worker output");
        acked_by_worker.push(line.parse::<uuid::Uuid>().unwrap());
    }
    assert!(
        state.requests.load(Ordering::Relaxed) > 0,
        "nothing forwarded yet"
    );
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success());
    let remote_before = remote_store.head().await.unwrap();
    assert!(remote_before < 150 + 16, "forwarded more than was spooled");

    // The remote is down when the worker comes back: the forwarder waits and retries.
    server.stop().await;
    let mut child = worker(&spool_path, &server.url(), 0);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::sleep(Duration::from_millis(500)).await;
    state.delay_ms.store(0, Ordering::Relaxed);
    server.restart().await;
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("forwarded in time")
        .unwrap();
    assert_eq!(line.as_deref(), Some("forwarded"));
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    server.stop().await;

    let spool = SqliteStore::open(&spool_path, SqliteOptions::default()).unwrap();
    let spooled = all_events(&spool).await;
    let remote_events = all_events(&*remote_store).await;
    let remote_ids: Vec<_> = remote_events.iter().map(|e| e.event.id).collect();
    let unique: HashSet<_> = remote_ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        remote_ids.len(),
        "an event was stored twice remotely"
    );
    for id in &acked_by_worker {
        assert!(unique.contains(id), "acknowledged event {id} was lost");
    }
    assert_eq!(spooled.len(), remote_events.len());
    let by_id: HashMap<_, _> = remote_events
        .iter()
        .map(|e| (e.event.id, &e.event))
        .collect();
    for s in &spooled {
        assert_eq!(by_id[&s.event.id], &s.event, "content changed in transit");
    }
    assert_eq!(
        spool.load_cursor(ACKED_CURSOR).await.unwrap(),
        spool.load_cursor(BATCH_CURSOR).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_resends_the_fixed_batch_and_splits_refused_ones() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("spool.db"), Limits::default()).unwrap();
    let store = spool.store();
    let remote_store: Arc<dyn EventStore> = Arc::new(tamma_events::MemoryStore::new());
    let (mut server, state) = remote(Arc::clone(&remote_store)).await;
    for i in 0..10 {
        store
            .append(vec![Event::new("S").data(json!(i))], None)
            .await
            .unwrap();
    }
    // A batch fixed (positions 1..=4) by a forwarder that crashed after the remote stored it.
    let fixed: Vec<Event> = all_events(&*store).await[..4]
        .iter()
        .map(|e| e.event.clone())
        .collect();
    remote_store.append(fixed, None).await.unwrap();
    store.save_cursor(BATCH_CURSOR, 4).await.unwrap();
    // The remote takes at most 3 events per request: larger batches are split.
    state.max_events.store(3, Ordering::Relaxed);
    let config = SpoolConfig {
        batch_size: 8,
        timeout: DurationMs::from_secs(2),
        ..SpoolConfig::default()
    };
    let forwarder = Forwarder::new(
        Arc::clone(&store),
        &server.url(),
        &config,
        resilience(3).operation("forwarder.ship"),
    )
    .unwrap()
    .spawn();
    eventually(10, "everything forwarded", || async {
        forwarder.status().acked == 10
    })
    .await;
    let ids: Vec<_> = all_events(&*remote_store)
        .await
        .iter()
        .map(|e| e.event.id)
        .collect();
    let spooled: Vec<_> = all_events(&*store)
        .await
        .iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(ids, spooled, "each once, in spool order");
    let status = forwarder.status();
    assert_eq!(status.events, 10);
    assert!(status.last_error.is_none());
    let check = forwarder.health_check();
    assert_eq!(
        tamma_core::Check::check(&check).await.status,
        tamma_core::CheckStatus::Healthy
    );
    server.stop().await;
    store
        .append(vec![Event::new("S").data(json!("late"))], None)
        .await
        .unwrap();
    eventually(10, "the failure is reported", || async {
        forwarder.status().last_error.is_some()
    })
    .await;
    assert_eq!(
        tamma_core::Check::check(&check).await.status,
        tamma_core::CheckStatus::Degraded
    );
    let status = forwarder.shutdown(Duration::from_secs(2)).await;
    assert_eq!(status.acked, 10);
    assert_eq!(store.load_cursor(BATCH_CURSOR).await.unwrap(), Some(11));
}

fn tamma_server(path: &std::path::Path) -> (Arc<dyn EventStore>, axum::Router) {
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(path, SqliteOptions::default()).unwrap());
    let router =
        tamma_server::events_routes(Arc::clone(&store), tamma_server::EventsApiLimits::default());
    (store, router)
}

/// The same, against the node's real `/v1/events` router (`tamma-server`) over a SQLite file, stopped
/// (its store closed) and started again on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarder_delivers_exactly_once_to_tamma_server_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let spool_path = dir.path().join("spool.db");
    let remote_path = dir.path().join("node.db");
    let (remote_store, router) = tamma_server(&remote_path);
    let mut server = crate::support::Server::start(router).await;

    let mut child = worker(&spool_path, &server.url(), 300);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked_by_worker = Vec::new();
    while acked_by_worker.len() < 120 {
        let line = lines.next_line().await.unwrap().expect("worker output");
        acked_by_worker.push(line.parse::<uuid::Uuid>().unwrap());
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    server.stop().await;
    drop(remote_store);

    let mut child = worker(&spool_path, &server.url(), 0);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (remote_store, router) = tamma_server(&remote_path);
    server.set_router(router);
    server.restart().await;
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("forwarded in time")
        .unwrap();
    assert_eq!(line.as_deref(), Some("forwarded"));
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    server.stop().await;

    let spool = SqliteStore::open(&spool_path, SqliteOptions::default()).unwrap();
    let spooled: Vec<_> = all_events(&spool)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect();
    let stored: Vec<_> = all_events(&*remote_store)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        stored, spooled,
        "every spooled event exactly once, in order, unchanged"
    );
    let ids: HashSet<_> = stored.iter().map(|e| e.id).collect();
    assert!(acked_by_worker.iter().all(|id| ids.contains(id)));
}
