//! Online backup: a consistent, checked copy of the store taken while appends go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::TryStreamExt;
use tamma_events::{Event, EventStore, Query, ReadOptions};
use tamma_events_sqlite::{BackupError, SqliteOptions, SqliteStore, backup, restore};

fn event(i: u64) -> Event {
    Event::new("BACKUP.TESTED")
        .tag(format!("entity:{}", i % 7))
        .tag("kind:backup")
        .data(tamma_events::EventData::from_serialize(&serde_json::json!({ "i": i })).unwrap())
}

async fn all(store: &SqliteStore) -> Vec<tamma_events::SequencedEvent> {
    store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_appends_go_on_holds_every_event_acknowledged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    for chunk in 0..20u64 {
        let events = (0..50).map(|i| event(chunk * 50 + i)).collect();
        store.append(events, None).await.unwrap();
    }
    // An appender that keeps going during the backup, counting what was acknowledged.
    let acknowledged = Arc::new(AtomicU64::new(store.head().await.unwrap()));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (store, acknowledged, stop) = (store.clone(), acknowledged.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let r = store.append(vec![event(i)], None).await.unwrap();
                acknowledged.fetch_max(r.last_position(), Ordering::SeqCst);
                i += 1;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let before = acknowledged.load(Ordering::SeqCst);
    let dest = dir.path().join("copy.db");
    let report = {
        let (path, dest) = (path.clone(), dest.clone());
        tokio::task::spawn_blocking(move || backup(&path, &dest))
            .await
            .unwrap()
            .unwrap()
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    appender.await.unwrap();
    let after = store.head().await.unwrap();

    assert!(report.head >= before, "{} < {before}", report.head);
    assert!(
        after > report.head,
        "appends went on after the copy ({after})"
    );
    assert_eq!(report.events, report.head, "nothing was removed");
    assert_eq!(report.dest, dest);
    assert_eq!(report.bytes, std::fs::metadata(&dest).unwrap().len());
    // One file, nothing left beside it.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("copy") || n.contains("partial"))
        .collect();
    names.sort();
    assert_eq!(names, ["copy.db"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy is its owner's only: {mode:o}");
    }

    // The copy is a store: opened as one, it holds exactly the first `head` events, as stored.
    let copy = SqliteStore::open(&dest, SqliteOptions::default()).unwrap();
    assert_eq!(copy.head().await.unwrap(), report.head);
    let copied = all(&copy).await;
    let original = all(&store).await;
    assert_eq!(copied.len() as u64, report.head);
    assert_eq!(copied[..], original[..copied.len()]);
    // And it takes appends of its own.
    let r = copy.append(vec![event(7)], None).await.unwrap();
    assert_eq!(r.last_position(), report.head + 1);
}

#[tokio::test]
async fn a_backup_never_overwrites_and_leaves_nothing_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    store.append(vec![event(1)], None).await.unwrap();

    let dest = dir.path().join("exists.db");
    std::fs::write(&dest, "keep me").unwrap();
    let e = backup(&path, &dest).unwrap_err();
    assert!(matches!(e, BackupError::Exists(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{} exists already; a backup is only written to a new file",
            dest.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "keep me");

    let missing_dir = dir.path().join("no-such-dir").join("copy.db");
    let e = backup(&path, &missing_dir).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "cannot write the backup {}",
            missing_dir.display()
        )),
        "{e}"
    );
    assert!(!dir.path().join("no-such-dir").exists());
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn what_is_not_an_event_store_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("copy.db");

    let missing = dir.path().join("events.db");
    let e = backup(&missing, &dest).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("there is no event store at {}", missing.display())
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database, just some words that go on for a while".repeat(100),
    )
    .unwrap();
    let e = backup(&text, &dest).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{} is not a Tamma event store", text.display())),
        "{e}"
    );

    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    let e = backup(&other, &dest).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{} is not a Tamma event store: it has no events table",
            other.display()
        )
    );

    let newer = dir.path().join("newer.db");
    drop(SqliteStore::open(&newer, SqliteOptions::default()).unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let e = backup(&newer, &dest).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "the event store at {} has schema version 99; this Tamma knows up to",
            newer.display()
        )),
        "{e}"
    );
    assert!(!dest.exists());
}

/// Files of `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_restore_puts_the_backup_in_place_and_keeps_the_store_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("events.db");
    let copy = dir.path().join("copy.db");
    {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store
            .append((0..5).map(event).collect(), None)
            .await
            .unwrap();
        backup(&path, &copy).unwrap();
        store
            .append((5..8).map(event).collect(), None)
            .await
            .unwrap();
    }
    let report = restore(&copy, &path).unwrap();
    assert_eq!((report.head, report.events), (5, 5));
    let replaced = report.replaced.clone().unwrap();
    let listed = names(&data);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0], "events.db");
    assert!(listed[1].starts_with("events.db.replaced-"), "{listed:?}");

    let restored = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(restored.head().await.unwrap(), 5);
    let kept = SqliteStore::open(&replaced, SqliteOptions::default()).unwrap();
    assert_eq!(kept.head().await.unwrap(), 8, "the replaced store is whole");
    assert_eq!(all(&restored).await[..], all(&kept).await[..5]);
    // The restored store appends after the backup's head.
    let r = restored.append(vec![event(99)], None).await.unwrap();
    assert_eq!(r.last_position(), 6);

    // Over a store whose file is damaged (what a restore is for): kept aside as it was.
    drop((restored, kept));
    let garbage = "not a database any more ".repeat(400);
    std::fs::write(&path, &garbage).unwrap();
    let report = restore(&copy, &path).unwrap();
    assert_eq!(report.head, 5);
    assert_eq!(
        std::fs::read_to_string(report.replaced.unwrap()).unwrap(),
        garbage
    );
    let restored = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(restored.head().await.unwrap(), 5);

    // Into a data directory with no store yet.
    let fresh = dir.path().join("fresh").join("events.db");
    let report = restore(&copy, &fresh).unwrap();
    assert_eq!((report.head, report.replaced), (5, None));
}

#[tokio::test]
async fn a_restore_refuses_a_store_that_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let copy = dir.path().join("copy.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    store.append(vec![event(1)], None).await.unwrap();
    backup(&path, &copy).unwrap();
    store.append(vec![event(2)], None).await.unwrap();

    let e = restore(&copy, &path).unwrap_err();
    assert!(matches!(e, BackupError::InUse(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "the event store at {} is open in another process (a running node?); stop it before restoring",
            path.display()
        )
    );
    // Nothing moved: the open store goes on.
    assert_eq!(store.head().await.unwrap(), 2);
    store.append(vec![event(3)], None).await.unwrap();
    assert!(!names(dir.path()).iter().any(|n| n.contains("replaced")));

    // Not a store: refused before anything moves.
    drop(store);
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database ".repeat(100)).unwrap();
    let e = restore(&text, &path).unwrap_err();
    assert!(matches!(e, BackupError::NotAStore { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("{} is not a Tamma event store", text.display())),
        "{e}"
    );
    let listed = names(dir.path());
    assert!(
        !listed
            .iter()
            .any(|n| n.contains("replaced") || n.contains("restoring")),
        "{listed:?}"
    );
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.head().await.unwrap(), 3);
}

/// A store whose process was killed (its last commits only in `events.db-wal`) is replaced whole: the
/// WAL is folded into the file that is kept, and none of it is replayed into the restored one.
#[tokio::test]
async fn a_restore_over_a_killed_store_keeps_every_event_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let copy = dir.path().join("copy.db");
    {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.append(vec![event(1)], None).await.unwrap();
        backup(&path, &copy).unwrap();
    }
    let acked = crate::crash_writer(&path, 200);
    assert!(
        names(dir.path()).contains(&"events.db-wal".to_owned()),
        "the killed writer left its WAL"
    );

    let report = restore(&copy, &path).unwrap();
    assert_eq!(report.head, 1);
    let listed = names(dir.path());
    assert!(
        !listed
            .iter()
            .any(|n| n == "events.db-wal" || n == "events.db-shm"),
        "{listed:?}"
    );
    // Every append the killed writer acknowledged is in the store that was kept, where it was.
    let kept = SqliteStore::open(report.replaced.unwrap(), SqliteOptions::default()).unwrap();
    for (id, pos) in &acked {
        let got = kept.get(*id).await.unwrap();
        assert_eq!(
            got.map(|e| e.position),
            Some(*pos),
            "acknowledged event {id}"
        );
    }
    let restored = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(restored.head().await.unwrap(), 1);
}
