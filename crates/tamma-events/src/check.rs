//! The health check over a store's [`EventStore::health`].

use std::sync::Arc;

use tamma_core::{Check, CheckFuture, CheckResult};

use crate::EventStore;

/// A health check (`events:store`) reading the store's head, writer queue depth and last commit age.
/// It never writes. Healthy when the store answers; degraded when more appends are queued than
/// `max_queue_depth`; unhealthy when the store cannot answer.
///
/// ```
/// use std::sync::Arc;
/// use tamma_core::{Check, CheckStatus};
/// use tamma_events::{MemoryStore, StoreCheck};
///
/// let check = StoreCheck::new(Arc::new(MemoryStore::new()));
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let result = rt.block_on(check.check());
/// assert_eq!(result.status, CheckStatus::Healthy);
/// assert_eq!(result.details["head"], 0);
/// ```
pub struct StoreCheck {
    store: Arc<dyn EventStore>,
    name: String,
    max_queue_depth: usize,
}

impl StoreCheck {
    /// A check named `events:store`, degraded above 10,000 queued appends.
    #[must_use]
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            name: "events:store".to_owned(),
            max_queue_depth: 10_000,
        }
    }

    /// Renames the check.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Reports degraded above `depth` queued appends.
    #[must_use]
    pub fn max_queue_depth(mut self, depth: usize) -> Self {
        self.max_queue_depth = depth;
        self
    }
}

impl Check for StoreCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match self.store.health().await {
                Err(e) => CheckResult::unhealthy(format!("event store does not answer: {e}")),
                Ok(h) => {
                    let mut r = if h.queue_depth > self.max_queue_depth {
                        CheckResult::degraded(format!(
                            "{} appends queued for the writer (more than {})",
                            h.queue_depth, self.max_queue_depth
                        ))
                    } else {
                        CheckResult::healthy()
                    };
                    r = r
                        .observed(h.queue_depth, "count")
                        .detail("head", h.head)
                        .detail("queueDepth", h.queue_depth);
                    if let Some(age) = h.last_commit_age {
                        r = r.detail(
                            "lastCommitAgeMs",
                            u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                        );
                    }
                    r
                }
            }
        })
    }
}
