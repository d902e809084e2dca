//! Durability: WAL + synchronous=FULL, reopen, kill -9 of a writing process.

use futures::TryStreamExt;
use tamma_events::{Event, EventStore, Query, ReadOptions};
use tamma_events_sqlite::{Error, SqliteOptions, SqliteStore};
use uuid::Uuid;

#[tokio::test]
async fn opened_store_uses_wal_and_synchronous_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let s = store.writer_settings();
    assert_eq!(s.journal_mode, "wal");
    assert_eq!(s.synchronous, 2, "synchronous=FULL");
    assert_eq!(
        s.wal_autocheckpoint, 4000,
        "checkpoint every ~16 MiB of WAL"
    );
    // WAL is a property of the file: a separate connection sees it too.
    let other = rusqlite::Connection::open(&path).unwrap();
    let mode: String = other
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(store.path(), path);
}

/// Commits larger than the WAL write buffer and than one write of the default VFS (128 KiB) go through
/// whole, with the buffer on and off, and another connection on the default VFS reads them while the
/// store is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_commits_pass_through_the_wal_write_buffer() {
    for buffer_wal_writes in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let store = SqliteStore::open(
            &path,
            SqliteOptions {
                buffer_wal_writes,
                checkpoint_interval: None,
                ..SqliteOptions::default()
            },
        )
        .unwrap();
        let pad = "p".repeat(1000);
        // ~6 MiB in one commit (above the 4 MiB buffer), then a 128 KiB-multiple-sized one.
        for n in [6000, 128] {
            let events: Vec<_> = (0..n)
                .map(|i| {
                    Event::new("BIG")
                        .tag("k:v")
                        .data(serde_json::json!({"i": i, "pad": pad}))
                })
                .collect();
            let r = store.append(events, None).await.unwrap();
            assert_eq!(r.positions.len(), n);
        }
        let other = rusqlite::Connection::open(&path).unwrap();
        let (count, last): (i64, String) = other
            .query_row(
                "SELECT count(*), (SELECT data FROM events ORDER BY position DESC LIMIT 1) FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(count, 6128, "buffer_wal_writes {buffer_wal_writes}");
        assert!(last.contains("\"i\":127"), "{}", &last[..40]);
        let all: Vec<_> = store
            .read(Query::all(), ReadOptions::forwards())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(all.len(), 6128);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_events_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/events.db");
    let ids: Vec<Uuid> = {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let events: Vec<_> = (0..5)
            .map(|i| Event::new("A").tag("k:v").data(serde_json::json!(i)))
            .collect();
        let ids = events.iter().map(|e| e.id).collect();
        store.append(events, None).await.unwrap();
        // Retention of everything must not lower the head across a reopen either.
        store
            .delete_before(chrono::Utc::now() + chrono::Duration::days(1))
            .await
            .unwrap();
        store.append(vec![Event::new("B")], None).await.unwrap();
        ids
    };
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.head().await.unwrap(), 6);
    assert!(store.get(ids[0]).await.unwrap().is_none());
    assert_eq!(
        store
            .append(vec![Event::new("C")], None)
            .await
            .unwrap()
            .positions,
        vec![7]
    );
    let all: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![6, 7]
    );
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 99,
                supported: 3,
                ..
            }
        ),
        "{err}"
    );
    let as_contract: tamma_events::Error = err.into();
    assert_eq!(as_contract.category(), "unavailable");
    let not_a_dir = dir.path().join("events.db/inner.db");
    assert!(matches!(
        SqliteStore::open(not_a_dir, SqliteOptions::default()),
        Err(Error::CreateDir { .. })
    ));
}

/// A real process appends from several tasks and is killed with SIGKILL; every append it acknowledged
/// (printed) must be in the store after reopening, at the position it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let acked = crate::crash_writer(&path, 300);
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let head = store.head().await.unwrap();
    assert!(head >= acked.values().copied().max().unwrap());
    for (id, pos) in &acked {
        let got = store
            .get(*id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged event {id} lost"));
        assert_eq!(got.position, *pos);
    }
    let all: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len() as u64, head, "gapless after recovery");
}

/// The positions `query` reads from `store`.
async fn positions(store: &SqliteStore, query: Query, options: ReadOptions) -> Vec<u64> {
    store
        .read(query, options)
        .map_ok(|e| e.position)
        .try_collect()
        .await
        .unwrap()
}

/// A store written by a version-2 build (one `(tag, position)` row per tag and a type index) is
/// upgraded in place at open: its index rows become runs, coalesced across its appends, and queries,
/// conditions, new appends and retention (cutting a run in two) work on it.
#[tokio::test]
async fn a_version_2_store_is_upgraded_in_place() {
    use tamma_events::{AppendCondition, QueryItem};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE events (position INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, type TEXT NOT NULL,
             timestamp INTEGER NOT NULL, recorded_at INTEGER NOT NULL, tags TEXT NOT NULL, metadata TEXT,
             data TEXT NOT NULL);
         CREATE INDEX events_type_position ON events (type, position);
         CREATE TABLE event_tags (tag TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (tag, position))
             WITHOUT ROWID;
         CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
         CREATE TABLE cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    // Tag x at 1, 2, 3, 5; tag y at 2, 4, 5; type A at 1, 2, 4, 5, type B at 3, 6. One second apart.
    let rows: [(&str, &[&str]); 6] = [
        ("A", &["x"]),
        ("A", &["x", "y"]),
        ("B", &["x"]),
        ("A", &["y"]),
        ("A", &["x", "y"]),
        ("B", &[]),
    ];
    let second = |p: i64| 1_700_000_000_000_000 + p * 1_000_000;
    for (p, (ty, tags)) in (1_i64..).zip(rows) {
        conn.execute(
            "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?4, ?5, NULL, '{}')",
            rusqlite::params![
                p,
                &Uuid::now_v7().as_bytes()[..],
                ty,
                second(p),
                serde_json::to_string(tags).unwrap()
            ],
        )
        .unwrap();
        for t in tags {
            conn.execute(
                "INSERT INTO event_tags VALUES (?1, ?2)",
                rusqlite::params![t, p],
            )
            .unwrap();
        }
    }
    drop(conn);

    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    let runs = |table: &str| crate::runs(&conn, &format!("SELECT * FROM {table} ORDER BY 1, 2"));
    let run = crate::run;
    assert_eq!(
        runs("tag_runs"),
        [
            run("x", 1, 3),
            run("x", 5, 5),
            run("y", 2, 2),
            run("y", 4, 5)
        ]
    );
    assert_eq!(
        runs("type_runs"),
        [
            run("A", 1, 2),
            run("A", 4, 5),
            run("B", 3, 3),
            run("B", 6, 6)
        ]
    );
    let tags = |t: &[&str]| {
        Query::item(QueryItem::tags(
            t.iter().copied().collect::<tamma_events::Tags>(),
        ))
    };
    let fwd = ReadOptions::forwards;
    assert_eq!(positions(&store, tags(&["x"]), fwd()).await, [1, 2, 3, 5]);
    assert_eq!(positions(&store, tags(&["x"]), fwd().from(4)).await, [5]);
    assert_eq!(positions(&store, tags(&["x", "y"]), fwd()).await, [2, 5]);
    assert_eq!(
        positions(&store, tags(&["x"]), ReadOptions::backwards().from(4)).await,
        [3, 2, 1]
    );
    let a_with_y = Query::item(QueryItem::tags(["y"]).with_type("A"));
    assert_eq!(positions(&store, a_with_y, fwd()).await, [2, 4, 5]);
    let types = Query::item(QueryItem::types(["B"]));
    assert_eq!(positions(&store, types.clone(), fwd()).await, [3, 6]);

    let appended = store
        .append(vec![Event::new("A").tag("x")], None)
        .await
        .unwrap();
    assert_eq!(appended.positions, [7]);
    assert_eq!(
        positions(&store, tags(&["x"]), fwd()).await,
        [1, 2, 3, 5, 7]
    );

    // Retention up to position 2 (recorded before position 3) cuts x's first run and removes y's.
    let cutoff = chrono::DateTime::from_timestamp_micros(second(3)).unwrap();
    assert_eq!(store.delete_before(cutoff).await.unwrap(), 2);
    assert_eq!(positions(&store, tags(&["x"]), fwd()).await, [3, 5, 7]);
    assert_eq!(positions(&store, tags(&["y"]), fwd()).await, [4, 5]);
    assert_eq!(
        positions(&store, Query::item(QueryItem::types(["A"])), fwd()).await,
        [4, 5, 7]
    );
    assert_eq!(runs("tag_runs")[0], run("x", 3, 3));
    let err = store
        .append(
            vec![Event::new("A").tag("y")],
            Some(AppendCondition::new(tags(&["y"])).after(0)),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains('4'),
        "the first y after the cut: {err}"
    );
}
