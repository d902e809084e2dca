//! A flaky service call wrapped in retry and a circuit breaker, configured like the `resilience`
//! section of the config file: transient errors are retried with backoff, a rate limit's
//! Retry-After is honoured, an outage opens the breaker — the failures of the earlier calls count in
//! its window too, so the first outage call already tips it — (calls then fail fast, saying when the
//! next trial is), the health check turns degraded, and the breaker closes once the service is back.
//!
//! Run with `cargo run -p tamma-examples --example resilience`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tamma_core::Check;
use tamma_resilience::{
    Category, Classify, ErrorClass, MonotonicClock, Resilience, ResilienceConfig,
};

/// The service client's error type, classified for retry and breakers.
#[derive(Debug, thiserror::Error)]
enum PriceError {
    #[error("connection refused")]
    Refused,
    #[error("rate limited")]
    RateLimited(Duration),
    #[error("unknown product {0:?}")]
    UnknownProduct(String),
    #[error(transparent)]
    Resilience(#[from] tamma_resilience::Error),
}

impl Classify for PriceError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Refused => ErrorClass::of(Category::Network),
            Self::RateLimited(after) => {
                ErrorClass::of(Category::RateLimit).with_retry_after(*after)
            }
            Self::UnknownProduct(_) => ErrorClass::of(Category::Validation),
            Self::Resilience(e) => e.class(),
        }
    }
}

/// What the fake service does on each call.
#[derive(Clone, Copy)]
enum Mode {
    Healthy,
    FailTwice,
    RateLimitOnce,
    Down,
}

struct PriceService {
    mode: AtomicU32,
    calls: AtomicU32,
}

impl PriceService {
    fn set(&self, mode: Mode) {
        self.mode.store(mode as u32, Ordering::SeqCst);
        self.calls.store(0, Ordering::SeqCst);
    }

    async fn price(&self, product: &str) -> Result<u64, PriceError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        if product == "unicorn" {
            return Err(PriceError::UnknownProduct(product.to_owned()));
        }
        match self.mode.load(Ordering::SeqCst) {
            m if m == Mode::FailTwice as u32 && n < 2 => Err(PriceError::Refused),
            m if m == Mode::RateLimitOnce as u32 && n == 0 => {
                Err(PriceError::RateLimited(Duration::from_millis(300)))
            }
            m if m == Mode::Down as u32 => Err(PriceError::Refused),
            _ => Ok(42),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The `resilience` config section (normally part of tamma's config file).
    let config: ResilienceConfig = serde_json::from_value(serde_json::json!({
        "retry": {"maxAttempts": 3, "initialDelay": "50ms", "maxDelay": "200ms", "maxElapsed": "500ms"},
        "breaker": {"slidingWindowSize": 8, "minimumNumberOfCalls": 8, "waitDurationInOpenState": "1s",
                    "permittedNumberOfCallsInHalfOpenState": 2},
        "operations": {"pricing.quote": {"retry": {"maxAttempts": 4}}}
    }))?;
    let resilience = Resilience::new(config, MonotonicClock::shared())?;
    // Once, at start-up: the operation's retry policy and breaker.
    let quote = resilience.operation("pricing.quote");
    let service = Arc::new(PriceService {
        mode: AtomicU32::new(Mode::Healthy as u32),
        calls: AtomicU32::new(0),
    });

    let call = |product: &'static str| {
        let service = Arc::clone(&service);
        let quote = &quote;
        async move {
            let started = Instant::now();
            let out = quote
                .call(|| {
                    let s = Arc::clone(&service);
                    async move { s.price(product).await }
                })
                .await;
            let calls = service.calls.load(Ordering::SeqCst);
            let out = match out {
                Ok(v) => format!("Ok({v})"),
                Err(e) => format!("Err: {e}"),
            };
            (out, calls, started.elapsed())
        }
    };

    for (label, mode, product) in [
        ("healthy", Mode::Healthy, "apple"),
        ("two transient failures", Mode::FailTwice, "apple"),
        (
            "rate limited once (Retry-After 300ms)",
            Mode::RateLimitOnce,
            "apple",
        ),
        ("invalid input (never retried)", Mode::Healthy, "unicorn"),
    ] {
        service.set(mode);
        let (out, calls, took) = call(product).await;
        eprintln!("{label:<40} -> {out} after {calls} service call(s), {took:.1?}");
    }

    // A sustained outage: the failures open the breaker; the retry does not wait for it (its 1 s wait
    // is past the retry budget), so calls fail fast without reaching the service.
    service.set(Mode::Down);
    for i in 1..=4 {
        let (out, calls, took) = call("apple").await;
        eprintln!("outage call {i:<29} -> {out} ({calls} service call(s) so far, {took:.1?})");
    }
    let health = resilience.breakers().check().await;
    eprintln!(
        "health {:?}: {}",
        health.status,
        health.output.unwrap_or_default()
    );

    // The service comes back; after the open wait, trial calls close the breaker.
    service.set(Mode::Healthy);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 1..=2 {
        let (out, _, _) = call("apple").await;
        eprintln!(
            "recovery call {i:<27} -> {out}, breaker {}",
            quote.breaker.state()
        );
    }
    let health = resilience.breakers().check().await;
    eprintln!("health {:?}", health.status);
    Ok(())
}
