//! The emitter in durable mode (`emit`, 16 producers) against direct `EventStore::append` from 16 tasks,
//! on the SQLite store, in the same run. Each iteration stores 16 × 64 events.
//!
//! Settings: `emit` is its own append per event (no emitter-side batching: `events.batchSize` /
//! `flushInterval` only gather `emit_nowait` events), so concurrent emits share the SQLite writer's
//! group commit exactly like concurrent direct appends; `maxPending` 10,000.
//!
//! Run: `cargo bench -p tamma-emitter --bench emitter -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tamma_emitter::{Emitter, EmitterConfig};
use tamma_events::{Event, EventStore};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

const PRODUCERS: usize = 16;
const PER_PRODUCER: usize = 64;

fn event(p: usize, i: usize) -> Event {
    Event::new("BENCH.EVENT")
        .tag(format!("producer:{p}"))
        .data(serde_json::json!({"i": i, "payload": "x".repeat(100)}))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let direct: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("direct.db"), SqliteOptions::default()).unwrap(),
    );
    let via: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("emitter.db"), SqliteOptions::default()).unwrap(),
    );
    let emitter = rt.block_on(async { Emitter::new(via, EmitterConfig::default()).unwrap() });

    let mut g = c.benchmark_group("durable_16_producers");
    g.throughput(Throughput::Elements((PRODUCERS * PER_PRODUCER) as u64));
    g.sample_size(10);
    g.bench_function("store_append_direct", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = Arc::clone(&direct);
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..PRODUCERS)
                        .map(|p| {
                            let store = Arc::clone(&store);
                            tokio::spawn(async move {
                                for i in 0..PER_PRODUCER {
                                    store.append(vec![event(p, i)], None).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
                start.elapsed()
            }
        });
    });
    g.bench_function("emitter_emit", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let emitter = emitter.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..PRODUCERS)
                        .map(|p| {
                            let emitter = emitter.clone();
                            tokio::spawn(async move {
                                for i in 0..PER_PRODUCER {
                                    emitter.emit(event(p, i)).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
                start.elapsed()
            }
        });
    });
    g.finish();
    rt.block_on(emitter.dispose(Duration::from_secs(5)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
