//! A helper process for the multi-process tests: appends to a shared PostgreSQL event store so that two
//! OS processes contend for the same positions.
//!
//! ```text
//! pg-events-stress linearize <url> <process> <tasks> <rounds>
//!     random conditional appends over types X/Y and tags t:0..t:2, each embedding the last matching
//!     position it read ({"seen", "process", "task", "round"}) and using it as `after`;
//!     prints "won <n> lost <n>"
//! pg-events-stress write <url> <writer> <count> <commit-delay-ms>
//!     appends <count> single events of type W tagged writer:<writer>, holding each commit
//!     <commit-delay-ms>; prints "wrote <n>"
//! ```
#![allow(clippy::print_stdout)] // A command-line helper: its answer is its standard output.

use std::process::ExitCode;
use std::time::Duration;

use futures::TryStreamExt;
use tamma_events::{
    AppendCondition, Error, Event, EventStore, Limits, Query, QueryItem, ReadOptions, StoreHooks,
};
use tamma_events_postgres::{PostgresConfig, PostgresStore};

const TYPES: [&str; 2] = ["X", "Y"];
const TAGS: [&str; 3] = ["t:0", "t:1", "t:2"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pg-events-stress: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {i}: {what}"))?
        .parse()
        .map_err(|_| format!("argument {i} ({what}) is not valid: {:?}", args[i]))
}

async fn run(args: &[String]) -> Result<String, String> {
    let mode: String = arg(args, 0, "mode")?;
    let url: String = arg(args, 1, "url")?;
    let config = PostgresConfig {
        pool_size: 4,
        ..PostgresConfig::with_url(url)
    };
    match mode.as_str() {
        "linearize" => {
            let process: u64 = arg(args, 2, "process")?;
            let tasks: u64 = arg(args, 3, "tasks")?;
            let rounds: u64 = arg(args, 4, "rounds")?;
            let store = PostgresStore::connect(&config, Limits::default())
                .await
                .map_err(|e| e.to_string())?;
            linearize(store, process, tasks, rounds).await
        }
        "write" => {
            let writer: u64 = arg(args, 2, "writer")?;
            let count: u64 = arg(args, 3, "count")?;
            let delay: u64 = arg(args, 4, "commit-delay-ms")?;
            let hooks = if delay > 0 {
                StoreHooks::delay_commits_where(Duration::from_millis(delay), |_| true)
            } else {
                StoreHooks::default()
            };
            let store = PostgresStore::connect_with_hooks(&config, Limits::default(), hooks)
                .await
                .map_err(|e| e.to_string())?;
            for i in 0..count {
                let e = Event::new("W")
                    .tag(format!("writer:{writer}"))
                    .data(serde_json::json!({"i": i}));
                store
                    .append(vec![e], None)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(format!("wrote {count}"))
        }
        "fleet" => {
            let process: u64 = arg(args, 2, "process")?;
            let tasks: u64 = arg(args, 3, "tasks")?;
            let count: u64 = arg(args, 4, "appends per task")?;
            let store = PostgresStore::connect(&config, Limits::default())
                .await
                .map_err(|e| e.to_string())?;
            fleet(store, process, tasks, count).await
        }
        other => Err(format!(
            "unknown mode {other:?} (linearize | write | fleet)"
        )),
    }
}

/// Workers of one process, each appending to an entity of its own under a condition that the entity
/// was not cancelled since it last looked (what several processes sharing one database do): `count`
/// appends per task; prints the appends per second.
async fn fleet(
    store: PostgresStore,
    process: u64,
    tasks: u64,
    count: u64,
) -> Result<String, String> {
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let tag = format!("entity:{process}-{task}");
            let mut seen = 0;
            for i in 0..count {
                let query =
                    Query::item(QueryItem::types(["ENTITY.CANCELLED"]).with_tag(tag.clone()));
                let e = Event::new("ENTITY.UPDATED")
                    .tag(tag.clone())
                    .data(serde_json::json!({"i": i}));
                let r = store
                    .append(vec![e], Some(AppendCondition::new(query).after(seen)))
                    .await
                    .map_err(|e| e.to_string())?;
                seen = r.positions[0];
            }
            Ok::<_, String>(())
        }));
    }
    for h in handles {
        h.await.map_err(|e| e.to_string())??;
    }
    let rate = (tasks * count) as f64 / started.elapsed().as_secs_f64();
    Ok(format!("{rate:.0} appends/s"))
}

async fn linearize(
    store: PostgresStore,
    process: u64,
    tasks: u64,
    rounds: u64,
) -> Result<String, String> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut rng =
                Rng(((process << 32) | (task + 1)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let (mut won, mut lost) = (0u64, 0u64);
            for round in 0..rounds {
                let ty = TYPES[rng.below(2)];
                let tag = TAGS[rng.below(3)];
                let query = Query::item(QueryItem::types([ty]).with_tag(tag));
                let last: Vec<_> = store
                    .read(query.clone(), ReadOptions::backwards().limit(1))
                    .try_collect()
                    .await
                    .map_err(|e| e.to_string())?;
                let seen = last.first().map_or(0, |e| e.position);
                let mut events = vec![Event::new(ty).tag(tag).data(serde_json::json!({
                    "seen": seen, "process": process, "task": task, "round": round
                }))];
                if rng.below(4) == 0 {
                    events.push(Event::new("Z").tag(TAGS[rng.below(3)]));
                }
                match store
                    .append(events, Some(AppendCondition::new(query).after(seen)))
                    .await
                {
                    Ok(_) => won += 1,
                    Err(Error::AppendConditionFailed { position }) if position > seen => lost += 1,
                    Err(e) => return Err(format!("unexpected error: {e}")),
                }
            }
            Ok::<_, String>((won, lost))
        }));
    }
    let (mut won, mut lost) = (0, 0);
    for h in handles {
        let (w, l) = h.await.map_err(|e| e.to_string())??;
        won += w;
        lost += l;
    }
    Ok(format!("won {won} lost {lost}"))
}

/// xorshift: enough randomness to mix the workload, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // The remainder is below `n`, a usize.
        usize::try_from(self.0 % n as u64).unwrap_or(0)
    }
}
