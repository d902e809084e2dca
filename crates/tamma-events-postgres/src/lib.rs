//! The Tamma event store on PostgreSQL: many machines, one store.
//!
//! Implements the DCB contract of [`tamma_events::EventStore`] (gapless, commit-ordered positions;
//! idempotent appends; subscriptions that never skip) on a PostgreSQL database that several Tamma
//! processes share. Depend on it from the runtime when `events.storage.type` is `postgres`; everything
//! else should hold the store as `Arc<dyn EventStore>`.
//!
//! | piece | how |
//! |---|---|
//! | appends | one group-commit writer per process; each batch is one call of a server-side function (`tamma_append` for one append, `tamma_append_group` for several), which takes a transaction-scoped advisory lock, reads the head after the lock (READ COMMITTED), checks each append in order against the stored events and the batch's earlier appends, inserts (one statement for a whole group), and `NOTIFY`s |
//! | reads | streams of pages over a pool (`deadpool-postgres`), tags and types indexed by runs `(key, first, last)` in `(key, last)` B-trees |
//! | subscriptions | own cursor per subscriber, woken by `LISTEN tamma_events`, polling as the fallback |
//! | schema | versioned migrations in `tamma_schema_migrations`, applied at start under an advisory lock |
//! | retention | [`EventStore::delete_before`](tamma_events::EventStore::delete_before) removes a prefix in chunks, one process at a time |
//! | errors | [`classify`] / [`to_store_error`]: lost connections are `Unavailable`, `40001`/`40P01`/timeouts transient |
//! | TLS | libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`), `sslrootcert` and the client certificate `sslcert`/`sslkey` in the URL, on rustls |
//!
//! Why `tokio-postgres` (with `deadpool-postgres`) and not `sqlx`: the append path is one prepared
//! statement with array parameters in binary format, `LISTEN` needs the raw connection's message stream
//! (`Connection::poll_message`), and no compile-time query checking is needed for a dozen statements.
//!
//! ```no_run
//! use std::sync::Arc;
//! use futures::StreamExt;
//! use tamma_events::{AppendCondition, Event, EventStore, Limits, Query, QueryItem};
//! use tamma_events_postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PostgresConfig {
//!     pool_size: 8,
//!     ..PostgresConfig::with_url(
//!         "postgres://tamma@db.internal:5432/tamma?sslmode=verify-full&sslrootcert=/etc/tamma/db-ca.pem",
//!     )
//! };
//! let store: Arc<dyn EventStore> = Arc::new(PostgresStore::connect(&config, Limits::default()).await?);
//! let mut live = store.subscribe(Query::all(), 0);
//!
//! let claimed = Query::item(QueryItem::types(["TASK.CLAIMED"]).with_tag("task:t-1"));
//! store
//!     .append(vec![Event::new("TASK.CLAIMED").tag("task:t-1")], Some(AppendCondition::new(claimed)))
//!     .await?;
//! let first = live.next().await.expect("open")?;
//! println!("{} at {}", first.event.event_type, first.position);
//! # Ok(()) }
//! ```

mod config;
mod error;
mod listen;
mod schema;
mod store;
mod tls;
mod writer;

pub use config::PostgresConfig;
pub use error::{Error, PgErrorClass, classify, classify_code, to_store_error};
pub use store::PostgresStore;
