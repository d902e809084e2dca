//! Retry with exponential backoff and full jitter, on top of `backon`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use rand::Rng;
use tamma_core::metric_names::RESILIENCE_RETRIES_TOTAL;

use crate::class::Classify;
use crate::config::RetryConfig;

/// A retry policy for one operation: exponential backoff with full jitter, a cap per wait, a maximum
/// number of attempts and a time budget, honouring the error's `Retry-After`.
///
/// Only errors whose [`class`](Classify::class) is `retryable` are retried. Every retry is logged
/// (`tracing` at `warn`, target `tamma_resilience::retry`) and counted in
/// [`RESILIENCE_RETRIES_TOTAL`] by `operation` and `category`.
///
/// The retry loop is `backon`'s; this type supplies the backoff (full jitter, which `backon`'s own
/// builders do not offer: their jitter adds up to 100 % on top of the delay), the Retry-After and
/// time-budget adjustment, and the logging. A call that succeeds at once allocates nothing and reads
/// no clock.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// use std::io;
/// use tamma_resilience::{RetryConfig, RetryPolicy};
///
/// let policy = RetryPolicy::new("orchestrator.register", &RetryConfig::default());
/// let mut calls = 0;
/// let out: Result<u32, io::Error> = policy
///     .retry(|| {
///         calls += 1;
///         let n = calls;
///         async move {
///             if n < 3 { Err(io::Error::from(io::ErrorKind::ConnectionRefused)) } else { Ok(n) }
///         }
///     })
///     .await;
/// assert_eq!(out.unwrap(), 3);
/// # });
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    operation: Arc<str>,
    backoff: Backoff,
    max_elapsed: Option<Duration>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("operation", &self.operation)
            .field("max_attempts", &self.backoff.max_retries.saturating_add(1))
            .field("initial_delay", &self.backoff.initial)
            .field("max_delay", &self.backoff.max_delay)
            .field("multiplier", &self.backoff.multiplier)
            .field("max_elapsed", &self.max_elapsed)
            .field("jitter", &self.backoff.jitter)
            .finish()
    }
}

impl RetryPolicy {
    /// The policy `config` describes, for `operation` (`component.operation`, used in logs and
    /// metrics). Out-of-range values (which validation reports) are clamped: at least one attempt, a
    /// multiplier of at least 1, a cap of at least the initial delay.
    pub fn new(operation: impl Into<Arc<str>>, config: &RetryConfig) -> Self {
        let initial = config.initial_delay.as_duration();
        Self {
            operation: operation.into(),
            backoff: Backoff {
                max_retries: config.max_attempts.max(1) - 1,
                initial,
                max_delay: config.max_delay.as_duration().max(initial),
                multiplier: if config.multiplier.is_finite() {
                    config.multiplier.max(1.0)
                } else {
                    1.0
                },
                jitter: config.jitter,
                retries: 0,
                bound: initial,
            },
            max_elapsed: (!config.max_elapsed.is_zero()).then(|| config.max_elapsed.as_duration()),
        }
    }

    /// The operation name used in logs and metrics.
    #[must_use]
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// Attempts in all, the first included.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        self.backoff.max_retries.saturating_add(1)
    }

    /// The same policy with `n` attempts in all (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.backoff.max_retries = n.max(1) - 1;
        self
    }

    /// The same policy with full jitter on or off.
    #[must_use]
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.backoff.jitter = jitter;
        self
    }

    /// The same policy with a different time budget (`None` = only the attempt count stops).
    #[must_use]
    pub fn with_max_elapsed(mut self, max_elapsed: Option<Duration>) -> Self {
        self.max_elapsed = max_elapsed;
        self
    }

    /// The upper bound of the wait before retry number `retry` (0-based), before jitter:
    /// `min(maxDelay, initialDelay × multiplier^retry)`.
    #[must_use]
    pub fn delay_bound(&self, retry: u32) -> Duration {
        let mut b = self.backoff.clone();
        for _ in 0..retry {
            b.grow();
        }
        b.bound
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, runs out of attempts, or runs
    /// out of time budget; returns the last result. `op` is called once per attempt and must build
    /// a fresh future each time.
    ///
    /// The wait before a retry is the error's `retry_after` when it has one, else the jittered
    /// backoff. A retry whose wait would end past the time budget (counted from the first failure)
    /// is not started: the error is returned at once.
    pub fn retry<'a, T, E, Fut, F>(&'a self, op: F) -> impl Future<Output = Result<T, E>> + 'a
    where
        F: FnMut() -> Fut + 'a,
        Fut: Future<Output = Result<T, E>> + 'a,
        E: Classify + fmt::Display + 'a,
        T: 'a,
    {
        let operation: &'a str = &self.operation;
        let max_elapsed = self.max_elapsed;
        let max_attempts = self.max_attempts();
        let mut first_failure: Option<tokio::time::Instant> = None;
        let mut attempt: u32 = 1;
        op.retry(self.backoff.clone())
            .when(|e: &E| e.class().retryable)
            .adjust(move |e: &E, next: Option<Duration>| {
                let class = e.class();
                let Some(backoff) = next else {
                    tracing::warn!(
                        target: "tamma_resilience::retry",
                        operation,
                        attempts = max_attempts,
                        category = class.category.as_str(),
                        error = %e,
                        "giving up: all attempts failed"
                    );
                    return None;
                };
                let wait = class.retry_after.unwrap_or(backoff);
                let now = tokio::time::Instant::now();
                let start = *first_failure.get_or_insert(now);
                if let Some(budget) = max_elapsed {
                    let spent = now.saturating_duration_since(start);
                    if spent.saturating_add(wait) > budget {
                        tracing::warn!(
                            target: "tamma_resilience::retry",
                            operation,
                            category = class.category.as_str(),
                            spent_ms = u64::try_from(spent.as_millis()).unwrap_or(u64::MAX),
                            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                            budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
                            error = %e,
                            "giving up: the next retry would end past the time budget"
                        );
                        return None;
                    }
                }
                Some(wait)
            })
            .notify(move |e: &E, wait: Duration| {
                let class = e.class();
                attempt += 1;
                tracing::warn!(
                    target: "tamma_resilience::retry",
                    operation,
                    attempt,
                    max_attempts,
                    category = class.category.as_str(),
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    retry_after = class.retry_after.is_some(),
                    error = %e,
                    "retrying"
                );
                metrics::counter!(
                    RESILIENCE_RETRIES_TOTAL,
                    "operation" => operation.to_owned(),
                    "category" => class.category.as_str()
                )
                .increment(1);
            })
    }
}

/// The backoff iterator handed to `backon`: exponential upper bound, capped, full jitter.
#[derive(Clone, Debug)]
struct Backoff {
    max_retries: u32,
    initial: Duration,
    max_delay: Duration,
    multiplier: f64,
    jitter: bool,
    /// Retries handed out so far.
    retries: u32,
    /// The current upper bound.
    bound: Duration,
}

impl Backoff {
    fn grow(&mut self) {
        let next = self.bound.as_secs_f64() * self.multiplier;
        self.bound = if next >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(next)
        };
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.retries >= self.max_retries {
            return None;
        }
        if self.retries > 0 {
            self.grow();
        }
        self.retries += 1;
        if !self.jitter {
            return Some(self.bound);
        }
        let max = u64::try_from(self.bound.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(rand::rng().random_range(0..=max)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_core::DurationMs;

    fn cfg(attempts: u32, jitter: bool) -> RetryConfig {
        RetryConfig {
            max_attempts: attempts,
            initial_delay: DurationMs::from_millis(100),
            max_delay: DurationMs::from_millis(500),
            multiplier: 2.0,
            max_elapsed: DurationMs::from_millis(0),
            jitter,
        }
    }

    #[test]
    fn bounds_grow_and_cap() {
        let p = RetryPolicy::new("a.b", &cfg(10, false));
        let got: Vec<u128> = p.backoff.clone().map(|d| d.as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 500, 500, 500, 500, 500, 500]);
        assert_eq!(p.delay_bound(2), Duration::from_millis(400));
    }

    #[test]
    fn full_jitter_stays_below_the_bound() {
        let p = RetryPolicy::new("a.b", &cfg(200, true));
        let mut b = p.backoff.clone();
        let mut seen_low = false;
        for i in 0..199u32 {
            let d = b.next().unwrap();
            let bound = p.delay_bound(i);
            assert!(d <= bound, "{d:?} > {bound:?}");
            seen_low |= d < bound / 2;
        }
        assert!(b.next().is_none());
        assert!(
            seen_low,
            "full jitter should sometimes wait less than half the bound"
        );
    }

    #[test]
    fn one_attempt_never_retries() {
        let p = RetryPolicy::new("a.b", &cfg(1, true));
        assert_eq!(p.backoff.clone().count(), 0);
        assert_eq!(p.max_attempts(), 1);
    }
}
