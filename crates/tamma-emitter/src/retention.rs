//! The retention job: applies `events.retentionDays` in the background.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tamma_events::{EventStore, EventsConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::EmitterConfig;
use crate::error::Result;

/// Removes events older than `events.retentionDays` (a prefix of the log, see `docs/dcb.md`: removed history
/// no longer counts for append conditions) once at start and then every `emitter.retentionInterval`.
/// Logs each run; the backends count removed events in `tamma_events_retention_removed_total`.
///
/// Runs never overlap: within a process the job is one task; across processes the store serialises
/// them (SQLite: one writer per file; PostgreSQL: `delete_before` holds a session advisory lock, so a
/// second process waits and then finds nothing left to remove).
#[derive(Clone)]
pub struct RetentionJob {
    store: Arc<dyn EventStore>,
    retention: Option<chrono::Duration>,
    interval: Duration,
}

impl std::fmt::Debug for RetentionJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionJob")
            .field("retention", &self.retention)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl RetentionJob {
    /// The job for `store` with `events.retentionDays` and `emitter.retentionInterval`.
    #[must_use]
    pub fn new(store: Arc<dyn EventStore>, events: &EventsConfig, emitter: &EmitterConfig) -> Self {
        Self {
            store,
            retention: events.retention(),
            interval: emitter
                .retention_interval
                .as_duration()
                .max(Duration::from_secs(1)),
        }
    }

    /// Whether retention is on (`retentionDays` > 0).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.retention.is_some()
    }

    /// One run with the clock's now. Returns how many events were removed (0 when retention is off).
    ///
    /// # Errors
    /// The store's error.
    pub async fn run_once(&self) -> Result<u64> {
        self.run_once_at(Utc::now()).await
    }

    /// One run as if it were `now`: removes events recorded before `now - retentionDays`.
    ///
    /// # Errors
    /// The store's error.
    pub async fn run_once_at(&self, now: DateTime<Utc>) -> Result<u64> {
        let Some(keep) = self.retention else {
            return Ok(0);
        };
        let cutoff = now - keep;
        let started = std::time::Instant::now();
        let removed = self.store.delete_before(cutoff).await?;
        tracing::info!(
            removed,
            cutoff = %cutoff.to_rfc3339(),
            retention_days = keep.num_days(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "event retention applied"
        );
        Ok(removed)
    }

    /// Runs in the background (at once, then every interval) until the handle is stopped or dropped.
    /// Does nothing when retention is off.
    #[must_use]
    pub fn spawn(self) -> RetentionHandle {
        let (stop, mut rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            if !self.is_enabled() {
                return;
            }
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = rx.wait_for(|s| *s) => return,
                }
                if let Err(e) = self.run_once().await {
                    tracing::error!(error = %e, "event retention failed; it runs again at the next interval");
                }
            }
        });
        RetentionHandle { stop, task }
    }
}

/// A running [`RetentionJob`].
pub struct RetentionHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RetentionHandle {
    /// Stops the job (a run in progress finishes first).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
