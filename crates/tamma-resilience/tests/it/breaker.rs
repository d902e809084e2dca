//! The breaker driven through every transition by a scripted sequence on a manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tamma_core::{Check, CheckStatus, DurationMs};
use tamma_resilience::{
    BreakerConfig, BreakerRegistry, BreakerState, CircuitBreaker, Error, ManualClock,
    ResilienceConfig, SlidingWindowType, Transition,
};

use crate::common::TestError;

fn config() -> BreakerConfig {
    BreakerConfig {
        failure_rate_threshold: 50.0,
        sliding_window_type: SlidingWindowType::CountBased,
        sliding_window_size: 4,
        minimum_number_of_calls: 4,
        wait_duration_in_open_state: DurationMs::from_secs(10),
        permitted_number_of_calls_in_half_open_state: 2,
        max_wait_duration_in_half_open_state: DurationMs::from_secs(5),
        ..BreakerConfig::default()
    }
}

type Log = Arc<Mutex<Vec<(BreakerState, BreakerState, &'static str, Duration)>>>;

fn recording(b: &CircuitBreaker) -> Log {
    let log: Log = Arc::default();
    let l = Arc::clone(&log);
    b.on_transition(Arc::new(move |t: &Transition| {
        l.lock().unwrap().push((t.from, t.to, t.reason, t.at));
    }));
    log
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn open_retry_after(b: &CircuitBreaker) -> Duration {
    match b.try_acquire() {
        Err(Error::BreakerOpen { retry_after, .. }) => retry_after,
        other => panic!("expected BreakerOpen, got {other:?}"),
    }
}

#[test]
fn scripted_sequence_walks_every_transition_with_exact_timings() {
    use BreakerState::{Closed, HalfOpen, Isolated, Open};
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("orchestrator.register", &config(), clock.shared());
    let log = recording(&b);

    // Closed: three calls are below the minimum, whatever their outcome.
    b.try_acquire().unwrap().success();
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), Closed);
    // The fourth call makes 2 failures of 4 = 50 %: at the threshold, the breaker opens (t = 0).
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), Open);

    // Open: rejected at once, saying when the next trial comes.
    clock.advance(secs(3));
    assert_eq!(open_retry_after(&b), secs(7));
    clock.advance(Duration::from_millis(6_999));
    assert_eq!(open_retry_after(&b), Duration::from_millis(1));

    // t = 10 s: the wait is over; the next call moves it to half-open and is a trial.
    clock.advance(Duration::from_millis(1));
    let t1 = b.try_acquire().unwrap();
    assert_eq!(b.state(), HalfOpen);
    let t2 = b.try_acquire().unwrap();
    // Both trial slots are taken: a third call is rejected until the half-open maximum wait ends.
    clock.advance(secs(1));
    assert_eq!(open_retry_after(&b), secs(4));
    // Both trials fail: open again (t = 11 s), for another 10 s.
    t1.failure();
    assert_eq!(b.state(), HalfOpen);
    t2.failure();
    assert_eq!(b.state(), Open);
    assert_eq!(open_retry_after(&b), secs(10));

    // t = 21 s: half-open; both trials succeed: closed, with an empty window.
    clock.advance(secs(10));
    let t1 = b.try_acquire().unwrap();
    let t2 = b.try_acquire().unwrap();
    t1.success();
    t2.success();
    assert_eq!(b.state(), Closed);
    assert_eq!(b.snapshot().calls, 0);

    // Four failures open it again (t = 21 s); at t = 31 s one trial starts and never finishes.
    for _ in 0..4 {
        b.try_acquire().unwrap().failure();
    }
    assert_eq!(b.state(), Open);
    clock.advance(secs(10));
    let stuck = b.try_acquire().unwrap();
    assert_eq!(b.state(), HalfOpen);
    // t = 36 s: the half-open maximum wait is over: open again, without any call.
    clock.advance(secs(5));
    assert_eq!(b.state(), Open);
    assert_eq!(open_retry_after(&b), secs(10));
    // The stuck trial's late outcome belongs to an old state: ignored.
    stuck.success();
    assert_eq!(b.state(), Open);

    // Operator isolation and reset.
    b.isolate();
    clock.advance(secs(60));
    assert!(matches!(
        b.try_acquire(),
        Err(Error::BreakerIsolated { .. })
    ));
    assert_eq!(b.state(), Isolated);
    b.reset();
    assert_eq!(b.state(), Closed);
    b.try_acquire().unwrap().success();

    let got = log.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            (Closed, Open, "failure_rate", secs(0)),
            (Open, HalfOpen, "wait_elapsed", secs(10)),
            (HalfOpen, Open, "trial_calls_failed", secs(11)),
            (Open, HalfOpen, "wait_elapsed", secs(21)),
            (HalfOpen, Closed, "trial_calls_succeeded", secs(21)),
            (Closed, Open, "failure_rate", secs(21)),
            (Open, HalfOpen, "wait_elapsed", secs(31)),
            (HalfOpen, Open, "half_open_max_wait", secs(36)),
            (Open, Isolated, "isolated", secs(36)),
            (Isolated, Closed, "reset", secs(96)),
        ]
    );
}

#[test]
fn slow_calls_open_the_breaker_when_tracked() {
    let clock = ManualClock::new();
    let cfg = BreakerConfig {
        slow_call_rate_threshold: Some(50.0),
        slow_call_duration_threshold: DurationMs::from_secs(2),
        ..config()
    };
    let b = CircuitBreaker::new("store.query", &cfg, clock.shared());
    let log = recording(&b);
    for i in 0..4 {
        let p = b.try_acquire().unwrap();
        clock.advance(if i % 2 == 0 {
            secs(3)
        } else {
            Duration::from_millis(10)
        });
        p.success();
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(log.lock().unwrap()[0].2, "slow_call_rate");
    let snap = b.snapshot();
    assert_eq!(snap.retry_after, Some(secs(10)));
}

#[test]
fn time_based_window_forgets_old_seconds() {
    let clock = ManualClock::new();
    let cfg = BreakerConfig {
        sliding_window_type: SlidingWindowType::TimeBased,
        sliding_window_size: 10,
        minimum_number_of_calls: 3,
        ..config()
    };
    let b = CircuitBreaker::new("http.get", &cfg, clock.shared());
    b.try_acquire().unwrap().failure();
    clock.advance(secs(1));
    b.try_acquire().unwrap().failure();
    // Eleven seconds later both failures have left the window: one more failure is 1 call, no rate.
    clock.advance(secs(11));
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().calls, 1);
    // Two more inside the window: 3 calls, all failed.
    b.try_acquire().unwrap().failure();
    clock.advance(secs(2));
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test]
async fn non_retryable_errors_do_not_count_as_failures() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new("api.create", &config(), clock.shared());
    for _ in 0..10 {
        let r: Result<(), TestError> = b.call(|| async { Err(TestError::Invalid) }).await;
        assert!(matches!(r, Err(TestError::Invalid)));
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().failed_calls, 0);
    for _ in 0..4 {
        let _ = b
            .call(|| async { Err::<(), _>(TestError::Transient) })
            .await;
    }
    assert_eq!(b.state(), BreakerState::Open);
    // Open: the operation is not even called.
    let r: Result<(), TestError> = b.call(|| async { panic!("must not run") }).await;
    assert!(matches!(
        r,
        Err(TestError::Resilience(Error::BreakerOpen { .. }))
    ));
}

#[tokio::test]
async fn registry_shares_handles_applies_overrides_and_reports_health() {
    let clock = ManualClock::new();
    let cfg: ResilienceConfig = serde_json::from_value(serde_json::json!({
        "breaker": {"slidingWindowSize": 4, "minimumNumberOfCalls": 4},
        "operations": {"events.append": {"breaker": {"minimumNumberOfCalls": 1}}}
    }))
    .unwrap();
    let reg = BreakerRegistry::new(&cfg, clock.shared());
    let a = reg.get("events.append");
    assert!(Arc::ptr_eq(&a, &reg.get_for("events", "append")));
    assert_eq!(reg.check().await.status, CheckStatus::Healthy);
    // The override: one failure is enough.
    a.try_acquire().unwrap().failure();
    assert_eq!(a.state(), BreakerState::Open);
    let other = reg.get("forwarder.ship");
    other.try_acquire().unwrap().failure();
    assert_eq!(other.state(), BreakerState::Closed);
    let r = reg.check().await;
    assert_eq!(r.status, CheckStatus::Degraded);
    assert!(r.output.unwrap().contains("events.append (open)"));
    assert_eq!(r.observed_value, Some(serde_json::json!(1)));
    a.reset();
    assert_eq!(reg.check().await.status, CheckStatus::Healthy);
}
