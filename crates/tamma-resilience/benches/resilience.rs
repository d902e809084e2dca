//! Cost of resilience per call: bare call, retry succeeding first time, closed breaker (slow-call
//! tracking off and on), retry + breaker, and an open breaker's rejection. Before measuring time it
//! counts heap allocations per call with a counting global allocator.
//!
//! Run: `cargo bench -p tamma-resilience --bench resilience -- --warm-up-time 1 --measurement-time 3`

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::alloc::System;
use std::future::Future;
use std::hint::black_box;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tamma_core::DurationMs;
use tamma_resilience::{
    BreakerConfig, CircuitBreaker, MonotonicClock, Operation, RetryConfig, RetryPolicy,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Polls a future that completes without waiting (every success path here does) once.
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked call must complete without waiting"),
    }
}

async fn service(x: u64) -> Result<u64, io::Error> {
    Ok(black_box(x))
}

struct Setup {
    retry: RetryPolicy,
    breaker: Arc<CircuitBreaker>,
    slow_breaker: Arc<CircuitBreaker>,
    open: Arc<CircuitBreaker>,
    op: Operation,
}

fn setup() -> Setup {
    let clock = MonotonicClock::shared();
    let retry = RetryPolicy::new("bench.op", &RetryConfig::default());
    let breaker = Arc::new(CircuitBreaker::new(
        "bench.op",
        &BreakerConfig::default(),
        Arc::clone(&clock),
    ));
    let slow_cfg = BreakerConfig {
        slow_call_rate_threshold: Some(50.0),
        ..BreakerConfig::default()
    };
    let slow_breaker = Arc::new(CircuitBreaker::new(
        "bench.slow",
        &slow_cfg,
        Arc::clone(&clock),
    ));
    let open_cfg = BreakerConfig {
        sliding_window_size: 1,
        minimum_number_of_calls: 1,
        wait_duration_in_open_state: DurationMs::from_secs(3600),
        ..BreakerConfig::default()
    };
    let open = Arc::new(CircuitBreaker::new("bench.open", &open_cfg, clock));
    open.try_acquire()
        .expect("a new breaker is closed")
        .failure();
    assert!(open.try_acquire().is_err());
    let op = Operation {
        retry: retry.clone(),
        breaker: Arc::clone(&breaker),
    };
    Setup {
        retry,
        breaker,
        slow_breaker,
        open,
        op,
    }
}

fn allocations_per_call(name: &str, mut f: impl FnMut()) {
    const N: usize = 10_000;
    f();
    let region = Region::new(GLOBAL);
    for _ in 0..N {
        f();
    }
    let c = region.change();
    // Counts are small: the float conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let per = c.allocations as f64 / N as f64;
    eprintln!("allocations per call  {name:<28} {per:.3}");
}

fn report_allocations(s: &Setup) {
    allocations_per_call("bare", || drop(run(service(1))));
    allocations_per_call("retry_first_try", || {
        drop(run(s.retry.retry(|| service(1))));
    });
    allocations_per_call("breaker_closed", || {
        drop(run(s.breaker.call(|| service(1))));
    });
    allocations_per_call("breaker_closed_slow_tracking", || {
        drop(run(s.slow_breaker.call(|| service(1))));
    });
    allocations_per_call("retry_and_breaker", || drop(run(s.op.call(|| service(1)))));
    allocations_per_call("open_breaker_rejection", || {
        drop(black_box(s.open.try_acquire()));
    });
}

fn benches(c: &mut Criterion) {
    let s = setup();
    report_allocations(&s);
    let mut g = c.benchmark_group("resilience");
    g.bench_function("bare", |b| b.iter(|| run(service(1))));
    g.bench_function("retry_first_try", |b| {
        b.iter(|| run(s.retry.retry(|| service(1))));
    });
    g.bench_function("breaker_closed", |b| {
        b.iter(|| run(s.breaker.call(|| service(1))));
    });
    g.bench_function("breaker_closed_slow_tracking", |b| {
        b.iter(|| run(s.slow_breaker.call(|| service(1))));
    });
    g.bench_function("retry_and_breaker", |b| {
        b.iter(|| run(s.op.call(|| service(1))));
    });
    g.bench_function("open_breaker_rejection", |b| {
        b.iter(|| black_box(s.open.try_acquire()).is_err());
    });
    g.bench_function("open_breaker_call", |b| {
        b.iter(|| run(s.open.call(|| service(1))).is_err());
    });
    g.finish();
    // Keep the breakers closed/open as set up (sanity: nothing above tripped them).
    assert_eq!(s.breaker.state(), tamma_resilience::BreakerState::Closed);
}

criterion_group!(resilience, benches);
criterion_main!(resilience);
