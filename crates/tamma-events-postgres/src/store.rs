//! The PostgreSQL event store: a pool for reads, a group-commit writer, a head watcher.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tamma_events::{
    AppendCondition, AppendResult, Error, Event, EventStore, EventStream, Limits, PageFetch, Query,
    ReadOptions, Result, SequencedEvent, StoreCheck, StoreHealth, StoreHooks, SubscriptionSource,
    subscription, validate_append, validate_import,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

use crate::config::PostgresConfig;
use crate::error::{Error as OpenError, pool_error, to_store_error};
use crate::listen;
use crate::schema::{self, HEAD_SQL, RETENTION_LOCK, decode, page_sql, to_u64};
use crate::tls::Target;
use crate::writer::{self, Request};

/// Events per page of a read.
const READ_PAGE: u64 = 1_000;
/// Events per page of a subscription (the most a slow subscriber holds in memory).
const SUBSCRIPTION_PAGE: u64 = 512;
/// Appends that may wait for the writer before `append` waits for room (backpressure on producers).
const QUEUE_CAPACITY: usize = 16_384;
/// Events retention removes per transaction (each transaction removes a prefix).
const RETENTION_CHUNK: i64 = 10_000;

/// State the store shares with its writer and head-watcher tasks.
pub(crate) struct Shared {
    /// The committed head, as far as this process knows; subscriptions wait on it.
    head: watch::Sender<u64>,
    /// Appends queued for the writer.
    pub(crate) queued: AtomicUsize,
    /// When the writer last committed.
    pub(crate) last_commit: Mutex<Option<Instant>>,
    /// Why the writer's last transaction failed, until one succeeds.
    pub(crate) last_commit_error: Mutex<Option<String>>,
    /// Live subscriptions of this store: the head watcher listens and polls only while there are some.
    pub(crate) subscribers: AtomicUsize,
    /// Wakes the head watcher when a subscription starts or ends.
    pub(crate) wake: tokio::sync::Notify,
}

impl Shared {
    /// Raises the known head to `head` (it never goes down) and wakes subscriptions.
    pub(crate) fn publish(&self, head: u64) {
        self.head.send_if_modified(|h| {
            let higher = head > *h;
            if higher {
                *h = head;
            }
            higher
        });
    }
}

/// One live subscription, counted in [`Shared::subscribers`] from its start to its drop; both wake the
/// head watcher.
struct Subscribed(Arc<Shared>);

impl Subscribed {
    fn start(shared: Arc<Shared>) -> Self {
        shared.subscribers.fetch_add(1, Ordering::AcqRel);
        shared.wake.notify_one();
        Self(shared)
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::AcqRel);
        self.0.wake.notify_one();
    }
}

struct Inner {
    pool: Pool,
    /// The health check's own connection, opened when first needed and again after it fails: a pool
    /// saturated by reads must not make the store look unhealthy.
    health: tokio::sync::Mutex<Option<Client>>,
    pg: Target,
    /// The client-side bound of one statement's answer (see [`bounded`]).
    answer_within: Option<Duration>,
    shared: Arc<Shared>,
    requests: mpsc::Sender<Request>,
    limits: Limits,
    hooks: StoreHooks,
    /// Dropped with the store: stops the head watcher, which ends subscriptions.
    _shutdown: oneshot::Sender<()>,
}

/// The DCB event store on PostgreSQL, for many machines sharing one store.
///
/// - **Appends** go through one group-commit writer per process: every append queued while the previous
///   transaction committed rides in the next one, a single call of the server-side `tamma_append`
///   function. It takes a transaction-scoped advisory lock first and reads the head only then (READ
///   COMMITTED), so positions are gapless and in commit order across every process; each append of the
///   batch is checked in order against the state including the earlier ones, and gets its own result.
/// - **Reads** are streams of pages from a pool; tag and type queries walk the key's runs
///   `(key, first, last)` and the events each covers, and stop at their limit.
/// - **Health** reads the head on a connection of its own, so a pool saturated by reads does not make
///   the store look unhealthy.
/// - **Subscriptions** read from their own cursor and are woken by `LISTEN/NOTIFY` (any process's
///   appends), with polling as the fallback.
/// - **Retention** removes a prefix in chunks, one process at a time (advisory lock).
///
/// Cloning is cheap and shares the store; the background tasks stop when the last clone is dropped.
///
/// ```no_run
/// use tamma_events::{Event, EventStore, Limits};
/// use tamma_events_postgres::{PostgresConfig, PostgresStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = PostgresConfig::with_url("postgres://tamma@db:5432/tamma");
/// let store = PostgresStore::connect(&config, Limits::default()).await?;
/// let r = store.append(vec![Event::new("TASK.STARTED").tag("task:t-1")], None).await?;
/// println!("stored at {}", r.last_position());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("head", &*self.inner.shared.head.borrow())
            .field("queued", &self.inner.shared.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Builds the driver's settings from the config: timeouts, statement timeout, application name, and
/// the TLS connector for the connection string's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`.
fn target(config: &PostgresConfig) -> Result<Target, OpenError> {
    let invalid = |message: String| OpenError::InvalidConfig {
        path: "url",
        message,
    };
    let (rest, tls) = crate::tls::split(config.url.expose()).map_err(&invalid)?;
    let mut pg: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        invalid(format!("is not a PostgreSQL connection string: {e}"))
    })?;
    pg.ssl_mode(tls.driver_mode());
    pg.connect_timeout(config.connect_timeout.as_duration());
    pg.application_name("tamma-events");
    pg.options(format!(
        "-c statement_timeout={} -c default_transaction_isolation=read\\ committed",
        config.statement_timeout.as_millis()
    ));
    let tls = tls.connector().map_err(invalid)?;
    Ok(Target { pg, tls })
}

/// A connection to the server, encrypted or not.
pub(crate) type PgConnection =
    Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Opens one connection outside the pool; `drive` runs the connection (it must poll it to the end).
pub(crate) async fn connect_client_with<F, Fut>(target: &Target, drive: F) -> Result<Client>
where
    F: FnOnce(PgConnection) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = target
        .pg
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(30));
    let (client, connection) = tokio::time::timeout(limit, target.pg.connect(target.tls.clone()))
        .await
        .map_err(|_| {
            Error::unavailable(format!("connecting to PostgreSQL took more than {limit:?}"))
        })?
        .map_err(to_store_error)?;
    tokio::spawn(drive(connection));
    Ok(client)
}

/// Opens one connection outside the pool, driven by a task of its own.
pub(crate) async fn connect_client(target: &Target) -> Result<Client> {
    connect_client_with(target, |connection| async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "event store connection ended");
        }
    })
    .await
}

impl PostgresStore {
    /// Connects, applies pending migrations and starts the writer and the head watcher.
    ///
    /// Needs a Tokio runtime (the background tasks are spawned on it).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a malformed URL or pool size,
    /// [`Error::Connect`](crate::Error::Connect) when the server cannot be reached,
    /// [`Error::Migrate`](crate::Error::Migrate) / [`Error::SchemaTooNew`](crate::Error::SchemaTooNew).
    pub async fn connect(config: &PostgresConfig, limits: Limits) -> Result<Self, OpenError> {
        Self::connect_with_hooks(config, limits, StoreHooks::default()).await
    }

    /// [`connect`](Self::connect) with test hooks (a commit delay); production code passes
    /// `StoreHooks::default()`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with_hooks(
        config: &PostgresConfig,
        limits: Limits,
        hooks: StoreHooks,
    ) -> Result<Self, OpenError> {
        if config.pool_size == 0 {
            return Err(OpenError::InvalidConfig {
                path: "poolSize",
                message: "must be at least 1".to_owned(),
            });
        }
        let pg = target(config)?;
        let mut client = connect_client(&pg).await.map_err(OpenError::connect)?;
        schema::migrate(&mut client).await?;
        let head: i64 = client
            .query_one(HEAD_SQL, &[])
            .await
            .map_err(OpenError::connect)?
            .get(0);
        drop(client);

        let manager = Manager::from_config(
            pg.pg.clone(),
            pg.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(usize::try_from(config.pool_size).unwrap_or(usize::MAX))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.acquire_timeout.as_duration()))
            .create_timeout(Some(config.connect_timeout.as_duration()))
            .recycle_timeout(Some(config.connect_timeout.as_duration()))
            .build()
            .map_err(|e| OpenError::InvalidConfig {
                path: "poolSize",
                message: e.to_string(),
            })?;

        let (head_tx, _) = watch::channel(to_u64(head));
        let shared = Arc::new(Shared {
            head: head_tx,
            queued: AtomicUsize::new(0),
            last_commit: Mutex::new(None),
            last_commit_error: Mutex::new(None),
            subscribers: AtomicUsize::new(0),
            wake: tokio::sync::Notify::new(),
        });
        let (requests, rx) = mpsc::channel(QUEUE_CAPACITY);
        // Half again the server's limit (at least a second more): time for the server to report its
        // own timeout first. No limit when the server has none.
        let statement_timeout = config.statement_timeout.as_duration();
        let answer_within = (!statement_timeout.is_zero())
            .then(|| statement_timeout + (statement_timeout / 2).max(Duration::from_secs(1)));
        tokio::spawn(writer::run(rx, pg.clone(), shared.clone(), answer_within));
        let (shutdown, shutdown_rx) = oneshot::channel();
        tokio::spawn(listen::run(
            pg.clone(),
            pool.clone(),
            shared.clone(),
            shutdown_rx,
            config.poll_interval.as_duration(),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                health: tokio::sync::Mutex::new(None),
                pg,
                answer_within,
                shared,
                requests,
                limits,
                hooks,
                _shutdown: shutdown,
            }),
        })
    }

    /// The `events:store` health check over this store (head, writer queue depth, last commit age).
    #[must_use]
    pub fn health_check(&self) -> StoreCheck {
        StoreCheck::new(Arc::new(self.clone()))
    }
}

impl Inner {
    async fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> Result<AppendResult> {
        validate_append(&events, condition.as_ref(), &self.limits)?;
        let delay = self.hooks.commit_delay_for(&events);
        let (request, reply) = Request::new(events, condition, delay)?;
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        if self.requests.send(request).await.is_err() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::unavailable("the event store writer has stopped"));
        }
        reply
            .await
            .unwrap_or_else(|_| Err(Error::unavailable("the event store writer has stopped")))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }

    /// The head, read on the health check's own connection (one at a time).
    async fn health_head(&self) -> Result<u64> {
        let mut conn = self.health.lock().await;
        let read = bounded(self.answer_within, async {
            if conn.as_ref().is_none_or(Client::is_closed) {
                *conn = Some(connect_client(&self.pg).await?);
            }
            // Opened just above when missing.
            let Some(c) = conn.as_ref() else {
                return Err(Error::unavailable("no health connection"));
            };
            let row = c.query_one(HEAD_SQL, &[]).await.map_err(to_store_error)?;
            Ok(to_u64(row.get(0)))
        })
        .await;
        if read.is_err() {
            // Its state is unknown: the next check opens a new one.
            *conn = None;
        }
        read
    }

    async fn head(&self) -> Result<u64> {
        bounded(self.answer_within, async {
            let c = self.client().await?;
            let row = c.query_one(HEAD_SQL, &[]).await.map_err(to_store_error)?;
            Ok(to_u64(row.get(0)))
        })
        .await
    }

    /// [`EventStore::import`]: one transaction under the append lock, so it is serialised with every
    /// process's appends; the events at their own positions and commit times, with their runs.
    async fn import(&self, events: Vec<SequencedEvent>) -> Result<u64> {
        let mut c = self.client().await?;
        let imported = bounded(
            self.answer_within,
            import_into(&mut c, events, &self.limits),
        )
        .await;
        if imported.is_err() {
            // A transaction cut short by the client-side bound may still be open: never pool it.
            drop(deadpool_postgres::Object::take(c));
        }
        let head = imported?;
        *self.shared.last_commit.lock() = Some(Instant::now());
        self.shared.publish(head);
        Ok(head)
    }

    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        let mut c = self.client().await?;
        // Session lock: retention runs in several transactions, and never twice at once.
        c.execute("SELECT pg_advisory_lock($1)", &[&RETENTION_LOCK])
            .await
            .map_err(|e| match crate::error::classify(&e) {
                // A statement timeout here is the wait for the lock, not the work: say whose.
                crate::error::PgErrorClass::Transient => Error::backend(
                    format!(
                        "waiting for the retention lock, which another process holds while it \
                         applies retention: {}",
                        crate::error::describe(&e)
                    ),
                    true,
                ),
                _ => to_store_error(e),
            })?;
        let result = delete_prefix(&mut c, cutoff).await;
        let unlocked = c
            .execute("SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK])
            .await;
        if result.is_err() || unlocked.is_err() {
            // Never hand a connection that may still hold the lock back to the pool.
            drop(deadpool_postgres::Object::take(c));
        }
        let removed = result.map_err(to_store_error)?;
        metrics::counter!(tamma_core::metric_names::EVENTS_RETENTION_REMOVED_TOTAL)
            .increment(removed);
        Ok(removed)
    }
}

/// The transaction of [`Inner::import`]; returns the new head.
async fn import_into(
    c: &mut deadpool_postgres::Object,
    events: Vec<SequencedEvent>,
    limits: &Limits,
) -> Result<u64> {
    let tx = c.transaction().await.map_err(to_store_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::APPEND_LOCK])
        .await
        .map_err(to_store_error)?;
    // Read after the lock: includes the previous holder's commit.
    let head = to_u64(
        tx.query_one(HEAD_SQL, &[])
            .await
            .map_err(to_store_error)?
            .get(0),
    );
    validate_import(&events, head, limits)?;
    let ids: Vec<Uuid> = events.iter().map(|e| e.event.id).collect();
    let stored: Vec<Uuid> = tx
        .query(
            "SELECT id FROM tamma_events WHERE id = ANY($1) ORDER BY position",
            &[&ids],
        )
        .await
        .map_err(to_store_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !stored.is_empty() {
        return Err(Error::DuplicateEventId { ids: stored });
    }
    let first = events[0].position;
    let last = first + events.len() as u64 - 1;
    let positions: Vec<i64> = events.iter().map(|e| schema::to_i64(e.position)).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event.event_type.as_str()).collect();
    let recorded: Vec<DateTime<Utc>> = events.iter().map(|e| e.recorded_at).collect();
    let timestamps: Vec<DateTime<Utc>> = events
        .iter()
        .map(|e| e.event.timestamp.unwrap_or(e.recorded_at))
        .collect();
    let tags: Vec<String> = events
        .iter()
        .map(|e| writer::tags_literal(&e.event.tags))
        .collect();
    let metadata: Vec<Option<String>> = events
        .iter()
        .map(|e| {
            (!e.event.metadata.is_empty()).then(|| {
                let mut buf = Vec::with_capacity(128);
                e.event.metadata.write_json(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            })
        })
        .collect();
    let data: Vec<&str> = events.iter().map(|e| e.event.data.as_json()).collect();
    tx.execute(
        "INSERT INTO tamma_events (position, id, type, timestamp, recorded_at, tags, metadata, data)
         SELECT i.position, i.id, i.type, i.ts, i.rec, i.tags::text[], i.meta::jsonb, i.data::json
           FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                       $6::text[], $7::text[], $8::text[])
                AS i (position, id, type, ts, rec, tags, meta, data)",
        &[
            &positions,
            &ids,
            &types,
            &timestamps,
            &recorded,
            &tags,
            &metadata,
            &data,
        ],
    )
    .await
    .map_err(to_store_error)?;
    let numbered = || {
        events
            .iter()
            .map(|e| (schema::to_i64(e.position), &e.event))
    };
    for (table, runs) in [
        (
            "tamma_tag_runs (tag, first, last)",
            tamma_events::key_runs(numbered(), |e| e.tags.iter()),
        ),
        (
            "tamma_type_runs (type, first, last)",
            tamma_events::key_runs(numbered(), |e| std::iter::once(e.event_type.as_str())),
        ),
    ] {
        let keys: Vec<&str> = runs.iter().map(|r| r.0).collect();
        let firsts: Vec<i64> = runs.iter().map(|r| r.1).collect();
        let lasts: Vec<i64> = runs.iter().map(|r| r.2).collect();
        tx.execute(
            &format!(
                "INSERT INTO {table} SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
            ),
            &[&keys, &firsts, &lasts],
        )
        .await
        .map_err(to_store_error)?;
    }
    if head == 0 && first > 1 {
        // The positions before the first imported one count as removed, as in the source.
        tx.execute(
            "UPDATE tamma_events_state SET removed_through = greatest(removed_through, $1)",
            &[&schema::to_i64(first - 1)],
        )
        .await
        .map_err(to_store_error)?;
    }
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&schema::CHANNEL, &last.to_string()],
    )
    .await
    .map_err(to_store_error)?;
    tx.commit().await.map_err(to_store_error)?;
    Ok(last)
}

/// Removes every event up to the last one recorded before `cutoff`, in chunks from the oldest, so each
/// committed step removes a prefix. Returns how many events were removed.
async fn delete_prefix(
    c: &mut deadpool_postgres::Object,
    cutoff: DateTime<Utc>,
) -> Result<u64, tokio_postgres::Error> {
    // recorded_at never decreases with position, so this is the end of the prefix.
    let last: Option<i64> = c
        .query_one(
            "SELECT max(position) FROM tamma_events WHERE recorded_at < $1",
            &[&cutoff],
        )
        .await?
        .get(0);
    let Some(last) = last else { return Ok(0) };
    let mut removed = 0u64;
    loop {
        let tx = c.transaction().await?;
        let first: Option<i64> = tx
            .query_one("SELECT min(position) FROM tamma_events", &[])
            .await?
            .get(0);
        let Some(first) = first.filter(|f| *f <= last) else {
            tx.commit().await?;
            break;
        };
        let through = last.min(first.saturating_add(RETENTION_CHUNK - 1));
        let n: i64 = tx
            .query_one(
                "WITH d AS (DELETE FROM tamma_events WHERE position <= $1 RETURNING position)
                 SELECT count(*) FROM d",
                &[&through],
            )
            .await?
            .get(0);
        // Runs wholly removed go; a run reaching past the cut keeps its remaining part. (Appends never
        // change a stored run, so this cannot conflict with them.)
        tx.batch_execute(&format!(
            "DELETE FROM tamma_tag_runs WHERE first <= {through} AND last <= {through};
             UPDATE tamma_tag_runs SET first = {through} + 1 WHERE first <= {through} AND last > {through};
             DELETE FROM tamma_type_runs WHERE first <= {through} AND last <= {through};
             UPDATE tamma_type_runs SET first = {through} + 1 WHERE first <= {through} AND last > {through};"
        ))
        .await?;
        tx.execute(
            "UPDATE tamma_events_state SET removed_through = greatest(removed_through, $1)",
            &[&through],
        )
        .await?;
        tx.commit().await?;
        removed += to_u64(n);
    }
    Ok(removed)
}

/// Runs `f` (a statement on a pooled connection) under the client-side bound `within`, as the writer's
/// commits are: in a network partition the server's `statement_timeout` cannot arrive, and the caller
/// would wait until the operating system gives up on the connection.
async fn bounded<T>(within: Option<Duration>, f: impl Future<Output = Result<T>>) -> Result<T> {
    match within {
        None => f.await,
        Some(limit) => tokio::time::timeout(limit, f).await.unwrap_or_else(|_| {
            Err(Error::unavailable(format!(
                "PostgreSQL did not answer within {limit:?} (the server or the network to it is stuck)"
            )))
        }),
    }
}

/// Reads one page: events matching `query` from `from` (inclusive), at most `limit`, within `within`.
async fn read_page(
    pool: &Pool,
    within: Option<Duration>,
    query: &Query,
    from: u64,
    backwards: bool,
    limit: u64,
) -> Result<Vec<SequencedEvent>> {
    bounded(
        within,
        read_page_unbounded(pool, query, from, backwards, limit),
    )
    .await
}

async fn read_page_unbounded(
    pool: &Pool,
    query: &Query,
    from: u64,
    backwards: bool,
    limit: u64,
) -> Result<Vec<SequencedEvent>> {
    let page = page_sql(query, from, backwards, limit);
    let c = pool.get().await.map_err(pool_error)?;
    let stmt = c.prepare_cached(&page.sql).await.map_err(to_store_error)?;
    let rows = c
        .query(&stmt, &page.params())
        .await
        .map_err(to_store_error)?;
    let events = rows
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(to_store_error)?;
    metrics::counter!(tamma_core::metric_names::EVENTS_READ_TOTAL).increment(events.len() as u64);
    Ok(events)
}

struct ReadState {
    pool: Pool,
    /// The client-side bound of each statement (see [`bounded`]).
    within: Option<Duration>,
    query: Query,
    /// The next position to read from (inclusive), `None` when done.
    next: Option<u64>,
    backwards: bool,
    remaining: u64,
    /// Forwards: the last position to return (the head when the read needed a second page), so a read
    /// under a steady stream of appends ends.
    bound: Option<u64>,
    buf: VecDeque<SequencedEvent>,
}

/// A read as a stream of pages: each page is one short query, so a slow consumer holds no connection.
fn read_stream(
    pool: Pool,
    within: Option<Duration>,
    query: Query,
    options: ReadOptions,
) -> EventStream {
    let backwards = options.backwards;
    let start = match (options.from, backwards) {
        (Some(f), _) => f,
        (None, false) => 1,
        (None, true) => u64::MAX,
    };
    let state = ReadState {
        pool,
        within,
        query,
        next: Some(start),
        backwards,
        remaining: options.limit.unwrap_or(u64::MAX),
        bound: None,
        buf: VecDeque::new(),
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.buf.pop_front() {
                if !st.backwards && st.bound.is_some_and(|b| e.position > b) {
                    return None;
                }
                st.remaining -= 1;
                return Some((Ok(e), st));
            }
            let from = st.next?;
            if st.remaining == 0 {
                return None;
            }
            let limit = st.remaining.min(READ_PAGE);
            let page =
                match read_page(&st.pool, st.within, &st.query, from, st.backwards, limit).await {
                    Ok(page) => page,
                    Err(e) => {
                        st.next = None;
                        return Some((Err(e), st));
                    }
                };
            st.next = match page.last() {
                Some(last) if page.len() as u64 == limit => {
                    if st.backwards {
                        last.position.checked_sub(1).filter(|p| *p > 0)
                    } else {
                        Some(last.position + 1)
                    }
                }
                _ => None,
            };
            if st.next.is_some() && !st.backwards && st.bound.is_none() {
                let head = bounded(st.within, async {
                    let c = st.pool.get().await.map_err(pool_error)?;
                    c.query_one(HEAD_SQL, &[]).await.map_err(to_store_error)
                })
                .await;
                match head {
                    Ok(row) => st.bound = Some(to_u64(row.get(0))),
                    Err(e) => {
                        st.next = None;
                        return Some((Err(e), st));
                    }
                }
            }
            st.buf.extend(page);
        }
    }))
}

impl EventStore for PostgresStore {
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
        read_stream(
            self.inner.pool.clone(),
            self.inner.answer_within,
            query,
            options,
        )
    }

    fn get(&self, id: Uuid) -> BoxFuture<'_, Result<Option<SequencedEvent>>> {
        Box::pin(bounded(self.inner.answer_within, async move {
            let c = self.inner.client().await?;
            let stmt = c
                .prepare_cached(&schema::get_sql())
                .await
                .map_err(to_store_error)?;
            let row = c.query_opt(&stmt, &[&id]).await.map_err(to_store_error)?;
            row.as_ref().map(decode).transpose().map_err(to_store_error)
        }))
    }

    fn head(&self) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.head())
    }

    fn subscribe(&self, query: Query, after: u64) -> EventStream {
        if let Err(e) = query.validate("query") {
            return Box::pin(futures::stream::once(async { Err(e) }));
        }
        // The fetch holds the store weakly: dropping the store ends the subscription.
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let fetch: PageFetch = Arc::new(move |q: Query, from: u64, limit: u64| {
            let pool = weak
                .upgrade()
                .map(|inner| (inner.pool.clone(), inner.answer_within));
            Box::pin(async move {
                let (pool, within) =
                    pool.ok_or_else(|| Error::unavailable("the event store was closed"))?;
                let page = read_page(&pool, within, &q, from, false, limit).await?;
                metrics::counter!(tamma_core::metric_names::EVENTS_SUBSCRIBED_TOTAL)
                    .increment(page.len() as u64);
                Ok(page)
            })
        });
        let src = SubscriptionSource {
            fetch,
            head: self.inner.shared.head.subscribe(),
            // The head watcher already polls once per interval for the whole store.
            poll_interval: None,
            page_size: SUBSCRIPTION_PAGE,
        };
        // Counted while the stream lives: the head watcher listens only while someone subscribes.
        let live = Subscribed::start(self.inner.shared.clone());
        Box::pin(futures::StreamExt::map(
            subscription(src, query, after),
            move |item| {
                let _live = &live;
                item
            },
        ))
    }

    fn delete_before(&self, cutoff: DateTime<Utc>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.delete_before(cutoff))
    }

    fn health(&self) -> BoxFuture<'_, Result<StoreHealth>> {
        Box::pin(async move {
            let head = self.inner.health_head().await?;
            Ok(StoreHealth {
                head,
                queue_depth: self.inner.shared.queued.load(Ordering::Relaxed),
                last_commit_age: self.inner.shared.last_commit.lock().map(|t| t.elapsed()),
                syncs: None,
                last_commit_error: self.inner.shared.last_commit_error.lock().clone(),
            })
        })
    }

    fn import(&self, events: Vec<SequencedEvent>) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.inner.import(events))
    }

    fn cursors(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>>> {
        Box::pin(bounded(self.inner.answer_within, async move {
            let c = self.inner.client().await?;
            let rows = c
                .query(
                    "SELECT name, position FROM tamma_cursors ORDER BY name",
                    &[],
                )
                .await
                .map_err(to_store_error)?;
            Ok(rows.iter().map(|r| (r.get(0), to_u64(r.get(1)))).collect())
        }))
    }

    fn load_cursor<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<u64>>> {
        Box::pin(async move {
            let c = self.inner.client().await?;
            let row = c
                .query_opt(
                    "SELECT position FROM tamma_cursors WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(to_store_error)?;
            Ok(row.map(|r| to_u64(r.get(0))))
        })
    }

    fn save_cursor<'a>(&'a self, name: &'a str, position: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let c = self.inner.client().await?;
            c.execute(
                "INSERT INTO tamma_cursors (name, position) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now()",
                &[&name, &crate::schema::to_i64(position)],
            )
            .await
            .map_err(to_store_error)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::to_i64;

    #[test]
    fn driver_settings() {
        let c = PostgresConfig {
            statement_timeout: tamma_core::DurationMs::from_millis(1234),
            ..PostgresConfig::with_url("postgres://u@h:5433/db")
        };
        let pg = target(&c).unwrap().pg;
        assert_eq!(pg.get_dbname(), Some("db"));
        assert!(pg.get_options().unwrap().contains("statement_timeout=1234"));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        let bad = PostgresConfig::with_url("postgres://u@h:x/db");
        assert!(matches!(
            target(&bad),
            Err(OpenError::InvalidConfig { path: "url", .. })
        ));
        assert_eq!(to_i64(u64::MAX), i64::MAX);
    }
}
