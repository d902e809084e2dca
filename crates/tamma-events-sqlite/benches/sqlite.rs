//! The SQLite event store benchmark: one command prints the whole table.
//!
//! `cargo bench -p tamma-events-sqlite --bench sqlite [-- --big N]`
//!
//! It starts with a 2-second raw `write 4 KiB + fdatasync` probe on the data directory's filesystem
//! (and prints the filesystem type), then runs each workload through the `EventStore` API, durable
//! (`synchronous=FULL`), and prints events/s, p50/p99 latency per call, CPU seconds per 1,000 events and,
//! for writes, events per commit (each commit is one WAL sync), the mean time of a WAL sync and the share of the run spent in them. Events look like real ones: a UUIDv7 id,
//! 2 tags, about 200 bytes of JSON data and 3 metadata keys. The large appends are also run with their
//! events built before the clock starts (the store's own cost), and the baseline rows write the same rows
//! with plain SQLite through rusqlite (one table, no tag index, no condition) in the same run.
#![allow(
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::collections::HashSet;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use hdrhistogram::Histogram;
use tamma_events::SyncStats;
use tamma_events::{AppendCondition, EventStore, Query, QueryItem, ReadOptions};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

/// The allocator the `tamma` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::event;

fn cpu_seconds() -> f64 {
    // utime + stime of every thread of the process, in clock ticks of 1/100 s (USER_HZ on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn fs_type(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} ({} on {})", f[2], f[0], f[1])))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, s)| s)
}

/// `write <block> bytes + fdatasync` for 2 s, cycling through a preallocated 16 MiB file (as the WAL is
/// rewritten from its start after each checkpoint): syncs/s and the p50 in µs.
fn fdatasync_probe(dir: &Path, block: usize) -> (f64, f64) {
    let path = dir.join("probe.bin");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    const FILE: usize = 16 << 20;
    f.write_all(&vec![0u8; FILE]).unwrap();
    f.sync_all().unwrap();
    let slots = (FILE / block) as u64;
    let block = vec![7u8; block];
    let mut h = Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        f.seek(SeekFrom::Start((n % slots) * block.len() as u64))
            .unwrap();
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
        n += 1;
    }
    std::fs::remove_file(path).ok();
    (
        n as f64 / start.elapsed().as_secs_f64(),
        h.value_at_quantile(0.5) as f64,
    )
}

struct Row {
    name: String,
    events: u64,
    secs: f64,
    cpu: f64,
    lat: Histogram<u64>,
    per_commit: Option<f64>,
    /// The WAL syncs the writer made during the workload.
    syncs: Option<SyncStats>,
}

fn print_header() {
    println!(
        "| {:<47} | {:>12} | {:>9} | {:>9} | {:>12} | {:>13} | {:>10} | {:>8} |",
        "workload",
        "events/s",
        "p50 µs",
        "p99 µs",
        "CPU s/1k ev",
        "events/commit",
        "µs/sync",
        "in sync"
    );
    println!(
        "|{:-<49}|{:->14}|{:->11}|{:->11}|{:->14}|{:->15}|{:->12}|{:->10}|",
        "", "", "", "", "", "", "", ""
    );
}

fn print_row(r: &Row) {
    println!(
        "| {:<47} | {:>12.0} | {:>9} | {:>9} | {:>12.4} | {:>13} | {:>10} | {:>8} |",
        r.name,
        r.events as f64 / r.secs,
        r.lat.value_at_quantile(0.5),
        r.lat.value_at_quantile(0.99),
        r.cpu / r.events.max(1) as f64 * 1000.0,
        r.per_commit
            .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
        r.syncs
            .and_then(|s| s.mean())
            .map_or_else(|| "-".into(), |m| format!("{:.0}", m.as_secs_f64() * 1e6)),
        r.syncs.map_or_else(
            || "-".into(),
            |s| format!("{:.0}%", s.total.as_secs_f64() / r.secs * 100.0)
        )
    );
}

/// Events per commit of the events at positions above `from`: each commit stamps one `recordedAt`.
async fn events_per_commit(store: &SqliteStore, from: u64) -> f64 {
    let evs: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards().from(from + 1))
        .try_collect()
        .await
        .unwrap();
    let commits: HashSet<_> = evs.iter().map(|e| e.recorded_at).collect();
    evs.len() as f64 / commits.len().max(1) as f64
}

/// How each writer gets the events of its next append.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Build {
    /// Built by the writer between two appends, so building is part of each cycle.
    Inline,
    /// Built by a producer task while the writer's previous append is in flight (one append ahead,
    /// as the emitter gathers the next batch while one is being written). Building still counts in
    /// the CPU column; it no longer stands between two appends.
    Ahead,
    /// Built before the clock starts: the rate, latency and CPU are the store's alone (building the
    /// events is the application's work, done on its own threads).
    Before,
}

/// `writers` tasks each appending `per_append` events per call with a condition on their own tag, for
/// `dur` or `max_calls` calls per writer, the events of each append built as `build` says.
async fn writers(
    store: &Arc<SqliteStore>,
    name: &str,
    writers: u64,
    per_append: u64,
    dur: Duration,
    max_calls: u64,
    build: Build,
) -> Row {
    let before = store.head().await.unwrap();
    // Every writer is ready (its events built, for `Build::Before`) before the clock starts.
    let ready = Arc::new(tokio::sync::Barrier::new(writers as usize + 1));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).unwrap();
            let tag = format!("writer:{w}-{}", uuid::Uuid::now_v7());
            let q = Query::item(QueryItem::tags([tag.clone()]));
            let batch = {
                let tag = tag.clone();
                move |n: u64| -> Vec<_> {
                    (0..per_append)
                        .map(|i| event(&tag, "kind:bench", n + i))
                        .collect()
                }
            };
            // The producer stops when the writer drops the receiver.
            let mut ahead = (build == Build::Ahead).then(|| {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let batch = batch.clone();
                tokio::spawn(async move {
                    let mut n = 0;
                    while tx.send(batch(n)).await.is_ok() {
                        n += per_append;
                    }
                });
                rx
            });
            let mut built: std::collections::VecDeque<Vec<_>> = if build == Build::Before {
                (0..max_calls).map(|c| batch(c * per_append)).collect()
            } else {
                std::collections::VecDeque::new()
            };
            ready.wait().await;
            let mut last = 0;
            let mut n = 0;
            let t0 = Instant::now();
            let mut calls = 0;
            while t0.elapsed() < dur && calls < max_calls {
                let events = match &mut ahead {
                    Some(rx) => rx.recv().await.unwrap(),
                    None => built.pop_front().unwrap_or_else(|| batch(n)),
                };
                let cond = AppendCondition::new(q.clone()).after(last);
                let t = Instant::now();
                let r = store.append(events, Some(cond)).await.unwrap();
                h.record(t.elapsed().as_micros() as u64).unwrap();
                last = r.last_position();
                n += per_append;
                calls += 1;
            }
            (n, h)
        }));
    }
    ready.wait().await;
    let syncs0 = store.wal_syncs();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut lat = Histogram::<u64>::new(3).unwrap();
    let mut events = 0;
    for t in tasks {
        let (n, h) = t.await.unwrap();
        events += n;
        lat.add(h).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let syncs = Some(store.wal_syncs().since(&syncs0));
    let per_commit = Some(events_per_commit(store, before).await);
    Row {
        name: name.into(),
        events,
        secs,
        cpu,
        lat,
        per_commit,
        syncs,
    }
}

/// The baseline: the same rows written with plain SQLite through rusqlite, no event store around them.
/// One table of the events' shape (rowid position, a `UNIQUE` id, the same columns, no tag or type
/// index), WAL with `synchronous=FULL`, `per_txn` single-row `INSERT`s per `BEGIN IMMEDIATE … COMMIT`,
/// the rows encoded before the clock starts. What SQLite and this disk do for these rows alone, so the
/// store's rows above read against it.
fn plain_sqlite(dir: &Path, per_txn: u64, txns: u64, dur: Duration) -> Row {
    let path = dir.join(format!("plain-{per_txn}.db"));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE events (position INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,
             type TEXT NOT NULL, timestamp INTEGER NOT NULL, recorded_at INTEGER NOT NULL,
             tags TEXT NOT NULL, metadata TEXT, data TEXT NOT NULL);",
    )
    .unwrap();
    type Encoded = (uuid::Uuid, String, String, String, String);
    let rows: Vec<Encoded> = (0..per_txn * txns)
        .map(|i| {
            let e = event("writer:plain", "kind:bench", i);
            let mut tags = Vec::new();
            e.tags.write_json(&mut tags);
            let mut meta = Vec::new();
            e.metadata.write_json(&mut meta);
            (
                e.id,
                e.event_type.clone(),
                String::from_utf8(tags).unwrap(),
                String::from_utf8(meta).unwrap(),
                e.data.as_json().to_owned(),
            )
        })
        .collect();
    let mut lat = Histogram::<u64>::new(3).unwrap();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut events = 0;
    for chunk in rows.chunks(per_txn as usize) {
        if start.elapsed() >= dur {
            break;
        }
        let t = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO events (id, type, timestamp, recorded_at, tags, metadata, data)
                     VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
                )
                .unwrap();
            for (id, ty, tags, meta, data) in chunk {
                insert
                    .execute(rusqlite::params![id.as_bytes(), ty, 0i64, tags, meta, data])
                    .unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
        lat.record(t.elapsed().as_micros() as u64).unwrap();
        events += chunk.len() as u64;
    }
    Row {
        name: format!("baseline: plain SQLite, {per_txn} rows per commit"),
        events,
        secs: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
        lat,
        per_commit: Some(per_txn as f64),
        syncs: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--hold") {
        hold(&args[i + 1], args[i + 2].parse().unwrap());
        return;
    }
    let big: u64 = args
        .iter()
        .position(|a| a == "--big")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "data directory: {} on {}",
        dir.path().display(),
        fs_type(dir.path())
    );
    let (syncs, p50) = fdatasync_probe(dir.path(), 4096);
    println!(
        "raw write 4 KiB + fdatasync (rewriting a preallocated file), 2 s: {syncs:.0}/s, p50 {p50:.0} µs"
    );
    // About the WAL bytes of a 100-event commit here (19 pages of 4 KiB and their frame headers).
    let (syncs, p50) = fdatasync_probe(dir.path(), 80 << 10);
    println!(
        "raw write 80 KiB + fdatasync (the WAL of a 100-event commit), 2 s: {syncs:.0}/s, p50 {p50:.0} µs\n"
    );
    rt.block_on(async {
        let store = Arc::new(
            SqliteStore::open(dir.path().join("bench.db"), SqliteOptions::default()).unwrap(),
        );
        // Warm up: create the WAL and let it reach its recycled size.
        writers(
            &store,
            "warm-up",
            4,
            100,
            Duration::from_millis(500),
            200,
            Build::Inline,
        )
        .await;
        print_header();
        let secs = Duration::from_secs(3);
        print_row(
            &writers(
                &store,
                "1 writer, 1 event per conditional append",
                1,
                1,
                secs,
                u64::MAX,
                Build::Inline,
            )
            .await,
        );
        print_row(
            &writers(
                &store,
                "16 writers, 1 event each, disjoint tags",
                16,
                1,
                secs,
                u64::MAX,
                Build::Inline,
            )
            .await,
        );
        print_row(
            &writers(
                &store,
                "1 writer, 100 events per append",
                1,
                100,
                secs,
                300,
                Build::Inline,
            )
            .await,
        );
        print_row(
            &writers(
                &store,
                "1 writer, 1000 events per append",
                1,
                1000,
                secs,
                60,
                Build::Inline,
            )
            .await,
        );
        for (name, per_append, calls) in [
            ("1 writer, 100 per append, next built meanwhile", 100, 300),
            ("1 writer, 1000 per append, next built meanwhile", 1000, 60),
        ] {
            print_row(&writers(&store, name, 1, per_append, secs, calls, Build::Ahead).await);
        }
        for (name, per_append, calls) in [
            ("1 writer, 100 per append, built before", 100, 300),
            ("1 writer, 1000 per append, built before", 1000, 60),
        ] {
            print_row(&writers(&store, name, 1, per_append, secs, calls, Build::Before).await);
        }
        for (per_txn, txns) in [(1, 20_000), (16, 5_000), (100, 300), (1000, 60)] {
            print_row(&plain_sqlite(dir.path(), per_txn, txns, secs));
        }
        drop(store);

        // The big store: `big` events, each entity tag on 100 of them.
        let path = dir.path().join("big.db");
        let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        let entities = (big / 100).max(1);
        let t = Instant::now();
        for chunk in 0..big.div_ceil(1000) {
            let events = (chunk * 1000..((chunk + 1) * 1000).min(big))
                .map(|i| event(&format!("entity:{}", i % entities), "kind:big", i))
                .collect();
            store.append(events, None).await.unwrap();
        }
        println!(
            "\nbig store: {big} events loaded in {:.1} s; file {:.0} MiB",
            t.elapsed().as_secs_f64(),
            std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1048576.0)
        );
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let mut lat = Histogram::<u64>::new(3).unwrap();
        let queries = 500u64;
        for i in 0..queries {
            let q = Query::item(QueryItem::tags([format!(
                "entity:{}",
                (i * 7919) % entities
            )]));
            let t = Instant::now();
            let got: Vec<_> = store
                .read(q, ReadOptions::forwards().limit(100))
                .try_collect()
                .await
                .unwrap();
            lat.record(t.elapsed().as_micros() as u64).unwrap();
            assert_eq!(got.len() as u64, 100.min(big));
        }
        print_header();
        print_row(&Row {
            name: format!("tag query returning 100 of {big}"),
            events: queries * 100,
            secs: start.elapsed().as_secs_f64(),
            cpu: cpu_seconds() - cpu0,
            lat,
            per_commit: None,
            syncs: None,
        });
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let mut n = 0u64;
        let mut stream = store.read(Query::all(), ReadOptions::forwards());
        while stream.try_next().await.unwrap().is_some() {
            n += 1;
        }
        let mut lat = Histogram::<u64>::new(3).unwrap();
        lat.record(start.elapsed().as_micros() as u64).unwrap();
        print_row(&Row {
            name: format!("full forward read of {big} (latency = whole read)"),
            events: n,
            secs: start.elapsed().as_secs_f64(),
            cpu: cpu_seconds() - cpu0,
            lat,
            per_commit: None,
            syncs: None,
        });
        println!(
            "\nthis process's RSS after everything above: {:.0} MiB",
            rss_mib()
        );
        drop(stream);
        drop(store);
        // A process that only holds the big store: opens it, runs the tag queries and a full read.
        let held = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--hold", path.to_str().unwrap(), &entities.to_string()])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&held.stdout));
        crash_and_reopen(&path, big).await;
    });
}

/// `--hold PATH ENTITIES`: the memory of a process holding the big store and reading it.
fn hold(path: &str, entities: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(path, SqliteOptions::default()).unwrap();
        for i in 0..500u64 {
            let q = Query::item(QueryItem::tags([format!("entity:{}", (i * 7919) % entities)]));
            let got: Vec<_> = store
                .read(q, ReadOptions::forwards().limit(100))
                .try_collect()
                .await
                .unwrap();
            assert!(!got.is_empty());
        }
        let mut n = 0u64;
        let mut stream = store.read(Query::all(), ReadOptions::forwards());
        while stream.try_next().await.unwrap().is_some() {
            n += 1;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        println!(
            "a process holding the store (500 tag queries, then a full read of {n}): peak RSS {:.0} MiB, RSS {:.0} MiB (goal < 100 MiB)",
            kib("VmHWM:") / 1024.0,
            kib("VmRSS:") / 1024.0
        );
    });
}

/// `kill -9` of a process appending to the big store (4 writers, the crash test's writer), then the
/// time to reopen it and find every acknowledged append.
async fn crash_and_reopen(path: &Path, big: u64) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sqlite-crash-writer"))
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((pos, id)) = line.split_once(' ') {
                acked.push((
                    pos.parse::<u64>().unwrap(),
                    id.parse::<uuid::Uuid>().unwrap(),
                ));
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    let t = Instant::now();
    let store = SqliteStore::open(path, SqliteOptions::default()).unwrap();
    let head = store.head().await.unwrap();
    let opened = t.elapsed();
    let mut missing = 0;
    for (pos, id) in &acked {
        match store.get(*id).await.unwrap() {
            Some(e) if e.position == *pos => {}
            _ => missing += 1,
        }
    }
    println!(
        "reopen of the {big}-event store after kill -9 of a writer ({} appends acknowledged): {:.1} ms to open and read the head ({head}); acknowledged events missing: {missing} (goal < 1 s, 0 missing)",
        acked.len(),
        opened.as_secs_f64() * 1000.0
    );
}
