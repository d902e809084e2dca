//! Two OS processes appending to one database: conditions stay linearizable and positions gapless and
//! commit-ordered across processes (the helper binary `pg-events-stress` is the other process).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tamma_events::{EventStore, Query, ReadOptions};
use tokio::process::Command;

use crate::TestDb;

const HELPER: &str = env!("CARGO_BIN_EXE_pg-events-stress");

fn args(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

async fn run_helper(args: Vec<String>) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(HELPER).args(&args).kill_on_drop(true).output(),
    )
    .await
    .expect("the helper finishes within 60 s")
    .expect("the helper runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "helper {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Both processes run random conditional appends over the same few (type, tag) pairs, each embedding
/// the last matching position it read; afterwards every stored event's embedded position equals the
/// last match before it in the log, so no two conflicting appends both succeeded across processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_linearizable() {
    let db = TestDb::create().await;
    let store = db.store().await; // applies the schema before the helpers race
    let url = db.url();
    let (a, b) = tokio::join!(
        run_helper(args(&["linearize", &url, "1", "6", "25"])),
        run_helper(args(&["linearize", &url, "2", "6", "25"])),
    );
    let mut won = 0;
    for out in [&a, &b] {
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"won"), "{out}");
        let w: u64 = words[1].parse().unwrap();
        let l: u64 = words[3].parse().unwrap();
        assert_eq!(w + l, 150, "{out}");
        won += w;
    }
    let all: Vec<_> = store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap();
    let mut last_match: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut checked = 0;
    let mut processes = HashMap::new();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1, "positions are gapless");
        if e.event.event_type == "Z" {
            continue;
        }
        let key = (
            e.event.event_type.clone(),
            e.event.tags.iter().next().unwrap().to_owned(),
        );
        let expected = last_match.get(&key).copied().unwrap_or(0);
        assert_eq!(
            e.event.data.to_value()["seen"].as_u64(),
            Some(expected),
            "event at {} decided on a stale read",
            e.position
        );
        last_match.insert(key, e.position);
        *processes
            .entry(e.event.data.to_value()["process"].as_u64().unwrap())
            .or_insert(0) += 1;
        checked += 1;
    }
    assert_eq!(checked, won);
    assert_eq!(
        processes.len(),
        2,
        "both processes won some appends: {processes:?}"
    );
}

/// Two processes write, one of them holding every commit 30 ms; a subscriber in this process receives
/// every position exactly once, in order, and each writer's events in the order it wrote them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_gap_free_delivery() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let mut sub = store.subscribe(Query::all(), 0);
    let url = db.url();
    let (fast, slow) = tokio::join!(
        run_helper(args(&["write", &url, "0", "80", "0"])),
        run_helper(args(&["write", &url, "1", "12", "30"])),
    );
    assert_eq!(fast.trim(), "wrote 80");
    assert_eq!(slow.trim(), "wrote 12");
    let mut next_i: HashMap<String, u64> = HashMap::new();
    for expected in 1..=92u64 {
        let e = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("delivered")
            .expect("open")
            .expect("no error");
        assert_eq!(e.position, expected, "every position once, in order");
        let writer = e.event.tags.iter().next().unwrap().to_owned();
        let i = next_i.entry(writer).or_insert(0);
        assert_eq!(e.event.data.to_value()["i"].as_u64(), Some(*i));
        *i += 1;
    }
    assert_eq!(store.head().await.unwrap(), 92);
}
