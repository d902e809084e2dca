//! The writer: group commit, BUSY classification.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tamma_events::{Event, EventStore, Query, ReadOptions, StoreHooks};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

/// A store in `dir` whose commits of an append starting with a `SLOW` event take 300 ms more.
fn slow_commit_store(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    slow_commit_store_with(dir, SqliteOptions::default())
}

/// [`slow_commit_store`] with `options` (its hooks replaced).
fn slow_commit_store_with(dir: &tempfile::TempDir, mut options: SqliteOptions) -> Arc<SqliteStore> {
    options.hooks =
        StoreHooks::delay_commits_where(Duration::from_millis(300), |e| e[0].event_type == "SLOW");
    Arc::new(SqliteStore::open(dir.path().join("e.db"), options).unwrap())
}

type Appending = tokio::task::JoinHandle<tamma_events::Result<tamma_events::AppendResult>>;

/// Starts a `SLOW` append on a [`slow_commit_store`], then, while its commit is held, `n` appends of one
/// `QUEUED` event each.
async fn queue_behind_a_slow_commit(
    store: &Arc<SqliteStore>,
    n: usize,
) -> (Appending, Vec<Appending>) {
    let slow = {
        let store = store.clone();
        tokio::spawn(async move { store.append(vec![Event::new("SLOW")], None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queued = (0..n)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(vec![Event::new("QUEUED").data(serde_json::json!(i))], None)
                    .await
            })
        })
        .collect();
    (slow, queued)
}

/// Appends queued while a commit is in progress are committed together: one transaction, one
/// `recordedAt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_queued_during_a_commit_share_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = slow_commit_store(&dir);
    let (slow, queued) = queue_behind_a_slow_commit(&store, 20).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        store.health().await.unwrap().queue_depth >= 1,
        "appends wait for the writer"
    );
    assert_eq!(slow.await.unwrap().unwrap().positions, vec![1]);
    for q in queued {
        q.await.unwrap().unwrap();
    }
    let all: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 21);
    let batch_time = all[1].recorded_at;
    assert!(
        all[1..].iter().all(|e| e.recorded_at == batch_time),
        "the 20 queued appends committed as one group"
    );
    assert!(all[0].recorded_at <= batch_time);
    assert_eq!(store.health().await.unwrap().queue_depth, 0);
}

/// Another connection holding the write lock past the busy timeout gives a real SQLITE_BUSY, classified
/// transient; once the lock is released the same append succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_busy_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let opts = SqliteOptions {
        busy_timeout: Duration::from_millis(100),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&path, opts).unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let event = Event::new("A");
    let err = store
        .append(vec![event.clone()], None)
        .await
        .expect_err("busy");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.category(), "transient");
    let source = std::error::Error::source(&err).expect("source").to_string();
    assert!(
        source.contains("locked") || source.contains("busy"),
        "{source}"
    );
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(
        store.append(vec![event], None).await.unwrap().positions,
        vec![1]
    );
}

/// Reads on their own connections go on while the writer holds a long transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_are_not_blocked_by_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let hooks =
        StoreHooks::delay_commits_where(Duration::from_millis(500), |e| e[0].event_type == "SLOW");
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("e.db"),
            SqliteOptions {
                hooks,
                ..SqliteOptions::default()
            },
        )
        .unwrap(),
    );
    store.append(vec![Event::new("A")], None).await.unwrap();
    let slow = {
        let store = store.clone();
        tokio::spawn(async move { store.append(vec![Event::new("SLOW")], None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The writer is inside its transaction now; a read answers with the committed state.
    let read = tokio::time::timeout(Duration::from_millis(300), async {
        let v: Vec<_> = store
            .read(Query::all(), ReadOptions::forwards())
            .try_collect()
            .await
            .unwrap();
        (v.len(), store.head().await.unwrap())
    })
    .await
    .expect("reads do not wait for the writer");
    assert_eq!(read, (1, 1));
    assert!(!slow.is_finished());
    assert_eq!(slow.await.unwrap().unwrap().positions, vec![2]);
}

/// Stored ids are detected by the insert itself: an append whose later events reuse stored ids leaves no
/// trace of its earlier events (rows, tag index entries, head), in a batch with other appends; a retry
/// whose condition now fails is still answered as a duplicate; large appends keep every position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_ids_found_on_insert_leave_no_trace() {
    use tamma_events::{AppendCondition, QueryItem};
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open(dir.path().join("e.db"), SqliteOptions::default()).unwrap());
    let stored: Vec<Event> = (0..3)
        .map(|i| Event::new("A").tag("k:a").data(serde_json::json!(i)))
        .collect();
    let first = store.append(stored.clone(), None).await.unwrap();
    assert_eq!(first.positions, vec![1, 2, 3]);
    // 150 new events then a stored id: spans several multi-row statements before the conflict.
    let mut mixed: Vec<Event> = (0..150).map(|_| Event::new("B").tag("k:b")).collect();
    mixed.push(stored[1].clone());
    let (mixed_r, ok_r) = tokio::join!(
        store.append(mixed.clone(), None),
        store.append(vec![Event::new("C").tag("k:c")], None)
    );
    let err = mixed_r.unwrap_err();
    assert_eq!(err.code(), "duplicate_event_id", "{err}");
    assert!(err.to_string().contains(&stored[1].id.to_string()), "{err}");
    let c = ok_r.unwrap();
    assert_eq!(c.positions, vec![4]);
    assert_eq!(store.head().await.unwrap(), 4);
    assert!(store.get(mixed[0].id).await.unwrap().is_none());
    let b: Vec<_> = store
        .read(
            Query::item(QueryItem::tags(["k:b"])),
            ReadOptions::forwards(),
        )
        .try_collect()
        .await
        .unwrap();
    assert!(b.is_empty(), "{b:?}");
    // A retry of the first append whose condition fails now is still a duplicate.
    let cond = AppendCondition::new(Query::item(QueryItem::tags(["k:a"]))).after(0);
    let retry = store.append(stored.clone(), Some(cond)).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.positions, vec![1, 2, 3]);
    // 1,000 new events in one append (chunks of 128, 16 and 1 rows): positions 5..=1004, all readable.
    let many: Vec<Event> = (0..1000)
        .map(|i| Event::new("D").tag("k:d").tag(format!("n:{i}")))
        .collect();
    let r = store.append(many.clone(), None).await.unwrap();
    assert_eq!(r.positions, (5..=1004).collect::<Vec<u64>>());
    let d: Vec<_> = store
        .read(
            Query::item(QueryItem::tags(["k:d"])),
            ReadOptions::forwards(),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(d.len(), 1000);
    assert!(d.iter().zip(&many).all(|(s, e)| s.event.id == e.id));
    let one: Vec<_> = store
        .read(
            Query::item(QueryItem::tags(["n:999"])),
            ReadOptions::forwards(),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].position, 1004);
}

/// A row damaged on disk (by hand, a bad restore) is a clear error naming its position and column,
/// not a panic; the rows before it are still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_rows_are_errors_naming_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    for i in 0..3 {
        let e = Event::new("A")
            .tag("k:v")
            .data(serde_json::json!({ "i": i }));
        store.append(vec![e], None).await.unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE events SET tags = '[\"k:v\"' WHERE position = 2", [])
        .unwrap();
    raw.execute(
        "UPDATE events SET metadata = '{\"userId\": 7}' WHERE position = 3",
        [],
    )
    .unwrap();
    let mut read = store.read(Query::all(), ReadOptions::forwards());
    assert_eq!(read.try_next().await.unwrap().unwrap().position, 1);
    let e = read.try_next().await.unwrap_err().to_string();
    assert!(e.contains("position 2 has damaged tags"), "{e}");
    let got = store
        .read(Query::all(), ReadOptions::forwards().from(3))
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err()
        .to_string();
    assert!(got.contains("position 3 has damaged metadata"), "{got}");
}

/// Appenders a commit answered are waited for (up to `group_wait`) before the next commit, so
/// concurrent appenders keep sharing one commit instead of splitting into halves that take turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_appenders_are_gathered_into_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("e.db"),
            SqliteOptions {
                group_wait: Duration::from_millis(50),
                ..SqliteOptions::default()
            },
        )
        .unwrap(),
    );
    let (appenders, rounds) = (8, 30);
    let mut tasks = Vec::new();
    for w in 0..appenders {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..rounds {
                let e = Event::new("ROUND")
                    .tag(format!("w:{w}"))
                    .data(serde_json::json!(i));
                store.append(vec![e], None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), appenders * rounds);
    let commits: std::collections::HashSet<_> = events.iter().map(|e| e.recorded_at).collect();
    // All eight in every commit would be 30 commits; the first few form the group. Halves taking
    // turns would be about 60.
    assert!(
        commits.len() <= rounds + 10,
        "{} commits for {} appends",
        commits.len(),
        events.len()
    );
}

/// The background checkpoint thread copies committed pages into the database file while the store
/// is open, even when the writer's own checkpoint threshold is never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_checkpoint_copies_the_wal_into_the_database() {
    for background in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let store = SqliteStore::open(
            &path,
            SqliteOptions {
                wal_autocheckpoint_pages: 1_000_000,
                checkpoint_interval: background.then_some(Duration::from_millis(1)),
                ..SqliteOptions::default()
            },
        )
        .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for chunk in 0..20 {
            let events = (0..100)
                .map(|i| {
                    Event::new("BULK")
                        .tag(format!("chunk:{chunk}"))
                        .data(serde_json::json!({ "i": i, "pad": "x".repeat(200) }))
                })
                .collect();
            store.append(events, None).await.unwrap();
        }
        let mut grown = false;
        for _ in 0..100 {
            if std::fs::metadata(&path).unwrap().len() > before + 100 * 1024 {
                grown = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            grown,
            background,
            "database file {} bytes (was {before}) with background checkpoints {background}",
            std::fs::metadata(&path).unwrap().len()
        );
    }
}

/// One group commit holding every case at once: a condition hit by an earlier append of the same group
/// (not yet written when checked), a retry of that append, a retry of an event stored before the group,
/// a new append after those retries, and a changed event under an id of the group. Each gets the answer
/// it would get alone, and only the new events are stored, gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_answers_conditions_retries_and_conflicts_within_itself() {
    use tamma_events::{AppendCondition, QueryItem};
    let dir = tempfile::tempdir().unwrap();
    let store = slow_commit_store(&dir);
    let pre = Event::new("PRE").tag("p");
    assert_eq!(
        store
            .append(vec![pre.clone()], None)
            .await
            .unwrap()
            .positions,
        vec![1]
    );
    let slow = {
        let store = store.clone();
        tokio::spawn(async move { store.append(vec![Event::new("SLOW")], None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a1 = Event::new("A1").tag("x");
    let mut changed = a1.clone();
    changed.event_type = "CHANGED".into();
    let appends: Vec<(Vec<Event>, Option<AppendCondition>)> = vec![
        (vec![a1.clone()], None),
        (
            vec![Event::new("A2").tag("x")],
            Some(AppendCondition::new(Query::item(QueryItem::tags(["x"]))).after(2)),
        ),
        (vec![a1.clone()], None),
        (vec![pre.clone()], None),
        (
            vec![Event::new("A5").tag("y"), Event::new("A5").tag("y")],
            None,
        ),
        (vec![changed], None),
    ];
    let mut queued = Vec::new();
    for (events, condition) in appends {
        let store = store.clone();
        queued.push(tokio::spawn(async move {
            store.append(events, condition).await
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.await.unwrap().unwrap().positions, vec![2]);
    let mut answers = Vec::new();
    for q in queued {
        answers.push(q.await.unwrap());
    }
    let ok = |i: usize| answers[i].as_ref().unwrap();
    assert_eq!((ok(0).positions.clone(), ok(0).duplicate), (vec![3], false));
    assert!(
        matches!(
            answers[1],
            Err(tamma_events::Error::AppendConditionFailed { position: 3 })
        ),
        "{:?}",
        answers[1]
    );
    assert_eq!((ok(2).positions.clone(), ok(2).duplicate), (vec![3], true));
    assert_eq!((ok(3).positions.clone(), ok(3).duplicate), (vec![1], true));
    assert_eq!(
        (ok(4).positions.clone(), ok(4).duplicate),
        (vec![4, 5], false)
    );
    assert_eq!(
        answers[5].as_ref().unwrap_err().code(),
        "duplicate_event_id",
        "{:?}",
        answers[5]
    );
    let all: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    let stored: Vec<_> = all
        .iter()
        .map(|e| (e.position, e.event.event_type.as_str()))
        .collect();
    assert_eq!(
        stored,
        vec![(1, "PRE"), (2, "SLOW"), (3, "A1"), (4, "A5"), (5, "A5")]
    );
    assert!(
        all[2..].iter().all(|e| e.recorded_at == all[2].recorded_at),
        "the queued appends committed as one group"
    );
}

/// Concurrent appenders whose appends share groups, each coming back with new events under a
/// condition on its own stream that passes, a retry of its previous append, or a condition that its
/// own last event fails: every answer is right (retries get their original positions, refusals name
/// the event), positions stay gapless with no row of a retry or a refusal left, and every appender's
/// tag finds exactly its events, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_groups_answer_new_appends_retries_and_refusals() {
    use tamma_events::{AppendCondition, AppendResult, QueryItem};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("e.db"),
            SqliteOptions {
                group_wait: Duration::from_millis(20),
                ..SqliteOptions::default()
            },
        )
        .unwrap(),
    );
    let (appenders, rounds) = (8usize, 40usize);
    let mut tasks = Vec::new();
    for w in 0..appenders {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let tag = format!("w:{w}");
            let mut mine: Vec<(u64, uuid::Uuid)> = Vec::new();
            let mut previous: Option<(Vec<Event>, AppendResult)> = None;
            for i in 0..rounds {
                let last = mine.last().map_or(0, |m| m.0);
                match (i + w) % 4 {
                    // A retry of the previous append: the original positions, nothing written.
                    1 if previous.is_some() => {
                        let (events, first) = previous.clone().unwrap();
                        let again = store.append(events, None).await.unwrap();
                        assert!(again.duplicate, "{w}/{i}: {again:?}");
                        assert_eq!(again.positions, first.positions, "{w}/{i}");
                    }
                    // A condition that an event of this appender's own stream fails.
                    2 if last > 0 => {
                        let cond =
                            AppendCondition::new(Query::item(QueryItem::tags([tag.clone()])))
                                .after(last - 1);
                        let e = Event::new("REFUSED").tag(tag.clone());
                        match store.append(vec![e], Some(cond)).await {
                            Err(tamma_events::Error::AppendConditionFailed { position }) => {
                                assert_eq!(position, last, "{w}/{i}");
                            }
                            other => panic!("{w}/{i}: {other:?}"),
                        }
                    }
                    // New events (one or two) under a condition on the stream that passes.
                    n => {
                        let events: Vec<Event> = (0..1 + n % 2)
                            .map(|k| {
                                Event::new("NEW")
                                    .tag(tag.clone())
                                    .data(serde_json::json!([i, k]))
                            })
                            .collect();
                        let cond =
                            AppendCondition::new(Query::item(QueryItem::tags([tag.clone()])))
                                .after(last);
                        let r = store.append(events.clone(), Some(cond)).await.unwrap();
                        assert!(!r.duplicate);
                        mine.extend(r.positions.iter().copied().zip(events.iter().map(|e| e.id)));
                        previous = Some((events, r));
                    }
                }
            }
            (tag, mine)
        }));
    }
    let mut expected = Vec::new();
    for t in tasks {
        expected.push(t.await.unwrap());
    }
    let all: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    let total: usize = expected.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(
        all.len(),
        total,
        "no row of a retry or a refused append stayed"
    );
    assert!(
        all.iter().zip(1u64..).all(|(e, p)| e.position == p),
        "positions are gapless"
    );
    assert_eq!(store.head().await.unwrap(), total as u64);
    for (tag, mine) in &expected {
        let found: Vec<(u64, uuid::Uuid)> = store
            .read(
                Query::item(QueryItem::tags([tag.clone()])),
                ReadOptions::forwards(),
            )
            .map_ok(|e| (e.position, e.event.id))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(&found, mine, "{tag}");
    }
    let commits: std::collections::HashSet<_> = all.iter().map(|e| e.recorded_at).collect();
    assert!(
        commits.len() < all.len(),
        "appends shared commits: {} commits for {} events",
        commits.len(),
        all.len()
    );
}

/// Events written together that share a tag or a type are indexed by one run per key, and a run stops
/// where an event without the key comes between.
#[tokio::test]
async fn events_written_together_share_one_run_per_tag_and_type() {
    use tamma_events::QueryItem;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let mut events: Vec<Event> = (0..100)
        .map(|i| {
            Event::new("TASK.PROGRESSED")
                .tag("task:1")
                .tag(format!("step:{i}"))
        })
        .collect();
    events[50] = Event::new("TASK.PAUSED").tag("step:50");
    store.append(events, None).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let runs = |sql: &str| crate::runs(&conn, sql);
    let run = crate::run;
    assert_eq!(
        runs("SELECT * FROM tag_runs WHERE tag = 'task:1' ORDER BY first"),
        [run("task:1", 1, 50), run("task:1", 52, 100)]
    );
    let steps: i64 = conn
        .query_row(
            "SELECT count(*) FROM tag_runs WHERE tag LIKE 'step:%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(steps, 100);
    assert_eq!(
        runs("SELECT * FROM type_runs ORDER BY first"),
        [
            run("TASK.PROGRESSED", 1, 50),
            run("TASK.PAUSED", 51, 51),
            run("TASK.PROGRESSED", 52, 100)
        ]
    );
    let read = |q: Query, from: u64| {
        store
            .read(q, ReadOptions::forwards().from(from).limit(3))
            .map_ok(|e| e.position)
            .try_collect::<Vec<_>>()
    };
    let task = Query::item(QueryItem::tags(["task:1"]));
    assert_eq!(read(task.clone(), 49).await.unwrap(), [49, 50, 52]);
    let paused_or_step = Query {
        items: vec![
            QueryItem::types(["TASK.PAUSED"]),
            QueryItem::tags(["step:99"]),
        ],
    };
    assert_eq!(read(paused_or_step, 1).await.unwrap(), [51, 100]);
}

/// Every commit makes exactly one durable sync of the WAL, timed: appends one after another take
/// one sync each; appends queued behind a held commit share the sync of their group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_commit_makes_one_timed_wal_sync() {
    let dir = tempfile::tempdir().unwrap();
    // No checkpoint during the test: the first commit after the WAL restarts from its start (after a
    // complete checkpoint) also syncs the new WAL header, a second sync this test would count.
    let store = slow_commit_store_with(
        &dir,
        SqliteOptions {
            checkpoint_interval: None,
            ..SqliteOptions::default()
        },
    );
    let opened = store.wal_syncs();
    assert_eq!(opened.mean(), None, "{opened:?}");
    for i in 0..20 {
        store
            .append(vec![Event::new("ONE").data(serde_json::json!(i))], None)
            .await
            .unwrap();
    }
    let one_by_one = store.wal_syncs().since(&opened);
    assert_eq!(one_by_one.count, 20, "{one_by_one:?}");
    assert!(one_by_one.total > Duration::ZERO, "{one_by_one:?}");
    let mean = one_by_one.mean().unwrap();
    assert!(
        mean > Duration::ZERO && mean <= one_by_one.total,
        "{one_by_one:?}"
    );

    let before = store.wal_syncs();
    let (slow, queued) = queue_behind_a_slow_commit(&store, 16).await;
    slow.await.unwrap().unwrap();
    for q in queued {
        q.await.unwrap().unwrap();
    }
    let grouped = store.wal_syncs().since(&before);
    // One sync per transaction: count the distinct commit times of the 17 events.
    let events: Vec<_> = store
        .read(Query::all(), ReadOptions::default().from(21))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), 17);
    let mut commits: Vec<_> = events.iter().map(|e| e.recorded_at).collect();
    commits.dedup();
    assert_eq!(
        grouped.count,
        commits.len() as u64,
        "{grouped:?} for {commits:?}"
    );
    assert!(
        grouped.count < 17,
        "{grouped:?}: the queued appends were not grouped"
    );
}

/// The `events:store` health check reports the store's WAL syncs and the mean time of those made since
/// the previous check, and is degraded when that mean is over its limit: a slow disk is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_check_reports_sync_times_and_names_a_slow_disk() {
    use tamma_core::{Check, CheckStatus};
    use tamma_events::StoreCheck;

    let dir = tempfile::tempdir().unwrap();
    // No checkpoint during the test, so every commit makes exactly one sync (see
    // `each_commit_makes_one_timed_wal_sync`).
    let options = SqliteOptions {
        checkpoint_interval: None,
        ..SqliteOptions::default()
    };
    let store = Arc::new(SqliteStore::open(dir.path().join("e.db"), options).unwrap());
    for i in 0..5 {
        store
            .append(vec![Event::new("ONE").data(serde_json::json!(i))], None)
            .await
            .unwrap();
    }
    let check = StoreCheck::new(store.clone());
    let r = check.check().await;
    assert_eq!(r.status, CheckStatus::Healthy, "{r:?}");
    assert_eq!(r.details["syncs"], 5, "{r:?}");
    assert!(r.details["recentSyncMeanUs"].as_u64().unwrap() > 0, "{r:?}");
    // No commit since the last check: no recent mean, the same count.
    let r = check.check().await;
    assert_eq!(r.status, CheckStatus::Healthy, "{r:?}");
    assert_eq!(r.details["syncs"], 5, "{r:?}");
    assert!(!r.details.contains_key("recentSyncMeanUs"), "{r:?}");

    // A limit below any real sync: degraded, saying so.
    let strict = StoreCheck::new(store.clone()).max_sync_mean(Duration::from_nanos(1));
    store.append(vec![Event::new("ONE")], None).await.unwrap();
    let r = strict.check().await;
    assert_eq!(r.status, CheckStatus::Degraded, "{r:?}");
    let said = r.output.clone().unwrap();
    assert!(
        said.starts_with("durable syncs took ")
            && said.contains("on average over the last 6 (more than 0.0 ms)")
            && said.ends_with("the disk under the event store is slow"),
        "{said}"
    );
    // Once the disk is fast again (nothing slow since the last check), healthy.
    let r = strict.check().await;
    assert_eq!(r.status, CheckStatus::Healthy, "{r:?}");
}

/// Conditions a writer rules out from what it wrote itself are still checked once another store (another
/// process) wrote to the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_see_the_appends_of_another_store_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let a = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let b = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    tamma_events_testkit::conditions_see_another_writer(&a, &b).await;
}
