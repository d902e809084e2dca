//! Logging and metrics benchmarks, each against its baseline in the same run.
//!
//! - `json_line/*`: one JSON line with 6 fields (one of them redacted) through our layer to a
//!   non-blocking file output vs plain `tracing_subscriber::fmt().json()` through tracing-appender's
//!   non-blocking writer to a file in the same directory.
//! - `filtered_debug`: a `debug!` below the configured level.
//! - caller-side latency percentiles (hdrhistogram, printed): ours vs tracing-appender.
//! - `metrics_render/*`: our renderer vs metrics-exporter-prometheus vs prometheus-client.
//!
//! Run: `cargo bench -p tamma-telemetry --bench logging -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tamma_telemetry::{
    FileOutputConfig, LoggingConfig, MetricsConfig, MetricsRecorder, OutputConfig, ServiceInfo,
    Telemetry,
};

fn ours(dir: &std::path::Path, name: &str) -> Telemetry {
    let logging = LoggingConfig {
        outputs: vec![OutputConfig::File(FileOutputConfig {
            path: name.into(),
            capacity: 1 << 16,
            ..FileOutputConfig::default()
        })],
        ..LoggingConfig::default()
    };
    Telemetry::builder(ServiceInfo::new("bench", "0"))
        .logging(&logging)
        .data_dir(dir)
        .build()
        .expect("telemetry builds")
}

fn baseline(
    dir: &std::path::Path,
    name: &str,
) -> (
    tracing::Dispatch,
    tracing_appender::non_blocking::WorkerGuard,
) {
    let file = std::fs::File::create(dir.join(name)).expect("create baseline file");
    let (writer, guard) = tracing_appender::non_blocking(file);
    let sub = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .finish();
    (tracing::Dispatch::new(sub), guard)
}

macro_rules! line {
    ($i:expr) => {
        tracing::info!(
            user_id = 42u64,
            request_id = "req-abc-123",
            path = "/v1/events",
            status = 200u16,
            latency_ms = 12.5f64,
            token = "abcdef123456",
            seq = $i,
            "request finished"
        )
    };
}

fn json_line(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("json_line");
    let t = ours(dir.path(), "ours.log");
    tracing::dispatcher::with_default(t.dispatch(), || {
        let mut i = 0u64;
        g.bench_function("tamma", |b| {
            b.iter(|| {
                i += 1;
                line!(i);
            });
        });
    });
    let (d, guard) = baseline(dir.path(), "baseline.log");
    tracing::dispatcher::with_default(&d, || {
        let mut i = 0u64;
        g.bench_function("fmt_json_non_blocking", |b| {
            b.iter(|| {
                i += 1;
                line!(i);
            });
        });
    });
    g.finish();
    drop(guard);
    let _ = t.handle().shutdown(Duration::from_secs(30));
}

fn filtered_debug(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = ours(dir.path(), "filtered.log");
    tracing::dispatcher::with_default(t.dispatch(), || {
        c.bench_function("filtered_debug", |b| {
            b.iter(|| tracing::debug!(value = black_box(1u64), "not written"));
        });
    });
    let _ = t.handle().shutdown(Duration::from_secs(5));
}

fn percentiles(label: &str, d: &tracing::Dispatch) {
    let mut h =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    tracing::dispatcher::with_default(d, || {
        for i in 0..200_000u64 {
            let start = Instant::now();
            line!(i);
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            h.saturating_record(ns.max(1));
            if i % 1000 == 999 {
                // Paced bursts, so the writer keeps up and we measure the caller, not a full queue.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    eprintln!(
        "caller latency {label:>22}: p50 {:>6} ns  p99 {:>6} ns  p99.9 {:>7} ns  max {:>8} ns",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

fn caller_latency(_: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = ours(dir.path(), "p99.log");
    percentiles("tamma", t.dispatch());
    let _ = t.handle().shutdown(Duration::from_secs(30));
    let (d, guard) = baseline(dir.path(), "p99-baseline.log");
    percentiles("fmt_json_non_blocking", &d);
    drop(guard);
}

fn record_series(r: &dyn metrics::Recorder) {
    metrics::with_local_recorder(r, || {
        for f in 0..20 {
            for s in 0..10u64 {
                metrics::counter!(format!("tamma_bench_family_{f}_total"), "output" => format!("o{s}"))
                    .increment(s + 1);
            }
        }
        for f in 0..5 {
            for s in 0..4 {
                let h = metrics::histogram!(format!("tamma_bench_latency_{f}_seconds"), "route" => format!("r{s}"));
                for v in [0.001, 0.02, 0.3, 4.0] {
                    h.record(v);
                }
            }
        }
    });
}

fn metrics_render(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics_render");
    let ours = MetricsRecorder::new(&MetricsConfig::default());
    record_series(&ours);
    g.bench_function("tamma", |b| b.iter(|| black_box(ours.render_prometheus())));

    let mep = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    record_series(&mep);
    let handle = mep.handle();
    g.bench_function("metrics_exporter_prometheus", |b| {
        b.iter(|| black_box(handle.render()));
    });

    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::histogram::Histogram;
    let mut reg = prometheus_client::registry::Registry::default();
    for f in 0..20 {
        let fam = Family::<Vec<(String, String)>, Counter>::default();
        reg.register(format!("tamma_bench_family_{f}"), "bench", fam.clone());
        for s in 0..10u64 {
            fam.get_or_create(&vec![("output".into(), format!("o{s}"))])
                .inc_by(s + 1);
        }
    }
    for f in 0..5 {
        let fam = Family::<Vec<(String, String)>, Histogram>::new_with_constructor(|| {
            Histogram::new(tamma_telemetry::SECONDS_BUCKETS.iter().copied())
        });
        reg.register(
            format!("tamma_bench_latency_{f}_seconds"),
            "bench",
            fam.clone(),
        );
        for s in 0..4 {
            let h = fam.get_or_create(&vec![("route".into(), format!("r{s}"))]);
            for v in [0.001, 0.02, 0.3, 4.0] {
                h.observe(v);
            }
        }
    }
    g.bench_function("prometheus_client", |b| {
        b.iter(|| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, &reg).expect("encode");
            black_box(s)
        });
    });
    g.finish();
}

criterion_group!(
    benches,
    json_line,
    filtered_debug,
    caller_latency,
    metrics_render
);
criterion_main!(benches);
