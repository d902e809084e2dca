//! Checks for tests: counting, hanging, fixed results, panicking.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tamma_core::{Check, CheckFuture, CheckResult};

/// Returns a fixed result and counts its runs.
pub(crate) struct Fixed {
    pub(crate) name: String,
    pub(crate) result: CheckResult,
    pub(crate) runs: Arc<AtomicUsize>,
    pub(crate) delay: Duration,
}

impl Fixed {
    pub(crate) fn new(name: &str, result: CheckResult) -> Self {
        Self {
            name: name.into(),
            result,
            runs: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub(crate) fn runs(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.runs)
    }
}

impl Check for Fixed {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            self.result.clone()
        })
    }
}

/// Never finishes.
pub(crate) struct Hang(pub &'static str);

impl Check for Hang {
    fn name(&self) -> &str {
        self.0
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(futures::future::pending())
    }
}

/// Panics.
pub(crate) struct Panics;

impl Check for Panics {
    fn name(&self) -> &str {
        "panics"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async { panic!("boom") })
    }
}
