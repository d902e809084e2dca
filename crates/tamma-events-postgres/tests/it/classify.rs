//! Error classification on real failures: a serialization failure, a deadlock, a killed connection, a
//! constraint violation, an exhausted pool; and the store recovering from killed connections.

use std::time::Duration;

use futures::StreamExt;
use tamma_core::DurationMs;
use tamma_events::{Error, Event, EventStore, Limits, Query};
use tamma_events_postgres::{PgErrorClass, PostgresStore, classify, to_store_error};
use tokio_postgres::error::SqlState;

use crate::TestDb;

async fn table(db: &TestDb) -> tokio_postgres::Client {
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 0), (2, 0);",
    )
    .await
    .unwrap();
    c
}

#[tokio::test]
async fn serialization_failure_is_transient() {
    let db = TestDb::create().await;
    let other = table(&db).await;
    let c = db.client().await;
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT v FROM t WHERE id = 1")
        .await
        .unwrap();
    other
        .execute("UPDATE t SET v = 1 WHERE id = 1", &[])
        .await
        .unwrap();
    let e = c
        .execute("UPDATE t SET v = 2 WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE), "{e}");
    assert_eq!(classify(&e), PgErrorClass::Transient);
    let e = to_store_error(e);
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.category(), "transient");
}

#[tokio::test]
async fn deadlock_is_transient() {
    let db = TestDb::create().await;
    let _setup = table(&db).await;
    let a = db.client().await;
    let b = db.client().await;
    for c in [&a, &b] {
        c.batch_execute("SET deadlock_timeout = '50ms'; BEGIN")
            .await
            .unwrap();
    }
    a.execute("UPDATE t SET v = 1 WHERE id = 1", &[])
        .await
        .unwrap();
    b.execute("UPDATE t SET v = 1 WHERE id = 2", &[])
        .await
        .unwrap();
    // Each now waits for the row the other holds: the server breaks the cycle by failing one of them.
    let (ra, rb) = tokio::join!(
        a.execute("UPDATE t SET v = 2 WHERE id = 2", &[]),
        b.execute("UPDATE t SET v = 2 WHERE id = 1", &[]),
    );
    let e = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("expected exactly one deadlock victim: {other:?}"),
    };
    assert_eq!(e.code(), Some(&SqlState::T_R_DEADLOCK_DETECTED), "{e}");
    assert_eq!(classify(&e), PgErrorClass::Transient);
    assert!(to_store_error(e).is_transient());
}

#[tokio::test]
async fn terminated_connection_is_unavailable() {
    let db = TestDb::create().await;
    let admin = db.client().await;
    let victim = db.client().await;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let e = victim.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(classify(&e), PgErrorClass::Unavailable, "{e}");
    let e = to_store_error(e);
    assert_eq!(e.category(), "unavailable");
    assert!(e.is_transient());
}

#[tokio::test]
async fn constraint_violation_is_permanent() {
    let db = TestDb::create().await;
    let c = table(&db).await;
    let e = c
        .execute("INSERT INTO t VALUES (1, 0)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION));
    assert_eq!(classify(&e), PgErrorClass::Permanent);
    let e = to_store_error(e);
    assert!(!e.is_transient());
    assert_eq!(e.category(), "internal");
}

/// A pool whose only connection is busy answers `Unavailable` after `acquireTimeout`; retention waits for
/// the retention lock another process holds (it never runs twice at once), then completes.
#[tokio::test]
async fn pool_timeout_is_unavailable_and_retention_is_exclusive() {
    let db = TestDb::create().await;
    let config = tamma_events_postgres::PostgresConfig {
        pool_size: 1,
        acquire_timeout: DurationMs::from_millis(100),
        ..db.config()
    };
    let store = PostgresStore::connect(&config, Limits::default())
        .await
        .unwrap();
    store.append(vec![Event::new("A")], None).await.unwrap();
    let other = db.client().await;
    // The retention lock key, as another process running retention would hold it.
    other
        .execute("SELECT pg_advisory_lock(6071218766870478851)", &[])
        .await
        .unwrap();
    let retention = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .delete_before(chrono::Utc::now() + chrono::Duration::days(1))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !retention.is_finished(),
        "retention must wait for the other process"
    );
    let e = store.head().await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.is_transient());
    other
        .execute("SELECT pg_advisory_unlock(6071218766870478851)", &[])
        .await
        .unwrap();
    assert_eq!(retention.await.unwrap().unwrap(), 1);
    assert_eq!(store.head().await.unwrap(), 1);
}

/// Killing every connection of the store (writer, listener, pool) fails at most the appends in flight,
/// as unavailable, and the store's health names the failure until a commit succeeds; the store
/// reconnects, and a subscription keeps delivering without gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_recovers_from_killed_connections() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let mut sub = store.subscribe(Query::all(), 0);
    store.append(vec![Event::new("A")], None).await.unwrap();
    let admin = db.client().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'tamma-events') k",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 2, "writer and listener at least: {killed}");
    let mut appended = 1;
    let mut failures = 0;
    while appended < 5 {
        let e = Event::new("B");
        // Retry with the same event (same id) on a transient failure, as a producer does.
        loop {
            match store.append(vec![e.clone()], None).await {
                Ok(r) => {
                    assert_eq!(r.positions, vec![appended + 1]);
                    break;
                }
                Err(err) => {
                    assert!(err.is_transient(), "{err}");
                    if let Ok(h) = store.health().await {
                        assert!(h.last_commit_error.is_some(), "{err} but {h:?}");
                    }
                    failures += 1;
                    assert!(failures < 20, "the store does not recover: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        appended += 1;
    }
    for expected in 1..=5u64 {
        let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("delivered")
            .expect("open")
            .expect("no error");
        assert_eq!(got.position, expected);
    }
    assert_eq!(store.head().await.unwrap(), 5);
    assert_eq!(store.health().await.unwrap().last_commit_error, None);
}
