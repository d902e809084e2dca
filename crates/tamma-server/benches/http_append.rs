//! HTTP append throughput against the same appends through the library, on the SQLite store, in one
//! run: 16 concurrent HTTP clients (reqwest, one keep-alive connection each), one event per request, to
//! `POST /v1/events` on 127.0.0.1; and 16 tasks calling `EventStore::append` with one event each.
//! Both go through the store's group commit. The ratio HTTP/library is printed at the end.
//!
//! `cargo bench -p tamma-server --bench http_append -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use tamma_events::{Event, EventStore};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tamma_server::{EventsApiLimits, events_routes};

const CLIENTS: u64 = 16;

/// Appends done and nanoseconds spent, per variant, over every criterion iteration batch.
#[derive(Default)]
struct Tally {
    ops: AtomicU64,
    nanos: AtomicU64,
}

impl Tally {
    fn add(&self, ops: u64, elapsed: Duration) {
        self.ops.fetch_add(ops, Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn per_second(&self) -> f64 {
        let nanos = self.nanos.load(Ordering::Relaxed).max(1);
        #[allow(clippy::cast_precision_loss)]
        let rate = self.ops.load(Ordering::Relaxed) as f64 * 1e9 / nanos as f64;
        rate
    }
}

/// Runs `iters` appends split over 16 concurrent workers; returns the wall time.
async fn spread<F, Fut>(iters: u64, worker: F) -> Duration
where
    F: Fn(usize, u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let per = iters.div_ceil(CLIENTS);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(worker(usize::try_from(i).unwrap_or(0), per)))
        .collect();
    for t in tasks {
        t.await.expect("worker finished");
    }
    start.elapsed()
}

fn bench(c: &mut Criterion, library: &Tally, http: &Tally) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn EventStore> = Arc::new(
        SqliteStore::open(dir.path().join("events.db"), SqliteOptions::default())
            .expect("sqlite store"),
    );
    let base = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = events_routes(Arc::clone(&store), EventsApiLimits::default());
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}/v1/events")
    });
    let clients: Vec<reqwest::Client> = (0..CLIENTS)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client")
        })
        .collect();
    let body = serde_json::json!({"events": [{"type": "BENCH.APPENDED", "tags": ["bench:http"], "data": {"n": 1}}]})
        .to_string();

    let mut group = c.benchmark_group("append_one_event_16_concurrent");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.bench_function("library", |b| {
        b.iter_custom(|iters| {
            let elapsed = rt.block_on(spread(iters, |_, n| {
                let store = Arc::clone(&store);
                async move {
                    for _ in 0..n {
                        let e = Event::new("BENCH.APPENDED")
                            .tag("bench:library")
                            .data(serde_json::json!({"n": 1}));
                        store.append(vec![e], None).await.expect("append");
                    }
                }
            }));
            library.add(iters.div_ceil(CLIENTS) * CLIENTS, elapsed);
            elapsed
        });
    });
    group.bench_function("http", |b| {
        b.iter_custom(|iters| {
            let elapsed = rt.block_on(spread(iters, |i, n| {
                let client = clients[i].clone();
                let url = base.clone();
                let body = body.clone();
                async move {
                    for _ in 0..n {
                        let r = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await
                            .expect("request");
                        assert!(r.status().is_success(), "{}", r.status());
                        r.bytes().await.expect("answer");
                    }
                }
            }));
            http.add(iters.div_ceil(CLIENTS) * CLIENTS, elapsed);
            elapsed
        });
    });
    group.finish();
}

fn main() {
    let library = Tally::default();
    let http = Tally::default();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &library, &http);
    c.final_summary();
    let (l, h) = (library.per_second(), http.per_second());
    if l > 0.0 && h > 0.0 {
        println!(
            "append throughput, 16 concurrent, SQLite: library {l:.0}/s, HTTP {h:.0}/s, HTTP/library = {:.2}",
            h / l
        );
    }
}
