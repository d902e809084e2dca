//! The health check over a store's [`EventStore::health`].

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tamma_core::{Check, CheckFuture, CheckResult};

use crate::{EventStore, SyncStats};

/// A health check (`events:store`) reading the store's head, writer queue depth, last commit age and,
/// where the backend times them, its durable syncs. It never writes. Healthy when the store answers;
/// degraded when the writer's last commit failed and none has succeeded since (a full disk, a lost
/// connection: reads go on, appends fail), when more appends are queued than `max_queue_depth`, or when
/// the syncs made since the previous check (or since the store opened) took longer than `max_sync_mean`
/// on average — a slow disk; unhealthy when the store cannot answer. (A failed commit degrades rather
/// than fails the check: a node taken out of rotation gets no appends, so no commit could clear it.)
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
    max_sync_mean: Duration,
    /// The store's syncs at the previous check.
    last_syncs: Mutex<SyncStats>,
}

impl StoreCheck {
    /// A check named `events:store`, degraded above 10,000 queued appends or when durable syncs take
    /// more than 100 ms on average.
    #[must_use]
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            name: "events:store".to_owned(),
            max_queue_depth: 10_000,
            max_sync_mean: Duration::from_millis(100),
            last_syncs: Mutex::new(SyncStats::default()),
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

    /// Reports degraded when the durable syncs since the previous check took longer than `mean` on
    /// average.
    #[must_use]
    pub fn max_sync_mean(mut self, mean: Duration) -> Self {
        self.max_sync_mean = mean;
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
                    // The syncs since the previous check: a slow disk shows now, not diluted by
                    // everything since the store opened.
                    let recent = h.syncs.map(|now| {
                        let mut last = self.last_syncs.lock();
                        let recent = now.since(&last);
                        *last = now;
                        recent
                    });
                    let slow = recent
                        .and_then(|r| r.mean().map(|m| (r.count, m)))
                        .filter(|(_, mean)| *mean > self.max_sync_mean);
                    let mut r = if let Some(e) = &h.last_commit_error {
                        CheckResult::degraded(format!(
                            "the last commit failed and none has succeeded since: {e}"
                        ))
                    } else if h.queue_depth > self.max_queue_depth {
                        CheckResult::degraded(format!(
                            "{} appends queued for the writer (more than {})",
                            h.queue_depth, self.max_queue_depth
                        ))
                    } else if let Some((count, mean)) = slow {
                        CheckResult::degraded(format!(
                            "durable syncs took {:.1} ms on average over the last {count} (more than \
                             {:.1} ms): the disk under the event store is slow",
                            mean.as_secs_f64() * 1000.0,
                            self.max_sync_mean.as_secs_f64() * 1000.0
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
                    if let Some(syncs) = h.syncs {
                        r = r.detail("syncs", syncs.count);
                    }
                    if let Some(e) = &h.last_commit_error {
                        r = r.detail("lastCommitError", e.as_str());
                    }
                    if let Some(mean) = recent.and_then(|r| r.mean()) {
                        r = r.detail(
                            "recentSyncMeanUs",
                            u64::try_from(mean.as_micros()).unwrap_or(u64::MAX),
                        );
                    }
                    r
                }
            }
        })
    }
}
