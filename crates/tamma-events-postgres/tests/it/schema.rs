//! Migrations, configuration errors, input PostgreSQL cannot store, cross-store wake-ups, health.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tamma_events::{
    AppendCondition, Error, Event, EventMetadata, EventStore, Limits, Query, QueryItem, ReadOptions,
};
use tamma_events_postgres::{Error as OpenError, PostgresConfig, PostgresStore};

use crate::TestDb;

/// Concurrent starts apply each migration once; a restart applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_idempotent_and_safe_concurrently() {
    let db = TestDb::create().await;
    let config = db.config();
    let opened = futures::future::join_all(
        (0..4).map(|_| PostgresStore::connect(&config, Limits::default())),
    )
    .await;
    for s in &opened {
        assert!(s.is_ok(), "{s:?}");
    }
    let again = db.store().await;
    again.append(vec![Event::new("A")], None).await.unwrap();
    let c = db.client().await;
    let rows = c
        .query("SELECT version, name FROM tamma_schema_migrations", &[])
        .await
        .unwrap();
    let applied: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        applied,
        vec![
            (1, "events".to_owned()),
            (2, "cursors".to_owned()),
            (3, "append_on_conflict".to_owned()),
            (4, "append_tags_literal".to_owned()),
            (5, "runs".to_owned()),
            (6, "append_plain_insert".to_owned()),
            (7, "append_group".to_owned()),
        ]
    );
}

/// A database left at schema version 2 by an older Tamma is upgraded at start: its events stay, a retry
/// of a stored event is still answered with its position, a changed event under a stored id is still
/// refused, and new appends go on from its head.
#[tokio::test]
async fn a_version_2_database_is_upgraded_in_place() {
    let db = TestDb::create().await;
    let c = db.client().await;
    c.batch_execute(
        "CREATE TABLE tamma_schema_migrations (
            version    integer     PRIMARY KEY,
            name       text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .unwrap();
    c.batch_execute(include_str!("../../migrations/0001_events.sql"))
        .await
        .unwrap();
    c.batch_execute(include_str!("../../migrations/0002_cursors.sql"))
        .await
        .unwrap();
    c.batch_execute(
        "INSERT INTO tamma_schema_migrations (version, name) VALUES (1, 'events'), (2, 'cursors')",
    )
    .await
    .unwrap();
    let old = Event::new("OLD").tag("k:v");
    c.execute(
        "INSERT INTO tamma_events (position, id, type, timestamp, recorded_at, tags, data)
         VALUES (1, $1, 'OLD', now(), now(), ARRAY['k:v'], 'null')",
        &[&old.id],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO tamma_event_tags (tag, position) VALUES ('k:v', 1)",
        &[],
    )
    .await
    .unwrap();
    // Three more: k:v on 2 and 4, not on 3; type OLD on 2 and 3, OTHER on 4.
    c.batch_execute(
        "INSERT INTO tamma_events (position, id, type, timestamp, recorded_at, tags, data)
         VALUES (2, gen_random_uuid(), 'OLD', now(), now(), ARRAY['k:v'], 'null'),
                (3, gen_random_uuid(), 'OLD', now(), now(), ARRAY[]::text[], 'null'),
                (4, gen_random_uuid(), 'OTHER', now(), now(), ARRAY['k:v'], 'null');
         INSERT INTO tamma_event_tags (tag, position) VALUES ('k:v', 2), ('k:v', 4);",
    )
    .await
    .unwrap();
    let store = db.store().await;
    let version: i32 = c
        .query_one("SELECT max(version) FROM tamma_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 7);
    // The tag rows and the types of version 2 became runs, and queries read them.
    let runs = |table: &'static str| {
        let c = &c;
        async move {
            c.query(
                &format!("SELECT k, first, last FROM (SELECT * FROM {table}) r (k, first, last) ORDER BY k, first"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)))
            .collect::<Vec<_>>()
        }
    };
    let own = |v: &[(&str, i64, i64)]| -> Vec<(String, i64, i64)> {
        v.iter().map(|&(k, a, b)| (k.to_owned(), a, b)).collect()
    };
    assert_eq!(
        runs("tamma_tag_runs").await,
        own(&[("k:v", 1, 2), ("k:v", 4, 4)])
    );
    assert_eq!(
        runs("tamma_type_runs").await,
        own(&[("OLD", 1, 3), ("OTHER", 4, 4)])
    );
    let kv = Query::item(QueryItem::tags(["k:v"]));
    let read = |q: Query, options: ReadOptions| {
        let store = &store;
        async move {
            store
                .read(q, options)
                .map_ok(|e| e.position)
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        read(kv.clone(), ReadOptions::forwards()).await,
        vec![1, 2, 4]
    );
    assert_eq!(
        read(kv.clone(), ReadOptions::backwards()).await,
        vec![4, 2, 1]
    );
    assert_eq!(
        read(
            Query::item(QueryItem::types(["OLD"]).with_tag("k:v")),
            ReadOptions::forwards().from(2)
        )
        .await,
        vec![2]
    );
    let stale = store
        .append(
            vec![Event::new("NEW")],
            Some(AppendCondition::new(kv).after(2)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(stale, Error::AppendConditionFailed { position: 4 }),
        "{stale}"
    );
    let retry = store.append(vec![old.clone()], None).await.unwrap();
    assert_eq!((retry.positions, retry.duplicate), (vec![1], true));
    let mut changed = old.clone();
    changed.event_type = "CHANGED".into();
    // A new event first, inserted and then removed again when the changed one conflicts.
    let e = store
        .append(vec![Event::new("FRESH").tag("fresh:1"), changed], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "duplicate_event_id", "{e}");
    let next = store
        .append(vec![Event::new("NEW"), Event::new("NEW")], None)
        .await
        .unwrap();
    assert_eq!(next.positions, vec![5, 6]);
    let rows: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM tamma_tag_runs) + (SELECT count(*) FROM tamma_type_runs)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Two of k:v, OLD and OTHER from version 2, NEW from the last append.
    assert_eq!(rows, 5, "the refused append left no runs");
    let fresh: i64 = c
        .query_one(
            "SELECT count(*) FROM tamma_events WHERE type = 'FRESH'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(fresh, 0, "the refused append left no events");
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let db = TestDb::create().await;
    drop(db.store().await);
    db.client()
        .await
        .execute(
            "INSERT INTO tamma_schema_migrations (version, name) VALUES (99, 'future')",
            &[],
        )
        .await
        .unwrap();
    let e = PostgresStore::connect(&db.config(), Limits::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::SchemaTooNew {
                found: 99,
                supported: 7
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn bad_settings_and_unreachable_server_are_named() {
    let e = PostgresStore::connect(
        &PostgresConfig::with_url("postgres://x@h:port/db"),
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, OpenError::InvalidConfig { path: "url", .. }),
        "{e}"
    );
    let e = PostgresStore::connect(
        &PostgresConfig::with_url("postgres://postgres@127.0.0.1:1/test"),
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, OpenError::Connect { .. }), "{e}");
    assert!(tamma_events::Error::from(e).is_transient());
}

/// PostgreSQL text cannot hold U+0000: the field is named and nothing is written (the common validation,
/// which every backend runs); in `data` (stored as `json` text, escaped) it is fine.
#[tokio::test]
async fn nul_characters() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let e = store
        .append(vec![Event::new("A\0")], None)
        .await
        .unwrap_err();
    assert_eq!(e.path(), Some("events[0].type"), "{e}");
    let e = store
        .append(vec![Event::new("A"), Event::new("B").tag("k:\0")], None)
        .await
        .unwrap_err();
    assert_eq!(e.path(), Some("events[1].tags"), "{e}");
    let md = EventMetadata {
        user_id: Some("u\0".into()),
        ..EventMetadata::default()
    };
    let e = store
        .append(vec![Event::new("A").metadata(md)], None)
        .await
        .unwrap_err();
    assert_eq!(e.path(), Some("events[0].metadata.userId"), "{e}");
    assert!(matches!(e, Error::InvalidEvent { .. }));
    assert_eq!(store.head().await.unwrap(), 0);
    let data = serde_json::json!({"s": "a\u{0}b", "n": 1.50, "big": 12_345_678_901_234_567_890u64});
    let ev = Event::new("A").data(data.clone());
    store.append(vec![ev.clone()], None).await.unwrap();
    assert_eq!(store.get(ev.id).await.unwrap().unwrap().event.data, data);
}

/// Two stores on `db` (two processes, in production) that read the head without a `NOTIFY` only every
/// 60 s: anything delivered sooner came through `LISTEN`.
async fn two_stores_polling_rarely(db: &TestDb) -> (PostgresStore, PostgresStore) {
    let config = PostgresConfig {
        poll_interval: tamma_core::DurationMs::from_secs(60),
        ..db.config()
    };
    let open = || PostgresStore::connect(&config, Limits::default());
    (open().await.unwrap(), open().await.unwrap())
}

/// The next event of `sub`, which must come within 5 s (`why` says why it should).
async fn next_soon(sub: &mut tamma_events::EventStream, why: &str) -> tamma_events::SequencedEvent {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect(why)
        .unwrap()
        .unwrap()
}

/// Appends through one store wake the subscriptions of another store on the same database (another
/// process, in production) through `NOTIFY`, well before the poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_other_stores() {
    let db = TestDb::create().await;
    let (reader, writer) = two_stores_polling_rarely(&db).await;
    let mut sub = reader.subscribe(Query::all(), 0);
    // Let the reader's LISTEN connection come up (the subscription wakes the watcher to open it).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 1..=3u64 {
        writer.append(vec![Event::new("N")], None).await.unwrap();
        let got = next_soon(&mut sub, "woken by NOTIFY, not by the 60 s poll").await;
        assert_eq!(got.position, i);
    }
}

/// The store's listening connections in the test database (`application_name` `tamma-events-listen`).
async fn listeners(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'tamma-events-listen'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits up to 5 s for `want` listening connections.
async fn await_listeners(admin: &tokio_postgres::Client, want: i64) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = listeners(admin).await;
        if n == want {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{n} listening connections, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A store listens only while a subscription is live: one that only appends (a worker) holds no
/// listening connection, so it is not woken by every other process's appends. A subscription opens
/// the connection at once (not at the next poll), is woken through it by another store's appends, and
/// the connection closes when the last subscription is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_only_while_a_subscription_is_live() {
    let db = TestDb::create().await;
    let admin = db.client().await;
    let (reader, writer) = two_stores_polling_rarely(&db).await;
    writer.append(vec![Event::new("N")], None).await.unwrap();
    reader.append(vec![Event::new("N")], None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listeners(&admin).await, 0, "no subscription, no LISTEN");

    let mut sub = reader.subscribe(Query::all(), 2);
    await_listeners(&admin, 1).await;
    for i in 3..=4u64 {
        writer.append(vec![Event::new("N")], None).await.unwrap();
        let got = next_soon(&mut sub, "woken by NOTIFY, not by the 60 s poll").await;
        assert_eq!(got.position, i);
    }
    let second = reader.subscribe(Query::all(), 4);
    drop(sub);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listeners(&admin).await, 1, "one subscription is still live");
    drop(second);
    await_listeners(&admin, 0).await;

    // And again: a new subscription after the connection closed sees what was appended meanwhile
    // and what comes next.
    writer.append(vec![Event::new("N")], None).await.unwrap();
    let mut sub = reader.subscribe(Query::all(), 4);
    for i in 5..=6u64 {
        if i == 6 {
            await_listeners(&admin, 1).await;
            writer.append(vec![Event::new("N")], None).await.unwrap();
        }
        let got = next_soon(&mut sub, "delivered well before the 60 s poll").await;
        assert_eq!(got.position, i);
    }
}

#[tokio::test]
async fn health_reports_writer_state() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let h = store.health().await.unwrap();
    assert_eq!((h.head, h.queue_depth, h.last_commit_age), (0, 0, None));
    store
        .append(vec![Event::new("A"), Event::new("B")], None)
        .await
        .unwrap();
    let h = store.health().await.unwrap();
    assert_eq!((h.head, h.queue_depth), (2, 0));
    assert!(
        h.last_commit_age
            .is_some_and(|a| a < Duration::from_secs(10))
    );
    let r = tamma_core::Check::check(&store.health_check()).await;
    assert_eq!(r.status, tamma_core::CheckStatus::Healthy);
}

/// Random conditions (items of several tags and types, `after` anywhere) give exactly the memory store's
/// answers: the same conflict position or the same success. Exercises the leapfrog join of
/// `tamma_first_match` over common and rare streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_agree_with_the_reference_store() {
    use tamma_events::{AppendCondition, MemoryStore, QueryItem};
    let db = TestDb::create().await;
    let pg = db.store().await;
    let mem = MemoryStore::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut below = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let types = ["A", "B", "C"];
    let tags = ["t:0", "t:1", "t:2", "t:3", "common"];
    let mut batch = Vec::new();
    for _ in 0..400 {
        let mut e = Event::new(types[usize::try_from(below(3)).unwrap()]);
        for t in tags {
            // "common" on most events, the others rarely.
            if below(if t == "common" { 10 } else { 4 }) < if t == "common" { 9 } else { 1 } {
                e = e.tag(t);
            }
        }
        batch.push(e);
    }
    pg.append(batch.clone(), None).await.unwrap();
    mem.append(batch, None).await.unwrap();
    let (mut passed, mut failed) = (0, 0);
    for round in 0..150 {
        let items = (0..=below(2))
            .map(|_| {
                let mut item = QueryItem::default();
                for t in types {
                    if below(3) == 0 {
                        item = item.with_type(t);
                    }
                }
                for t in tags {
                    if below(2) == 0 {
                        item = item.with_tag(t);
                    }
                }
                if item.types.is_empty() && item.tags.is_empty() {
                    item = item.with_tag("common");
                }
                item
            })
            .collect::<Vec<_>>();
        let mut cond = AppendCondition::new(Query::from_items(items));
        if below(4) > 0 {
            cond = cond.after(250 + below(170));
        }
        let probe = Event::new("PROBE").tag("probe");
        let a = pg.append(vec![probe.clone()], Some(cond.clone())).await;
        let b = mem.append(vec![probe], Some(cond.clone())).await;
        match (&a, &b) {
            (Ok(x), Ok(y)) => {
                assert_eq!(x.positions, y.positions, "round {round}: {cond:?}");
                passed += 1;
            }
            (
                Err(Error::AppendConditionFailed { position: x }),
                Err(Error::AppendConditionFailed { position: y }),
            ) => {
                assert_eq!(x, y, "round {round}: {cond:?}");
                failed += 1;
            }
            _ => panic!("round {round}: {cond:?}: postgres {a:?}, memory {b:?}"),
        }
    }
    assert!(
        passed > 10 && failed > 10,
        "both outcomes exercised: {passed} passed, {failed} failed"
    );
}

/// One call of `tamma_append` is one group commit: the condition of each append sees the appends before
/// it in the same call, by tag, by type, by type and tags, and through the empty query; rejected
/// appends take no position.
#[tokio::test]
async fn conditions_see_earlier_appends_of_the_same_batch() {
    let db = TestDb::create().await;
    drop(db.store().await);
    let c = db.client().await;
    let ids: Vec<uuid::Uuid> = (0..7).map(|_| uuid::Uuid::now_v7()).collect();
    let none: Option<i64> = None;
    let rows = c
        .query(
            "SELECT o_status, o_first, o_conflict FROM tamma_append(
                 $1, $2, $3, $4, $5, $6, $7, $8, $9,
                 array_fill(NULL::timestamptz, ARRAY[7]), $10,
                 array_fill(NULL::text, ARRAY[7]), array_fill('null'::text, ARRAY[7]),
                 $11, $12, $13, $14, $15, NULL, array_fill(false, ARRAY[7]))",
            &[
                &vec![1i32; 7],
                &vec![none, Some(0), Some(0), Some(0), Some(0), Some(1), Some(2)],
                &vec![0i32, 1, 1, 0, 1, 1, 1],
                &vec![0i32, 1, 0, 1, 0],
                &vec![1i32, 0, 1, 2, 1],
                &vec!["A", "D"],
                &vec!["x:1", "z:1", "x:1", "z:1", "x:1"],
                &ids,
                &vec!["A", "B", "B", "C", "D", "E", "F"],
                // Each event's tags as a text[] literal.
                &vec![
                    r#"{"x:1"}"#,
                    r#"{"y:1"}"#,
                    "{}",
                    "{}",
                    r#"{"x:1","z:1"}"#,
                    "{}",
                    "{}",
                ],
                // Each append's runs: its tags, then its type.
                &vec![2i32, 2, 1, 1, 3, 1, 1],
                &vec![
                    "x:1", "A", "y:1", "B", "B", "C", "x:1", "z:1", "D", "E", "F",
                ],
                &vec![1i32; 11],
                &vec![1i32; 11],
                &vec![
                    false, true, false, true, true, true, false, false, true, true, true,
                ],
            ],
        )
        .await
        .unwrap();
    let got: Vec<(i16, Option<i64>, Option<i64>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, Some(1), None), // A [x:1]
            (1, None, Some(1)), // tag x:1 after 0: the first append of the batch
            (1, None, Some(1)), // type A after 0
            (1, None, Some(1)), // anything after 0
            (0, Some(2), None), // tag z:1 after 0: nothing
            (1, None, Some(2)), // type D with x:1 and z:1 after 1: the fifth append
            (0, Some(3), None), // tag x:1 after 2: nothing
        ]
    );
    let stored = c
        .query(
            "SELECT position::text, type FROM tamma_events ORDER BY position",
            &[],
        )
        .await
        .unwrap();
    let tags = c
        .query(
            "SELECT first::text, tag FROM tamma_tag_runs ORDER BY first, tag",
            &[],
        )
        .await
        .unwrap();
    let pairs = |rows: &[tokio_postgres::Row]| -> Vec<(String, String)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter().map(|&(a, b)| (a.into(), b.into())).collect()
    };
    assert_eq!(pairs(&stored), owned(&[("1", "A"), ("2", "D"), ("3", "F")]));
    assert_eq!(
        pairs(&tags),
        owned(&[("1", "x:1"), ("2", "x:1"), ("2", "z:1")])
    );
}

/// An append costs time linear in its size (schema version 4): one append of 80,000 events with two
/// tags each (version 3 sliced the tag array per event, quadratic: it ran into the 30 s statement
/// timeout) is stored whole, in order, with every tag queryable, and its retry is a duplicate (the
/// stored rows are matched to the retry by id through a map: a search per event took 35 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_large_append_is_stored_whole() {
    use futures::TryStreamExt;
    use tamma_events::{QueryItem, ReadOptions};
    let db = TestDb::create().await;
    let store = db.store().await;
    store.append(vec![Event::new("FIRST")], None).await.unwrap();
    let n = 80_000u64;
    let events: Vec<Event> = (0..n)
        .map(|i| {
            Event::new("BULK.LOADED")
                .tag(format!("item:{i}"))
                .tag(format!("shard:{}", i % 7))
        })
        .collect();
    let r = store.append(events.clone(), None).await.unwrap();
    assert_eq!(r.positions, (2..=n + 1).collect::<Vec<_>>());
    let shard3: Vec<_> = store
        .read(
            Query::item(QueryItem::tags(["shard:3"])),
            ReadOptions::forwards(),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        shard3.len() as u64,
        (0..n).filter(|i| i % 7 == 3).count() as u64
    );
    assert!(shard3.iter().all(|e| (e.position - 2) % 7 == 3));
    let last = store.get(events[79_999].id).await.unwrap().expect("stored");
    assert_eq!(last.position, n + 1);
    assert_eq!(
        last.event.tags.iter().collect::<Vec<_>>(),
        vec!["item:79999", "shard:3"]
    );
    let retry = store.append(events, None).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.positions, r.positions);
}

/// Conditions a writer rules out from what it wrote itself are still checked once another store (another
/// process) wrote to the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_see_the_appends_of_another_store_on_the_same_database() {
    let db = TestDb::create().await;
    let (a, b) = (db.store().await, db.store().await);
    tamma_events_testkit::conditions_see_another_writer(&a, &b).await;
}

/// One group of forty 8-event appends behind a slow commit: the first 32 insert inside blocks that
/// catch a stored id, the rest with `ON CONFLICT` (schema version 6; `tamma_append_group` hands a group
/// holding a stored id to `tamma_append`, version 7). Retries in either part, and a
/// retry of an append of the same group, are answered with the original positions; every other append
/// is stored, the positions gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_appends_of_one_group_find_their_retries_in_both_insert_paths() {
    use tamma_events::StoreHooks;
    let db = TestDb::create().await;
    let store = std::sync::Arc::new(
        PostgresStore::connect_with_hooks(
            &db.config(),
            Limits::default(),
            StoreHooks::delay_commits_where(Duration::from_millis(400), |events| {
                events.iter().any(|e| e.event_type == "SLOW")
            }),
        )
        .await
        .unwrap(),
    );
    let batch = |n: usize| -> Vec<Event> {
        (0..8)
            .map(|i| {
                Event::new("BULK.ADDED")
                    .tag(format!("batch:{n}"))
                    .tag(format!("item:{i}"))
            })
            .collect()
    };
    // Two appends stored before: their retries go at places 5 and 36 of the group.
    let early = [batch(1000), batch(1001)];
    let mut early_positions = Vec::new();
    for b in &early {
        early_positions.push(store.append(b.clone(), None).await.unwrap().positions);
    }
    let slow = {
        let store = store.clone();
        tokio::spawn(async move { store.append(vec![Event::new("SLOW")], None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut appends: Vec<Vec<Event>> = (0..40).map(batch).collect();
    appends[5] = early[0].clone();
    appends[36] = early[1].clone();
    appends[20] = appends[3].clone(); // a retry of an append of the same group
    let results =
        futures::future::join_all(appends.iter().map(|a| store.append(a.clone(), None))).await;
    slow.await.unwrap().unwrap();
    let mut new_positions = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap_or_else(|e| panic!("append {i}: {e}"));
        match i {
            5 => assert_eq!(
                (r.positions, r.duplicate),
                (early_positions[0].clone(), true)
            ),
            36 => assert_eq!(
                (r.positions, r.duplicate),
                (early_positions[1].clone(), true)
            ),
            20 => assert!(r.duplicate, "the same group's retry is a duplicate"),
            _ => {
                assert!(!r.duplicate, "append {i}");
                new_positions.extend(r.positions);
            }
        }
    }
    // 16 earlier events, the slow one, then 37 new appends of 8: gapless.
    new_positions.sort_unstable();
    assert_eq!(new_positions, (18..18 + 37 * 8).collect::<Vec<u64>>());
    assert_eq!(store.head().await.unwrap(), 17 + 37 * 8);
    let all: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len() as u64, 17 + 37 * 8);
    assert!(all.iter().zip(1..).all(|(e, p)| e.position == p));
    let version: i32 = db
        .client()
        .await
        .query_one("SELECT max(version) FROM tamma_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 7);
}

type Append = (Vec<Event>, Option<AppendCondition>);

/// An append's outcome as compared here: its positions, or the position its condition failed on.
fn outcome(r: tamma_events::Result<tamma_events::AppendResult>) -> Result<Vec<u64>, u64> {
    match r {
        Ok(r) => Ok(r.positions),
        Err(Error::AppendConditionFailed { position }) => Err(position),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Appends `stored` one by one to a new database, then `group` as one group (queued, in order, behind a
/// slow commit at the position after `stored`), and the same to the memory store one after another:
/// asserts every outcome and every stored event agree, and returns the group's outcomes.
async fn group_against_oracle(
    stored: Vec<Vec<Event>>,
    group: Vec<Append>,
) -> Vec<Result<Vec<u64>, u64>> {
    use std::sync::Arc;
    use tamma_events::{MemoryStore, StoreHooks};
    let db = TestDb::create().await;
    let store = Arc::new(
        PostgresStore::connect_with_hooks(
            &db.config(),
            Limits::default(),
            StoreHooks::delay_commits_where(Duration::from_millis(500), |events| {
                events.iter().any(|e| e.event_type == "SLOW")
            }),
        )
        .await
        .unwrap(),
    );
    let oracle = MemoryStore::new();
    for events in stored {
        oracle.append(events.clone(), None).await.unwrap();
        store.append(events, None).await.unwrap();
    }
    let slow = vec![Event::new("SLOW")];
    oracle.append(slow.clone(), None).await.unwrap();
    let slow = {
        let store = store.clone();
        tokio::spawn(async move { store.append(slow, None).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut handles = Vec::new();
    for (events, condition) in group.clone() {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store.append(events, condition).await
        }));
        // Queued in this order behind the slow commit.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    slow.await.unwrap();
    let mut got = Vec::new();
    for ((events, condition), h) in group.into_iter().zip(handles) {
        let want = outcome(oracle.append(events, condition).await);
        got.push(outcome(h.await.unwrap()));
        assert_eq!(got.last(), Some(&want), "append {}", got.len() - 1);
    }
    let read = |events: Vec<tamma_events::SequencedEvent>| {
        events
            .into_iter()
            .map(|e| (e.position, e.event.id))
            .collect::<Vec<_>>()
    };
    let all: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    let expected: Vec<_> = oracle
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read(all), read(expected));
    got
}

/// Appends that meet in one group (queued behind a slow commit) are decided exactly as if appended one
/// after another, which the memory store does: a condition fails on an earlier append of the group that
/// is written, not on one that was refused, at the position of the first matching event, and stored
/// events count as before. The group is inserted by one statement (`tamma_append_group`, schema version
/// 7); in the second round one condition's `after` lies above the head, which hands the whole group to
/// `tamma_append` — with the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_within_one_group_see_the_appends_before_them() {
    let one = |ty: &str, tag: &str| vec![Event::new(ty).tag(tag)];
    let tag_after = |tag: &str, after: u64| {
        Some(AppendCondition::new(Query::item(QueryItem::tags([tag]))).after(after))
    };
    for above_head in [false, true] {
        // Position 1 is stored before; 2 is the slow commit.
        let group: Vec<Append> = vec![
            (one("A", "k:1"), None),
            (one("B", "k:2"), tag_after("k:1", 2)),
            (one("C", "k:3"), tag_after("k:2", 2)),
            (
                vec![Event::new("D").tag("k:4"), Event::new("D").tag("k:3")],
                Some(AppendCondition::new(Query::item(QueryItem::types(["C"]))).after(2)),
            ),
            (
                one("E", "k:7"),
                Some(AppendCondition::new(Query::all()).after(2)),
            ),
            (
                vec![Event::new("Z").tag("k:5"), Event::new("Z").tag("k:6")],
                tag_after("k:6", 2),
            ),
            (
                one("Y", "k:8"),
                Some(
                    AppendCondition::new(Query::item(QueryItem::types(["Z"]).with_tag("k:6")))
                        .after(2),
                ),
            ),
            (one("X", "k:10"), tag_after("k:9", 0)),
            (one("X", "k:11"), tag_after("k:9", 1)),
            (
                one("W", "k:12"),
                Some(
                    AppendCondition::new(Query::from_items([
                        QueryItem::tags(["k:1"]),
                        QueryItem::tags(["k:6"]),
                    ]))
                    .after(2),
                ),
            ),
            (one("V", "k:1"), tag_after("k:12", 2)),
            (
                vec![Event::new("U")],
                tag_after("k:1", if above_head { 3 } else { 2 }),
            ),
        ];
        let got = group_against_oracle(vec![one("S", "k:9")], group).await;
        assert_eq!(got[1], Err(3), "refused by the first append of the group");
        assert_eq!(
            got[2],
            Ok(vec![4]),
            "append 1 was refused, so it does not count"
        );
        assert_eq!(got[6], Err(6), "the second event of append 5");
        assert_eq!(got[7], Err(1), "a stored event");
        assert_eq!(got[11], Err(if above_head { 8 } else { 3 }));
    }
}

/// A group's conditions find the first stored event they match (the leapfrog join over tag and type
/// runs, from `tamma_append_group`): keys starting at different positions, a key with nothing after
/// `after`, several types as one stream, two items — each answer as the memory store gives it, one
/// append after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_conditions_find_the_first_stored_match() {
    let ev = |ty: &str, tags: &[&str]| {
        let mut e = Event::new(ty);
        for t in tags {
            e = e.tag(*t);
        }
        vec![e]
    };
    // 1: P a, 2: Q a b, 3: P b, 4: P a b, 5: R c; 6 is the slow commit.
    let stored = vec![
        ev("P", &["a"]),
        ev("Q", &["a", "b"]),
        ev("P", &["b"]),
        ev("P", &["a", "b"]),
        ev("R", &["c"]),
    ];
    let cond =
        |item: QueryItem, after: u64| Some(AppendCondition::new(Query::item(item)).after(after));
    let group: Vec<Append> = vec![
        // Tags a and b start at 1 and 2: the leapfrog finds 2.
        (ev("N", &["n:1"]), cond(QueryItem::tags(["a", "b"]), 0)),
        // b from 2, P from 1: P with b first at 3.
        (
            ev("N", &["n:2"]),
            cond(QueryItem::types(["P"]).with_tag("b"), 0),
        ),
        // Q has nothing after 2: no match although a has.
        (
            ev("N", &["n:3"]),
            cond(QueryItem::types(["Q"]).with_tag("a"), 2),
        ),
        // P or Q after 1: one stream, starting at 2.
        (ev("N", &["n:4"]), cond(QueryItem::types(["P", "Q"]), 1)),
        // P with a and b: 4.
        (
            ev("N", &["n:5"]),
            cond(QueryItem::types(["P"]).with_tag("a").with_tag("b"), 0),
        ),
        // c and R start together at 5.
        (
            ev("N", &["n:6"]),
            cond(QueryItem::types(["R"]).with_tag("c"), 3),
        ),
        // A tag nobody wrote.
        (ev("N", &["n:7"]), cond(QueryItem::tags(["zzz"]), 0)),
        // a and b after 4: nothing.
        (ev("N", &["n:8"]), cond(QueryItem::tags(["a", "b"]), 4)),
        // Two items: the earlier match wins.
        (
            ev("N", &["n:9"]),
            Some(
                AppendCondition::new(Query::from_items([
                    QueryItem::types(["R"]),
                    QueryItem::tags(["b"]).with_type("P"),
                ]))
                .after(0),
            ),
        ),
    ];
    let got = group_against_oracle(stored, group).await;
    assert_eq!(
        got,
        vec![
            Err(2),
            Err(3),
            Ok(vec![7]),
            Err(2),
            Err(4),
            Err(5),
            Ok(vec![8]),
            Ok(vec![9]),
            Err(3),
        ]
    );
}
