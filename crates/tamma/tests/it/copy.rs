//! `tamma events copy`: the embedded store moved to PostgreSQL (and back), resumed, and refused where it
//! would not be a copy. Against the real server at 127.0.0.1:5432 (`.ci/run` starts it).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures::TryStreamExt;
use tamma_events::{Event, EventStore, Query, ReadOptions, SequencedEvent};
use tamma_events_postgres::{PostgresConfig, PostgresStore};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

use crate::text;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Runs SQL on the server's `test` database with `psql`; fails the test when the server is not there
/// (these tests exist to run against it, in CI and out of it).
fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .expect("psql runs (PostgreSQL's client is needed by these tests)");
    assert!(
        out.status.success(),
        "PostgreSQL at 127.0.0.1:5432 refused `{sql}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database of its own, dropped with the guard.
struct Db(String);

impl Db {
    fn create() -> Self {
        let name = format!("tamma_copy_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        Self(name)
    }

    fn url(&self) -> String {
        format!("{SERVER}/{}", self.0)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn all(store: &dyn EventStore) -> Vec<SequencedEvent> {
    store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap()
}

fn copy(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["--data-dir", "data", "events", "copy"];
    all.extend(args);
    let out = crate::tamma(dir, &all, &[]);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

#[test]
fn copy_moves_the_embedded_store_to_postgres_resumes_and_comes_back() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::create();
    let source =
        SqliteStore::open(dir.path().join("data/events.db"), SqliteOptions::default()).unwrap();
    // A source whose retention removed its first 10 events, 2,490 left (three pages of the copy), and a
    // route's cursor.
    rt.block_on(async {
        let old: Vec<_> = (0..10).map(|_| Event::new("TASK.OLD")).collect();
        source.append(old, None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let cutoff = chrono::Utc::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        for chunk in 0..5 {
            let events = (0..498)
                .map(|i| {
                    Event::new(if i % 2 == 0 {
                        "TASK.STARTED"
                    } else {
                        "TASK.ENDED"
                    })
                    .tag(format!("task:{chunk}-{}", i / 2))
                    .tag("workflow:wf-1")
                    .data(serde_json::json!({"n": i, "text": "ü \" \\"}))
                })
                .collect();
            source.append(events, None).await.unwrap();
        }
        assert_eq!(source.delete_before(cutoff).await.unwrap(), 10);
        source
            .save_cursor("route:audit-webhook", 1200)
            .await
            .unwrap();
    });

    let url = db.url();
    let (code, stdout, stderr) = copy(dir.path(), &["--to", &url]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "copied 2490 events (positions 11 to 2500) and 1 cursors from data/events.db to {url} in "
        )),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("the target's head is 2500"),
        "{stdout}"
    );

    // The node went on appending; the next copy takes only what is new.
    rt.block_on(async {
        let more = (0..5)
            .map(|_| Event::new("TASK.STARTED").tag("workflow:wf-1"))
            .collect();
        source.append(more, None).await.unwrap();
    });
    let (code, stdout, stderr) = copy(dir.path(), &["--to", &url]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("copied 5 events (positions 2501 to 2505) and 1 cursors"),
        "{stdout}"
    );
    let (code, stdout, stderr) = copy(dir.path(), &["--to", &url]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "nothing to copy: {url} holds every event of data/events.db (head 2505)"
        )),
        "{stdout}"
    );

    let config = PostgresConfig::with_url(url.clone());
    rt.block_on(async {
        let target = PostgresStore::connect(&config, tamma_events::Limits::default())
            .await
            .unwrap();
        let copied = all(&target).await;
        assert_eq!(copied.len(), 2495);
        assert_eq!(
            copied,
            all(&source).await,
            "positions, ids, contents and commit times"
        );
        assert_eq!(
            target.cursors().await.unwrap(),
            vec![("route:audit-webhook".to_owned(), 1200)]
        );
        let tagged: Vec<SequencedEvent> = target
            .read(
                Query::item(tamma_events::QueryItem::tags(["task:3-7"])),
                ReadOptions::forwards(),
            )
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            tagged.iter().map(|e| e.position).collect::<Vec<_>>(),
            vec![1519, 1520]
        );
        let next = target
            .append(vec![Event::new("TASK.MOVED")], None)
            .await
            .unwrap();
        assert_eq!(next.positions, vec![2506]);
    });

    // And back: PostgreSQL into a new SQLite file.
    let back = dir.path().join("back.db");
    let back_arg = back.to_str().unwrap();
    let (code, stdout, stderr) = copy(dir.path(), &["--from", &url, "--to", back_arg]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("copied 2496 events (positions 11 to 2506)"),
        "{stdout}"
    );
    rt.block_on(async {
        let back = SqliteStore::open(&back, SqliteOptions::default()).unwrap();
        let target = PostgresStore::connect(&config, tamma_events::Limits::default())
            .await
            .unwrap();
        assert_eq!(all(&back).await, all(&target).await);
        assert_eq!(back.head().await.unwrap(), 2506);
    });

    // Another store's events are not a continuation of these: refused, the target untouched.
    let other = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let s = SqliteStore::open(
            other.path().join("data/events.db"),
            SqliteOptions::default(),
        )
        .unwrap();
        let events = (0..2600).map(|_| Event::new("OTHER.THING")).collect();
        s.append(events, None).await.unwrap();
    });
    let (code, stdout, stderr) = copy(other.path(), &["--to", &url]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with(
            "error: the target is not a copy of this source: position 2506 holds event "
        ),
        "{stderr}"
    );
}

#[test]
fn copy_refuses_the_same_store_a_missing_source_and_no_other_store() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = copy(dir.path(), &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: name the other store: --to FILE|URL"),
        "{stderr}"
    );
    let (code, _, stderr) = copy(dir.path(), &["--from", "data/events.db"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: --from and --to are the same store (data/events.db)"),
        "{stderr}"
    );
    let (code, _, stderr) = copy(dir.path(), &["--from", "nowhere.db"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(
            "error: opening the source nowhere.db: there is no event store at nowhere.db"
        ),
        "{stderr}"
    );
    assert!(
        !dir.path().join("nowhere.db").exists(),
        "a missing source is not created"
    );
    // Another spelling of the same file is the same store.
    drop(SqliteStore::open(dir.path().join("data/events.db"), SqliteOptions::default()).unwrap());
    let (code, _, stderr) = copy(dir.path(), &["--from", "./data/../data/events.db"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("are the same store"), "{stderr}");
}

#[test]
fn a_cursor_past_the_copied_events_is_saved_at_the_copied_head_with_a_warning() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let source =
            SqliteStore::open(dir.path().join("data/events.db"), SqliteOptions::default()).unwrap();
        let events = (0..3).map(|_| Event::new("TASK.STARTED")).collect();
        source.append(events, None).await.unwrap();
        // As if the node appended more, and a route delivered it, after the copy read its last page.
        source.save_cursor("route:ahead", 10).await.unwrap();
        source.save_cursor("route:behind", 2).await.unwrap();
    });
    let (code, stdout, stderr) = copy(dir.path(), &["--to", "moved.db"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(
            "copied 3 events (positions 1 to 3) and 2 cursors from data/events.db to moved.db in "
        ),
        "{stdout}"
    );
    assert!(
        stderr.starts_with(
            "warning: cursor route:ahead is at 10, past the last copied position 3: saved as 3;"
        ),
        "{stderr}"
    );
    rt.block_on(async {
        let moved =
            SqliteStore::open(dir.path().join("moved.db"), SqliteOptions::default()).unwrap();
        assert_eq!(
            moved.cursors().await.unwrap(),
            vec![
                ("route:ahead".to_owned(), 3),
                ("route:behind".to_owned(), 2)
            ]
        );
    });
}

/// The rows a PostgreSQL database's store holds, by `psql` (0 before the store's tables exist).
fn pg_count(db: &Db) -> u64 {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", &db.0, "-Atc"])
        .arg("SELECT CASE WHEN to_regclass('tamma_events') IS NULL THEN 0 ELSE (SELECT count(*) FROM tamma_events) END")
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_copy_killed_midway_leaves_whole_pages_and_the_next_run_finishes_it() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::create();
    let source =
        SqliteStore::open(dir.path().join("data/events.db"), SqliteOptions::default()).unwrap();
    rt.block_on(async {
        for chunk in 0..60 {
            let events = (0..1000)
                .map(|i| Event::new("TASK.STARTED").tag(format!("task:{chunk}-{i}")))
                .collect();
            source.append(events, None).await.unwrap();
        }
    });
    let url = db.url();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(["--data-dir", "data", "events", "copy", "--to", &url])
        .current_dir(dir.path())
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tamma starts");
    // Killed (SIGKILL) once it has imported something and before it is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let n = pg_count(&db);
        if n > 0 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let left = pg_count(&db);
    assert!(at_kill > 0, "the copy imported nothing within 60 s");
    assert!(
        left < 60_000,
        "killed too late to test anything: {left} copied"
    );
    assert_eq!(left % 1000, 0, "only whole pages: {left}");

    let (code, stdout, stderr) = copy(dir.path(), &["--to", &url]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "copied {} events (positions {} to 60000)",
            60_000 - left,
            left + 1
        )),
        "{stdout}"
    );
    rt.block_on(async {
        let target = PostgresStore::connect(
            &PostgresConfig::with_url(url.clone()),
            tamma_events::Limits::default(),
        )
        .await
        .unwrap();
        assert_eq!(all(&target).await, all(&source).await);
    });
}

#[test]
fn copy_into_the_configured_postgres_store_takes_its_url_from_a_secret_file() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::create();
    rt.block_on(async {
        let source =
            SqliteStore::open(dir.path().join("old.db"), SqliteOptions::default()).unwrap();
        let events = (0..3).map(|_| Event::new("TASK.STARTED")).collect();
        source.append(events, None).await.unwrap();
    });
    let secret = dir.path().join("db-url");
    std::fs::write(&secret, db.url()).unwrap();
    let out = crate::tamma(
        dir.path(),
        &[
            "--set",
            r#"events.storage={"type":"postgres","config":{}}"#,
            "events",
            "copy",
            "--from",
            "old.db",
        ],
        &[("TAMMA_DATABASE__URL_FILE", secret.to_str().unwrap())],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "copied 3 events (positions 1 to 3) and 0 cursors from old.db to {} in ",
            db.url()
        )),
        "{stdout}"
    );
}
