//! Retry: Retry-After, attempt and time limits, non-retryable errors, retry around a breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tamma_core::DurationMs;
use tamma_resilience::{
    BreakerConfig, CircuitBreaker, ManualClock, Operation, RetryConfig, RetryPolicy, TokioClock,
};
use tokio::time::Instant;

use crate::common::TestError;

fn policy(attempts: u32, delay_ms: u64, multiplier: f64, budget_ms: u64) -> RetryPolicy {
    RetryPolicy::new(
        "test.op",
        &RetryConfig {
            max_attempts: attempts,
            initial_delay: DurationMs::from_millis(delay_ms),
            max_delay: DurationMs::from_secs(60),
            multiplier,
            max_elapsed: DurationMs::from_millis(budget_ms),
            jitter: false,
        },
    )
}

/// Runs `policy` on an operation that fails with `err()` until attempt `ok_at` (never if 0);
/// returns the outcome and the (paused) times of each attempt relative to the start.
async fn run(
    policy: &RetryPolicy,
    ok_at: u32,
    err: impl Fn() -> TestError,
) -> (Result<u32, TestError>, Vec<Duration>) {
    let start = Instant::now();
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let n = AtomicU32::new(0);
    let r = policy
        .retry(|| {
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            times.lock().unwrap().push(start.elapsed());
            let e = err();
            async move { if i == ok_at { Ok(i) } else { Err(e) } }
        })
        .await;
    let t = times.lock().unwrap().clone();
    (r, t)
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_over_the_backoff() {
    let p = policy(3, 100, 2.0, 0);
    let (r, times) = run(&p, 3, || TestError::RateLimited(Duration::from_secs(7))).await;
    assert_eq!(r.unwrap(), 3);
    assert_eq!(
        times,
        vec![
            Duration::ZERO,
            Duration::from_secs(7),
            Duration::from_secs(14)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn backs_off_exponentially_and_stops_at_max_attempts() {
    let p = policy(4, 100, 2.0, 0);
    let (r, times) = run(&p, 0, || TestError::Transient).await;
    assert!(matches!(r, Err(TestError::Transient)));
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![0, 100, 300, 700]);
}

#[tokio::test(start_paused = true)]
async fn stops_when_the_next_wait_would_pass_the_time_budget() {
    // Waits of 400 ms, budget 1 s from the first failure: retries at 0.4 s and 0.8 s; the next
    // would end at 1.2 s.
    let p = policy(100, 400, 1.0, 1000);
    let (r, times) = run(&p, 0, || TestError::Transient).await;
    assert!(r.is_err());
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![0, 400, 800]);
    // A Retry-After longer than the whole budget: give up at once instead of waiting.
    let (r, times) = run(&p, 0, || TestError::RateLimited(Duration::from_secs(5))).await;
    assert!(matches!(r, Err(TestError::RateLimited(_))));
    assert_eq!(times.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_are_never_retried() {
    let p = policy(10, 1, 2.0, 0);
    let (r, times) = run(&p, 0, || TestError::Invalid).await;
    assert!(matches!(r, Err(TestError::Invalid)));
    assert_eq!(times.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn jittered_waits_stay_under_their_bounds() {
    let p = policy(6, 1000, 2.0, 0).with_jitter(true);
    let (r, times) = run(&p, 0, || TestError::Transient).await;
    assert!(r.is_err());
    for (i, w) in times.windows(2).enumerate() {
        let wait = w[1] - w[0];
        let bound = p.delay_bound(u32::try_from(i).unwrap());
        assert!(
            wait <= bound,
            "retry {i}: waited {wait:?} > bound {bound:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn std_io_errors_retry_without_wrapping() {
    let p = policy(3, 10, 2.0, 0);
    let n = AtomicU32::new(0);
    let r: Result<(), std::io::Error> = p
        .retry(|| {
            n.fetch_add(1, Ordering::SeqCst);
            async { Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)) }
        })
        .await;
    assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(n.load(Ordering::SeqCst), 3);
    // Permission denied is not transient.
    n.store(0, Ordering::SeqCst);
    let _ = p
        .retry(|| {
            n.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(std::io::Error::from(std::io::ErrorKind::PermissionDenied)) }
        })
        .await;
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_waits_for_an_open_breaker_only_within_budget() {
    let clock = TokioClock::shared();
    let cfg = BreakerConfig {
        sliding_window_size: 2,
        minimum_number_of_calls: 2,
        wait_duration_in_open_state: DurationMs::from_secs(1),
        permitted_number_of_calls_in_half_open_state: 1,
        ..BreakerConfig::default()
    };
    let breaker = Arc::new(CircuitBreaker::new("dep.call", &cfg, clock));
    let op = Operation {
        retry: policy(5, 10, 1.0, 0),
        breaker: Arc::clone(&breaker),
    };
    let calls = AtomicU32::new(0);
    // Two failures open the breaker; the third attempt is rejected (not called) and retried after
    // the breaker's retry-after; the half-open trial succeeds.
    let r: Result<u32, TestError> = op
        .call(|| {
            let i = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if i <= 2 {
                    Err(TestError::Transient)
                } else {
                    Ok(i)
                }
            }
        })
        .await;
    assert_eq!(r.unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(breaker.state(), tamma_resilience::BreakerState::Closed);
}

#[tokio::test]
async fn open_breaker_rejection_past_the_budget_fails_fast() {
    let clock = ManualClock::new();
    let cfg = BreakerConfig {
        sliding_window_size: 1,
        minimum_number_of_calls: 1,
        ..BreakerConfig::default()
    };
    let breaker = Arc::new(CircuitBreaker::new("dep.call", &cfg, clock.shared()));
    breaker.try_acquire().unwrap().failure();
    // The breaker waits 30 s; the budget is 1 s: no wait, no call.
    let op = Operation {
        retry: policy(5, 10, 1.0, 1000),
        breaker,
    };
    let r: Result<(), TestError> = op.call(|| async { panic!("must not be called") }).await;
    assert!(matches!(
        r,
        Err(TestError::Resilience(
            tamma_resilience::Error::BreakerOpen { .. }
        ))
    ));
}
