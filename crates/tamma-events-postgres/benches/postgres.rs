//! The PostgreSQL event store benchmark: one command prints the whole table.
//!
//! `cargo bench -p tamma-events-postgres --bench postgres` (server at `postgres://postgres@127.0.0.1:5432`;
//! it creates and drops scratch databases). It prints the filesystem of the server's data directory, a
//! 2-second raw `write 4 KiB + fdatasync` probe there, `pgbench` single-row INSERT rates at 1 and 8
//! clients measured in the same run (the one-client rate in rounds alternating with the store's 1x1 workload), then the store's workloads through the `EventStore` API (durable,
//! `synchronous_commit=on`): events/s, p50/p99 latency per append, events per WAL sync (from
//! `pg_stat_wal`), and CPU seconds per 1,000 events of this process and of the server backends. The
//! 100/append rows are set beside their floor, measured in the same run with `pgbench`: plain 100-row
//! `INSERT`s of the same rows into a table of the events' shape, without and with a lock held to the
//! commit (the serialisation that keeps positions commit-ordered).
#![allow(clippy::print_stdout, clippy::cast_precision_loss)] // A report printed for people.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tamma_core::DurationMs;
use tamma_events::{AppendCondition, Event, EventMetadata, EventStore, Limits, Query, QueryItem};
use tamma_events_postgres::{PostgresConfig, PostgresStore};
use tokio_postgres::{Client, NoTls};

/// The allocator the `tamma` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The `sslmode` of the store's connections and of `pgbench`'s alike (`TAMMA_BENCH_SSLMODE`, default
/// `prefer`: what both get without one, TLS when the server offers it), so the two pay the same.
fn sslmode() -> String {
    // A bench binary, not the runtime: its settings come from its own environment.
    #[allow(clippy::disallowed_methods)]
    std::env::var("TAMMA_BENCH_SSLMODE").unwrap_or_else(|_| "prefer".to_owned())
}
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn connect(db: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(&format!("{SERVER}/{db}"), NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {SERVER}/{db} is not reachable: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn run() {
    let admin = connect("test").await;
    let data_dir: String = admin
        .query_one("SHOW data_directory", &[])
        .await
        .expect("data_directory")
        .get(0);
    let version: String = admin
        .query_one("SHOW server_version", &[])
        .await
        .expect("version")
        .get(0);
    let sync_commit: String = admin
        .query_one("SHOW synchronous_commit", &[])
        .await
        .expect("synchronous_commit")
        .get(0);
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.expect("ssl").get(0);
    println!(
        "PostgreSQL {version}, data directory {data_dir} on {} (synchronous_commit={sync_commit})",
        fs_type(&data_dir)
    );
    println!(
        "connections of the store and of pgbench: sslmode={} (the server's ssl = {ssl})",
        sslmode()
    );
    let probe = fdatasync_probe(&data_dir);
    println!(
        "raw write 4 KiB + fdatasync (rewriting one block, next to the data directory, 2 s): {:.0}/s, p50 {} µs",
        probe.0, probe.1
    );

    let pgbench = PgBench::setup(&admin).await;
    let pg8 = pgbench.rate(8, 2);
    println!("pgbench single-row INSERT, -c8 -j2, 5 s: {pg8:.0} tps");
    println!();
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>11} {:>12} {:>12}",
        "workload", "events/s", "p50 µs", "p99 µs", "ev/sync", "cpu s/1k cl", "cpu s/1k srv"
    );
    // The disk's speed drifts within a run, so the 1x1 goal (a ratio to pgbench at one client) is measured
    // in rounds that alternate the two, each store run right after its pgbench run.
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let pg1 = pgbench.rate(1, 1);
        let r1 = workload(
            &admin,
            &format!("conditional 1x1, 1 writer ({round})"),
            1,
            1,
        )
        .await;
        rounds.push((pg1, r1));
    }
    let r16 = workload(&admin, "conditional 1x1, 16 writers", 16, 1).await;
    let r100 = workload(&admin, "conditional 100/append, 1 writer", 1, 100).await;
    let r100x4 = workload(&admin, "conditional 100/append, 4 writers", 4, 100).await;
    let floor1 = pgbench.bulk_rate(1, false);
    let floor4 = pgbench.bulk_rate(4, false);
    let locked1 = pgbench.bulk_rate(1, true);
    let locked4 = pgbench.bulk_rate(4, true);
    pgbench.drop(&admin).await;
    println!();
    let mut ratios: Vec<f64> = rounds.iter().map(|(pg1, r1)| r1 / pg1).collect();
    println!(
        "1x1 against pgbench -c1 (5 s) just before it: {}",
        rounds
            .iter()
            .map(|(pg1, r1)| format!("{r1:.0}/s vs {pg1:.0} tps = {:.2}x", r1 / pg1))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "100/append against plain 100-row INSERTs of the same rows into a table of the same shape (pgbench, 5 s, \
         no tag index): 1 client {floor1:.0} rows/s, 4 clients {floor4:.0}; each holding a lock to its commit as \
         appends do: 1 client {locked1:.0}, 4 clients {locked4:.0}. The store: 1 writer {r100:.0}/s = {:.2}x the \
         serialised floor; 4 writers {r100x4:.0}/s = {:.2}x",
        r100 / locked1,
        r100x4 / locked4
    );
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "goals: 1x1 >= 0.75 x pgbench -c1: {} (median of {ROUNDS} rounds {median:.2}x); 16 writers >= 5,000/s: {}; 100/append >= 100,000/s: {} (1 writer), {} (4 writers)",
        verdict(median >= 0.75),
        verdict(r16 >= 5_000.0),
        verdict(r100 >= 100_000.0),
        verdict(r100x4 >= 100_000.0),
    );
}

/// Rounds of (pgbench -c1, store 1x1) for the 1x1 goal.
const ROUNDS: usize = 3;

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The filesystem type of the mount holding `path` (longest mount-point prefix in /proc/mounts).
fn fs_type(path: &str) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && path.starts_with(f[1])).then(|| (f[1].len(), f[2].to_owned()))
        })
        .max()
        .map_or_else(|| "an unknown filesystem".to_owned(), |(_, t)| t)
}

/// Rewrites one preallocated 4 KiB block with `fdatasync` for 2 s next to the data directory (or in the
/// temp dir when that is not writable). Returns (syncs/s, p50 µs).
fn fdatasync_probe(data_dir: &str) -> (f64, u64) {
    let parent = std::path::Path::new(data_dir)
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let path = [parent, std::env::temp_dir()]
        .into_iter()
        .map(|d| d.join(format!("tamma-fdatasync-probe-{}", std::process::id())))
        .find(|p| {
            OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(p)
                .is_ok()
        })
        .expect("a writable directory for the probe");
    let mut f = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("probe file");
    let block = [0x5au8; 4096];
    f.write_all(&block).expect("preallocate");
    f.sync_all().expect("sync");
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
        h.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))
            .expect("record");
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    (
        n as f64 / start.elapsed().as_secs_f64(),
        h.value_at_quantile(0.5),
    )
}

/// pgbench with a custom script of one INSERT of about 200 bytes, on a scratch database.
struct PgBench {
    db: String,
    script: std::path::PathBuf,
    /// [`BULK_SCRIPT`].
    bulk: std::path::PathBuf,
    /// [`BULK_SCRIPT`] serialised as appends are (see [`serialised`]).
    bulk_locked: std::path::PathBuf,
}

/// `BULK_SCRIPT` holding a transaction-scoped advisory lock from its start to its commit, as appends
/// hold theirs: the floor for appends whose positions are commit-ordered.
fn serialised() -> String {
    BULK_SCRIPT.replace(
        "  FROM (SELECT nextval",
        "  FROM (SELECT pg_advisory_xact_lock(42)) l, (SELECT nextval",
    )
}

/// The floor under "100 per append": one plain statement inserting 100 rows of the events' shape into
/// a table like `tamma_events` (position primary key, unique id, BRIN on `recorded_at`), positions from
/// a sequence, ids increasing (as UUIDv7 ids are), metadata and data parsed per row. No function, no
/// lock, no condition, no tag or type index: what PostgreSQL and this disk do for these rows alone.
const BULK_SCRIPT: &str = "INSERT INTO floor_events (position, id, type, timestamp, recorded_at, tags, metadata, data)
SELECT p, lpad(to_hex(p), 32, '0')::uuid, 'ORDER.PLACED', now(), now(), ARRAY['writer:1', 'order:' || p],
       format('{\"correlationId\":\"corr-%s\",\"userId\":\"user-42\",\"eventSource\":\"system\"}', p)::jsonb,
       format('{\"orderId\":\"%s\",\"customer\":\"c-1234\",\"items\":[{\"sku\":\"A-100\",\"qty\":2,\"price\":19.99},{\"sku\":\"B-200\",\"qty\":1,\"price\":5.5}],\"note\":\"deliver to the back door, ring twice\",\"total\":45.48}', p)::json
  FROM (SELECT nextval('floor_position') AS p FROM generate_series(1, 100)) g;
";

impl PgBench {
    async fn setup(admin: &Client) -> Self {
        let db = format!("tamma_bench_pgbench_{}", std::process::id());
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .expect("drop a leftover pgbench database");
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create the pgbench database");
        let c = connect(&db).await;
        c.batch_execute(
            "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, v integer NOT NULL, payload text NOT NULL);
             CREATE TABLE floor_events (position bigint PRIMARY KEY, id uuid NOT NULL UNIQUE,
                 type text NOT NULL, timestamp timestamptz NOT NULL, recorded_at timestamptz NOT NULL,
                 tags text[] NOT NULL, metadata jsonb, data json NOT NULL);
             CREATE INDEX ON floor_events USING brin (recorded_at);
             CREATE SEQUENCE floor_position CACHE 1000;",
        )
        .await
        .expect("tables");
        drop(c);
        let status = Command::new("pgbench")
            .env("PGSSLMODE", sslmode())
            .args([
                "-i",
                "-q",
                "-s",
                "1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                &db,
            ])
            .output()
            .expect("pgbench -i (is pgbench installed?)");
        assert!(status.status.success(), "pgbench -i failed");
        let script = std::env::temp_dir().join(format!("tamma-pgbench-{}.sql", std::process::id()));
        std::fs::write(
            &script,
            "\\set r random(1, 1000000)\nINSERT INTO bench_insert (v, payload) VALUES (:r, 'tamma pgbench row of about two hundred bytes: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.');\n",
        )
        .expect("script");
        let bulk =
            std::env::temp_dir().join(format!("tamma-pgbench-bulk-{}.sql", std::process::id()));
        std::fs::write(&bulk, BULK_SCRIPT).expect("script");
        let bulk_locked = std::env::temp_dir().join(format!(
            "tamma-pgbench-bulk-locked-{}.sql",
            std::process::id()
        ));
        std::fs::write(&bulk_locked, serialised()).expect("script");
        Self {
            db,
            script,
            bulk,
            bulk_locked,
        }
    }

    /// Rows per second of [`BULK_SCRIPT`] (`locked`: [`serialised`]) over 5 s with `clients` clients on
    /// up to 2 threads.
    fn bulk_rate(&self, clients: u32, locked: bool) -> f64 {
        let script = if locked {
            &self.bulk_locked
        } else {
            &self.bulk
        };
        self.run(script, clients, 2.min(clients)) * 100.0
    }

    /// Transactions per second of the single-row INSERT over 5 s with `clients` clients on `threads`
    /// threads.
    fn rate(&self, clients: u32, threads: u32) -> f64 {
        self.run(&self.script, clients, threads)
    }

    /// Transactions per second of `script` over 5 s.
    fn run(&self, script: &std::path::Path, clients: u32, threads: u32) -> f64 {
        let out = Command::new("pgbench")
            .env("PGSSLMODE", sslmode())
            .args(["-n", "-c", &clients.to_string()])
            .args(["-j", &threads.to_string()])
            .args(["-T", "5", "-h", "127.0.0.1", "-U", "postgres", "-f"])
            .arg(script)
            .arg(&self.db)
            .output()
            .expect("pgbench");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "pgbench printed no tps: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }

    async fn drop(self, admin: &Client) {
        let _ = std::fs::remove_file(&self.script);
        let _ = std::fs::remove_file(&self.bulk);
        let _ = std::fs::remove_file(&self.bulk_locked);
        admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.db))
            .await
            .expect("drop the pgbench database");
    }
}

/// A realistic event: UUIDv7 id, 2 tags, ~200 bytes of JSON data, 3 metadata keys.
fn event(writer: usize, i: u64) -> Event {
    Event::new("ORDER.PLACED")
        .tag(format!("writer:{writer}"))
        .tag(format!("order:{writer}-{i}"))
        .metadata(EventMetadata {
            correlation_id: Some(format!("corr-{writer}-{i}")),
            user_id: Some("user-42".into()),
            event_source: Some(tamma_events::EventSource::System),
            ..EventMetadata::default()
        })
        .data(serde_json::json!({
            "orderId": format!("{writer}-{i}"),
            "customer": "c-1234",
            "items": [{"sku": "A-100", "qty": 2, "price": 19.99}, {"sku": "B-200", "qty": 1, "price": 5.5}],
            "note": "deliver to the back door, ring twice",
            "total": 45.48,
        }))
}

/// CPU seconds (user + system) of a process from /proc/<pid>/stat, at 100 ticks per second.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields after the command: state is [0], utime [11], stime [12].
    (ticks(11) + ticks(12)) as f64 / 100.0
}

async fn server_cpu(admin: &Client, db: &str) -> f64 {
    let pids: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1",
            &[&db],
        )
        .await
        .expect("backends")
        .iter()
        .map(|r| r.get(0))
        .collect();
    pids.iter().map(|p| cpu_seconds(&p.to_string())).sum()
}

async fn wal_syncs(admin: &Client) -> i64 {
    admin
        .query_one("SELECT wal_sync FROM pg_stat_wal", &[])
        .await
        .expect("pg_stat_wal")
        .get(0)
}

/// `writers` tasks append `per_append` events per conditional append (each writer's condition is on its
/// own tag, so none fails) for WARMUP + MEASURE on a fresh database. Prints a row; returns events/s.
async fn workload(admin: &Client, name: &str, writers: usize, per_append: usize) -> f64 {
    let db = format!("tamma_bench_{}_{writers}_{per_append}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .expect("drop a leftover bench database");
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .expect("create the bench database");
    let config = PostgresConfig {
        pool_size: 4,
        poll_interval: DurationMs::from_secs(1),
        ..PostgresConfig::with_url(format!("{SERVER}/{db}?sslmode={}", sslmode()))
    };
    let store = Arc::new(
        PostgresStore::connect(&config, Limits::default())
            .await
            .expect("open the store"),
    );
    let warm_until = Instant::now() + WARMUP;
    let measure_until = warm_until + MEASURE;
    let start_gate = Arc::new(tokio::sync::Barrier::new(writers + 1));
    let mut handles = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let gate = start_gate.clone();
        handles.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let mut events = 0u64;
            let mut i = 0u64;
            let mut gated = false;
            loop {
                let now = Instant::now();
                if now >= measure_until {
                    break;
                }
                if !gated && now >= warm_until {
                    gate.wait().await;
                    gated = true;
                }
                let batch: Vec<Event> = (0..per_append)
                    .map(|_| {
                        i += 1;
                        event(w, i)
                    })
                    .collect();
                let cond = AppendCondition::new(Query::item(
                    QueryItem::types(["ORDER.CANCELLED"]).with_tag(format!("writer:{w}")),
                ));
                let t = Instant::now();
                store.append(batch, Some(cond)).await.expect("append");
                if gated {
                    h.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))
                        .expect("record");
                    events += per_append as u64;
                }
            }
            if !gated {
                gate.wait().await;
            }
            (h, events)
        }));
    }
    start_gate.wait().await;
    let started = Instant::now();
    let cpu0 = cpu_seconds("self");
    let srv0 = server_cpu(admin, &db).await;
    let sync0 = wal_syncs(admin).await;
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let mut events = 0;
    for h in handles {
        let (hist, n) = h.await.expect("writer");
        all.add(hist).expect("merge");
        events += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self") - cpu0;
    let srv = server_cpu(admin, &db).await - srv0;
    let syncs = (wal_syncs(admin).await - sync0).max(1);
    let rate = events as f64 / elapsed;
    println!(
        "{name:<34} {rate:>10.0} {:>9} {:>9} {:>11.1} {:>12.3} {:>12.3}",
        all.value_at_quantile(0.5),
        all.value_at_quantile(0.99),
        events as f64 / syncs as f64,
        cpu / events as f64 * 1000.0,
        srv / events as f64 * 1000.0,
    );
    drop(store);
    tokio::time::sleep(Duration::from_millis(100)).await;
    admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await
        .expect("drop the bench database");
    rate
}
