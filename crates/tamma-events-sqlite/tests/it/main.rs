//! Integration tests of the SQLite event store.

mod backup;
mod conformance;
mod durability;
mod environment;
mod writer;

use std::sync::Arc;

use tamma_events::{Limits, StoreHooks};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tamma_events_testkit::Fresh;

/// A fresh store in its own temp dir, with test hooks.
pub(crate) async fn fresh(hooks: StoreHooks) -> Fresh {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SqliteOptions {
        limits: Limits::default(),
        hooks,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(dir.path().join("events.db"), options).expect("open");
    Fresh::new(Arc::new(store)).keep(dir)
}

/// Runs the `sqlite-crash-writer` process on `path` until it has acknowledged at least `acks` appends,
/// kills it with SIGKILL, and returns every append it acknowledged (lines already in the pipe count
/// too): event id → position.
pub(crate) fn crash_writer(
    path: &std::path::Path,
    acks: usize,
) -> std::collections::HashMap<uuid::Uuid, u64> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlite-crash-writer"))
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash writer");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut acked = std::collections::HashMap::new();
    while acked.len() < acks {
        let line = lines
            .next()
            .expect("the writer is running")
            .expect("a line");
        let (pos, id) = line.split_once(' ').expect("<position> <id>");
        acked.insert(
            id.parse::<uuid::Uuid>().expect("an id"),
            pos.parse::<u64>().expect("a position"),
        );
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    // Lines already in the pipe were acknowledged before the kill, too (the last may be cut short).
    for line in lines.map_while(Result::ok) {
        if let Some((pos, id)) = line.split_once(' ')
            && let (Ok(id), Ok(pos)) = (id.parse::<uuid::Uuid>(), pos.parse::<u64>())
        {
            acked.insert(id, pos);
        }
    }
    acked
}

/// A run row: key, first and last position.
pub(crate) type Run = (String, i64, i64);

/// The run rows `sql` selects (key, first, last).
pub(crate) fn runs(conn: &rusqlite::Connection, sql: &str) -> Vec<Run> {
    let mut stmt = conn.prepare(sql).expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// The run of `key` from `first` to `last`.
pub(crate) fn run(key: &str, first: i64, last: i64) -> Run {
    (key.to_owned(), first, last)
}
