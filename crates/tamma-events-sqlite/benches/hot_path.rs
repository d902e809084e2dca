//! One workload of the SQLite store per run, a fixed amount of work, for instruction counts
//! (`valgrind --tool=callgrind`, `perf stat -e instructions`), which stay repeatable on a loaded machine
//! where wall-clock numbers do not.
//!
//! `cargo bench -p tamma-events-sqlite --bench hot_path -- <workload> <count> <dir>`
//!
//! - `w1 N`: one writer, N conditional appends of one event;
//! - `w16 N`: 16 writers, N conditional appends of one event each, disjoint tags;
//! - `b100 N`, `b1000 N`: one writer, N appends of 100 / 1,000 events;
//! - `load N`: fills `<dir>/big.db` with N events (1,000 per append, each entity tag on 100 events);
//! - `query N`: N one-tag queries of 100 events on `<dir>/big.db`;
//! - `scan N`: N full forward reads of `<dir>/big.db`.
//!
//! Prints the events moved, so instructions per event = total / events (minus the setup, measured with a
//! count of 0).
#![allow(
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use tamma_events::{AppendCondition, EventStore, Query, QueryItem, ReadOptions};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

/// The allocator the `tamma` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::event;

async fn writers(store: &Arc<SqliteStore>, writers: u64, per_append: u64, calls: u64) -> u64 {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let tag = format!("writer:{w}");
            let q = Query::item(QueryItem::tags([tag.clone()]));
            let mut last = 0;
            let mut n = 0;
            for _ in 0..calls {
                let events = (0..per_append)
                    .map(|i| event(&tag, "kind:bench", n + i))
                    .collect();
                let cond = AppendCondition::new(q.clone()).after(last);
                last = store
                    .append(events, Some(cond))
                    .await
                    .unwrap()
                    .last_position();
                n += per_append;
            }
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    n
}

/// The default options, with experiments from the environment: `HOT_PATH_AUTOCHECKPOINT` (WAL pages)
/// and `HOT_PATH_CHECKPOINT_MS` (the background checkpoint interval; 0 turns it off).
fn options() -> SqliteOptions {
    let mut o = SqliteOptions::default();
    // A bench binary, not the runtime: its experiments come from its own environment.
    #[allow(clippy::disallowed_methods)]
    let var = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(pages) = var("HOT_PATH_AUTOCHECKPOINT") {
        o.wal_autocheckpoint_pages = u32::try_from(pages).unwrap();
    }
    if let Some(ms) = var("HOT_PATH_CHECKPOINT_MS") {
        o.checkpoint_interval = (ms > 0).then(|| std::time::Duration::from_millis(ms));
    }
    o
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(workload), Some(count), Some(dir)) = (args.first(), args.get(1), args.get(2)) else {
        println!("usage: hot_path <w1|w16|b100|b1000|load|query|scan> <count> <dir>");
        return;
    };
    let count: u64 = count.parse().expect("count is a number");
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moved = rt.block_on(async {
        let open = |name: &str| Arc::new(SqliteStore::open(dir.join(name), options()).unwrap());
        match workload.as_str() {
            "w1" => writers(&open("w.db"), 1, 1, count).await,
            "w16" => writers(&open("w.db"), 16, 1, count).await,
            "b100" => writers(&open("w.db"), 1, 100, count).await,
            "b1000" => writers(&open("w.db"), 1, 1000, count).await,
            "load" => {
                let store = open("big.db");
                let entities = (count / 100).max(1);
                for chunk in 0..count.div_ceil(1000) {
                    let events = (chunk * 1000..((chunk + 1) * 1000).min(count))
                        .map(|i| event(&format!("entity:{}", i % entities), "kind:big", i))
                        .collect();
                    store.append(events, None).await.unwrap();
                }
                count
            }
            "query" => {
                let store = open("big.db");
                let entities = (store.head().await.unwrap() / 100).max(1);
                let mut n = 0;
                for i in 0..count {
                    let q = Query::item(QueryItem::tags([format!(
                        "entity:{}",
                        (i * 7919) % entities
                    )]));
                    let got: Vec<_> = store
                        .read(q, ReadOptions::forwards().limit(100))
                        .try_collect()
                        .await
                        .unwrap();
                    n += got.len() as u64;
                }
                n
            }
            "scan" => {
                let store = open("big.db");
                let mut n = 0;
                for _ in 0..count {
                    let mut s = store.read(Query::all(), ReadOptions::forwards());
                    while s.try_next().await.unwrap().is_some() {
                        n += 1;
                    }
                }
                n
            }
            other => panic!("unknown workload {other}"),
        }
    });
    println!("{workload}: {moved} events");
}
