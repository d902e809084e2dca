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

/// A pool whose only connection is busy answers `Unavailable` after `acquireTimeout` (the health check,
/// on a connection of its own, still answers); retention waits for the retention lock another process
/// holds (it never runs twice at once), then completes.
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
    // The health check has a connection of its own: a saturated pool does not make the store unhealthy.
    for _ in 0..2 {
        assert_eq!(store.health().await.unwrap().head, 1);
    }
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
              WHERE datname = current_database() AND application_name LIKE 'tamma-events%') k",
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

/// A TCP proxy to the test server that can stop forwarding: a network partition, where sockets stay
/// open and nothing arrives.
struct Proxy {
    addr: std::net::SocketAddr,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (upstream_read, upstream_write) = upstream.into_split();
                tokio::spawn(pump(client_read, upstream_write, f.clone()));
                tokio::spawn(pump(upstream_read, client_write, f.clone()));
            }
        });
        Self { addr, frozen }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen
            .store(frozen, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, holding the bytes while the proxy is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let held = || frozen.load(std::sync::atomic::Ordering::SeqCst);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while held() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_appends_and_reads_as_unavailable_and_the_store_recovers()
{
    let db = TestDb::create().await;
    let proxy = Proxy::start().await;
    let config = tamma_events_postgres::PostgresConfig {
        statement_timeout: DurationMs::from_millis(500),
        ..tamma_events_postgres::PostgresConfig::with_url(format!(
            "postgres://postgres@{}/{}",
            proxy.addr, db.name
        ))
    };
    let store = PostgresStore::connect(&config, Limits::default())
        .await
        .unwrap();
    store.append(vec![Event::new("A")], None).await.unwrap();

    // Partitioned: the commit gets no answer, and the server's statement timeout cannot say so.
    proxy.freeze(true);
    let b = Event::new("B");
    let err = tokio::time::timeout(Duration::from_secs(20), store.append(vec![b.clone()], None))
        .await
        .expect("the append must end on its own")
        .unwrap_err();
    assert_eq!(err.category(), "unavailable", "{err}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    // Reads end too, the same way.
    let err = tokio::time::timeout(Duration::from_secs(20), store.head())
        .await
        .expect("the read must end on its own")
        .unwrap_err();
    assert_eq!(err.category(), "unavailable", "{err}");
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        store
            .read(Query::all(), tamma_events::ReadOptions::forwards())
            .collect::<Vec<_>>(),
    )
    .await
    .expect("the read must end on its own");
    assert!(
        read.iter()
            .any(|r| r.as_ref().is_err_and(|e| e.category() == "unavailable")),
        "{read:?}"
    );

    // Healed: health names the failed commit until one succeeds; the retry with the same id and the
    // next append both go through, and every event is stored once.
    proxy.freeze(false);
    let health = store.health().await.unwrap();
    assert!(
        health
            .last_commit_error
            .as_deref()
            .is_some_and(|e| e.contains("did not answer")),
        "{health:?}"
    );
    store.append(vec![b], None).await.unwrap();
    store.append(vec![Event::new("C")], None).await.unwrap();
    assert_eq!(store.health().await.unwrap().last_commit_error, None);
    let types: Vec<String> = store
        .read(Query::all(), tamma_events::ReadOptions::forwards())
        .map(|e| e.unwrap().event.event_type)
        .collect()
        .await;
    assert_eq!(types, ["A", "B", "C"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_privilege_makes_the_store_unavailable_and_says_so_in_health() {
    let db = TestDb::create().await;
    let role = format!("tamma_role_{}", uuid::Uuid::new_v4().simple());
    let admin = db.client().await;
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    // Migrated by the owner; then the role gets data rights only (no CREATE on the schema).
    drop(db.store().await);
    admin
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    let config = tamma_events_postgres::PostgresConfig {
        pool_size: 2,
        ..tamma_events_postgres::PostgresConfig::with_url(format!(
            "postgres://{role}@127.0.0.1:5432/{}",
            db.name
        ))
    };
    let outcome = async {
        let store = PostgresStore::connect(&config, Limits::default())
            .await
            .map_err(|e| format!("a role with data rights only must open a migrated store: {e}"))?;
        store
            .append(vec![Event::new("A")], None)
            .await
            .map_err(|e| e.to_string())?;
        admin
            .batch_execute(&format!("REVOKE INSERT ON tamma_events FROM {role}"))
            .await
            .map_err(|e| e.to_string())?;
        let err = store
            .append(vec![Event::new("B")], None)
            .await
            .expect_err("the role may not insert");
        assert_eq!(err.category(), "unavailable", "{err}");
        assert!(err.to_string().contains("permission denied"), "{err}");
        let health = store.health().await.map_err(|e| e.to_string())?;
        assert!(
            health
                .last_commit_error
                .as_deref()
                .is_some_and(|e| e.contains("permission denied") && e.contains("42501")),
            "{health:?}"
        );
        Ok::<_, String>(())
    }
    .await;
    let _ = admin
        .batch_execute(&format!(
            "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};
             REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {role};
             REVOKE ALL ON SCHEMA public FROM {role};"
        ))
        .await;
    drop(admin);
    // The role goes with the database's connections (terminated when the database is dropped).
    drop(db);
    let _ = crate::support::connect("test")
        .await
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await;
    outcome.unwrap();
}

#[tokio::test]
async fn retention_waiting_too_long_for_another_process_says_so() {
    let db = TestDb::create().await;
    let config = tamma_events_postgres::PostgresConfig {
        statement_timeout: DurationMs::from_millis(300),
        ..db.config()
    };
    let store = PostgresStore::connect(&config, Limits::default())
        .await
        .unwrap();
    let other = db.client().await;
    other
        .execute("SELECT pg_advisory_lock(6071218766870478851)", &[])
        .await
        .unwrap();
    let e = store
        .delete_before(chrono::Utc::now())
        .await
        .expect_err("the lock is held");
    assert!(e.is_transient(), "{e}");
    assert!(
        e.to_string().contains("retention lock") && e.to_string().contains("57014"),
        "{e}"
    );
}
