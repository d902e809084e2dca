//! The emitter's health check.

use tamma_core::{Check, CheckFuture, CheckResult};
use tamma_resilience::BreakerState;

use crate::emitter::Emitter;

/// The `events:emitter` check: unhealthy when the store does not answer; degraded when the breaker in
/// front of the store is not closed or more than 80 % of `maxPending` is used. Never writes.
#[derive(Clone, Debug)]
pub struct EmitterCheck {
    emitter: Emitter,
}

impl EmitterCheck {
    pub(crate) fn new(emitter: Emitter) -> Self {
        Self { emitter }
    }
}

impl Check for EmitterCheck {
    fn name(&self) -> &'static str {
        "events:emitter"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let core = self.emitter.core();
            let health = match core.store.health().await {
                Ok(h) => h,
                Err(e) => {
                    return CheckResult::unhealthy(format!("the event store does not answer: {e}"));
                }
            };
            let pending = self.emitter.pending();
            let max = core.config.max_pending as usize;
            let breaker = core.op.breaker.state();
            let (stored, failed, subs, routes) = self.emitter.counts();
            let r = if breaker != BreakerState::Closed {
                CheckResult::degraded(format!("the event store's circuit breaker is {breaker}"))
            } else if pending * 5 > max * 4 {
                CheckResult::degraded(format!(
                    "{pending} of {max} pending events (maxPending) are in use"
                ))
            } else {
                CheckResult::healthy()
            };
            r.observed(pending, "events")
                .detail("pending", pending)
                .detail("maxPending", max)
                .detail("head", health.head)
                .detail("storeQueueDepth", health.queue_depth)
                .detail("stored", stored)
                .detail("failed", failed)
                .detail("subscriptions", subs)
                .detail("routes", routes)
                .detail("breaker", breaker.to_string())
        })
    }
}
