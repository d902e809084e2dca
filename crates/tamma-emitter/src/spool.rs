//! The durable spool of worker mode and the forwarder that ships it to the orchestrator.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tamma_core::{Check, CheckFuture, CheckResult};
use tamma_events::{Event, EventStore, Limits, Query, ReadOptions, SequencedEvent};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tamma_resilience::{Classify, Operation, parse_retry_after};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::SpoolConfig;
use crate::error::{Error, Result};
use crate::subscribe::{call_unless_stopped, pause};

/// Cursor (in the spool's database) of the last position the remote acknowledged.
pub const ACKED_CURSOR: &str = "forwarder.acked";
/// Cursor (in the spool's database) of the last position of the batch being shipped: the batch is
/// fixed before its first send and resent identically until acknowledged.
pub const BATCH_CURSOR: &str = "forwarder.batch_end";
/// Longest wait between two shipping attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Acknowledged events removed from the spool once this many have accumulated.
const PRUNE_EVERY: u64 = 1_000;

/// The durable local queue of worker mode: an embedded SQLite event store (WAL, `synchronous=FULL`),
/// so an event whose emit returned survives `kill -9` and power loss. Give [`Spool::store`] to the
/// worker's [`Emitter`](crate::Emitter) and the spool to a [`Forwarder`].
#[derive(Clone)]
pub struct Spool {
    store: SqliteStore,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.store.path())
            .finish()
    }
}

impl Spool {
    /// Opens (or creates) the spool file.
    ///
    /// # Errors
    /// [`Error::Spool`] when the file cannot be opened or set up.
    pub fn open(path: impl AsRef<Path>, limits: Limits) -> Result<Self> {
        let store = SqliteStore::open(
            path,
            SqliteOptions {
                limits,
                ..SqliteOptions::default()
            },
        )?;
        Ok(Self { store })
    }

    /// The spool as an event store (for the emitter).
    #[must_use]
    pub fn store(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }

    /// The spool file.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.store.path()
    }
}

/// What the forwarder has done; read it with [`ForwarderHandle::status`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwarderStatus {
    /// The last spool position the remote acknowledged.
    pub acked: u64,
    /// Batches acknowledged since start.
    pub batches: u64,
    /// Events acknowledged since start.
    pub events: u64,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    status: Mutex<ForwarderStatus>,
    acked: AtomicU64,
}

/// Ships the spool to a remote store's `POST /v1/events` (`{"events": [...]}`, the wire contract of docs/dcb.md) in
/// fixed batches: the batch's last position is saved in the spool before its first send, and after a
/// crash the same events are sent again, identically, until the remote acknowledges them. The remote's
/// idempotency by event id turns this at-least-once shipping into exactly-once storage.
///
/// Retries go through the `forwarder.ship` retry policy and circuit breaker; while the remote stays down
/// the forwarder keeps waiting and trying, and the spool keeps growing on disk. A batch the remote
/// rejects as too large (413) or as mixing stored and new ids (409 `duplicate_event_id`) is split in
/// halves; a single event the remote refuses is retried slowly and reported (`last_error`, health).
pub struct Forwarder {
    spool: Arc<dyn EventStore>,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    batch_size: usize,
    op: Operation,
    shared: Arc<Shared>,
}

impl Forwarder {
    /// A forwarder of `spool` to the node at `remote` (its base URL: `http://orchestrator:8080`).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or header.
    pub fn new(
        spool: Arc<dyn EventStore>,
        remote: &str,
        config: &SpoolConfig,
        op: Operation,
    ) -> Result<Self> {
        let bad = |path: &str, message: String| Error::Config {
            path: format!("emitter.spool.{path}"),
            message,
        };
        let base = reqwest::Url::parse(remote).map_err(|e| bad("remote", e.to_string()))?;
        let url = base
            .join("v1/events")
            .map_err(|e| bad("remote", e.to_string()))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &config.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| bad(&format!("headers.{k}"), e.to_string()))?;
            let mut value = reqwest::header::HeaderValue::from_str(v.expose())
                .map_err(|e| bad(&format!("headers.{k}"), e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout.as_duration())
            .build()
            .map_err(|e| bad("timeout", e.to_string()))?;
        Ok(Self {
            spool,
            client,
            url,
            headers,
            batch_size: config.batch_size.max(1) as usize,
            op,
            shared: Arc::new(Shared::default()),
        })
    }

    /// Starts shipping on its own task.
    #[must_use]
    pub fn spawn(self) -> ForwarderHandle {
        let (stop, rx) = watch::channel(false);
        let shared = Arc::clone(&self.shared);
        let spool = Arc::clone(&self.spool);
        ForwarderHandle {
            task: Some(tokio::spawn(self.run(rx))),
            stop,
            shared,
            spool,
        }
    }

    fn set_error(&self, e: Option<String>) {
        self.shared.status.lock().last_error = e;
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let Some((mut acked, end)) = self.cursors(&mut stop).await else {
            return;
        };
        self.shared.acked.store(acked, Ordering::Release);
        self.shared.status.lock().acked = acked;
        let mut pruned = acked;
        if end > acked {
            // A batch was fixed before a crash or stop: send exactly those events again.
            let Some(batch) = self.read_range(acked, end, &mut stop).await else {
                return;
            };
            tracing::info!(
                from = acked + 1,
                to = end,
                "resending the batch fixed before the restart"
            );
            if !self.ship(&batch, &mut stop).await {
                return;
            }
            acked = end;
        }
        let mut delay = Duration::from_millis(100);
        'outer: loop {
            let mut stream = self.spool.subscribe(Query::all(), acked);
            loop {
                let first = tokio::select! {
                    n = stream.next() => n,
                    _ = stop.wait_for(|s| *s) => break 'outer,
                };
                let mut batch = Vec::with_capacity(self.batch_size);
                let mut failed = None;
                match first {
                    None => break 'outer,
                    Some(Ok(e)) => batch.push(e),
                    Some(Err(e)) => failed = Some(e),
                }
                while failed.is_none() && batch.len() < self.batch_size {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(e))) => batch.push(e),
                        Some(Some(Err(e))) => failed = Some(e),
                        _ => break,
                    }
                }
                if !batch.is_empty() {
                    if !self.ship(&batch, &mut stop).await {
                        break 'outer;
                    }
                    acked = batch.last().map_or(acked, |e| e.position);
                    delay = Duration::from_millis(100);
                    if acked - pruned >= PRUNE_EVERY {
                        self.prune(acked).await;
                        pruned = acked;
                    }
                }
                if let Some(e) = failed {
                    tracing::warn!(error = %e, "reading the spool failed; resubscribing");
                    if !pause(delay, &mut stop).await {
                        break 'outer;
                    }
                    delay = (delay * 2).min(MAX_DELAY);
                    continue 'outer;
                }
            }
        }
        tracing::info!(acked, "forwarder stopped");
    }

    async fn cursors(&self, stop: &mut watch::Receiver<bool>) -> Option<(u64, u64)> {
        let mut delay = Duration::from_millis(100);
        loop {
            let r = async {
                let acked = self.spool.load_cursor(ACKED_CURSOR).await?.unwrap_or(0);
                let end = self.spool.load_cursor(BATCH_CURSOR).await?.unwrap_or(0);
                Ok::<_, tamma_events::Error>((acked, end))
            }
            .await;
            match r {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the forwarder's cursors; retrying");
                    if !pause(delay, stop).await {
                        return None;
                    }
                    delay = (delay * 2).min(MAX_DELAY);
                }
            }
        }
    }

    /// The spooled events at positions `(after, end]`.
    async fn read_range(
        &self,
        after: u64,
        end: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Vec<SequencedEvent>> {
        let mut delay = Duration::from_millis(100);
        loop {
            let r: tamma_events::Result<Vec<SequencedEvent>> = self
                .spool
                .read(
                    Query::all(),
                    ReadOptions::forwards().from(after + 1).limit(end - after),
                )
                .try_collect()
                .await;
            match r {
                Ok(v) => return Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the spool; retrying");
                    if !pause(delay, stop).await {
                        return None;
                    }
                    delay = (delay * 2).min(MAX_DELAY);
                }
            }
        }
    }

    /// Saves a cursor, retrying until it is durable; false when stopped first.
    async fn save(&self, name: &str, position: u64, stop: &mut watch::Receiver<bool>) -> bool {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.spool.save_cursor(name, position).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(cursor = name, position, error = %e, "cannot save a forwarder cursor; retrying");
                    if !pause(delay, stop).await {
                        return false;
                    }
                    delay = (delay * 2).min(MAX_DELAY);
                }
            }
        }
    }

    /// Ships `batch` (fixing its end first), splitting it when the remote says so; false when stopped.
    async fn ship(&self, batch: &[SequencedEvent], stop: &mut watch::Receiver<bool>) -> bool {
        let mut parts: Vec<&[SequencedEvent]> = vec![batch];
        while let Some(part) = parts.pop() {
            let (Some(first), Some(last)) = (part.first(), part.last()) else {
                continue;
            };
            if !self.save(BATCH_CURSOR, last.position, stop).await {
                return false;
            }
            match self.send_until_done(part, stop).await {
                Sent::Stopped => return false,
                Sent::Acked => {
                    if !self.save(ACKED_CURSOR, last.position, stop).await {
                        return false;
                    }
                    self.shared.acked.store(last.position, Ordering::Release);
                    let mut s = self.shared.status.lock();
                    s.acked = last.position;
                    s.batches += 1;
                    s.events += part.len() as u64;
                    s.last_error = None;
                }
                Sent::Split => {
                    let mid = part.len() / 2;
                    tracing::info!(
                        from = first.position,
                        to = last.position,
                        "the remote refused the batch as a whole; shipping it in halves"
                    );
                    parts.push(&part[mid..]);
                    parts.push(&part[..mid]);
                }
            }
        }
        true
    }

    async fn send_until_done(
        &self,
        part: &[SequencedEvent],
        stop: &mut watch::Receiver<bool>,
    ) -> Sent {
        let events: Vec<&Event> = part.iter().map(|e| &e.event).collect();
        let body = serde_json::json!({ "events": events });
        let mut delay = Duration::from_millis(200);
        loop {
            let e = match call_unless_stopped(&self.op, stop, || self.post(&body)).await {
                None => return Sent::Stopped,
                Some(Ok(())) => return Sent::Acked,
                Some(Err(e)) => e,
            };
            let splittable = matches!(
                &e,
                Error::Delivery {
                    status: Some(413),
                    ..
                }
            ) || matches!(&e, Error::Delivery { status: Some(409), message, .. } if message.contains("duplicate_event_id"));
            if splittable && part.len() > 1 {
                return Sent::Split;
            }
            let wait = e.class().retry_after.unwrap_or(delay).min(MAX_DELAY);
            if e.is_retryable() {
                tracing::warn!(events = part.len(), first = part[0].position, error = %e, "forwarding failed; retrying");
            } else {
                tracing::error!(events = part.len(), first = part[0].position, error = %e, "the remote refused spooled events; retrying slowly (an operator must look)");
            }
            self.set_error(Some(e.to_string()));
            if !pause(wait, stop).await {
                return Sent::Stopped;
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
    }

    async fn post(&self, body: &serde_json::Value) -> Result<()> {
        let resp = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| Error::transport("forwarder", e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = resp.text().await.unwrap_or_default();
        Err(Error::http(
            "forwarder",
            status.as_u16(),
            &text,
            retry_after,
        ))
    }

    /// Removes acknowledged events from the spool: everything recorded strictly before the first
    /// unacknowledged event (or before the last acknowledged one), which is a prefix of acknowledged
    /// events because `recordedAt` never decreases with position.
    async fn prune(&self, acked: u64) {
        let next: tamma_events::Result<Vec<SequencedEvent>> = self
            .spool
            .read(Query::all(), ReadOptions::forwards().from(acked).limit(2))
            .try_collect()
            .await;
        let cutoff = match next {
            Ok(v) => match v.iter().find(|e| e.position > acked) {
                Some(unacked) => unacked.recorded_at.min(v[0].recorded_at),
                None => match v.first() {
                    Some(e) => e.recorded_at,
                    None => return,
                },
            },
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the spool to prune it");
                return;
            }
        };
        match self.spool.delete_before(cutoff).await {
            Ok(n) => tracing::debug!(
                removed = n,
                acked,
                "pruned acknowledged events from the spool"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot prune the spool"),
        }
    }
}

enum Sent {
    Acked,
    Split,
    Stopped,
}

/// A running [`Forwarder`].
pub struct ForwarderHandle {
    task: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
    spool: Arc<dyn EventStore>,
}

impl ForwarderHandle {
    /// What the forwarder has done so far.
    #[must_use]
    pub fn status(&self) -> ForwarderStatus {
        self.shared.status.lock().clone()
    }

    /// The `events:forwarder` health check: backlog (spool head minus acknowledged) and the last error.
    #[must_use]
    pub fn health_check(&self) -> ForwarderCheck {
        ForwarderCheck {
            shared: Arc::clone(&self.shared),
            spool: Arc::clone(&self.spool),
        }
    }

    /// Stops after the request in flight (the batch stays fixed in the spool and is resent by the next
    /// forwarder) and waits up to `deadline` for the task to end.
    pub async fn shutdown(mut self, deadline: Duration) -> ForwarderStatus {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take()
            && tokio::time::timeout(deadline, t).await.is_err()
        {
            tracing::warn!("the forwarder did not stop by the deadline");
        }
        self.status()
    }
}

impl Drop for ForwarderHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The forwarder's health check.
pub struct ForwarderCheck {
    shared: Arc<Shared>,
    spool: Arc<dyn EventStore>,
}

impl Check for ForwarderCheck {
    fn name(&self) -> &'static str {
        "events:forwarder"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let status = self.shared.status.lock().clone();
            let head = match self.spool.head().await {
                Ok(h) => h,
                Err(e) => return CheckResult::unhealthy(format!("the spool does not answer: {e}")),
            };
            let backlog = head.saturating_sub(status.acked);
            let r = match &status.last_error {
                Some(e) => CheckResult::degraded(format!(
                    "{backlog} spooled events not forwarded yet; last error: {e}"
                )),
                None => CheckResult::healthy(),
            };
            r.observed(backlog, "events")
                .detail("acked", status.acked)
                .detail("spoolHead", head)
                .detail("batches", status.batches)
        })
    }
}
