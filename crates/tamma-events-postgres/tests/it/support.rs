//! Fresh databases for tests.

use std::sync::Arc;
use std::time::Duration;

use tamma_core::DurationMs;
use tamma_events::{Limits, StoreHooks};
use tamma_events_postgres::{PostgresConfig, PostgresStore};
use tamma_events_testkit::Fresh;
use tokio_postgres::{Client, NoTls};

/// The server every test uses; `.ci/run` makes sure it is up.
pub(crate) const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A connection to `SERVER/<db>`. Fails the test when the server cannot be reached — in CI and out of it,
/// since these tests exist to run against a real server.
pub(crate) async fn connect(db: &str) -> Client {
    let url = format!("{SERVER}/{db}");
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(&url, NoTls),
    )
    .await;
    #[allow(clippy::disallowed_methods)] // Tests decide how loudly a missing service fails.
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let (client, connection) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!(
            "PostgreSQL is not reachable at {url}: {e} (CI={ci}); these tests need the real server"
        ),
        Err(_) => panic!("PostgreSQL at {url} did not answer within 10s (CI={ci})"),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database of its own for one test, dropped (with any connection still open) when this is dropped.
pub(crate) struct TestDb {
    /// The database name.
    pub(crate) name: String,
}

impl TestDb {
    pub(crate) async fn create() -> Self {
        let name = format!("tamma_test_{}", uuid::Uuid::new_v4().simple());
        connect("test")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        Self { name }
    }

    pub(crate) fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    /// Store settings for tests: a small pool, a short poll interval.
    pub(crate) fn config(&self) -> PostgresConfig {
        PostgresConfig {
            pool_size: 4,
            poll_interval: DurationMs::from_millis(200),
            ..PostgresConfig::with_url(self.url())
        }
    }

    /// A plain connection to this database.
    pub(crate) async fn client(&self) -> Client {
        connect(&self.name).await
    }

    pub(crate) async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.config(), Limits::default())
            .await
            .expect("open the store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                connect("test")
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// The conformance suite's factory: a fresh database and a store on it.
pub(crate) async fn fresh(hooks: StoreHooks) -> Fresh {
    let db = TestDb::create().await;
    let store = PostgresStore::connect_with_hooks(&db.config(), Limits::default(), hooks)
        .await
        .expect("open the store");
    Fresh::new(Arc::new(store)).keep(db)
}
