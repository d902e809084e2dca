//! The store: one writer thread with group commit, a pool of reader connections.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, mpsc};

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tamma_core::metric_names as m;
use tamma_events::{
    AppendCondition, AppendResult, Event, EventStore, EventStream, IdCheck, LastPositions, Limits,
    Query, ReadOptions, SequencedEvent, StoreHealth, StoreHooks, SubscriptionSource, SyncStats,
    key_runs, resolve_ids, subscription, validate_append_sized, validate_import,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::{Error, store_error};
use crate::schema::{self, Encoded, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_VERSION, to_i64};
use crate::static_bind::{OwnedStatements, Statements};

/// Settings of a [`SqliteStore`] beyond its path.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Limits on appended events (`events.maxEventSize`).
    pub limits: Limits,
    /// Test hooks (a commit delay); `StoreHooks::default()` in production.
    pub hooks: StoreHooks,
    /// How long a connection waits for a lock held by another process before failing with a transient
    /// error (SQLite BUSY). Default 5 s.
    pub busy_timeout: Duration,
    /// How often idle subscriptions re-read without a signal, to see commits of other processes sharing
    /// the file. Default 1 s.
    pub poll_interval: Duration,
    /// Most events one group commit carries. Default 10,000.
    pub max_batch_events: usize,
    /// Page cache of each connection, KiB. Default 16 MiB.
    pub cache_kib: u32,
    /// WAL pages after which a commit copies the WAL back into the database file (SQLite's
    /// `wal_autocheckpoint`). Default 4,000 (a WAL of about 16 MiB, reused from its start after each
    /// checkpoint): four times SQLite's default, which measured 10–25% more appends per second here,
    /// since index pages rewritten by many commits are copied once per checkpoint. Larger values make
    /// the commit that checkpoints slower (the p99 of big batches).
    pub wal_autocheckpoint_pages: u32,
    /// Longest a group commit waits for appenders expected back: those the previous commit answered
    /// or that queued during it. Concurrent appenders otherwise split into two halves that take turns,
    /// each commit carrying half of them. It only waits while fewer appends are queued than were
    /// active at the last commit (and fewer than 16: a bigger group commits at once), so a lone
    /// appender never waits. Default 250 µs (16 concurrent appenders measured 8 events per commit
    /// without it, 16 with it, and about 30% more events/s).
    pub group_wait: Duration,
    /// How often a background thread copies committed WAL pages into the database file (a passive
    /// checkpoint on its own connection, which never blocks the writer or readers), at most. The
    /// writer's own checkpoint at [`wal_autocheckpoint_pages`](Self::wal_autocheckpoint_pages) then
    /// finds little left to copy and restarts the WAL from its start. `None`: only the writer
    /// checkpoints. Default 5 ms (measured about 10% more events/s in 1,000-event appends).
    pub checkpoint_interval: Option<Duration>,
    /// Gather each commit's WAL writes into one `pwrite` (a VFS over SQLite's default one, used by
    /// the writer's connection only; see the crate docs). Default `true`.
    pub buffer_wal_writes: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            hooks: StoreHooks::default(),
            busy_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            max_batch_events: 10_000,
            cache_kib: 16 * 1024,
            wal_autocheckpoint_pages: 4000,
            group_wait: Duration::from_micros(250),
            checkpoint_interval: Some(Duration::from_millis(5)),
            buffer_wal_writes: true,
        }
    }
}

/// What SQLite reports for the writer connection's durability settings (read back after opening).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterSettings {
    /// `PRAGMA journal_mode`: `wal`.
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 2 (`FULL`).
    pub synchronous: i64,
    /// `PRAGMA wal_autocheckpoint`: [`SqliteOptions::wal_autocheckpoint_pages`].
    pub wal_autocheckpoint: i64,
}

/// The embedded event store: one SQLite file in WAL mode with `synchronous=FULL`.
///
/// One writer thread owns the only writing connection. Concurrent appends queue to it; it takes every
/// queued append (up to [`SqliteOptions::max_batch_events`]) into one transaction, checks each in order
/// against the state including the earlier appends of the same batch, commits once (one WAL sync) and
/// answers each caller with its own result. An append is acknowledged only after its commit is durable.
/// Reads run on separate connections, which never block the writer and are never blocked by it.
///
/// Cheap to clone (an `Arc`); the writer stops when the last clone is dropped, after finishing the
/// appends already queued.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The background checkpoint thread; it stops when the writer (which holds its signal) stops.
    checkpointer: Option<std::thread::JoinHandle<()>>,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    readers: Arc<Readers>,
    head_rx: watch::Receiver<u64>,
    shared: Arc<Shared>,
    options: SqliteOptions,
    settings: WriterSettings,
}

struct Shared {
    queued: AtomicUsize,
    last_commit: Mutex<Option<Instant>>,
    /// Why the last commit failed, until one succeeds.
    last_commit_error: Mutex<Option<String>>,
    /// WAL syncs the writer made, and their total time in nanoseconds.
    syncs: AtomicU64,
    sync_nanos: AtomicU64,
}

/// One append as the writer gets it. The writer hands it back with the answer, so that its memory is
/// freed by the caller's thread, not the writer's (a free of another thread's allocation takes the
/// allocator's lock, and the writer is the bottleneck).
struct Payload {
    events: Vec<Event>,
    encoded: Encoded,
    condition: Option<AppendCondition>,
}

/// The answer to an append, with its payload back.
type AppendReply = (tamma_events::Result<AppendResult>, Payload);

enum Request {
    Append {
        payload: Payload,
        delay: Option<Duration>,
        reply: oneshot::Sender<AppendReply>,
    },
    Delete {
        cutoff: i64,
        reply: oneshot::Sender<tamma_events::Result<u64>>,
    },
    Cursor {
        name: String,
        position: i64,
        reply: oneshot::Sender<tamma_events::Result<()>>,
    },
    Import {
        events: Vec<SequencedEvent>,
        reply: oneshot::Sender<tamma_events::Result<u64>>,
    },
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`, creating its directory, applying the schema and starting
    /// the writer thread. Blocks briefly on file I/O.
    ///
    /// # Errors
    /// [`Error`] when the file cannot be opened or set up, or was written by a newer schema.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tamma_core::fs::create_private_dir(dir).map_err(|source| Error::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| Error::Open {
            path: path.clone(),
            source,
        };
        let mut conn = if options.buffer_wal_writes {
            crate::wal_buffer::register().map_err(|code| Error::Open {
                path: path.clone(),
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(code),
                    Some("registering the WAL write buffer VFS".into()),
                ),
            })?;
            Connection::open_with_flags_and_vfs(
                &path,
                OpenFlags::default(),
                crate::wal_buffer::NAME,
            )
        } else {
            Connection::open(&path)
        }
        .map_err(open_err)?;
        conn.busy_timeout(options.busy_timeout).map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        // SQLite falls back to read-only when it may not write the file; the store could take no append.
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(open_err)? {
            return Err(Error::ReadOnly { path });
        }
        let journal_mode = wal_mode(&conn, options.busy_timeout).map_err(open_err)?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Setting {
                path,
                setting: "journal_mode=WAL",
                got: journal_mode,
            });
        }
        // The WAL is reused from its start after each checkpoint and stays about
        // `wal_autocheckpoint_pages` long; after a larger commit it is cut back to twice that when it
        // restarts, so one huge append does not keep its disk space for the life of the process.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA cache_size = -{}; PRAGMA temp_store = MEMORY;
             PRAGMA wal_autocheckpoint = {}; PRAGMA journal_size_limit = {};",
            options.cache_kib,
            options.wal_autocheckpoint_pages,
            u64::from(options.wal_autocheckpoint_pages.max(1000)) * (2 * (4096 + 24))
        ))
        .map_err(open_err)?;
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(open_err)?;
        if synchronous != 2 {
            return Err(Error::Setting {
                path,
                setting: "synchronous=FULL",
                got: synchronous.to_string(),
            });
        }
        let wal_autocheckpoint: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version != SCHEMA_VERSION {
            // Decided under the write lock: another process opening the same file may have migrated
            // it since the read above.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(open_err)?;
            let version: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(open_err)?;
            if version > SCHEMA_VERSION {
                return Err(Error::SchemaTooNew {
                    path,
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            if version < SCHEMA_VERSION {
                tx.execute_batch(&format!(
                    "{SCHEMA_V1} {SCHEMA_V2} {SCHEMA_V3} PRAGMA user_version = {SCHEMA_VERSION};"
                ))
                .map_err(open_err)?;
            }
            tx.commit().map_err(open_err)?;
        }
        let head = schema::head(&conn).map_err(open_err)?;
        let (head_tx, head_rx) = watch::channel(head);
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            last_commit: Mutex::new(None),
            last_commit_error: Mutex::new(None),
            syncs: AtomicU64::new(0),
            sync_nanos: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let (checkpoints, checkpointer) = match options.checkpoint_interval {
            Some(every) => {
                let (ctx, crx) = mpsc::sync_channel(1);
                let conn = checkpoint_connection(&path, &options).map_err(open_err)?;
                let handle = std::thread::Builder::new()
                    .name("tamma-events-checkpointer".into())
                    .spawn(move || checkpoint_loop(&conn, &crx, every))
                    .map_err(Error::Thread)?;
                (Some(ctx), Some(handle))
            }
            None => (None, None),
        };
        let writer = {
            let shared = shared.clone();
            let writer_path = path.clone();
            let max = options.max_batch_events.max(1);
            let group_wait = options.group_wait;
            let limits = options.limits;
            std::thread::Builder::new()
                .name("tamma-events-writer".into())
                .spawn(move || {
                    Writer {
                        path: writer_path,
                        conn: OwnedStatements::new(conn, CHUNKS.len()),
                        head_tx,
                        shared,
                        last_recorded: 0,
                        last: LastPositions::default(),
                        checkpoints,
                        queued_during_commit: 0,
                        limits,
                    }
                    .run(&rx, max, group_wait);
                })
                .map_err(Error::Thread)?
        };
        let readers = Arc::new(Readers {
            path: path.clone(),
            options: options.clone(),
            idle: Mutex::new(Vec::new()),
        });
        tracing::debug!(path = %path.display(), head, "event store opened");
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                tx: Some(tx),
                writer: Some(writer),
                checkpointer,
                readers,
                head_rx,
                shared,
                options,
                settings: WriterSettings {
                    journal_mode: journal_mode.to_lowercase(),
                    synchronous,
                    wal_autocheckpoint,
                },
            }),
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The writer connection's durability settings as SQLite reported them after opening.
    #[must_use]
    pub fn writer_settings(&self) -> &WriterSettings {
        &self.inner.settings
    }

    /// The durable syncs of the write-ahead log the writer made since the store opened (one per
    /// group commit, plus one per checkpoint the writer runs itself), and their total time: the
    /// disk's part of every commit. Counted by the WAL buffer
    /// ([`SqliteOptions::buffer_wal_writes`], the default); zero without it. Each sync is also
    /// recorded in the `tamma_events_wal_sync_seconds` histogram.
    #[must_use]
    pub fn wal_syncs(&self) -> SyncStats {
        SyncStats {
            count: self.inner.shared.syncs.load(Ordering::Relaxed),
            total: Duration::from_nanos(self.inner.shared.sync_nanos.load(Ordering::Relaxed)),
        }
    }

    fn send(&self, req: Request) -> tamma_events::Result<()> {
        let tx = self
            .inner
            .tx
            .as_ref()
            .ok_or_else(|| tamma_events::Error::unavailable("the event store is closed"))?;
        self.inner.shared.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(req).map_err(|_| {
            self.inner.shared.queued.fetch_sub(1, Ordering::Relaxed);
            tamma_events::Error::unavailable("the event store writer has stopped")
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the event store writer thread panicked");
        }
        if let Some(c) = self.checkpointer.take()
            && c.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the event store checkpoint thread panicked");
        }
    }
}

fn closed<T>(_: T) -> tamma_events::Error {
    tamma_events::Error::unavailable("the event store writer stopped before answering")
}

impl EventStore for SqliteStore {
    fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> BoxFuture<'_, tamma_events::Result<AppendResult>> {
        Box::pin(async move {
            // Encoded once: the stored JSON also gives each event's size for the limit.
            let encoded = schema::encode(&events);
            let sized = validate_append_sized(
                &events,
                condition.as_ref(),
                &self.inner.options.limits,
                |i, e| {
                    let row = &encoded.rows()[i];
                    e.encoded_size_with(
                        encoded.tags(row).len(),
                        encoded.metadata(row).map_or(2, str::len),
                        encoded.data(row).len(),
                    )
                },
            );
            if let Err(e) = sized {
                metrics::counter!(m::EVENTS_APPEND_REJECTED_TOTAL, "reason" => "invalid")
                    .increment(1);
                return Err(e);
            }
            let delay = self.inner.options.hooks.commit_delay_for(&events);
            let (reply, rx) = oneshot::channel();
            self.send(Request::Append {
                payload: Payload {
                    events,
                    encoded,
                    condition,
                },
                delay,
                reply,
            })?;
            let (result, payload) = rx.await.map_err(closed)?;
            drop(payload);
            result
        })
    }

    fn read(&self, query: Query, options: ReadOptions) -> EventStream {
        if let Err(e) = query.validate("query") {
            return Box::pin(futures::stream::once(async { Err(e) }));
        }
        read_pages(self.inner.readers.clone(), query, options)
    }

    fn get(&self, id: Uuid) -> BoxFuture<'_, tamma_events::Result<Option<SequencedEvent>>> {
        let readers = self.inner.readers.clone();
        Box::pin(async move { readers.run(move |c| schema::get(c, &id)).await })
    }

    fn head(&self) -> BoxFuture<'_, tamma_events::Result<u64>> {
        let readers = self.inner.readers.clone();
        Box::pin(async move { readers.run(schema::head).await })
    }

    fn subscribe(&self, query: Query, after: u64) -> EventStream {
        if let Err(e) = query.validate("query") {
            return Box::pin(futures::stream::once(async { Err(e) }));
        }
        let readers = self.inner.readers.clone();
        let src = SubscriptionSource {
            fetch: Arc::new(move |q: Query, from: u64, limit: u64| {
                let readers = readers.clone();
                Box::pin(async move {
                    let sql = schema::select(&q, ReadOptions::forwards().from(from), limit);
                    let page = readers.run(move |c| schema::run_raw(c, &sql)).await?;
                    let page: Vec<SequencedEvent> = page.into_events().collect::<Result<_, _>>()?;
                    metrics::counter!(m::EVENTS_SUBSCRIBED_TOTAL).increment(page.len() as u64);
                    Ok(page)
                })
            }),
            head: self.inner.head_rx.clone(),
            poll_interval: Some(self.inner.options.poll_interval),
            page_size: 512,
        };
        subscription(src, query, after)
    }

    fn delete_before(&self, cutoff: DateTime<Utc>) -> BoxFuture<'_, tamma_events::Result<u64>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.send(Request::Delete {
                cutoff: schema::micros(cutoff),
                reply,
            })?;
            rx.await.map_err(closed)?
        })
    }

    fn health(&self) -> BoxFuture<'_, tamma_events::Result<StoreHealth>> {
        Box::pin(async move {
            let head = self.inner.readers.run(schema::head).await?;
            Ok(StoreHealth {
                head,
                queue_depth: self.inner.shared.queued.load(Ordering::Relaxed),
                last_commit_age: self.inner.shared.last_commit.lock().map(|t| t.elapsed()),
                syncs: Some(self.wal_syncs()),
                last_commit_error: self.inner.shared.last_commit_error.lock().clone(),
            })
        })
    }

    fn import(&self, events: Vec<SequencedEvent>) -> BoxFuture<'_, tamma_events::Result<u64>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.send(Request::Import { events, reply })?;
            rx.await.map_err(closed)?
        })
    }

    fn cursors(&self) -> BoxFuture<'_, tamma_events::Result<Vec<(String, u64)>>> {
        let readers = self.inner.readers.clone();
        Box::pin(async move { readers.run(schema::cursors).await })
    }

    fn load_cursor<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, tamma_events::Result<Option<u64>>> {
        let readers = self.inner.readers.clone();
        let name = name.to_owned();
        Box::pin(async move { readers.run(move |c| schema::load_cursor(c, &name)).await })
    }

    fn save_cursor<'a>(
        &'a self,
        name: &'a str,
        position: u64,
    ) -> BoxFuture<'a, tamma_events::Result<()>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.send(Request::Cursor {
                name: name.to_owned(),
                position: to_i64(position),
                reply,
            })?;
            rx.await.map_err(closed)?
        })
    }
}

/// A group holding this many appends commits without waiting for more: with that many appenders a
/// sync is shared widely already, and holding commits back for more measured slower (64 HTTP clients:
/// about 12% fewer appends/s).
const GATHER_AT_MOST: usize = 16;

/// How long the next group waits for answered appenders. A wait that got them all back, or during
/// which at least one came back, doubles the budget (up to `group_wait`); one that nobody came back
/// during halves it (down to 1/16 of it), so appenders that do not come straight back — producers
/// appending now and then, not in a loop — do not make every append wait the whole `group_wait`.
struct GroupWait {
    budget: Duration,
    floor: Duration,
    ceiling: Duration,
}

impl GroupWait {
    fn new(ceiling: Duration) -> Self {
        Self {
            budget: ceiling,
            floor: ceiling / 16,
            ceiling,
        }
    }

    /// After a wait: `useful` when every expected appender came back, or at least one did while the
    /// group waited. A wait nobody came back during halves the next budget; a useful one doubles it.
    /// (Halving whenever not everyone was back let slow appenders — a loaded machine — drive the
    /// budget to its floor, where hardly any made it back in time, and groups stayed split in halves:
    /// 16 writers measured 10.5–14.1 events per commit so, 13.1–15.9 with this rule, alternating.)
    fn learn(&mut self, useful: bool) {
        self.budget = if useful {
            (self.budget * 2).min(self.ceiling)
        } else {
            (self.budget / 2).max(self.floor)
        };
    }
}

/// Events per page of a read.
const READ_PAGE: u64 = 1000;

fn read_pages(readers: Arc<Readers>, query: Query, options: ReadOptions) -> EventStream {
    /// A page being read on the blocking pool: how many events it asked for, and the task.
    type Ahead = (u64, JoinHandle<rusqlite::Result<schema::RawPage>>);
    struct Cursor {
        options: ReadOptions,
        remaining: u64,
        done: bool,
        /// The next page, already asked for while the caller goes through this one.
        ahead: Option<Ahead>,
    }
    fn fetch(readers: &Arc<Readers>, query: &Query, options: ReadOptions, want: u64) -> Ahead {
        let sql = schema::select(query, options, want);
        (want, readers.spawn(move |conn| schema::run_raw(conn, &sql)))
    }
    let start = Cursor {
        options,
        remaining: options.limit.unwrap_or(u64::MAX),
        done: false,
        ahead: None,
    };
    let pages = futures::stream::try_unfold(start, move |mut c| {
        let readers = readers.clone();
        let query = query.clone();
        async move {
            if c.done || c.remaining == 0 {
                return Ok::<_, tamma_events::Error>(None);
            }
            let (want, task) = match c.ahead.take() {
                Some(ahead) => ahead,
                None => fetch(&readers, &query, c.options, c.remaining.min(READ_PAGE)),
            };
            let page = task
                .await
                .map_err(joined)?
                .map_err(|e| store_error(&readers.path, Arc::new(e)))?;
            c.remaining -= page.len() as u64;
            c.done = (page.len() as u64) < want;
            if let Some(last) = page.last_position() {
                let next = if c.options.backwards {
                    last.checked_sub(1)
                } else {
                    last.checked_add(1)
                };
                match next {
                    Some(n) if n > 0 => c.options.from = Some(n),
                    _ => c.done = true,
                }
            }
            // A long read decodes its next page while the caller goes through this one.
            if !c.done && c.remaining > 0 {
                c.ahead = Some(fetch(
                    &readers,
                    &query,
                    c.options,
                    c.remaining.min(READ_PAGE),
                ));
            }
            metrics::counter!(m::EVENTS_READ_TOTAL, "store" => "sqlite")
                .increment(page.len() as u64);
            Ok(Some((futures::stream::iter(page.into_events()), c)))
        }
    });
    Box::pin(pages.try_flatten().boxed())
}

fn joined(e: tokio::task::JoinError) -> tamma_events::Error {
    tamma_events::Error::backend(e, false)
}

/// Reader connections, opened on demand and kept for reuse.
struct Readers {
    path: PathBuf,
    options: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
}

/// Switches the connection to WAL mode and returns the mode SQLite reports. SQLite does not wait for a
/// busy lock while it changes the journal mode (it skips the busy handler), so two processes opening a
/// new store at once would have one fail at once; this retries for up to `patience`.
fn wal_mode(conn: &Connection, patience: Duration) -> rusqlite::Result<String> {
    let until = Instant::now() + patience;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
            Err(e) if crate::error::is_busy(&e) && Instant::now() < until => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The checkpoint thread's connection: durable like the writer's, so a checkpoint syncs the WAL before
/// copying from it and the database file after.
fn checkpoint_connection(path: &Path, options: &SqliteOptions) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;")?;
    Ok(conn)
}

/// Runs a passive checkpoint after commits, at most once per `every`, until the writer stops.
fn checkpoint_loop(conn: &Connection, signal: &mpsc::Receiver<()>, every: Duration) {
    while signal.recv().is_ok() {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match done {
            Ok((log, copied)) => tracing::trace!(log, copied, "background checkpoint"),
            Err(e) => {
                tracing::debug!(error = %e, "background checkpoint failed; the writer's own remains");
            }
        }
        std::thread::sleep(every);
    }
}

/// Reader connections kept idle at most.
const MAX_IDLE_READERS: usize = 8;

impl Readers {
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(self.options.busy_timeout)?;
        conn.execute_batch(&format!(
            "PRAGMA query_only = 1; PRAGMA cache_size = -{};",
            self.options.cache_kib / 4
        ))?;
        Ok(conn)
    }

    /// Starts `f` on a reader connection on the blocking pool.
    fn spawn<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> JoinHandle<rusqlite::Result<T>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match this.idle.lock().pop() {
                Some(c) => c,
                None => this.open()?,
            };
            let out = f(&conn);
            let mut idle = this.idle.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            out
        })
    }

    /// Runs `f` on a reader connection on the blocking pool.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> tamma_events::Result<T> {
        self.spawn(f)
            .await
            .map_err(joined)?
            .map_err(|e| store_error(&self.path, Arc::new(e)))
    }
}

/// How long the writer polls for the next request after finishing one before it sleeps, at most and at
/// least. An appender answered by a commit usually comes back within tens of microseconds (one building
/// its next 100 events, within one or two hundred); a writer asleep by then must be woken by the kernel
/// (on a virtual machine, an interrupt to an idle virtual CPU), which costs the writer tens of
/// microseconds and the appender its own wake-up call. [`Spin`] decides between the two.
const SPIN_MAX: Duration = Duration::from_micros(200);
const SPIN_MIN: Duration = Duration::from_micros(20);

/// How long the writer polls before it sleeps: [`SPIN_MAX`] while requests come back within it; halved
/// (down to [`SPIN_MIN`]) after each request that came later. So a writer whose appenders come straight
/// back catches them without a wake-up (100-event appends: 6% more events/s than polling a fixed 60 µs,
/// median of alternating runs), and one whose requests come seldom (an idle node, clients across a
/// network) spends at most `SPIN_MIN` per commit.
struct Spin {
    budget: Duration,
}

impl Spin {
    fn new() -> Self {
        Self { budget: SPIN_MIN }
    }

    /// After a request came `gap` after the writer started waiting for it.
    fn learn(&mut self, gap: Duration) {
        self.budget = if gap <= SPIN_MAX {
            SPIN_MAX
        } else {
            (self.budget / 2).max(SPIN_MIN)
        };
    }

    /// The next request: polled for the budget first, then waited for. `None` when every sender is
    /// gone.
    fn next_request(&mut self, rx: &mpsc::Receiver<Request>) -> Option<Request> {
        let start = Instant::now();
        let until = start + self.budget;
        let req = loop {
            match rx.try_recv() {
                Ok(r) => break r,
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) if Instant::now() < until => {
                    std::hint::spin_loop();
                }
                Err(mpsc::TryRecvError::Empty) => break rx.recv().ok()?,
            }
        };
        self.learn(start.elapsed());
        Some(req)
    }
}

/// The writer thread's state.
struct Writer {
    /// The database file (named in errors).
    path: PathBuf,
    /// The writing connection, with its event inserts (bound without copies).
    conn: OwnedStatements,
    head_tx: watch::Sender<u64>,
    shared: Arc<Shared>,
    last_recorded: i64,
    /// Tells the checkpoint thread that commits happened (a full channel means it knows already).
    checkpoints: Option<mpsc::SyncSender<()>>,
    /// Appends queued while the last group was written, before its appenders were answered.
    queued_during_commit: usize,
    /// Where the tags and types written last are, to pass most conditions without a query.
    last: LastPositions,
    /// What an imported event may be.
    limits: Limits,
}

struct Pending {
    payload: Payload,
    delay: Option<Duration>,
    reply: oneshot::Sender<AppendReply>,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Request>, max_events: usize, group_wait: Duration) {
        // Appenders active at the end of the last commit: those it answered plus those that queued
        // meanwhile. Answered appenders usually come straight back, so the next group waits for them
        // (`SqliteOptions::group_wait`) instead of splitting them into two halves that take turns.
        let mut active = 0usize;
        let mut wait = GroupWait::new(group_wait);
        // A request that ended a group (a deletion, a cursor or an import), handled after that group's
        // commit.
        let mut carried = None;
        let mut spin = Spin::new();
        loop {
            let req = match carried.take() {
                Some(req) => req,
                None => match spin.next_request(rx) {
                    Some(req) => {
                        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                        req
                    }
                    None => break,
                },
            };
            match req {
                Request::Append {
                    payload,
                    delay,
                    reply,
                } => {
                    let first = Pending {
                        payload,
                        delay,
                        reply,
                    };
                    let gather = Gather {
                        rx,
                        max_events,
                        expected: active.min(GATHER_AT_MOST),
                        wait: &mut wait,
                    };
                    let (answered, ended_by) = self.commit_group(first, gather);
                    carried = ended_by;
                    active = answered + self.queued_during_commit;
                }
                Request::Import { events, reply } => {
                    let imported = self.import(events);
                    self.note_syncs();
                    let _ = reply.send(imported);
                }
                Request::Delete { cutoff, reply } => {
                    let removed = self
                        .delete_before(cutoff)
                        .map_err(|e| store_error(&self.path, Arc::new(e)));
                    self.note_syncs();
                    let _ = reply.send(removed);
                }
                Request::Cursor {
                    name,
                    position,
                    reply,
                } => {
                    let saved = self
                        .conn
                        .conn()
                        .prepare_cached(
                            "INSERT INTO cursors (name, position) VALUES (?1, ?2)
                             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                        )
                        .and_then(|mut st| st.execute(rusqlite::params![name, position]));
                    self.note_syncs();
                    let _ = reply.send(
                        saved
                            .map(|_| ())
                            .map_err(|e| store_error(&self.path, Arc::new(e))),
                    );
                }
            }
        }
    }

    /// Adds the WAL syncs this thread made since the last call to the store's count.
    fn note_syncs(&self) {
        let (n, took) = crate::wal_buffer::take_syncs();
        if n > 0 {
            self.shared.syncs.fetch_add(n, Ordering::Relaxed);
            self.shared.sync_nanos.fetch_add(
                u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// Writes a group of appends in one transaction and one sync, then answers each; returns how many
    /// appends it answered and the request that ended the group, if one did.
    ///
    /// The transaction starts with the first append, and each append that joins is checked as it
    /// arrives: the group waits for appenders expected back (see [`Gather`]) while it works, not
    /// before. Appends whose condition passes are collected and inserted together (one multi-row
    /// statement per table for the whole group); each condition is checked against the stored events
    /// and, in memory, against the collected appends before it. An append reusing an id of a collected
    /// one, or whose condition hits a collected one, first has the collected appends written, so the
    /// full check sees them.
    fn commit_group(&mut self, first: Pending, gather: Gather<'_>) -> (usize, Option<Request>) {
        let started = Instant::now();
        let now = schema::micros(Utc::now()).max(self.last_recorded);
        let mut group = vec![first];
        let mut results = vec![None];
        let mut ended_by = None;
        let written = self.write_group(&mut group, &mut results, &mut ended_by, gather, now);
        self.note_syncs();
        // Counted before anyone of this group is answered: these are other appenders, not ones of
        // this group already back.
        self.queued_during_commit = self.shared.queued.load(Ordering::Relaxed);
        let answered = group.len();
        match written {
            Err(e) => {
                let e = Arc::new(e);
                tracing::warn!(error = %e, path = %self.path.display(), appends = group.len(), "event store commit failed");
                *self.shared.last_commit_error.lock() =
                    Some(format!("{e} (event store {})", self.path.display()));
                for p in group {
                    let _ = p
                        .reply
                        .send((Err(store_error(&self.path, e.clone())), p.payload));
                }
            }
            Ok((head, written)) => {
                *self.shared.last_commit_error.lock() = None;
                if written > 0 {
                    if let Some(c) = &self.checkpoints {
                        let _ = c.try_send(());
                    }
                    self.last_recorded = now;
                    *self.shared.last_commit.lock() = Some(Instant::now());
                    self.head_tx.send_replace(head);
                    metrics::counter!(m::EVENTS_APPENDED_TOTAL, "store" => "sqlite")
                        .increment(written);
                    metrics::histogram!(m::EVENTS_BATCH_SIZE).record(written as f64);
                    metrics::histogram!(m::EVENTS_COMMIT_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                }
                for (p, r) in group.into_iter().zip(results) {
                    let r = r.unwrap_or_else(|| {
                        Err(tamma_events::Error::backend(
                            "the event store writer left an append unanswered",
                            false,
                        ))
                    });
                    if let Err(e) = &r {
                        let reason = if e.code() == "append_condition_failed" {
                            "condition_failed"
                        } else {
                            e.code()
                        };
                        metrics::counter!(m::EVENTS_APPEND_REJECTED_TOTAL, "reason" => reason)
                            .increment(1);
                    }
                    let _ = p.reply.send((r, p.payload));
                }
            }
        }
        (answered, ended_by)
    }

    /// The transaction of [`commit_group`](Self::commit_group): `group` holds the first append and
    /// receives those that join; `results` gets an answer for each append it decides; `ended_by` the
    /// request that ended the group. Returns the head after the group and the events written.
    fn write_group(
        &mut self,
        group: &mut Vec<Pending>,
        results: &mut Answers,
        ended_by: &mut Option<Request>,
        gather: Gather<'_>,
        now: i64,
    ) -> rusqlite::Result<(u64, u64)> {
        let (tx, inserts) = self.conn.transaction(TransactionBehavior::Immediate)?;
        let stored = schema::head(&tx)?;
        self.last.begin(stored);
        let mut w = GroupWrite {
            tx: &tx,
            inserts,
            last: &mut self.last,
            path: &self.path,
            now,
            stored,
            collected: Vec::new(),
            collected_ids: HashSet::new(),
            written: 0,
        };
        w.take(group, results, 0)?;
        let Gather {
            rx,
            max_events,
            expected,
            wait,
        } = gather;
        let mut n = group[0].payload.events.len();
        let deadline = Instant::now() + wait.budget;
        let (mut waited, mut all_back, mut came_back) = (false, true, false);
        while n < max_events {
            match rx.try_recv() {
                Ok(Request::Append {
                    payload,
                    delay,
                    reply,
                }) => {
                    came_back |= waited;
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    n += payload.events.len();
                    group.push(Pending {
                        payload,
                        delay,
                        reply,
                    });
                    results.push(None);
                    w.take(group, results, group.len() - 1)?;
                }
                Ok(other) => {
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    *ended_by = Some(other);
                    break;
                }
                Err(mpsc::TryRecvError::Empty) if group.len() < expected => {
                    if Instant::now() >= deadline {
                        all_back = false;
                        break;
                    }
                    waited = true;
                    std::thread::yield_now();
                }
                Err(_) => break,
            }
        }
        if waited {
            wait.learn(all_back || came_back);
        }
        w.flush(group, results)?;
        let (head, written) = (w.stored, w.written);
        tx.commit()?;
        self.last.committed(head);
        Ok((head, written))
    }

    /// [`EventStore::import`]: the events at their own positions and commit times, with their runs, in
    /// one transaction.
    fn import(&mut self, events: Vec<SequencedEvent>) -> tamma_events::Result<u64> {
        let fail = |e: rusqlite::Error| store_error(&self.path, Arc::new(e));
        // Whatever this writer knew of the last positions of tags and types no longer holds.
        let (tx, _) = self
            .conn
            .transaction(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let head = schema::head(&tx).map_err(fail)?;
        self.last.begin(head);
        validate_import(&events, head, &self.limits)?;
        let mut stored = Vec::new();
        {
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM events WHERE id = ?1")
                .map_err(fail)?;
            for e in &events {
                if exists.exists([e.event.id.as_bytes()]).map_err(fail)? {
                    stored.push(e.event.id);
                }
            }
        }
        if !stored.is_empty() {
            return Err(tamma_events::Error::DuplicateEventId { ids: stored });
        }
        let (at, events): (Vec<_>, Vec<_>) = events
            .into_iter()
            .map(|s| ((s.position, s.recorded_at), s.event))
            .unzip();
        let encoded = schema::encode(&events);
        let (first, last) = (at[0].0, at[at.len() - 1].0);
        let mut latest = self.last_recorded;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (position, id, type, timestamp, recorded_at, tags, metadata, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(fail)?;
            for (row, (position, recorded_at)) in encoded.rows().iter().zip(&at) {
                let recorded = schema::micros(*recorded_at);
                latest = latest.max(recorded);
                insert
                    .execute(rusqlite::params![
                        to_i64(*position),
                        &row.id[..],
                        encoded.event_type(row),
                        row.timestamp.unwrap_or(recorded),
                        recorded,
                        encoded.tags(row),
                        encoded.metadata(row),
                        encoded.data(row),
                    ])
                    .map_err(fail)?;
            }
        }
        let numbered = || events.iter().zip(to_i64(first)..).map(|(e, p)| (p, e));
        for (table, runs) in [
            (
                "tag_runs (tag, first, last)",
                key_runs(numbered(), |e| e.tags.iter()),
            ),
            (
                "type_runs (type, first, last)",
                key_runs(numbered(), |e| std::iter::once(e.event_type.as_str())),
            ),
        ] {
            let mut insert = tx
                .prepare_cached(&format!("INSERT INTO {table} VALUES (?1, ?2, ?3)"))
                .map_err(fail)?;
            for (key, from, to) in runs {
                insert
                    .execute(rusqlite::params![key, from, to])
                    .map_err(fail)?;
            }
        }
        if head == 0 && first > 1 {
            // The positions before the first imported one count as removed, as in the source.
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('removed_through', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                [to_i64(first - 1)],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        self.last_recorded = latest;
        *self.shared.last_commit.lock() = Some(Instant::now());
        if let Some(c) = &self.checkpoints {
            let _ = c.try_send(());
        }
        self.head_tx.send_replace(last);
        Ok(last)
    }

    fn delete_before(&mut self, cutoff: i64) -> rusqlite::Result<u64> {
        let (tx, _) = self.conn.transaction(TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx.query_row(
            "SELECT max(position) FROM events WHERE recorded_at < ?1",
            [cutoff],
            |r| r.get(0),
        )?;
        let Some(last) = last else {
            return Ok(0);
        };
        let removed = tx.execute("DELETE FROM events WHERE position <= ?1", [last])?;
        for table in ["tag_runs", "type_runs"] {
            // Runs wholly removed go; a run reaching past the cut keeps its remaining part.
            tx.execute(&format!("DELETE FROM {table} WHERE last <= ?1"), [last])?;
            tx.execute(
                &format!("UPDATE {table} SET first = ?1 + 1 WHERE first <= ?1"),
                [last],
            )?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('removed_through', ?1)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            [last],
        )?;
        tx.commit()?;
        metrics::counter!(m::EVENTS_RETENTION_REMOVED_TOTAL).increment(removed as u64);
        Ok(removed as u64)
    }
}

/// What a group waits for: appends from `rx` until it carries `max_events`, waiting (up to the budget
/// of `wait`) while it holds fewer than `expected` appends, the appenders answered by the last commit.
struct Gather<'a> {
    rx: &'a mpsc::Receiver<Request>,
    max_events: usize,
    expected: usize,
    wait: &'a mut GroupWait,
}

/// The state of a group's transaction. The group's appends are passed in by index: the group grows
/// while the transaction runs.
struct GroupWrite<'a> {
    tx: &'a Connection,
    /// The event inserts, on the connection of `tx`.
    inserts: Statements<'a>,
    last: &'a mut LastPositions,
    /// The database file (named in errors).
    path: &'a Path,
    now: i64,
    /// The last position inserted in this transaction (or before it).
    stored: u64,
    /// Indices in the group of the appends collected for insertion, in order; they take the positions
    /// after `stored`.
    collected: Vec<usize>,
    /// The ids of the collected appends, once a second append joins (empty until then).
    collected_ids: HashSet<Uuid>,
    written: u64,
}

/// One answer per append of a group, `None` until the append is decided.
type Answers = Vec<Option<tamma_events::Result<AppendResult>>>;

impl GroupWrite<'_> {
    /// Takes append `k` of `group` into the transaction: answers it when its condition fails or it
    /// repeats stored events, else collects it for insertion.
    fn take(&mut self, group: &[Pending], results: &mut Answers, k: usize) -> rusqlite::Result<()> {
        let p = &group[k];
        if !self.collected.is_empty() {
            // The set is built when a second append joins: a lone append (a large one, say) never
            // needs it.
            if self.collected_ids.is_empty() {
                for &j in &self.collected {
                    self.collected_ids
                        .extend(group[j].payload.events.iter().map(|e| e.id));
                }
            }
            if p.payload
                .events
                .iter()
                .any(|e| self.collected_ids.contains(&e.id))
            {
                self.flush(group, results)?;
            }
        }
        // The condition first: when it fails, the full check decides between a duplicate (answered
        // with the original positions), a rejected id and the condition failure, in that order.
        if let Some(c) = &p.payload.condition {
            // A condition the database cannot run fails its own append, not the group: SQLite ends
            // only the statement, the transaction goes on.
            let ruled_out = self.last.rules_out(c, self.stored);
            let mut hit = match if ruled_out {
                Ok(None)
            } else {
                condition_hit(self.tx, c)
            } {
                Ok(hit) => hit,
                Err(e) => {
                    results[k] = Some(Err(store_error(self.path, Arc::new(e))));
                    return Ok(());
                }
            };
            if hit.is_none() && self.collected_match(group, c) {
                self.flush(group, results)?;
                hit = condition_hit(self.tx, c)?;
            }
            if let Some(hit) = hit {
                results[k] = Some(check(self.tx, p)?.unwrap_or(Err(
                    tamma_events::Error::AppendConditionFailed { position: hit },
                )));
                return Ok(());
            }
        }
        if let Some(d) = p.delay {
            std::thread::sleep(d);
        }
        if !self.collected_ids.is_empty() {
            self.collected_ids
                .extend(p.payload.events.iter().map(|e| e.id));
        }
        self.collected.push(k);
        Ok(())
    }

    /// Whether an event of the collected appends at a position after the condition's `after` matches
    /// its query.
    fn collected_match(&self, group: &[Pending], c: &AppendCondition) -> bool {
        let after = c.after.unwrap_or(0);
        let mut pos = self.stored;
        self.collected.iter().any(|&k| {
            group[k].payload.events.iter().any(|e| {
                pos += 1;
                pos > after && c.fail_if_events_match.matches(e)
            })
        })
    }

    /// Inserts the collected appends: all in one go when none reuses a stored id (found by the insert
    /// itself: `INSERT OR IGNORE` inserts fewer rows), else one by one, each answered by the full check
    /// if it reuses one.
    ///
    /// A group insert that came out short is undone by deleting the rows it wrote (every position after
    /// `stored`), not by a savepoint: while a savepoint is open SQLite copies every page the statements
    /// change into its sub-journal first, which cost the writer about 6% of its time in groups of 16
    /// one-event appends, to undo an insert that almost never needs undoing.
    fn flush(&mut self, group: &[Pending], results: &mut Answers) -> rusqlite::Result<()> {
        if self.collected.is_empty() {
            return Ok(());
        }
        let collected = std::mem::take(&mut self.collected);
        self.collected_ids.clear();
        let encoded: Vec<&Encoded> = collected
            .iter()
            .map(|&k| &group[k].payload.encoded)
            .collect();
        let total: usize = encoded.iter().map(|e| e.len()).sum();
        if collected.len() > 1 {
            if insert_events(&mut self.inserts, &encoded, self.stored, self.now)? == total {
                let events: Vec<&[Event]> = collected
                    .iter()
                    .map(|&k| &group[k].payload.events[..])
                    .collect();
                let (tags, types) = insert_runs(self.tx, &events, self.stored)?;
                self.last.wrote_runs(&tags, &types, 0);
                for &k in &collected {
                    self.accept(results, k, group[k].payload.events.len());
                }
                return Ok(());
            }
            self.undo_short_insert()?;
        }
        for (&k, encoded) in collected.iter().zip(encoded) {
            let p = &group[k];
            if insert_events(&mut self.inserts, &[encoded], self.stored, self.now)? < encoded.len()
            {
                self.undo_short_insert()?;
                results[k] = Some(check(self.tx, p)?.unwrap_or_else(|| {
                    Err(tamma_events::Error::backend(
                        "an event id conflicted on insert but is not stored",
                        false,
                    ))
                }));
                continue;
            }
            let (tags, types) = insert_runs(self.tx, &[&p.payload.events[..]], self.stored)?;
            self.last.wrote_runs(&tags, &types, 0);
            self.accept(results, k, encoded.len());
        }
        Ok(())
    }

    /// Removes the rows of an insert that skipped a stored id (its runs are not written yet).
    fn undo_short_insert(&self) -> rusqlite::Result<()> {
        self.tx
            .prepare_cached("DELETE FROM events WHERE position > ?1")?
            .execute([to_i64(self.stored)])?;
        Ok(())
    }

    /// Answers append `k`, written at the `n` positions after `stored`.
    fn accept(&mut self, results: &mut Answers, k: usize, n: usize) {
        let positions: Vec<u64> = (self.stored + 1..=self.stored + n as u64).collect();
        self.stored += n as u64;
        self.written += n as u64;
        results[k] = Some(Ok(AppendResult {
            positions,
            duplicate: false,
        }));
    }
}

/// Idempotency and condition of one append, against the transaction's state (which includes the earlier
/// appends of the batch). `Some` is the final answer (a duplicate or a rejection); `None` means write.
fn check(
    tx: &Connection,
    p: &Pending,
) -> rusqlite::Result<Option<tamma_events::Result<AppendResult>>> {
    let stored: Vec<Option<SequencedEvent>> = p
        .payload
        .events
        .iter()
        .map(|e| schema::get(tx, &e.id))
        .collect::<rusqlite::Result<_>>()?;
    if stored.iter().any(Option::is_some) {
        let refs: Vec<_> = stored
            .iter()
            .map(|s| s.as_ref().map(|s| (s.position, &s.event)))
            .collect();
        return Ok(Some(match resolve_ids(&p.payload.events, &refs) {
            Ok(IdCheck::Duplicate(positions)) => Ok(AppendResult {
                positions,
                duplicate: true,
            }),
            Ok(IdCheck::New) => return Ok(None),
            Err(e) => Err(e),
        }));
    }
    if let Some(c) = &p.payload.condition
        && let Some(position) = condition_hit(tx, c)?
    {
        return Ok(Some(Err(tamma_events::Error::AppendConditionFailed {
            position,
        })));
    }
    Ok(None)
}

/// The first position after `c.after` matching the condition's query, if any.
fn condition_hit(tx: &Connection, c: &AppendCondition) -> rusqlite::Result<Option<u64>> {
    let from = c.after.map_or(1, |a| a.saturating_add(1));
    let sql = schema::select_positions(
        &c.fail_if_events_match,
        ReadOptions::forwards().from(from),
        1,
    );
    let mut stmt = tx.prepare_cached(&sql.text)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(sql.params.iter()))?;
    rows.next()?
        .map(|r| r.get::<_, i64>(0).map(schema::to_u64))
        .transpose()
}

/// Rows per multi-row `INSERT`, largest first: an append is written in as few statements as these
/// sizes allow (powers of two: at most eight statements below 256 rows), each prepared once and cached.
const CHUNKS: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

/// Splits `n` rows into statement sizes from [`CHUNKS`]: `(index in CHUNKS, size)`.
fn chunks(mut n: usize) -> impl Iterator<Item = (usize, usize)> {
    std::iter::from_fn(move || {
        let (i, size) = CHUNKS.into_iter().enumerate().find(|&(_, c)| c <= n)?;
        n -= size;
        Some((i, size))
    })
}

/// `INSERT INTO <table> <columns> VALUES (?, …), …` with `rows` rows of `width` parameters.
fn multi_row_insert(head: &str, width: usize, rows: usize, tail: &str) -> String {
    let row = format!("({})", vec!["?"; width].join(","));
    format!("{head} VALUES {}{tail}", vec![row; rows].join(","))
}

/// The event inserts of each size of [`CHUNKS`]. `OR IGNORE`: a row whose id is stored is skipped (the
/// caller sees fewer rows inserted), and since no row can abort the statement halfway, SQLite keeps no
/// statement journal (a copy of every page the statement touches; ~5% of the instructions of an append).
///
/// Only the first row names its position; the others give NULL, which SQLite turns into the next
/// rowid (the largest plus one, read from the table cursor already at its end), the position after the
/// row before. A given position costs a search of the table per row (to check it is free), about an
/// eighth of the writer's instructions per event in 1,000-event appends. The first row's position is
/// still given: after retention removed every event, the largest rowid is not the head. A row skipped
/// for its id shifts the rows after it, which the caller undoes anyway (it inserted fewer rows).
static INSERT_EVENTS: LazyLock<[String; 8]> = LazyLock::new(|| {
    CHUNKS.map(|rows| {
        let first = "(?,?,?,?,?,?,?,?)";
        let next = "(NULL,?,?,?,?,?,?,?)";
        let values: Vec<&str> = std::iter::once(first)
            .chain(std::iter::repeat_n(next, rows - 1))
            .collect();
        format!(
            "INSERT OR IGNORE INTO events (position, id, type, timestamp, recorded_at, tags, metadata, data) VALUES {}",
            values.join(",")
        )
    })
});

/// The run inserts of each size of [`CHUNKS`], for `tag_runs` and `type_runs`.
static INSERT_RUNS: LazyLock<[[String; 8]; 2]> = LazyLock::new(|| {
    [
        "tag_runs (tag, first, last)",
        "type_runs (type, first, last)",
    ]
    .map(|table| {
        CHUNKS.map(|rows| multi_row_insert(&format!("INSERT OR IGNORE INTO {table}"), 3, rows, ""))
    })
});

/// Inserts the events of `appends`, in order, at the positions after `head`, skipping those whose id is
/// stored; returns how many rows were inserted.
fn insert_events(
    inserts: &mut Statements<'_>,
    appends: &[&Encoded],
    head: u64,
    now: i64,
) -> rusqlite::Result<usize> {
    let total = appends.iter().map(|e| e.len()).sum();
    let mut rows = appends
        .iter()
        .flat_map(|enc| enc.rows().iter().map(move |r| (*enc, r)));
    let mut inserted = 0;
    let mut pos = to_i64(head);
    for (which, size) in chunks(total) {
        let stmt = inserts.get(which, &INSERT_EVENTS[which])?;
        inserted += stmt.execute(|b| {
            let mut i = 0;
            for (k, (events, e)) in rows.by_ref().take(size).enumerate() {
                pos += 1;
                // The statement's first row names its position, the others take the next (see
                // `INSERT_EVENTS`).
                if k == 0 {
                    b.int(i + 1, pos)?;
                    i += 1;
                }
                b.blob(i + 1, &e.id)?;
                b.text(i + 2, events.event_type(e))?;
                b.int(i + 3, e.timestamp.unwrap_or(now))?;
                b.int(i + 4, now)?;
                b.text(i + 5, events.tags(e))?;
                match events.metadata(e) {
                    Some(m) => b.text(i + 6, m)?,
                    None => b.null(i + 6)?,
                }
                b.text(i + 7, events.data(e))?;
                i += 7;
            }
            Ok(())
        })?;
    }
    Ok(inserted)
}

/// Inserts the tag and type runs of the events of `appends`, written in order at the positions after
/// `head`.
/// Returns the tag runs and the type runs it wrote.
fn insert_runs<'e>(
    tx: &Connection,
    appends: &[&'e [Event]],
    head: u64,
) -> rusqlite::Result<(Runs<'e>, Runs<'e>)> {
    let events = || {
        appends
            .iter()
            .flat_map(|events| events.iter())
            .zip(to_i64(head) + 1..)
            .map(|(e, pos)| (pos, e))
    };
    let tags = key_runs(events(), |e| e.tags.iter());
    let types = key_runs(events(), |e| std::iter::once(e.event_type.as_str()));
    for (statements, rows) in INSERT_RUNS.iter().zip([&tags, &types]) {
        let mut rest = &rows[..];
        for (which, size) in chunks(rows.len()) {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let mut stmt = tx.prepare_cached(&statements[which])?;
            for (i, (key, first, last)) in chunk.iter().enumerate() {
                stmt.raw_bind_parameter(3 * i + 1, *key)?;
                stmt.raw_bind_parameter(3 * i + 2, *first)?;
                stmt.raw_bind_parameter(3 * i + 3, *last)?;
            }
            stmt.raw_execute()?;
        }
    }
    Ok((tags, types))
}

/// Runs `(key, first, last)` of tags or of types.
type Runs<'e> = Vec<(&'e str, i64, i64)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_wait_halves_when_appenders_do_not_come_back_and_recovers_when_they_do() {
        let mut w = GroupWait::new(Duration::from_micros(256));
        w.learn(true);
        assert_eq!(
            w.budget,
            Duration::from_micros(256),
            "never above group_wait"
        );
        for _ in 0..10 {
            w.learn(false);
        }
        assert_eq!(
            w.budget,
            Duration::from_micros(16),
            "never below 1/16 of it"
        );
        w.learn(true);
        w.learn(true);
        assert_eq!(w.budget, Duration::from_micros(64));
        w.learn(false);
        assert_eq!(w.budget, Duration::from_micros(32));
    }

    #[test]
    fn the_writer_polls_long_while_requests_come_back_soon_and_halves_after_a_late_one() {
        let us = Duration::from_micros;
        let mut s = Spin::new();
        assert_eq!(s.budget, SPIN_MIN, "a new writer polls briefly");
        s.learn(us(70));
        assert_eq!(s.budget, SPIN_MAX, "a gap polling could have caught");
        s.learn(Duration::from_millis(2));
        assert_eq!(s.budget, SPIN_MAX / 2, "a late request halves it");
        s.learn(SPIN_MAX);
        assert_eq!(s.budget, SPIN_MAX);
        for _ in 0..10 {
            s.learn(Duration::from_secs(2));
        }
        assert_eq!(
            s.budget, SPIN_MIN,
            "an idle writer polls SPIN_MIN per commit"
        );
    }

    #[test]
    fn the_writer_takes_a_request_sent_while_it_polls_and_one_sent_after_it_slept() {
        let (tx, rx) = mpsc::channel();
        let mut s = Spin::new();
        let (reply, _answer) = oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(Request::Cursor {
                name: "late".into(),
                position: 7,
                reply,
            })
            .is_ok()
        });
        match s.next_request(&rx) {
            Some(Request::Cursor { name, position, .. }) => {
                assert_eq!((name.as_str(), position), ("late", 7));
            }
            _ => panic!("the request sent after the writer slept is taken"),
        }
        assert!(sender.join().unwrap());
        assert_eq!(
            s.budget, SPIN_MIN,
            "a 20 ms gap is no reason to poll longer"
        );
        assert!(
            s.next_request(&rx).is_none(),
            "no request once every sender is gone"
        );
    }
}
