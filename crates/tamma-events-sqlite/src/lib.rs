//! The embedded Tamma event store: one SQLite file (`<dataDir>/events.db` by default) implementing the
//! DCB contract of [`tamma_events::EventStore`].
//!
//! - WAL journal with `synchronous=FULL`: an append is acknowledged only after its commit is synced, so an
//!   acknowledged event survives `kill -9` and power loss.
//! - One writer thread with **group commit**: concurrent appends queue, one transaction and one WAL sync
//!   cover all of them, each checked in order (conditions see the earlier appends of the same batch) and
//!   answered on its own; a failed condition fails only its own append.
//! - Positions are the table's rowid, assigned by the single writer: gapless and in commit order.
//! - Tags and types are indexed by runs `(key, first, last)`, so events written together that share a key
//!   take one index row; a query walks the runs of its key in order and stops at its limit. Reads use
//!   their own connections and never block the writer.
//! - SQLite BUSY/LOCKED (another process holding the lock past the busy timeout) is a transient error.
//! - A background thread copies committed WAL pages into the database file (a passive checkpoint), so
//!   the writer's own checkpoint finds little left to copy; the writer's WAL writes go out as one
//!   `pwrite` per commit through a small VFS over SQLite's default one (the file format and locking
//!   are SQLite's own: other processes open the file with any SQLite). The writer binds the events'
//!   texts to its inserts in place (`SQLITE_STATIC`), where rusqlite would have SQLite copy each one.
//! - [`backup`] copies the file as of one moment while a node keeps appending (SQLite's backup API),
//!   checks the copy and renames it into place only when it is whole; [`restore`] puts such a copy in
//!   place of a store no process has open, keeping the store it replaces.
//!
//! ```
//! use futures::TryStreamExt;
//! use tamma_events::{AppendCondition, Event, EventStore, Query, QueryItem, ReadOptions};
//! use tamma_events_sqlite::{SqliteOptions, SqliteStore};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("events.db"), SqliteOptions::default())?;
//! let wf = Query::item(QueryItem::tags(["workflow:wf-1"]));
//! let first = store.append(vec![Event::new("WORKFLOW.STARTED").tag("workflow:wf-1")], None).await?;
//! let cond = AppendCondition::new(wf.clone()).after(first.last_position());
//! store.append(vec![Event::new("WORKFLOW.COMPLETED").tag("workflow:wf-1")], Some(cond)).await?;
//! let events: Vec<_> = store.read(wf, ReadOptions::forwards()).try_collect().await?;
//! assert_eq!(events.len(), 2);
//! # Ok::<(), tamma_events::Error>(())
//! # }).unwrap();
//! ```

mod backup;
mod error;
mod schema;
mod static_bind;
mod store;
mod wal_buffer;

pub use backup::{BackupError, BackupReport, RestoreReport, backup, restore};
pub use error::{Error, StoreFailure, is_transient};
pub use store::{SqliteOptions, SqliteStore, WriterSettings};
