//! The emitter: validation, redaction, bounded pending work, durable and fire-and-forget emits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::{SubsecRound, Utc};
use parking_lot::Mutex;
use tamma_core::metric_names as m;
use tamma_events::{
    AppendResult, Event, EventFilter, EventStore, EventsConfig, Limits, SequencedEvent, Tags,
    read_filtered, validate_append,
};
use tamma_resilience::{BreakerState, MonotonicClock, Operation, Resilience, ResilienceConfig};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::{EmitterConfig, RedactionConfig};
use crate::error::{Error, Result};
use crate::redact::Redactor;
use crate::route::{self, RouteTask};
use crate::subscribe::{self, Handler, SubscriptionHandle};

/// Longest wait of a producer rejected by a half-open breaker before it asks again.
const HALF_OPEN_RECHECK: Duration = Duration::from_millis(200);

/// Longest wait between two attempts to store a fire-and-forget event while the store is down.
const MAX_NOWAIT_DELAY: Duration = Duration::from_secs(30);

/// What the flusher receives.
#[allow(clippy::large_enum_variant)] // Nearly every message is an event: boxing it would cost an allocation per emit.
enum Cmd {
    Event(Event, OwnedSemaphorePermit),
    Flush(oneshot::Sender<()>),
}

/// A consumer's cursor, watched by the lag monitor.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// The last position delivered (or scanned).
    pub(crate) position: AtomicU64,
    /// True while the consumer waits for new events (it has everything the store gave it).
    pub(crate) idle: AtomicBool,
}

/// State shared by the emitter, its flusher and the tasks storing fire-and-forget events.
pub(crate) struct Core {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) op: Operation,
    pub(crate) resilience: Resilience,
    pub(crate) config: EmitterConfig,
    limits: Limits,
    redactor: ArcSwap<Redactor>,
    permits: Arc<Semaphore>,
    /// Fire-and-forget events accepted and not yet stored (or refused), by id.
    nowait: Mutex<HashMap<Uuid, Event>>,
    /// Tasks storing fire-and-forget events.
    active: AtomicUsize,
    /// Durable emits in flight.
    durable: AtomicUsize,
    /// Signalled whenever a pending event is settled.
    settled: Notify,
    /// Set at the dispose deadline: tasks still retrying give up and leave their event to the report.
    abort: watch::Sender<bool>,
    stored: AtomicU64,
    failed: AtomicU64,
    /// Cursors of subscriptions and routes, by metric label.
    pub(crate) cursors: Mutex<BTreeMap<String, Arc<Cursor>>>,
}

impl Core {
    fn pending(&self) -> usize {
        let max = self.config.max_pending as usize;
        max.saturating_sub(self.permits.available_permits())
    }

    fn gauge(&self) {
        metrics::gauge!(m::EMITTER_PENDING).set(self.pending() as f64);
    }

    /// One append through the retry policy and the breaker.
    ///
    /// Like [`Operation::call`], but a rejection by a half-open breaker (its trial calls all in flight)
    /// waits at most [`HALF_OPEN_RECHECK`] instead of the breaker's whole half-open maximum: many
    /// producers wait on one store, and the trials usually decide within milliseconds.
    async fn append(&self, events: &[Event]) -> Result<AppendResult> {
        let started = Instant::now();
        let breaker = &*self.op.breaker;
        let out = self
            .op
            .retry
            .retry(|| {
                let admitted = breaker.try_acquire();
                let store = Arc::clone(&self.store);
                let batch = events.to_vec();
                async move {
                    let permit = admitted.map_err(|e| match e {
                        tamma_resilience::Error::BreakerOpen { retry_after, .. } => {
                            let wait = if breaker.state() == BreakerState::HalfOpen {
                                retry_after.min(HALF_OPEN_RECHECK)
                            } else {
                                retry_after
                            };
                            Error::Unavailable {
                                message: e.to_string(),
                                retry_after: Some(wait),
                            }
                        }
                        other => Error::from(other),
                    })?;
                    let out = store.append(batch, None).await.map_err(Error::from);
                    permit.record(&out);
                    out
                }
            })
            .await;
        metrics::histogram!(m::EMITTER_FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        out
    }

    fn settle(&self, id: Uuid) {
        self.nowait.lock().remove(&id);
        self.settled.notify_waiters();
    }
}

/// Builds an [`Emitter`]: the store, the `emitter` section, and optionally the `events` section
/// (batching and size limit) and the node's [`Resilience`] (retry policy and breaker of
/// `emitter.append` and of each `route.<name>`).
pub struct EmitterBuilder {
    store: Arc<dyn EventStore>,
    config: EmitterConfig,
    events: EventsConfig,
    resilience: Option<Resilience>,
}

impl EmitterBuilder {
    /// Takes `batchSize`, `flushInterval` and `maxEventSize` from the `events` section (default: its
    /// defaults, 100 events / 1 s / 1 MiB).
    #[must_use]
    pub fn events(mut self, events: &EventsConfig) -> Self {
        self.events = events.clone();
        self
    }

    /// Uses the node's resilience toolkit (default: one built from `ResilienceConfig::default()`).
    #[must_use]
    pub fn resilience(mut self, resilience: &Resilience) -> Self {
        self.resilience = Some(resilience.clone());
        self
    }

    /// Validates the config and starts the emitter's tasks (the fire-and-forget flusher, the lag
    /// monitor and one task per configured route). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid key.
    pub fn build(self) -> Result<Emitter> {
        let mut problems = Vec::new();
        tamma_core::Validate::validate(&self.config, "emitter", &mut problems);
        tamma_core::Validate::validate(&self.events, "events", &mut problems);
        if let Some(p) = problems.into_iter().next() {
            return Err(Error::Config {
                path: p.path,
                message: p.message,
            });
        }
        let redactor = Redactor::new(&self.config.redaction)?;
        let resilience = match self.resilience {
            Some(r) => r,
            None => Resilience::new(ResilienceConfig::default(), MonotonicClock::shared())?,
        };
        let (abort, _) = watch::channel(false);
        let core = Arc::new(Core {
            op: resilience.operation("emitter.append"),
            resilience,
            limits: self.events.limits(),
            redactor: ArcSwap::from_pointee(redactor),
            permits: Arc::new(Semaphore::new(self.config.max_pending as usize)),
            nowait: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            durable: AtomicUsize::new(0),
            settled: Notify::new(),
            abort,
            stored: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cursors: Mutex::new(BTreeMap::new()),
            store: self.store,
            config: self.config,
        });
        let (queue, rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        let flusher = tokio::spawn(flusher(
            Arc::clone(&core),
            rx,
            self.events.batch_size.max(1) as usize,
            self.events.flush_interval.as_duration(),
        ));
        let lag = tokio::spawn(lag_monitor(Arc::clone(&core), stop.subscribe()));
        let mut routes = Vec::new();
        for r in &core.config.routes {
            routes.push(route::start(&core, r, stop.subscribe())?);
        }
        Ok(Emitter {
            inner: Arc::new(Inner {
                core,
                queue,
                closed: AtomicBool::new(false),
                stop,
                tasks: Mutex::new(vec![flusher, lag]),
                routes: Mutex::new(routes),
                subs: Mutex::new(BTreeMap::new()),
                next_sub: AtomicU64::new(1),
            }),
        })
    }
}

struct SubEntry {
    handle: SubscriptionHandle,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Inner {
    core: Arc<Core>,
    queue: mpsc::UnboundedSender<Cmd>,
    closed: AtomicBool,
    /// Stops routes and the lag monitor.
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    routes: Mutex<Vec<RouteTask>>,
    subs: Mutex<BTreeMap<u64, SubEntry>>,
    next_sub: AtomicU64,
}

/// What [`Emitter::dispose`] could and could not do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DisposeReport {
    /// Fire-and-forget events stored since the emitter started.
    pub stored: u64,
    /// Fire-and-forget events the store refused (invalid, conflicting id) since the emitter started;
    /// each was logged at `error` and counted in `tamma_emitter_failed_total`.
    pub failed: u64,
    /// Fire-and-forget events accepted but not stored by the deadline, oldest first. They are not
    /// lost: the caller gets them back (to spool, log or retry elsewhere).
    pub unflushed: Vec<Event>,
    /// Durable emits still in flight at the deadline; their callers get the outcome.
    pub in_flight: usize,
}

impl DisposeReport {
    /// Whether everything accepted was settled.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.unflushed.is_empty() && self.in_flight == 0
    }
}

/// The emitter: what producers call to record events, over any [`EventStore`].
///
/// - [`emit`](Self::emit) resolves once the event is durable (its own atomic append: one producer's bad
///   or duplicate event never fails another's; concurrent emits share the store's group commit).
/// - [`emit_nowait`](Self::emit_nowait) returns at once; the event is stored in the background,
///   gathered by `events.batchSize` / `events.flushInterval` and appended as concurrent single-event
///   appends, retried while the store is down, and failures are logged and counted.
/// - [`emit_batch`](Self::emit_batch) appends several events atomically.
///
/// Before anything is stored or logged, each event is redacted and validated (the store's rules).
/// A fire-and-forget event without a timestamp is stamped when accepted; a durable one is stamped by
/// the store at commit, so a producer retrying it after an error matches the stored event. At most `emitter.maxPending` events are pending at once: beyond that `emit` waits up to
/// `emitter.enqueueTimeout` and then fails with [`Error::Unavailable`], and `emit_nowait` fails at
/// once, so memory stays bounded when the store is down and nothing accepted is silently dropped.
///
/// Cheap to clone (an `Arc`). Call [`dispose`](Self::dispose) at shutdown.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("pending", &self.inner.core.pending())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// An emitter over `store` with `config` and the defaults of the `events` and `resilience`
    /// sections; see [`Emitter::builder`] to pass those. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid key.
    pub fn new(store: Arc<dyn EventStore>, config: EmitterConfig) -> Result<Self> {
        Self::builder(store, config).build()
    }

    /// A builder, to add the `events` section and the node's [`Resilience`].
    #[must_use]
    pub fn builder(store: Arc<dyn EventStore>, config: EmitterConfig) -> EmitterBuilder {
        EmitterBuilder {
            store,
            config,
            events: EventsConfig::default(),
            resilience: None,
        }
    }

    /// The store the emitter writes to.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.core.store
    }

    /// Replaces the redaction rules (a config reload). Events already accepted keep the old rules.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad path or regex; the old rules stay.
    pub fn reload_redaction(&self, config: &RedactionConfig) -> Result<()> {
        let r = Redactor::new(config)?;
        self.inner.core.redactor.store(Arc::new(r));
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Redaction, validation, and (`stamp`) the timestamp when missing.
    ///
    /// Durable emits leave a missing timestamp to the store, which stamps it at commit (a moment after
    /// the call): a producer retrying the same event after an error then matches the stored one, as
    /// the contract's idempotency wants. Fire-and-forget events are stamped when accepted, since they
    /// may be stored much later; the emitter's own retries resend the same stamp.
    fn prepare(&self, mut events: Vec<Event>, stamp: bool) -> Result<Vec<Event>> {
        let redactor = self.inner.core.redactor.load();
        let now = Utc::now();
        for e in &mut events {
            if stamp && e.timestamp.is_none() {
                e.timestamp = Some(now.trunc_subsecs(6));
            }
            redactor.apply(e);
        }
        validate_append(&events, None, &self.inner.core.limits)?;
        Ok(events)
    }

    /// Stores one event and resolves once it is durable; returns its position. Retried through the
    /// `emitter.append` retry policy and breaker when the store fails transiently; an event with the
    /// same id and content already stored is not written again (its position is returned).
    ///
    /// # Errors
    /// [`Error::Store`] when the store refuses it (invalid, id reused with other content) or stays
    /// down past the retry policy; [`Error::Unavailable`] when `maxPending` events stayed pending for
    /// `enqueueTimeout`; [`Error::Closed`] after [`dispose`](Self::dispose).
    pub async fn emit(&self, event: Event) -> Result<u64> {
        Ok(self.emit_batch(vec![event]).await?.last_position())
    }

    /// Stores `events` atomically (all or none) and resolves once they are durable.
    ///
    /// # Errors
    /// As [`emit`](Self::emit); also [`Error::Config`] when the batch is larger than `maxPending`.
    pub async fn emit_batch(&self, events: Vec<Event>) -> Result<AppendResult> {
        self.check_open()?;
        let core = &self.inner.core;
        let events = self.prepare(events, false)?;
        let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
        if n > core.config.max_pending {
            return Err(Error::Config {
                path: "emitter.maxPending".to_owned(),
                message: format!(
                    "a batch of {n} events is more than maxPending ({})",
                    core.config.max_pending
                ),
            });
        }
        let timeout = core.config.enqueue_timeout.as_duration();
        let permit = match tokio::time::timeout(
            timeout,
            Arc::clone(&core.permits).acquire_many_owned(n),
        )
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => {
                return Err(Error::Unavailable {
                    message: format!(
                        "{} events have been pending for more than {}: the event store is slow or down",
                        core.pending(),
                        core.config.enqueue_timeout
                    ),
                    retry_after: Some(timeout),
                });
            }
        };
        core.durable.fetch_add(1, Ordering::AcqRel);
        core.gauge();
        let out = core.append(&events).await;
        drop(permit);
        core.durable.fetch_sub(1, Ordering::AcqRel);
        core.gauge();
        core.settled.notify_waiters();
        if let Err(e) = &out {
            metrics::counter!(m::EMITTER_FAILED_TOTAL, "reason" => e.code()).increment(1);
            tracing::warn!(
                events = events.len(),
                first_id = %events[0].id,
                event_type = %events[0].event_type,
                code = e.code(),
                error = %e,
                "emit failed"
            );
        }
        out
    }

    /// Accepts one event and returns its id at once; it is stored in the background (gathered by
    /// `events.batchSize` / `events.flushInterval`, appended on its own, retried while the store is
    /// down). A store refusal is logged at `error` and counted in `tamma_emitter_failed_total`;
    /// [`dispose`](Self::dispose) returns what could not be stored in time.
    ///
    /// # Errors
    /// [`Error::Store`] for an invalid event; [`Error::Unavailable`] at once when `maxPending`
    /// events are pending; [`Error::Closed`] after [`dispose`](Self::dispose).
    pub fn emit_nowait(&self, event: Event) -> Result<Uuid> {
        self.check_open()?;
        let core = &self.inner.core;
        let mut events = self.prepare(vec![event], true)?;
        let event = events.pop().ok_or(tamma_events::Error::EmptyAppend)?;
        let permit =
            Arc::clone(&core.permits)
                .try_acquire_owned()
                .map_err(|_| Error::Unavailable {
                    message: format!(
                        "{} events are pending (maxPending): the event store is slow or down",
                        core.pending()
                    ),
                    retry_after: Some(core.config.enqueue_timeout.as_duration()),
                })?;
        let id = event.id;
        core.nowait.lock().insert(id, event.clone());
        core.gauge();
        if self.inner.queue.send(Cmd::Event(event, permit)).is_err() {
            core.settle(id);
            return Err(Error::Closed);
        }
        Ok(id)
    }

    /// Flushes the fire-and-forget events gathered so far and waits until every accepted one is
    /// stored or refused. Waits as long as the store is down: wrap it in a timeout if needed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.queue.send(Cmd::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
        let core = &self.inner.core;
        loop {
            let settled = core.settled.notified();
            if core.nowait.lock().is_empty() {
                return;
            }
            settled.await;
        }
    }

    /// Events passing `filter` (type, type pattern, tags, time range, limit, offset), in position order.
    ///
    /// # Errors
    /// [`Error::Store`] for a bad filter or a store failure.
    pub async fn get_events(&self, filter: &EventFilter) -> Result<Vec<SequencedEvent>> {
        Ok(read_filtered(&*self.inner.core.store, filter).await?)
    }

    /// The stored event with this id, if any.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    pub async fn get_event(&self, id: Uuid) -> Result<Option<SequencedEvent>> {
        Ok(self.inner.core.store.get(id).await?)
    }

    /// Events accepted and not yet stored (durable emits in flight and fire-and-forget events).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.inner.core.pending()
    }

    /// The `events:emitter` health check (reads the store's health, never writes).
    #[must_use]
    pub fn health_check(&self) -> crate::check::EmitterCheck {
        crate::check::EmitterCheck::new(self.clone())
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    pub(crate) fn counts(&self) -> (u64, u64, usize, usize) {
        let c = &self.inner.core;
        (
            c.stored.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            self.inner.subs.lock().len(),
            self.inner.routes.lock().len(),
        )
    }

    /// Subscribes `handler` to stored events whose type matches `pattern` (`TASK.*`, `*`, or an exact
    /// type) and that carry all of `tags`, starting with the events appended after this call.
    ///
    /// The subscription reads the store from its own cursor on its own task: it sees only stored
    /// events, every one (whichever process appended it), in position order. A failing handler is
    /// called again with the same event (backoff from `emitter.subscriptions`), so a slow or failing
    /// handler lags on its own cursor without blocking the emitter or other subscribers; the lag is the
    /// `tamma_emitter_subscriber_lag` gauge.
    ///
    /// # Errors
    /// [`Error::Store`] for an empty pattern or tag, or when the store cannot tell its head;
    /// [`Error::Closed`] after [`dispose`](Self::dispose).
    pub async fn subscribe<H: Handler>(
        &self,
        pattern: &str,
        tags: Tags,
        handler: H,
    ) -> Result<SubscriptionHandle> {
        let head = self.inner.core.store.head().await?;
        self.subscribe_after(pattern, tags, head, handler)
    }

    /// As [`subscribe`](Self::subscribe), starting after position `after` (0 = every stored event).
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_after<H: Handler>(
        &self,
        pattern: &str,
        tags: Tags,
        after: u64,
        handler: H,
    ) -> Result<SubscriptionHandle> {
        self.check_open()?;
        let id = self.inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let (stop, stop_rx) = watch::channel(false);
        let (handle, task) = subscribe::start(
            &self.inner.core,
            id,
            pattern,
            tags,
            after,
            Box::new(handler),
            stop_rx,
        )?;
        self.inner.subs.lock().insert(
            id,
            SubEntry {
                handle: handle.clone(),
                stop,
                task,
            },
        );
        Ok(handle)
    }

    /// Ends a subscription (after the handler call in progress, if any). Returns whether it existed.
    pub fn unsubscribe(&self, handle: &SubscriptionHandle) -> bool {
        let entry = self.inner.subs.lock().remove(&handle.id());
        entry.is_some_and(|e| {
            self.end_subscription(&e);
            true
        })
    }

    /// Ends every subscription made with exactly `pattern`. Returns how many ended.
    pub fn unsubscribe_pattern(&self, pattern: &str) -> usize {
        let ended: Vec<SubEntry> = {
            let mut subs = self.inner.subs.lock();
            let ids: Vec<u64> = subs
                .iter()
                .filter(|(_, e)| e.handle.pattern() == pattern)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| subs.remove(id)).collect()
        };
        for e in &ended {
            self.end_subscription(e);
        }
        ended.len()
    }

    fn end_subscription(&self, e: &SubEntry) {
        let _ = e.stop.send(true);
        let label = e.handle.label();
        self.inner.core.cursors.lock().remove(&label);
        metrics::gauge!(m::EMITTER_SUBSCRIBER_LAG, "subscriber" => label).set(0.0);
    }

    /// The active subscriptions.
    #[must_use]
    pub fn subscriptions(&self) -> Vec<SubscriptionHandle> {
        self.inner
            .subs
            .lock()
            .values()
            .map(|e| e.handle.clone())
            .collect()
    }

    /// How far each subscription and route is behind the store's head, by name
    /// (`subscription:<id>:<pattern>`, `route:<name>`): 0 while it waits for new events, else the head
    /// minus its last position.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot tell its head.
    pub async fn lags(&self) -> Result<BTreeMap<String, u64>> {
        let head = self.inner.core.store.head().await?;
        Ok(lag_table(&self.inner.core, head))
    }

    /// Stops accepting events, ends subscriptions and routes, flushes the fire-and-forget events and
    /// waits for pending work until `deadline` has passed. Returns what could not be stored in time.
    pub async fn dispose(&self, deadline: Duration) -> DisposeReport {
        let until = tokio::time::Instant::now() + deadline;
        self.inner.closed.store(true, Ordering::Release);
        let core = Arc::clone(&self.inner.core);
        let _ = self.inner.stop.send(true);
        let subs: Vec<SubEntry> = std::mem::take(&mut *self.inner.subs.lock())
            .into_values()
            .collect();
        for s in &subs {
            self.end_subscription(s);
        }
        let flushed = tokio::time::timeout_at(until, async {
            self.flush().await;
            loop {
                let settled = core.settled.notified();
                if core.durable.load(Ordering::Acquire) == 0 {
                    break;
                }
                settled.await;
            }
        })
        .await
        .is_ok();
        if !flushed {
            // Tasks still retrying give up now; wait (briefly) until each has let go of its event.
            core.abort.send_replace(true);
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    let settled = core.settled.notified();
                    if core.active.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    settled.await;
                }
            })
            .await;
        }
        let mut unflushed: Vec<Event> = core.nowait.lock().values().cloned().collect();
        unflushed.sort_by_key(|e| (e.timestamp, e.id));
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.tasks.lock());
        let routes: Vec<RouteTask> = std::mem::take(&mut *self.inner.routes.lock());
        let mut handles: Vec<JoinHandle<()>> = subs.into_iter().map(|s| s.task).collect();
        handles.extend(routes.into_iter().map(|r| r.task));
        let grace = until.max(tokio::time::Instant::now() + Duration::from_millis(100));
        for h in handles {
            if tokio::time::timeout_at(grace, h).await.is_err() {
                tracing::warn!("a subscription or route did not stop by the dispose deadline");
            }
        }
        for t in tasks {
            t.abort();
        }
        let report = DisposeReport {
            stored: core.stored.load(Ordering::Relaxed),
            failed: core.failed.load(Ordering::Relaxed),
            unflushed,
            in_flight: core.durable.load(Ordering::Acquire),
        };
        if report.is_complete() {
            tracing::info!(
                stored = report.stored,
                failed = report.failed,
                "event emitter disposed"
            );
        } else {
            tracing::warn!(
                unflushed = report.unflushed.len(),
                in_flight = report.in_flight,
                "event emitter disposed before every accepted event was stored"
            );
        }
        report
    }
}

/// Gathers fire-and-forget events by size and time and hands each to its own storing task.
async fn flusher(
    core: Arc<Core>,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    batch_size: usize,
    interval: Duration,
) {
    let mut batch: Vec<(Event, OwnedSemaphorePermit)> = Vec::with_capacity(batch_size);
    let mut deadline = tokio::time::Instant::now();
    loop {
        let cmd = if batch.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                c = rx.recv() => c,
                () = tokio::time::sleep_until(deadline) => {
                    dispatch(&core, &mut batch);
                    continue;
                }
            }
        };
        match cmd {
            None => {
                dispatch(&core, &mut batch);
                return;
            }
            Some(Cmd::Event(e, p)) => {
                if batch.is_empty() {
                    deadline = tokio::time::Instant::now() + interval;
                }
                batch.push((e, p));
                if batch.len() >= batch_size {
                    dispatch(&core, &mut batch);
                }
            }
            Some(Cmd::Flush(reply)) => {
                dispatch(&core, &mut batch);
                let _ = reply.send(());
            }
        }
    }
}

/// Starts one append per event, all at once, so they share the store's group commit while each stays
/// its own atomic append.
fn dispatch(core: &Arc<Core>, batch: &mut Vec<(Event, OwnedSemaphorePermit)>) {
    for (event, permit) in batch.drain(..) {
        core.active.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(store_nowait(Arc::clone(core), event, permit));
    }
}

/// Stores one fire-and-forget event, retrying while the failure is transient, until the dispose
/// deadline aborts it.
async fn store_nowait(core: Arc<Core>, event: Event, permit: OwnedSemaphorePermit) {
    let mut abort = core.abort.subscribe();
    let mut delay = Duration::from_millis(100);
    let events = [event];
    loop {
        let attempt = tokio::select! {
            r = core.append(&events) => Some(r),
            _ = abort.wait_for(|a| *a) => None,
        };
        match attempt {
            None => break,
            Some(Ok(_)) => {
                core.stored.fetch_add(1, Ordering::Relaxed);
                core.settle(events[0].id);
                break;
            }
            Some(Err(e)) if e.is_retryable() => {
                let wait = tamma_resilience::Classify::class(&e)
                    .retry_after
                    .unwrap_or(delay)
                    .min(MAX_NOWAIT_DELAY);
                tracing::warn!(
                    event_id = %events[0].id,
                    event_type = %events[0].event_type,
                    code = e.code(),
                    error = %e,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "storing an accepted event failed; retrying"
                );
                delay = (delay * 2).min(MAX_NOWAIT_DELAY);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = abort.wait_for(|a| *a) => break,
                }
            }
            Some(Err(e)) => {
                core.failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::EMITTER_FAILED_TOTAL, "reason" => e.code()).increment(1);
                tracing::error!(
                    event_id = %events[0].id,
                    event_type = %events[0].event_type,
                    code = e.code(),
                    error = %e,
                    "the event store refused an accepted event; it is not stored"
                );
                core.settle(events[0].id);
                break;
            }
        }
    }
    drop(permit);
    core.gauge();
    core.active.fetch_sub(1, Ordering::AcqRel);
    core.settled.notify_waiters();
}

fn lag_table(core: &Core, head: u64) -> BTreeMap<String, u64> {
    core.cursors
        .lock()
        .iter()
        .map(|(name, c)| {
            let lag = if c.idle.load(Ordering::Acquire) {
                0
            } else {
                head.saturating_sub(c.position.load(Ordering::Acquire))
            };
            (name.clone(), lag)
        })
        .collect()
}

/// Publishes the lag of every subscription and route as a gauge, once per `emitter.lagInterval`.
async fn lag_monitor(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(core.config.lag_interval.as_duration());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if core.cursors.lock().is_empty() {
            continue;
        }
        match core.store.head().await {
            Ok(head) => {
                for (name, lag) in lag_table(&core, head) {
                    metrics::gauge!(m::EMITTER_SUBSCRIBER_LAG, "subscriber" => name)
                        .set(lag as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the head to measure subscriber lag"),
        }
    }
}
