//! Shared helpers: a store that can be switched down or blocked, fast resilience settings, a local
//! `/v1/events` remote and a webhook receiver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tamma_core::DurationMs;
use tamma_events::{
    AppendCondition, AppendResult, Event, EventStore, EventStream, Query, ReadOptions,
    SequencedEvent, StoreHealth,
};
use tamma_resilience::{BreakerConfig, MonotonicClock, Resilience, ResilienceConfig, RetryConfig};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

/// Whether the CI environment asks for every service to be present.
pub(crate) fn ci() -> bool {
    #[allow(clippy::disallowed_methods)] // Tests decide how loudly a missing service fails.
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    ci
}

/// Whether a TCP service answers; with `CI=true` a missing service fails the test.
pub(crate) async fn service_up(addr: &str, what: &str) -> bool {
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    );
    if !ok {
        assert!(!ci(), "{what} is not reachable at {addr} and CI=true");
        eprintln!(
            "{what} is not reachable at {addr}: test skipped (set CI=true to make this fail)"
        );
    }
    ok
}

/// Fast retries and a lenient breaker, for tests that take stores down.
pub(crate) fn resilience(max_attempts: u32) -> Resilience {
    Resilience::new(
        ResilienceConfig {
            retry: RetryConfig {
                max_attempts,
                initial_delay: DurationMs::from_millis(10),
                max_delay: DurationMs::from_millis(50),
                multiplier: 2.0,
                max_elapsed: DurationMs::from_millis(0),
                jitter: true,
            },
            breaker: BreakerConfig {
                wait_duration_in_open_state: DurationMs::from_millis(50),
                ..BreakerConfig::default()
            },
            ..ResilienceConfig::default()
        },
        MonotonicClock::shared(),
    )
    .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Up,
    /// Appends fail with `unavailable` without writing.
    Down,
    /// Appends wait until the mode changes.
    Blocked,
    /// Appends are written, then answer `unavailable` (a lost acknowledgement).
    LoseAck,
}

/// A store wrapper that can be taken down, blocked or made to lose acknowledgements on demand, and
/// counts appends in flight.
pub(crate) struct Switch {
    inner: Arc<dyn EventStore>,
    mode: watch::Sender<Mode>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
    pub(crate) calls: AtomicU64,
}

impl Switch {
    pub(crate) fn new(inner: Arc<dyn EventStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            mode: watch::channel(Mode::Up).0,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
        })
    }

    pub(crate) fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    async fn append_inner(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> tamma_events::Result<AppendResult> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.max_in_flight.fetch_max(now, Ordering::AcqRel);
        let mut rx = self.mode.subscribe();
        let out = loop {
            let mode = *rx.borrow_and_update();
            match mode {
                Mode::Up => break self.inner.append(events, condition).await,
                Mode::Down => break Err(tamma_events::Error::unavailable("switched off")),
                Mode::LoseAck => {
                    let r = self.inner.append(events, condition).await;
                    break r.and(Err(tamma_events::Error::unavailable(
                        "acknowledgement lost",
                    )));
                }
                Mode::Blocked => {
                    let _ = rx.changed().await;
                }
            }
        };
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        out
    }
}

impl EventStore for Switch {
    fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> BoxFuture<'_, tamma_events::Result<AppendResult>> {
        Box::pin(self.append_inner(events, condition))
    }
    fn read(&self, query: Query, options: ReadOptions) -> EventStream {
        self.inner.read(query, options)
    }
    fn get(&self, id: Uuid) -> BoxFuture<'_, tamma_events::Result<Option<SequencedEvent>>> {
        self.inner.get(id)
    }
    fn head(&self) -> BoxFuture<'_, tamma_events::Result<u64>> {
        self.inner.head()
    }
    fn subscribe(&self, query: Query, after: u64) -> EventStream {
        self.inner.subscribe(query, after)
    }
    fn delete_before(&self, cutoff: DateTime<Utc>) -> BoxFuture<'_, tamma_events::Result<u64>> {
        self.inner.delete_before(cutoff)
    }
    fn health(&self) -> BoxFuture<'_, tamma_events::Result<StoreHealth>> {
        self.inner.health()
    }
    fn load_cursor<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, tamma_events::Result<Option<u64>>> {
        self.inner.load_cursor(name)
    }
    fn save_cursor<'a>(
        &'a self,
        name: &'a str,
        position: u64,
    ) -> BoxFuture<'a, tamma_events::Result<()>> {
        self.inner.save_cursor(name, position)
    }
}

/// Every stored event, in order.
pub(crate) async fn all_events(store: &dyn EventStore) -> Vec<SequencedEvent> {
    store
        .read(Query::all(), ReadOptions::forwards())
        .try_collect()
        .await
        .unwrap()
}

/// Waits (up to `secs`) until `f` is true.
pub(crate) async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP server on 127.0.0.1 that can be stopped and started again on the same port.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    router: Router,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub(crate) async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = Self {
            addr,
            router,
            stop: None,
            task: None,
        };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let router = self.router.clone();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    pub(crate) async fn restart(&mut self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "cannot rebind {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// Serves `router` from the next restart on.
    pub(crate) fn set_router(&mut self, router: Router) {
        self.router = router;
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What the `/v1/events` remote does per request.
#[derive(Clone)]
pub(crate) struct RemoteState {
    pub(crate) store: Arc<dyn EventStore>,
    /// Milliseconds each request waits before appending.
    pub(crate) delay_ms: Arc<AtomicU64>,
    pub(crate) requests: Arc<AtomicU64>,
    /// Requests with more events than this are answered 413.
    pub(crate) max_events: Arc<AtomicUsize>,
}

fn error_response(e: &tamma_events::Error) -> Response {
    let status = match e.category() {
        "invalid_input" => StatusCode::BAD_REQUEST,
        "conflict" => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}});
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert("Retry-After", "1".parse().unwrap());
    }
    r
}

async fn append(State(s): State<RemoteState>, Json(body): Json<serde_json::Value>) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let delay = s.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let events: Vec<Event> = match serde_json::from_value(body["events"].clone()) {
        Ok(e) => e,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": {"code": "invalid_event", "message": e.to_string()}}))).into_response();
        }
    };
    if events.len() > s.max_events.load(Ordering::Relaxed) {
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(serde_json::json!({"error": {"code": "payload_too_large", "message": "too many events"}}))).into_response();
    }
    match s.store.append(events, None).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => error_response(&e),
    }
}

/// A local implementation of `POST /v1/events` (the wire contract of docs/dcb.md) over `store`.
pub(crate) async fn remote(store: Arc<dyn EventStore>) -> (Server, RemoteState) {
    let state = RemoteState {
        store,
        delay_ms: Arc::new(AtomicU64::new(0)),
        requests: Arc::new(AtomicU64::new(0)),
        max_events: Arc::new(AtomicUsize::new(usize::MAX)),
    };
    let router = Router::new()
        .route("/v1/events", post(append))
        .with_state(state.clone());
    (Server::start(router).await, state)
}

/// One webhook request as received.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) header_ids: Vec<String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) events: Vec<SequencedEvent>,
}

async fn hook(
    State(log): State<Arc<Mutex<Vec<Received>>>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let events: Vec<SequencedEvent> = serde_json::from_value(body["events"].clone()).unwrap();
    let header_ids = headers
        .get("x-tamma-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    log.lock().push(Received {
        header_ids,
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        events,
    });
    StatusCode::NO_CONTENT
}

/// A webhook receiver recording every request.
pub(crate) async fn webhook() -> (Server, Arc<Mutex<Vec<Received>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&log));
    (Server::start(router).await, log)
}

/// A webhook receiver that records each request as it arrives and answers only `delay` later, so a
/// test can stop the sender while the receiver already holds the batch.
pub(crate) async fn slow_webhook(delay: Duration) -> (Server, Arc<Mutex<Vec<Received>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .route(
            "/hook",
            post(
                move |state: State<Arc<Mutex<Vec<Received>>>>,
                      headers: HeaderMap,
                      body: Json<serde_json::Value>| async move {
                    let status = hook(state, headers, body).await;
                    tokio::time::sleep(delay).await;
                    status
                },
            ),
        )
        .with_state(Arc::clone(&log));
    (Server::start(router).await, log)
}

/// A fresh PostgreSQL database for one test, dropped at the end; `None` (skip) when the server is
/// unreachable outside CI.
pub(crate) struct TestDb {
    pub(crate) name: String,
}

pub(crate) const PG: &str = "postgres://postgres@127.0.0.1:5432";

pub(crate) async fn pg_client(db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&format!("{PG}/{db}"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    pub(crate) async fn create() -> Option<Self> {
        if !service_up("127.0.0.1:5432", "PostgreSQL").await {
            return None;
        }
        let name = format!("tamma_emitter_{}", Uuid::new_v4().simple());
        pg_client("test")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Some(Self { name })
    }

    pub(crate) async fn store(&self) -> tamma_events_postgres::PostgresStore {
        let config = tamma_events_postgres::PostgresConfig {
            pool_size: 4,
            poll_interval: DurationMs::from_millis(200),
            ..tamma_events_postgres::PostgresConfig::with_url(format!("{PG}/{}", self.name))
        };
        tamma_events_postgres::PostgresStore::connect(&config, tamma_events::Limits::default())
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    pg_client("test")
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                })
        })
        .join();
    }
}
