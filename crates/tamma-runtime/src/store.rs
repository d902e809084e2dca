//! Opening the configured event store.

use std::sync::Arc;

use tamma_events::{EventStorageConfig, EventStore, MemoryStore, StoreHooks};
use tamma_events_postgres::PostgresStore;
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

use crate::config::TammaConfig;
use crate::error::{Error, Result};

/// Opens the store `events.storage` names: the embedded SQLite file (default, `<dataDir>/events.db`),
/// PostgreSQL (the `database` section), or memory (tests and demos; nothing survives a restart).
///
/// # Errors
/// [`Error::Store`] naming the backend and why it could not be opened.
pub async fn open_store(config: &TammaConfig) -> Result<Arc<dyn EventStore>> {
    let limits = config.events.limits();
    match &config.events.storage {
        EventStorageConfig::Sqlite(s) => {
            let path = s.resolve_path(&config.data_dir());
            let options = SqliteOptions {
                limits,
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open(&path, options).map_err(|e| Error::Store {
                backend: "sqlite",
                source: Box::new(e),
            })?;
            Ok(Arc::new(store))
        }
        EventStorageConfig::Postgres(_) => {
            // Validation guarantees the section exists when the backend is postgres.
            let db = config.database.clone().unwrap_or_default();
            let store = PostgresStore::connect(&db, limits)
                .await
                .map_err(|e| Error::Store {
                    backend: "postgres",
                    source: Box::new(e),
                })?;
            Ok(Arc::new(store))
        }
        EventStorageConfig::Memory(_) => Ok(Arc::new(MemoryStore::with_options(
            limits,
            StoreHooks::default(),
        ))),
    }
}
