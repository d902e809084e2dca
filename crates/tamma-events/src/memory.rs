//! The in-memory store: the executable specification of the contract, and a store for tests.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::subscription::{SubscriptionSource, subscription};
use crate::{
    AppendCondition, AppendResult, Error, Event, EventStore, EventStream, IdCheck, Limits, Query,
    ReadOptions, Result, SequencedEvent, StoreHealth, StoreHooks, resolve_ids, validate_append,
    validate_import,
};

/// An event store in memory. Everything is lost when the last clone is dropped.
///
/// It is the reference implementation of the contract: every backend must behave like it (the conformance
/// suite runs against it too). Appends are serialised by one async lock, so a commit delay injected
/// through [`StoreHooks`] holds back later appends exactly like a slow commit in a real backend, while reads
/// and subscriptions go on.
///
/// ```
/// use futures::TryStreamExt;
/// use tamma_events::{AppendCondition, Event, EventStore, MemoryStore, Query, QueryItem, ReadOptions};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let wf = Query::item(QueryItem::tags(["workflow:wf-1"]));
/// let r = store.append(vec![Event::new("WORKFLOW.STARTED").tag("workflow:wf-1")], None).await?;
/// assert_eq!(r.positions, vec![1]);
/// // Decide on what was read up to position 1; a concurrent writer would make this fail.
/// let cond = AppendCondition::new(wf.clone()).after(1);
/// store.append(vec![Event::new("WORKFLOW.COMPLETED").tag("workflow:wf-1")], Some(cond)).await?;
/// let events: Vec<_> = store.read(wf, ReadOptions::forwards()).try_collect().await?;
/// assert_eq!(events.len(), 2);
/// # Ok::<(), tamma_events::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: tokio::sync::Mutex<()>,
    state: RwLock<State>,
    head_tx: watch::Sender<u64>,
    limits: Limits,
    hooks: StoreHooks,
    queued: AtomicUsize,
    last_commit: Mutex<Option<Instant>>,
    cursors: Mutex<HashMap<String, u64>>,
}

#[derive(Default)]
struct State {
    /// Stored events; `events[i]` is at position `first + i`.
    events: VecDeque<SequencedEvent>,
    first: u64,
    head: u64,
    by_id: HashMap<Uuid, u64>,
}

impl State {
    fn at(&self, position: u64) -> Option<&SequencedEvent> {
        let i = usize::try_from(position.checked_sub(self.first)?).ok()?;
        self.events.get(i)
    }

    fn read(&self, query: &Query, options: ReadOptions) -> Vec<SequencedEvent> {
        let limit = options
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        if limit == 0 || self.events.is_empty() {
            return Vec::new();
        }
        let hit = |e: &&SequencedEvent| query.matches(&e.event);
        if options.backwards {
            let top = options.from.map_or(self.head, |f| f.min(self.head));
            let Some(end) = top
                .checked_sub(self.first)
                .and_then(|n| usize::try_from(n).ok())
            else {
                return Vec::new();
            };
            self.events
                .range(..=end.min(self.events.len() - 1))
                .rev()
                .filter(hit)
                .take(limit)
                .cloned()
                .collect()
        } else {
            let from = options.from.unwrap_or(1).max(self.first);
            let start = usize::try_from(from - self.first).unwrap_or(usize::MAX);
            if start >= self.events.len() {
                return Vec::new();
            }
            self.events
                .range(start..)
                .filter(hit)
                .take(limit)
                .cloned()
                .collect()
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with default limits and no hooks.
    #[must_use]
    pub fn new() -> Self {
        Self::with_options(Limits::default(), StoreHooks::default())
    }

    /// An empty store with these limits and test hooks.
    #[must_use]
    pub fn with_options(limits: Limits, hooks: StoreHooks) -> Self {
        let (head_tx, _) = watch::channel(0);
        let state = State {
            first: 1,
            ..State::default()
        };
        Self {
            inner: Arc::new(Inner {
                writer: tokio::sync::Mutex::new(()),
                state: RwLock::new(state),
                head_tx,
                limits,
                hooks,
                queued: AtomicUsize::new(0),
                last_commit: Mutex::new(None),
                cursors: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Inner {
    async fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> Result<AppendResult> {
        validate_append(&events, condition.as_ref(), &self.limits)?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _writer = self.writer.lock().await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        {
            let st = self.state.read();
            let stored: Vec<_> = events
                .iter()
                .map(|e| {
                    st.by_id
                        .get(&e.id)
                        .and_then(|p| st.at(*p))
                        .map(|s| (s.position, &s.event))
                })
                .collect();
            if let IdCheck::Duplicate(positions) = resolve_ids(&events, &stored)? {
                return Ok(AppendResult {
                    positions,
                    duplicate: true,
                });
            }
            if let Some(c) = &condition {
                let from = c.after.map_or(1, |a| a.saturating_add(1));
                let opts = ReadOptions::forwards().from(from).limit(1);
                if let Some(hit) = st.read(&c.fail_if_events_match, opts).first() {
                    return Err(Error::AppendConditionFailed {
                        position: hit.position,
                    });
                }
            }
        }
        if let Some(delay) = self.hooks.commit_delay_for(&events) {
            tokio::time::sleep(delay).await;
        }
        let now = Utc::now().trunc_subsecs(6);
        let head = {
            let mut st = self.state.write();
            let mut positions = Vec::with_capacity(events.len());
            for e in events {
                st.head += 1;
                let position = st.head;
                st.by_id.insert(e.id, position);
                st.events.push_back(SequencedEvent {
                    position,
                    recorded_at: now,
                    event: e.stamped(now),
                });
                positions.push(position);
            }
            *self.last_commit.lock() = Some(Instant::now());
            (st.head, positions)
        };
        self.head_tx.send_replace(head.0);
        Ok(AppendResult {
            positions: head.1,
            duplicate: false,
        })
    }

    async fn import(&self, events: Vec<SequencedEvent>) -> Result<u64> {
        let _writer = self.writer.lock().await;
        let head = {
            let mut st = self.state.write();
            validate_import(&events, st.head, &self.limits)?;
            let stored: Vec<Uuid> = events
                .iter()
                .map(|e| e.event.id)
                .filter(|id| st.by_id.contains_key(id))
                .collect();
            if !stored.is_empty() {
                return Err(Error::DuplicateEventId { ids: stored });
            }
            if st.head == 0 {
                // `events` is not empty (validated): the positions before its first count as removed.
                st.first = events[0].position;
            }
            for e in events {
                st.head = e.position;
                st.by_id.insert(e.event.id, e.position);
                let event = e.event.stamped(e.recorded_at);
                st.events.push_back(SequencedEvent { event, ..e });
            }
            *self.last_commit.lock() = Some(Instant::now());
            st.head
        };
        self.head_tx.send_replace(head);
        Ok(head)
    }

    async fn delete_before(&self, cutoff: DateTime<Utc>) -> u64 {
        let _writer = self.writer.lock().await;
        let mut st = self.state.write();
        let Some(last) = st.events.iter().rposition(|e| e.recorded_at < cutoff) else {
            return 0;
        };
        let removed: Vec<_> = st.events.drain(..=last).collect();
        for e in &removed {
            st.by_id.remove(&e.event.id);
        }
        st.first += removed.len() as u64;
        removed.len() as u64
    }
}

impl EventStore for MemoryStore {
    fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> BoxFuture<'_, Result<AppendResult>> {
        Box::pin(self.inner.append(events, condition))
    }

    fn read(&self, query: Query, options: ReadOptions) -> EventStream {
        if let Err(e) = query.validate("query") {
            return Box::pin(futures::stream::once(async { Err(e) }));
        }
        let events = self.inner.state.read().read(&query, options);
        Box::pin(futures::stream::iter(events.into_iter().map(Ok)))
    }

    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SequencedEvent>>> {
        let st = self.inner.state.read();
        let found = st.by_id.get(&id).and_then(|p| st.at(*p)).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn head(&self) -> BoxFuture<'_, Result<u64>> {
        let head = self.inner.state.read().head;
        Box::pin(async move { Ok(head) })
    }

    fn subscribe(&self, query: Query, after: u64) -> EventStream {
        if let Err(e) = query.validate("query") {
            return Box::pin(futures::stream::once(async { Err(e) }));
        }
        // The subscription holds a weak reference: dropping the store ends it.
        let weak = Arc::downgrade(&self.inner);
        let src = SubscriptionSource {
            fetch: Arc::new(move |q: Query, from: u64, limit: u64| {
                let page = weak.upgrade().map(|inner| {
                    inner
                        .state
                        .read()
                        .read(&q, ReadOptions::forwards().from(from).limit(limit))
                });
                Box::pin(async move {
                    page.ok_or_else(|| Error::unavailable("the event store was closed"))
                })
            }),
            head: self.inner.head_tx.subscribe(),
            poll_interval: None,
            page_size: 256,
        };
        subscription(src, query, after)
    }

    fn delete_before(&self, cutoff: DateTime<Utc>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move { Ok(self.inner.delete_before(cutoff).await) })
    }

    fn health(&self) -> BoxFuture<'_, Result<StoreHealth>> {
        let health = StoreHealth {
            head: self.inner.state.read().head,
            queue_depth: self.inner.queued.load(Ordering::Relaxed),
            last_commit_age: self.inner.last_commit.lock().map(|t| t.elapsed()),
            syncs: None,
            last_commit_error: None,
        };
        Box::pin(async move { Ok(health) })
    }

    fn import(&self, events: Vec<SequencedEvent>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.import(events))
    }

    fn cursors(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>> {
        let mut all: Vec<_> = self
            .inner
            .cursors
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        all.sort();
        Box::pin(async move { Ok(all) })
    }

    fn load_cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        let found = self.inner.cursors.lock().get(name).copied();
        Box::pin(async move { Ok(found) })
    }

    fn save_cursor<'a>(&'a self, name: &'a str, position: u64) -> BoxFuture<'a, Result<()>> {
        self.inner.cursors.lock().insert(name.to_owned(), position);
        Box::pin(async { Ok(()) })
    }
}
