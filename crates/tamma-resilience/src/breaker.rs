//! The circuit breaker (resilience4j semantics) with an injectable clock.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tamma_core::metric_names::{
    RESILIENCE_BREAKER_REJECTED_TOTAL, RESILIENCE_BREAKER_STATE,
    RESILIENCE_BREAKER_TRANSITIONS_TOTAL,
};

use crate::class::Classify;
use crate::clock::Clock;
use crate::config::{BreakerConfig, SlidingWindowType};
use crate::error::Error;
use crate::window::{CountWindow, FAILED, SLOW, TimeWindow, Totals};

/// The state of a circuit breaker. The numbers are the values of the state gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; outcomes are recorded in the sliding window. (0)
    Closed,
    /// Calls are rejected at once until the wait in open state is over. (1)
    Open,
    /// A limited number of trial calls go through; their outcome closes or re-opens the breaker. (2)
    HalfOpen,
    /// Forced open by an operator ([`CircuitBreaker::isolate`]) until [`CircuitBreaker::reset`]. (3)
    Isolated,
}

impl BreakerState {
    /// The lowercase name used in logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Isolated => "isolated",
        }
    }

    const fn code(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::Isolated => 3,
        }
    }

    const fn from_code(c: u64) -> Self {
        match c & 0xff {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Isolated,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change, as handed to transition listeners.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Why: `failure_rate`, `slow_call_rate`, `trial_calls_succeeded`, `trial_calls_failed`,
    /// `wait_elapsed`, `half_open_max_wait`, `isolated`, `reset`.
    pub reason: &'static str,
    /// Failure rate (percent) over the window that decided, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Slow-call rate (percent) over the window that decided, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_rate: Option<f64>,
    /// The breaker clock's time of the change.
    #[serde(skip)]
    pub at: Duration,
}

/// A listener called after every state change (outside the breaker's lock).
pub type TransitionListener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// A snapshot of a breaker for health checks and dashboards.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerSnapshot {
    /// The breaker's name.
    pub name: Arc<str>,
    /// Its state.
    pub state: BreakerState,
    /// Calls in the window that decides the next transition (the sliding window when closed, the
    /// trial calls when half-open).
    pub calls: u32,
    /// Failed calls among them.
    pub failed_calls: u32,
    /// Slow calls among them.
    pub slow_calls: u32,
    /// Failure rate in percent (0 when no calls).
    pub failure_rate: f64,
    /// Slow-call rate in percent (0 when no calls).
    pub slow_call_rate: f64,
    /// When open: how long until trial calls are let through.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_ms")]
    pub retry_after: Option<Duration>,
}

#[allow(clippy::ref_option)] // serde's `serialize_with` hands us `&Option<T>`.
fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// Settings in hot-path form.
#[derive(Debug, Clone)]
struct Settings {
    enabled: bool,
    failure_rate_threshold: f64,
    slow_rate_threshold: Option<f64>,
    slow_call_duration: Duration,
    time_based: bool,
    minimum_calls: u32,
    wait_in_open: Duration,
    half_open_permits: u32,
    half_open_max_wait: Duration,
}

#[derive(Debug)]
enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

#[derive(Debug)]
struct Inner {
    window: Window,
    /// Outcomes of the trial calls in half-open.
    trial: Totals,
    /// Trial permits handed out in the current half-open state.
    trial_permits: u32,
    /// When the current state was entered (breaker clock).
    since: Duration,
}

/// A circuit breaker for one `component.operation`, with resilience4j's semantics:
///
/// - **closed**: calls go through; each outcome enters a count- or time-based sliding window. Once
///   the window holds at least `minimumNumberOfCalls`, the breaker opens when the failure rate (or,
///   if enabled, the slow-call rate) is at or above its threshold.
/// - **open**: calls are rejected at once with [`Error::BreakerOpen`], which says how long until the
///   next trial. After `waitDurationInOpenState` the next call moves it to half-open.
/// - **half-open**: `permittedNumberOfCallsInHalfOpenState` trial calls go through (others are
///   rejected); when all have finished, the same thresholds over them close the breaker (window
///   cleared) or open it again. If the trials do not finish within `maxWaitDurationInHalfOpenState`,
///   it opens again.
/// - **isolated**: forced open by an operator until [`reset`](Self::reset).
///
/// Only errors whose class is `retryable` count as failures; a non-retryable error (validation,
/// business) means the other side answered, and counts as a success. Outcomes of calls admitted
/// before the last state change are ignored.
///
/// The hot path is lock-free to admit a call (one atomic load when closed) and takes one short,
/// uncontended lock to record its outcome; nothing allocates. Every state change is logged (target
/// `tamma_resilience::breaker`), counted, reflected in the state gauge and handed to listeners.
pub struct CircuitBreaker {
    name: Arc<str>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    /// `generation << 8 | state code`: one load tells both.
    state: AtomicU64,
    /// When open: the breaker-clock time (ns) at which trial calls start.
    open_until: AtomicU64,
    inner: Mutex<Inner>,
    listeners: RwLock<Vec<TransitionListener>>,
    gauge: metrics::Gauge,
    rejected: metrics::Counter,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.current().0)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the breaker decided about one permit's outcome.
struct Decided {
    transition: Option<Transition>,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (`component.operation`) with `config`'s settings, reading time
    /// from `clock`. The metric handles are registered now: install the metrics recorder before
    /// building breakers. Out-of-range settings (which validation reports) are clamped to the
    /// nearest sane value.
    pub fn new(name: impl Into<Arc<str>>, config: &BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        let name: Arc<str> = name.into();
        let size = usize::try_from(config.sliding_window_size.max(1)).unwrap_or(usize::MAX);
        let time_based = config.sliding_window_type == SlidingWindowType::TimeBased;
        let now = clock.now();
        let window = if time_based {
            Window::Time(TimeWindow::new(
                size.min(crate::config::MAX_TIME_WINDOW_SECONDS as usize),
            ))
        } else {
            Window::Count(CountWindow::new(
                size.min(crate::config::MAX_COUNT_WINDOW as usize),
            ))
        };
        let gauge = metrics::gauge!(RESILIENCE_BREAKER_STATE, "breaker" => Arc::clone(&name));
        gauge.set(0.0);
        let rejected =
            metrics::counter!(RESILIENCE_BREAKER_REJECTED_TOTAL, "breaker" => Arc::clone(&name));
        Self {
            settings: Settings {
                enabled: config.enabled,
                failure_rate_threshold: config
                    .failure_rate_threshold
                    .clamp(f64::MIN_POSITIVE, 100.0),
                slow_rate_threshold: config
                    .slow_call_rate_threshold
                    .map(|t| t.clamp(f64::MIN_POSITIVE, 100.0)),
                slow_call_duration: config.slow_call_duration_threshold.as_duration(),
                time_based,
                minimum_calls: config.minimum_number_of_calls.max(1),
                wait_in_open: config
                    .wait_duration_in_open_state
                    .as_duration()
                    .max(Duration::from_nanos(1)),
                half_open_permits: config.permitted_number_of_calls_in_half_open_state.max(1),
                half_open_max_wait: config
                    .max_wait_duration_in_half_open_state
                    .as_duration()
                    .max(Duration::from_nanos(1)),
            },
            name,
            clock,
            state: AtomicU64::new(BreakerState::Closed.code()),
            open_until: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                window,
                trial: Totals::default(),
                trial_permits: 0,
                since: now,
            }),
            listeners: RwLock::new(Vec::new()),
            gauge,
            rejected,
        }
    }

    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a listener called after every state change.
    pub fn on_transition(&self, listener: TransitionListener) {
        self.listeners.write().push(listener);
    }

    #[inline]
    fn current(&self) -> (BreakerState, u64) {
        let s = self.state.load(Ordering::Acquire);
        (BreakerState::from_code(s), s >> 8)
    }

    fn slow_tracking(&self) -> bool {
        self.settings.slow_rate_threshold.is_some()
    }

    /// The current state, after applying a due time-driven change (half-open past its maximum wait
    /// opens again). An open breaker whose wait is over reports `open` until the next call.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        let (state, generation) = self.current();
        if state == BreakerState::HalfOpen {
            let now = self.clock.now();
            let t = {
                let mut inner = self.inner.lock();
                self.half_open_timeout(&mut inner, generation, now)
            };
            if let Some(t) = t {
                self.announce(&t);
                return self.current().0;
            }
        }
        state
    }

    /// Asks to make a call. `Ok` carries a [`Permit`] to report the outcome with; `Err` is
    /// [`Error::BreakerOpen`] (with the time until the next trial) or [`Error::BreakerIsolated`].
    ///
    /// # Errors
    /// When the breaker is open, isolated, or half-open with all trial calls in flight.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Error> {
        let raw = self.state.load(Ordering::Acquire);
        if raw & 0xff == 0 || !self.settings.enabled {
            // Closed: the common case, one atomic load.
            let start = if self.slow_tracking() {
                Some(self.clock.now())
            } else {
                None
            };
            return Ok(Permit {
                breaker: self,
                token: raw,
                start,
                done: false,
            });
        }
        self.acquire_slow(raw)
    }

    #[cold]
    fn acquire_slow(&self, mut raw: u64) -> Result<Permit<'_>, Error> {
        loop {
            let state = BreakerState::from_code(raw);
            let generation = raw >> 8;
            match state {
                BreakerState::Closed => {
                    let start = if self.slow_tracking() {
                        Some(self.clock.now())
                    } else {
                        None
                    };
                    return Ok(Permit {
                        breaker: self,
                        token: raw,
                        start,
                        done: false,
                    });
                }
                BreakerState::Isolated => {
                    self.rejected.increment(1);
                    return Err(Error::BreakerIsolated {
                        name: Arc::clone(&self.name),
                    });
                }
                BreakerState::Open => {
                    let now = self.clock.now();
                    let until = self.open_until.load(Ordering::Acquire);
                    let now_ns = nanos(now);
                    if now_ns < until {
                        self.rejected.increment(1);
                        return Err(Error::BreakerOpen {
                            name: Arc::clone(&self.name),
                            retry_after: Duration::from_nanos(until - now_ns),
                        });
                    }
                    let t = {
                        let mut inner = self.inner.lock();
                        if self.state.load(Ordering::Acquire) == raw {
                            Some(self.transition(
                                &mut inner,
                                BreakerState::HalfOpen,
                                now,
                                "wait_elapsed",
                                None,
                            ))
                        } else {
                            None
                        }
                    };
                    if let Some(t) = t {
                        self.announce(&t);
                    }
                    raw = self.state.load(Ordering::Acquire);
                }
                BreakerState::HalfOpen => {
                    let now = self.clock.now();
                    let (t, admitted, deadline) = {
                        let mut inner = self.inner.lock();
                        let t = self.half_open_timeout(&mut inner, generation, now);
                        let admitted = t.is_none()
                            && self.state.load(Ordering::Acquire) == raw
                            && inner.trial_permits < self.settings.half_open_permits;
                        if admitted {
                            inner.trial_permits += 1;
                        }
                        (
                            t,
                            admitted,
                            inner.since.saturating_add(self.settings.half_open_max_wait),
                        )
                    };
                    if let Some(t) = t {
                        self.announce(&t);
                    }
                    if admitted {
                        let start = if self.slow_tracking() {
                            Some(now)
                        } else {
                            None
                        };
                        return Ok(Permit {
                            breaker: self,
                            token: raw,
                            start,
                            done: false,
                        });
                    }
                    let again = self.state.load(Ordering::Acquire);
                    if again != raw {
                        raw = again;
                        continue;
                    }
                    // All trial calls are in flight: they decide within the half-open maximum wait.
                    self.rejected.increment(1);
                    return Err(Error::BreakerOpen {
                        name: Arc::clone(&self.name),
                        retry_after: deadline.saturating_sub(now),
                    });
                }
            }
        }
    }

    /// Runs `op` through the breaker: rejected at once when open (the error converted into `E`),
    /// otherwise run, and its outcome recorded (only retryable errors count as failures).
    ///
    /// # Errors
    /// The breaker's rejection (as `E`), or `op`'s own error.
    pub async fn call<T, E, Fut, F>(&self, op: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error>,
    {
        let permit = self.try_acquire().map_err(E::from)?;
        let out = op().await;
        permit.record(&out);
        out
    }

    /// Forces the breaker open until [`reset`](Self::reset): every call is rejected with
    /// [`Error::BreakerIsolated`].
    pub fn isolate(&self) {
        let now = self.clock.now();
        let t = {
            let mut inner = self.inner.lock();
            (self.current().0 != BreakerState::Isolated)
                .then(|| self.transition(&mut inner, BreakerState::Isolated, now, "isolated", None))
        };
        if let Some(t) = t {
            self.announce(&t);
        }
    }

    /// Closes the breaker and clears its window, whatever its state.
    pub fn reset(&self) {
        let now = self.clock.now();
        let t = {
            let mut inner = self.inner.lock();
            let from = self.current().0;
            let t = self.transition(&mut inner, BreakerState::Closed, now, "reset", None);
            (from != BreakerState::Closed).then_some(t)
        };
        if let Some(t) = t {
            self.announce(&t);
        }
    }

    /// A snapshot of the state and the deciding window's counts.
    #[must_use]
    pub fn snapshot(&self) -> BreakerSnapshot {
        let state = self.state();
        let now = self.clock.now();
        let totals = {
            let mut inner = self.inner.lock();
            let trial = inner.trial;
            match (state, &mut inner.window) {
                (BreakerState::HalfOpen, _) => trial,
                (_, Window::Count(w)) => w.totals(),
                (_, Window::Time(w)) => w.totals(now.as_secs()),
            }
        };
        let retry_after = (state == BreakerState::Open).then(|| {
            Duration::from_nanos(
                self.open_until
                    .load(Ordering::Acquire)
                    .saturating_sub(nanos(now)),
            )
        });
        BreakerSnapshot {
            name: Arc::clone(&self.name),
            state,
            calls: totals.calls,
            failed_calls: totals.failures,
            slow_calls: totals.slow,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_rate(),
            retry_after,
        }
    }

    /// Records one finished call admitted under `token`.
    fn on_complete(&self, token: u64, start: Option<Duration>, failed: bool) {
        if !self.settings.enabled {
            return;
        }
        let needs_now = start.is_some() || self.settings.time_based;
        let now = needs_now.then(|| self.clock.now());
        let slow = match (start, now) {
            (Some(s), Some(n)) => n.saturating_sub(s) >= self.settings.slow_call_duration,
            _ => false,
        };
        let outcome = u8::from(failed) * FAILED + u8::from(slow) * SLOW;
        let decided = {
            let mut inner = self.inner.lock();
            self.record_locked(&mut inner, token, outcome, now)
        };
        if let Some(t) = decided.transition {
            self.announce(&t);
        }
    }

    fn record_locked(
        &self,
        inner: &mut Inner,
        token: u64,
        outcome: u8,
        now: Option<Duration>,
    ) -> Decided {
        if self.state.load(Ordering::Acquire) != token {
            // Admitted before the last state change: its outcome says nothing about the new state.
            return Decided { transition: None };
        }
        match BreakerState::from_code(token) {
            BreakerState::Closed => {
                let totals = match &mut inner.window {
                    Window::Count(w) => w.record(outcome),
                    Window::Time(w) => w.record(now.unwrap_or_default().as_secs(), outcome),
                };
                if totals.calls < self.settings.minimum_calls {
                    return Decided { transition: None };
                }
                let reason = self.exceeded(totals);
                let transition = reason.map(|reason| {
                    let now = now.unwrap_or_else(|| self.clock.now());
                    self.transition(inner, BreakerState::Open, now, reason, Some(totals))
                });
                Decided { transition }
            }
            BreakerState::HalfOpen => {
                inner.trial.add(outcome);
                let trial = inner.trial;
                if trial.calls < self.settings.half_open_permits {
                    return Decided { transition: None };
                }
                let now = now.unwrap_or_else(|| self.clock.now());
                let transition = match self.exceeded(trial) {
                    Some(_) => self.transition(
                        inner,
                        BreakerState::Open,
                        now,
                        "trial_calls_failed",
                        Some(trial),
                    ),
                    None => self.transition(
                        inner,
                        BreakerState::Closed,
                        now,
                        "trial_calls_succeeded",
                        Some(trial),
                    ),
                };
                Decided {
                    transition: Some(transition),
                }
            }
            BreakerState::Open | BreakerState::Isolated => Decided { transition: None },
        }
    }

    fn exceeded(&self, t: Totals) -> Option<&'static str> {
        if t.failure_rate() >= self.settings.failure_rate_threshold {
            Some("failure_rate")
        } else if self
            .settings
            .slow_rate_threshold
            .is_some_and(|th| t.slow_rate() >= th)
        {
            Some("slow_call_rate")
        } else {
            None
        }
    }

    fn half_open_timeout(
        &self,
        inner: &mut Inner,
        generation: u64,
        now: Duration,
    ) -> Option<Transition> {
        let (state, g) = self.current();
        (state == BreakerState::HalfOpen
            && g == generation
            && now.saturating_sub(inner.since) >= self.settings.half_open_max_wait)
            .then(|| self.transition(inner, BreakerState::Open, now, "half_open_max_wait", None))
    }

    /// Changes state under the lock; returns what to announce once the lock is released.
    fn transition(
        &self,
        inner: &mut Inner,
        to: BreakerState,
        now: Duration,
        reason: &'static str,
        totals: Option<Totals>,
    ) -> Transition {
        let (from, generation) = self.current();
        inner.since = now;
        inner.trial = Totals::default();
        inner.trial_permits = 0;
        match to {
            BreakerState::Closed => match &mut inner.window {
                Window::Count(w) => w.clear(),
                Window::Time(w) => w.clear(now.as_secs()),
            },
            BreakerState::Open => {
                self.open_until.store(
                    nanos(now.saturating_add(self.settings.wait_in_open)),
                    Ordering::Release,
                );
            }
            BreakerState::HalfOpen | BreakerState::Isolated => {}
        }
        self.state
            .store(((generation + 1) << 8) | to.code(), Ordering::Release);
        Transition {
            breaker: Arc::clone(&self.name),
            from,
            to,
            reason,
            failure_rate: totals.map(Totals::failure_rate),
            slow_call_rate: totals
                .filter(|_| self.slow_tracking())
                .map(Totals::slow_rate),
            at: now,
        }
    }

    /// Logs, counts and hands a transition to the listeners (outside the lock).
    #[cold]
    fn announce(&self, t: &Transition) {
        // The gauge takes the state code (0..=3) as a float: exact.
        #[allow(clippy::cast_precision_loss)]
        self.gauge.set(t.to.code() as f64);
        metrics::counter!(
            RESILIENCE_BREAKER_TRANSITIONS_TOTAL,
            "breaker" => Arc::clone(&self.name),
            "from" => t.from.as_str(),
            "to" => t.to.as_str()
        )
        .increment(1);
        let rate = t.failure_rate.unwrap_or(-1.0);
        match t.to {
            BreakerState::Open | BreakerState::Isolated => tracing::warn!(
                target: "tamma_resilience::breaker",
                breaker = %t.breaker,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = t.reason,
                failure_rate = rate,
                wait_ms = u64::try_from(self.settings.wait_in_open.as_millis()).unwrap_or(u64::MAX),
                "circuit breaker opened"
            ),
            BreakerState::HalfOpen | BreakerState::Closed => tracing::info!(
                target: "tamma_resilience::breaker",
                breaker = %t.breaker,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = t.reason,
                failure_rate = rate,
                "circuit breaker state changed"
            ),
        }
        let listeners = self.listeners.read().clone();
        for l in &listeners {
            l(t);
        }
    }

    fn release(&self, token: u64) {
        if BreakerState::from_code(token) == BreakerState::HalfOpen {
            let mut inner = self.inner.lock();
            if self.state.load(Ordering::Acquire) == token {
                inner.trial_permits = inner.trial_permits.saturating_sub(1);
            }
        }
    }
}

/// Permission to make one call through a breaker. Report the outcome with [`success`](Self::success),
/// [`failure`](Self::failure) or [`record`](Self::record); dropping it unreported (a cancelled call)
/// records nothing and frees a half-open trial slot.
#[must_use = "report the call's outcome, or the breaker learns nothing"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    token: u64,
    start: Option<Duration>,
    done: bool,
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name)
            .field("state", &BreakerState::from_code(self.token))
            .finish_non_exhaustive()
    }
}

impl Permit<'_> {
    /// The call succeeded.
    #[inline]
    pub fn success(mut self) {
        self.done = true;
        self.breaker.on_complete(self.token, self.start, false);
    }

    /// The call failed in a way that counts against the other side.
    pub fn failure(mut self) {
        self.done = true;
        self.breaker.on_complete(self.token, self.start, true);
    }

    /// Records a call's result: `Ok` and non-retryable errors are successes, retryable errors are
    /// failures.
    #[inline]
    pub fn record<T, E: Classify>(self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.success(),
            Err(e) if e.class().retryable => self.failure(),
            Err(_) => self.success(),
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.release(self.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use tamma_core::DurationMs;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            sliding_window_size: 4,
            minimum_number_of_calls: 4,
            wait_duration_in_open_state: DurationMs::from_secs(10),
            permitted_number_of_calls_in_half_open_state: 2,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn opens_at_threshold_and_rejects_with_retry_after() {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new("t.op", &cfg(), clock.shared());
        for _ in 0..2 {
            b.try_acquire().unwrap().failure();
            b.try_acquire().unwrap().success();
        }
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(4));
        match b.try_acquire() {
            Err(Error::BreakerOpen { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(6));
            }
            other => panic!("expected open, got {other:?}"),
        }
    }

    #[test]
    fn dropped_trial_permit_is_released() {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new("t.op", &cfg(), clock.shared());
        b.isolate();
        assert!(matches!(
            b.try_acquire(),
            Err(Error::BreakerIsolated { .. })
        ));
        b.reset();
        for _ in 0..4 {
            b.try_acquire().unwrap().failure();
        }
        clock.advance(Duration::from_secs(10));
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        drop(p2);
        let p3 = b.try_acquire().unwrap();
        p1.success();
        p3.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
