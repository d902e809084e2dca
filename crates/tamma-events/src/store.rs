//! The `EventStore` trait every backend implements, and the small types around it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::{AppendCondition, Event, Query, ReadOptions, Result, SequencedEvent};

/// A stream of stored events, as returned by [`EventStore::read`] and [`EventStore::subscribe`].
/// An error ends the stream (it is the last item).
pub type EventStream = BoxStream<'static, Result<SequencedEvent>>;

/// What an append returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The positions given to the events, in the order of the append.
    pub positions: Vec<u64>,
    /// Whether the append was an idempotent retry: every event was already stored with the same id and
    /// content, nothing was written and `positions` are the original ones.
    pub duplicate: bool,
}

impl AppendResult {
    /// The last position of the append (the highest one).
    #[must_use]
    pub fn last_position(&self) -> u64 {
        self.positions.iter().copied().max().unwrap_or(0)
    }
}

impl Serialize for AppendResult {
    /// `{"positions": [...], "lastPosition": N, "duplicate": bool}`, the HTTP answer of `POST /v1/events`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct W<'a> {
            positions: &'a [u64],
            last_position: u64,
            duplicate: bool,
        }
        W {
            positions: &self.positions,
            last_position: self.last_position(),
            duplicate: self.duplicate,
        }
        .serialize(s)
    }
}

/// What a store reports about itself (read without writing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreHealth {
    /// The highest committed position (0 for an empty store).
    pub head: u64,
    /// Appends queued for the writer and not yet committed.
    pub queue_depth: usize,
    /// Time since the writer last committed, `None` if it has not committed since the store opened.
    #[serde(serialize_with = "ser_opt_ms")]
    pub last_commit_age: Option<Duration>,
    /// The durable syncs the writer made since the store opened, where the backend can time them (the
    /// embedded store times the `fdatasync` of each commit; PostgreSQL's happen on the server: `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syncs: Option<SyncStats>,
    /// Why the writer's last commit failed, when it failed and none has succeeded since (a full disk, a
    /// lost database connection); `None` once a commit succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_error: Option<String>,
}

/// Durable syncs made by a store's writer: how many, and their total time.
///
/// ```
/// use std::time::Duration;
/// use tamma_events::SyncStats;
///
/// let earlier = SyncStats { count: 10, total: Duration::from_millis(2) };
/// let now = SyncStats { count: 14, total: Duration::from_millis(4) };
/// assert_eq!(now.since(&earlier).mean(), Some(Duration::from_micros(500)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Syncs made.
    pub count: u64,
    /// Their total time.
    pub total: Duration,
}

impl SyncStats {
    /// The mean time of one sync, `None` when there was none.
    #[must_use]
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| {
            Duration::from_nanos(
                u64::try_from(self.total.as_nanos() / u128::from(self.count)).unwrap_or(u64::MAX),
            )
        })
    }

    /// The syncs made between `earlier` and `self` (two readings of one store).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            count: self.count.saturating_sub(earlier.count),
            total: self.total.saturating_sub(earlier.total),
        }
    }
}

impl Serialize for SyncStats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            count: u64,
            total_us: u64,
        }
        Wire {
            count: self.count,
            total_us: u64::try_from(self.total.as_micros()).unwrap_or(u64::MAX),
        }
        .serialize(s)
    }
}

fn ser_opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// Limits a store enforces on appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest event accepted, in bytes of its JSON encoding (`events.maxEventSize`).
    pub max_event_size: u64,
}

impl Default for Limits {
    /// 1 MiB per event.
    fn default() -> Self {
        Self {
            max_event_size: 1024 * 1024,
        }
    }
}

/// Decides how long to hold the commit of one append (see [`StoreHooks`]).
pub type CommitDelayFn = Arc<dyn Fn(&[Event]) -> Option<Duration> + Send + Sync>;

/// Test hooks a backend accepts at construction. Production code passes `StoreHooks::default()`.
///
/// `commit_delay` is asked once per append, with the append's events, after the append was checked and
/// given its positions and before it commits. When it returns a duration the backend holds the commit
/// that long (the SQLite writer sleeps inside its transaction, PostgreSQL before `COMMIT`), which lets the
/// conformance suite prove that subscribers never skip an event committed late.
#[derive(Clone, Default)]
pub struct StoreHooks {
    /// Optional commit delay per append.
    pub commit_delay: Option<CommitDelayFn>,
}

impl StoreHooks {
    /// Hooks that delay the commit of every append whose events satisfy `pred` by `delay`.
    pub fn delay_commits_where(
        delay: Duration,
        pred: impl Fn(&[Event]) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            commit_delay: Some(Arc::new(move |events: &[Event]| {
                pred(events).then_some(delay)
            })),
        }
    }

    /// The delay for an append of `events`, if any.
    #[must_use]
    pub fn commit_delay_for(&self, events: &[Event]) -> Option<Duration> {
        self.commit_delay
            .as_ref()
            .and_then(|f| f(events))
            .filter(|d| !d.is_zero())
    }
}

impl fmt::Debug for StoreHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreHooks")
            .field("commit_delay", &self.commit_delay.is_some())
            .finish()
    }
}

/// A DCB event store. Object safe: hold it as `Arc<dyn EventStore>` and choose the backend at runtime.
///
/// The contract (`docs/dcb.md`), which the `tamma-events-testkit` conformance suite checks for every backend:
/// - positions start at 1 and are unique, gapless and in commit order; [`head`](Self::head) is the highest;
/// - [`append`](Self::append) is atomic, checks its condition linearizably against every stored event, and
///   is idempotent by event id (a retry of the same events returns the original positions);
/// - [`read`](Self::read) returns matching events in position order, each once;
/// - [`subscribe`](Self::subscribe) delivers every matching event after a position, stored then live,
///   without gap or duplicate, and never buffers without bound for a slow consumer;
/// - [`delete_before`](Self::delete_before) removes a prefix of the log and never lowers the head.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` atomically, if `condition` holds. Events without a timestamp are stamped now.
    ///
    /// # Errors
    /// [`Error::EmptyAppend`](crate::Error::EmptyAppend), [`Error::InvalidEvent`](crate::Error::InvalidEvent),
    /// [`Error::EventTooLarge`](crate::Error::EventTooLarge), [`Error::InvalidQuery`](crate::Error::InvalidQuery)
    /// (nothing is written); [`Error::AppendConditionFailed`](crate::Error::AppendConditionFailed),
    /// [`Error::DuplicateEventId`](crate::Error::DuplicateEventId); backend errors.
    fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> BoxFuture<'_, Result<AppendResult>>;

    /// Reads the events matching `query`, in position order, as `options` say. An invalid query yields one
    /// [`Error::InvalidQuery`](crate::Error::InvalidQuery) item.
    fn read(&self, query: Query, options: ReadOptions) -> EventStream;

    /// The event with this id, if stored.
    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SequencedEvent>>>;

    /// The highest committed position (0 when nothing was ever appended). Never goes down.
    fn head(&self) -> BoxFuture<'_, Result<u64>>;

    /// Every event matching `query` at a position above `after`: stored ones, then live ones as they are
    /// committed, in order, without gap or duplicate. The stream ends only with an error (or when the store
    /// is closed).
    fn subscribe(&self, query: Query, after: u64) -> EventStream;

    /// Retention: removes every event whose `recorded_at` is before `cutoff` and every event before them
    /// (a prefix of the log). Returns how many were removed. Positions of the others never change.
    fn delete_before(&self, cutoff: DateTime<Utc>) -> BoxFuture<'_, Result<u64>>;

    /// The store's state for health checks: head, writer queue depth, age of the last commit. Never writes.
    fn health(&self) -> BoxFuture<'_, Result<StoreHealth>>;

    /// The position saved under the cursor `name` by [`save_cursor`](Self::save_cursor), `None` if none
    /// was. Cursors live in the store's own database, so a consumer (a route, a forwarder) resumes where
    /// it stopped, across restarts and processes. The default implementation (for stores that keep no
    /// cursors) answers [`Error::Unavailable`](crate::Error::Unavailable).
    fn load_cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        let _ = name;
        Box::pin(async {
            Err(crate::Error::unavailable(
                "this event store keeps no cursors",
            ))
        })
    }

    /// Saves `position` under the cursor `name` durably (replacing the previous value). The default
    /// implementation answers [`Error::Unavailable`](crate::Error::Unavailable).
    fn save_cursor<'a>(&'a self, name: &'a str, position: u64) -> BoxFuture<'a, Result<()>> {
        let _ = (name, position);
        Box::pin(async {
            Err(crate::Error::unavailable(
                "this event store keeps no cursors",
            ))
        })
    }

    /// Every saved cursor and its position, by name. The default implementation answers
    /// [`Error::Unavailable`](crate::Error::Unavailable).
    fn cursors(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>> {
        Box::pin(async {
            Err(crate::Error::unavailable(
                "this event store keeps no cursors",
            ))
        })
    }

    /// Copies events read from another store into this one as they are stored there: same positions,
    /// ids, contents and `recorded_at` times (moving a store to another backend; `tamma events copy`).
    /// Not an append: nothing is checked against a condition and nothing is stamped.
    ///
    /// `events` are at consecutive positions, the first right after this store's head, or — in a store
    /// that never held an event (head 0) — at any position, the ones before it then counting as removed
    /// (as retention leaves them). Atomic: all or nothing. Returns the new head. Subscribers see the
    /// events as if appended.
    ///
    /// # Errors
    /// [`Error::EmptyAppend`](crate::Error::EmptyAppend); [`Error::InvalidEvent`](crate::Error::InvalidEvent)
    /// naming `events[i].position` when the positions do not follow on, or an event as
    /// [`append`](Self::append) would; [`Error::DuplicateEventId`](crate::Error::DuplicateEventId) when an id
    /// is stored already (nothing is written); backend errors. The default implementation answers
    /// [`Error::Unavailable`](crate::Error::Unavailable).
    fn import(&self, events: Vec<SequencedEvent>) -> BoxFuture<'_, Result<u64>> {
        let _ = events;
        Box::pin(async {
            Err(crate::Error::unavailable(
                "this event store cannot import events",
            ))
        })
    }
}

impl<T: EventStore + ?Sized> EventStore for Arc<T> {
    fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> BoxFuture<'_, Result<AppendResult>> {
        (**self).append(events, condition)
    }
    fn read(&self, query: Query, options: ReadOptions) -> EventStream {
        (**self).read(query, options)
    }
    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SequencedEvent>>> {
        (**self).get(id)
    }
    fn head(&self) -> BoxFuture<'_, Result<u64>> {
        (**self).head()
    }
    fn subscribe(&self, query: Query, after: u64) -> EventStream {
        (**self).subscribe(query, after)
    }
    fn delete_before(&self, cutoff: DateTime<Utc>) -> BoxFuture<'_, Result<u64>> {
        (**self).delete_before(cutoff)
    }
    fn health(&self) -> BoxFuture<'_, Result<StoreHealth>> {
        (**self).health()
    }
    fn load_cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        (**self).load_cursor(name)
    }
    fn save_cursor<'a>(&'a self, name: &'a str, position: u64) -> BoxFuture<'a, Result<()>> {
        (**self).save_cursor(name, position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_result_wire() {
        let r = AppendResult {
            positions: vec![4, 5],
            duplicate: false,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"positions": [4, 5], "lastPosition": 5, "duplicate": false})
        );
        let h = StoreHealth {
            head: 3,
            queue_depth: 0,
            last_commit_age: Some(Duration::from_millis(1500)),
            syncs: None,
            last_commit_error: None,
        };
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            serde_json::json!({"head": 3, "queueDepth": 0, "lastCommitAge": 1500})
        );
        let h = StoreHealth {
            syncs: Some(SyncStats {
                count: 7,
                total: Duration::from_micros(1234),
            }),
            ..h
        };
        assert_eq!(
            serde_json::to_value(&h).unwrap()["syncs"],
            serde_json::json!({"count": 7, "totalUs": 1234})
        );
    }

    #[test]
    fn hooks() {
        let h = StoreHooks::delay_commits_where(Duration::from_millis(5), |e| {
            e[0].event_type == "SLOW"
        });
        assert_eq!(
            h.commit_delay_for(&[Event::new("SLOW")]),
            Some(Duration::from_millis(5))
        );
        assert_eq!(h.commit_delay_for(&[Event::new("FAST")]), None);
        assert_eq!(
            StoreHooks::default().commit_delay_for(&[Event::new("SLOW")]),
            None
        );
        assert!(format!("{h:?}").contains("true"));
    }
}
