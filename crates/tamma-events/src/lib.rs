//! The DCB event store contract of Tamma: event types, queries, the object-safe [`EventStore`] trait,
//! its error type, and [`MemoryStore`], the in-memory reference implementation.
//!
//! The contract is the Dynamic Consistency Boundary specification with stronger guarantees: positions are
//! gapless and in commit order, appends are idempotent by event id, subscriptions never skip. Backends
//! live in their own crates (`tamma-events-sqlite`, `tamma-events-postgres`) and all pass the conformance
//! suite of `tamma-events-testkit`. This crate is light: no database, no HTTP.
//!
//! Depend on it to produce or consume events through any backend (`Arc<dyn EventStore>`), or to write a
//! backend. A backend reuses [`validate_append`], [`validate_import`], [`resolve_ids`] and [`subscription`]
//! so that every backend checks input, idempotency, imports and subscription cursors the same way.
//! [`EventStore::import`] takes another store's events at their own positions and commit times (moving a
//! store to another backend).
//!
//! | item | what |
//! |---|---|
//! | [`Event`], [`EventMetadata`], [`Tags`], [`SequencedEvent`] | events in and out |
//! | [`Query`], [`QueryItem`], [`AppendCondition`], [`ReadOptions`], [`EventFilter`] | selecting events |
//! | [`EventStore`], [`AppendResult`], [`StoreHealth`], [`SyncStats`], [`StoreCheck`] | the store |
//! | [`EventsConfig`] | the `events` config section |
//! | [`key_runs`], [`LastPositions`], [`write_json_str`] | for backends: tag and type runs, conditions a writer rules out itself, JSON text |
//!
//! ```
//! use futures::StreamExt;
//! use tamma_events::{AppendCondition, Error, Event, EventStore, MemoryStore, Query, QueryItem};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store: std::sync::Arc<dyn EventStore> = std::sync::Arc::new(MemoryStore::new());
//! let mut live = store.subscribe(Query::all(), 0);
//!
//! // Only one "claim" of task t-1 may ever be appended.
//! let claimed = Query::item(QueryItem::types(["TASK.CLAIMED"]).with_tag("task:t-1"));
//! let claim = || vec![Event::new("TASK.CLAIMED").tag("task:t-1")];
//! store.append(claim(), Some(AppendCondition::new(claimed.clone()))).await?;
//! let second = store.append(claim(), Some(AppendCondition::new(claimed))).await;
//! assert!(matches!(second, Err(Error::AppendConditionFailed { position: 1 })));
//!
//! let first = live.next().await.unwrap()?;
//! assert_eq!((first.position, first.event.event_type.as_str()), (1, "TASK.CLAIMED"));
//! # Ok::<(), Error>(())
//! # }).unwrap();
//! ```

mod bounds;
mod check;
mod config;
mod data;
mod error;
mod event;
mod filter;
mod json;
mod memory;
mod query;
mod runs;
mod store;
mod subscription;
mod tags;
mod validate;

pub use bounds::LastPositions;
pub use check::StoreCheck;
pub use config::{
    EventStorageConfig, EventsConfig, MemoryStorageConfig, PostgresStorageConfig,
    SqliteStorageConfig,
};
pub use data::EventData;
pub use error::{BoxError, Error, Result};
pub use event::{
    Event, EventMetadata, EventSource, MAX_TAG_LEN, MAX_TYPE_LEN, SequencedEvent, TIMESTAMP_YEARS,
};
pub use filter::{EventFilter, glob_match, read_filtered};
pub use json::write_json_str;
pub use memory::MemoryStore;
pub use query::{AppendCondition, MAX_QUERY_ITEMS, MAX_QUERY_TERMS, Query, QueryItem, ReadOptions};
pub use runs::key_runs;
pub use store::{
    AppendResult, CommitDelayFn, EventStore, EventStream, Limits, StoreHealth, StoreHooks,
    SyncStats,
};
pub use subscription::{PageFetch, SubscriptionSource, subscription};
pub use tags::Tags;
pub use validate::{IdCheck, resolve_ids, validate_append, validate_append_sized, validate_import};
