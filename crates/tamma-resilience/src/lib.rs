//! `tamma-resilience`: one shared way to decide what an error means and what to do next.
//!
//! Components that retry or break circuits around what is outside them (the emitter's routes and
//! forwarder, the runtime's operations, the server's breaker administration) depend on this crate. It
//! depends only on `tamma-core`.
//!
//! | piece | what it does |
//! |---|---|
//! | [`Classify`], [`ErrorClass`] | severity, category, retryable, user-visible, escalation, retry-after of an error; impls for `std::io::Error`, `reqwest::Error`, tokio timeouts; [`classify_dyn`] for anything else |
//! | [`ErrorHandler`] | handlers matched by [`ErrorPattern`] (type, code, kind name, message regex, severity, category) returning an [`Action`]: retry, ignore, escalate, recover; the seed's defaults |
//! | [`RetryPolicy`] | exponential backoff with full jitter, attempt cap, time budget, per-wait cap, Retry-After; built on `backon` |
//! | [`CircuitBreaker`] | resilience4j semantics: count/time sliding window, failure and slow-call rates, half-open trials, max wait in half-open, isolate/reset, injectable [`Clock`] |
//! | [`BreakerRegistry`] | breakers by `component.operation`; the `resilience:breakers` health [`Check`](tamma_core::Check) |
//! | [`Escalator`], [`Notifier`] | escalations to the log, a webhook and (through `tamma_emitter::AuditNotifier`) the audit trail, debounced per key |
//! | [`ResilienceConfig`] | the `resilience` config section |
//! | [`Resilience`], [`Operation`] | all of it built from config; `operation("component.operation").call(..)` |
//!
//! Metrics (through the `metrics` facade, names from `tamma_core::metric_names`):
//! `tamma_resilience_retries_total`, `tamma_resilience_breaker_state`,
//! `tamma_resilience_breaker_transitions_total`, `tamma_resilience_breaker_rejected_total`,
//! `tamma_resilience_escalations_total`. Breakers register their metric handles when built, so the
//! binary must install its recorder first.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! use std::io;
//! use tamma_resilience::{BreakerState, MonotonicClock, Resilience, ResilienceConfig};
//!
//! let resilience = Resilience::new(ResilienceConfig::default(), MonotonicClock::shared()).unwrap();
//! // Once, at start-up: the operation's retry policy and breaker.
//! let ship = resilience.operation("forwarder.ship");
//!
//! let mut attempts = 0;
//! let result: Result<&str, io::Error> = ship
//!     .call(|| {
//!         attempts += 1;
//!         let first = attempts == 1;
//!         async move {
//!             if first { Err(io::Error::from(io::ErrorKind::ConnectionReset)) } else { Ok("shipped") }
//!         }
//!     })
//!     .await;
//! assert_eq!(result.unwrap(), "shipped");
//! assert_eq!(attempts, 2);
//! assert_eq!(ship.breaker.state(), BreakerState::Closed);
//! # });
//! ```

mod breaker;
mod class;
mod clock;
mod config;
mod error;
mod escalation;
mod handler;
mod registry;
mod retry;
mod window;

pub use breaker::{
    BreakerSnapshot, BreakerState, CircuitBreaker, Permit, Transition, TransitionListener,
};
pub use class::{
    Category, Classify, ErrorClass, Severity, classify_dyn, classify_http_status, classify_io_kind,
    classify_message, parse_retry_after, retry_after_from_message,
};
pub use clock::{Clock, ManualClock, MonotonicClock, TokioClock};
pub use config::{
    BreakerConfig, BreakerOverride, EscalationConfig, OperationConfig, ResilienceConfig,
    RetryConfig, RetryOverride, SlidingWindowType, WebhookConfig,
};
pub use error::{Error, Result};
pub use escalation::{
    Escalation, EscalationOutcome, Escalator, LogNotifier, Notifier, NotifyFuture, WebhookNotifier,
};
pub use handler::{
    Action, Decision, ErrorContext, ErrorHandler, ErrorPattern, ErrorSubject, Handler,
    HandlerFuture, Handling, RATE_LIMIT_DEFAULT_DELAY, handler_fn,
};
pub use registry::{BreakerRegistry, Operation, Resilience};
pub use retry::RetryPolicy;
