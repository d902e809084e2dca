//! The events API over real sockets, against the in-memory and the SQLite store: every route and error
//! code, limits, 429/503 with `Retry-After`, SSE resume, and the OpenAPI document (responses validate
//! against it; a property test fuzzes every route from it and sees no 5xx).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tamma_events::{
    AppendCondition, AppendResult, Event, EventStore, EventStream, MemoryStore, Query, ReadOptions,
    SequencedEvent, StoreHealth,
};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tamma_health::{HealthChecker, HealthChecksConfig};
use tamma_server::{
    EventsApiLimits, StreamsShutdown, config_routes, events_routes, events_routes_with_shutdown,
    health_routes, metrics_routes, openapi_document, openapi_routes, with_middleware,
};
use tokio::sync::Notify;

/// A node's router: the events API, the document, and the other routes the document describes.
fn app(store: Arc<dyn EventStore>, limits: EventsApiLimits) -> axum::Router {
    let checker = Arc::new(HealthChecker::builder("0.1.0").build());
    events_routes(store, limits)
        .merge(openapi_routes())
        .merge(health_routes(checker, &HealthChecksConfig::default()))
        .merge(config_routes(Arc::new(
            || json!({"config": {"mode": "standalone"}}),
        )))
        .merge(metrics_routes(
            "/metrics",
            Arc::new(|| ("# no metrics\n".to_owned(), "text/plain; version=0.0.4")),
        ))
}

struct Server {
    base: String,
    client: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

async fn start(router: axum::Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _task: task,
    }
}

fn memory() -> Arc<dyn EventStore> {
    Arc::new(MemoryStore::new())
}

fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn EventStore> {
    Arc::new(SqliteStore::open(dir.path().join("events.db"), SqliteOptions::default()).unwrap())
}

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    content_type: String,
    body: Value,
}

impl Server {
    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let r = req.send().await.unwrap();
        let status = r.status();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            retry_after,
            content_type,
            body,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> Answer {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    async fn get(&self, path_and_query: &str) -> Answer {
        self.send(self.client.get(format!("{}{path_and_query}", self.base)))
            .await
    }
}

/// Checks `answer` against the document: the status is documented for the operation and a JSON body
/// validates against its schema. Error answers have the documented shape.
fn conforms(doc: &Value, method: &str, path: &str, a: &Answer) {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    let response = &op["responses"][a.status.as_str()];
    assert!(
        response.is_object(),
        "{method} {path}: status {} is not documented; body {}",
        a.status,
        a.body
    );
    if a.content_type.starts_with("application/json") {
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} {}: no JSON schema",
            a.status
        );
        let mut root = schema.clone();
        root["components"] = doc["components"].clone();
        let validator = jsonschema::draft202012::new(&root).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&a.body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {}: {} does not validate: {errors:?}",
            a.status,
            a.body
        );
    }
    if !a.status.is_success() {
        assert!(
            a.body["error"]["code"].is_string() && a.body["error"]["message"].is_string(),
            "{method} {path} {}: not an error body: {}",
            a.status,
            a.body
        );
    }
}

fn code(a: &Answer) -> (u16, &str, Option<&str>) {
    (
        a.status.as_u16(),
        a.body["error"]["code"].as_str().unwrap_or(""),
        a.body["error"]["path"].as_str(),
    )
}

/// Every route and error code of the contract, against one store.
async fn contract(store: Arc<dyn EventStore>) {
    let doc = openapi_document();
    let s = start(app(store, EventsApiLimits::default())).await;

    let a = s.get("/v1/events/head").await;
    conforms(&doc, "get", "/v1/events/head", &a);
    assert_eq!(a.body, json!({"head": 0}));

    // Append two events; the retry with the same ids is a duplicate with the same positions.
    let id = "0192f0c4-6a8e-7cc0-8000-000000000001";
    let batch = json!({"events": [
        {"id": id, "type": "TASK.STARTED", "tags": {"workflow": "wf-1", "task": "t-1"}, "data": {"n": 1},
         "timestamp": "2026-01-01T00:00:00Z", "metadata": {"eventSource": "user", "team": "a"}},
        {"type": "TASK.COMPLETED", "tags": ["workflow:wf-1", "task:t-1"], "timestamp": "2026-01-01T00:05:00Z"}
    ]});
    let a = s.post("/v1/events", &batch).await;
    conforms(&doc, "post", "/v1/events", &a);
    assert_eq!(
        a.body,
        json!({"positions": [1, 2], "lastPosition": 2, "duplicate": false})
    );
    let retry = json!({"events": [batch["events"][0].clone()]});
    let a = s.post("/v1/events", &retry).await;
    assert_eq!(
        a.body,
        json!({"positions": [1], "lastPosition": 1, "duplicate": true})
    );
    // The same id with other content.
    let changed = json!({"events": [{"id": id, "type": "TASK.STARTED", "data": {"n": 2}}]});
    let a = s.post("/v1/events", &changed).await;
    conforms(&doc, "post", "/v1/events", &a);
    assert_eq!(code(&a).0, 409);
    assert_eq!(code(&a).1, "duplicate_event_id");
    assert!(a.body["error"]["message"].as_str().unwrap().contains(id));

    // Conditions: fails on a match, succeeds after the match.
    let cond = |after: Option<u64>| {
        let mut c = json!({"failIfEventsMatch": {"items": [{"types": ["TASK.COMPLETED"], "tags": ["task:t-1"]}]}});
        if let Some(a) = after {
            c["after"] = json!(a);
        }
        json!({"events": [{"type": "TASK.ARCHIVED", "tags": ["task:t-1"]}], "condition": c})
    };
    let a = s.post("/v1/events", &cond(None)).await;
    conforms(&doc, "post", "/v1/events", &a);
    assert_eq!(code(&a), (409, "append_condition_failed", None));
    assert_eq!(a.body["error"]["position"], json!(2), "{}", a.body);
    let a = s.post("/v1/events", &cond(Some(2))).await;
    assert_eq!(a.body["positions"], json!([3]));

    // Bad input: 400 with the path of the field at fault, never a 5xx.
    for (body, expect_code, expect_path) in [
        (
            json!({"events": [{"type": ""}]}),
            "invalid_event",
            Some("events[0].type"),
        ),
        (
            json!({"events": [{"type": "A"}, {"type": "B", "tags": [""]}]}),
            "invalid_event",
            Some("events[1].tags"),
        ),
        (json!({"events": []}), "empty_append", Some("events")),
        (
            json!({"events": [{"type": 7}]}),
            "invalid_event",
            Some("events[0].type"),
        ),
        (
            json!({"events": [{"type": "A", "id": "not-a-uuid"}]}),
            "invalid_event",
            Some("events[0].id"),
        ),
        (
            json!({"events": [{"type": "A", "recordedAt": "2026-01-01T00:00:00Z"}]}),
            "invalid_event",
            Some("events[0].recordedAt"),
        ),
        (
            json!({"events": [{"type": "A", "timestamp": "yesterday"}]}),
            "invalid_event",
            Some("events[0].timestamp"),
        ),
        (
            json!({"events": [{"type": "A"}], "condition": {"failIfEventsMatch": {"items": [{}]}}}),
            "invalid_query",
            Some("condition.failIfEventsMatch.items[0]"),
        ),
        (
            json!({"events": [{"type": "A"}], "condition": {"after": 1}}),
            "invalid_query",
            Some("condition"),
        ),
        (
            json!({"event": [{"type": "A"}]}),
            "invalid_request",
            Some("event"),
        ),
        (json!([1, 2]), "invalid_request", None),
    ] {
        let a = s.post("/v1/events", &body).await;
        conforms(&doc, "post", "/v1/events", &a);
        assert_eq!(
            code(&a),
            (400, expect_code, expect_path),
            "{body}: {}",
            a.body
        );
    }
    for raw in [
        "",
        "{",
        "{\"events\": [}",
        "{\"events\": [{\"type\": \"A\"}]} {}",
        "\u{0}",
    ] {
        let a = s.post_raw("/v1/events", raw).await;
        conforms(&doc, "post", "/v1/events", &a);
        assert_eq!(code(&a).1, "malformed_json", "{raw:?}");
    }
    // A body in serde's positional form of a struct (an array of its fields) is refused: the bodies are
    // objects, as the document says.
    for (path, raw) in [
        ("/v1/events", r#"[[{"type": "TUPLE.FORM"}]]"#),
        ("/v1/events/read", r#" [{}, 5, true, 1]"#),
    ] {
        let a = s.post_raw(path, raw).await;
        conforms(&doc, "post", path, &a);
        assert_eq!(
            code(&a),
            (400, "invalid_request", None),
            "{raw}: {}",
            a.body
        );
    }
    assert_eq!(
        s.get("/v1/events?type=TUPLE.FORM").await.body["events"],
        json!([])
    );
    let a = s
        .send(
            s.client
                .post(format!("{}/v1/events", s.base))
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    conforms(&doc, "post", "/v1/events", &a);
    assert_eq!(code(&a).0, 415);

    // POST /v1/events/read: query, from, backwards, limit.
    let a = s
        .post(
            "/v1/events/read",
            &json!({"query": {"items": [{"tags": ["task:t-1"]}]}, "backwards": true, "limit": 2}),
        )
        .await;
    conforms(&doc, "post", "/v1/events/read", &a);
    let positions: Vec<u64> = a.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!((positions, a.body["head"].as_u64()), (vec![3, 2], Some(3)));
    let a = s.post("/v1/events/read", &json!({"from": 2})).await;
    assert_eq!(a.body["events"].as_array().unwrap().len(), 2);
    let a = s.post("/v1/events/read", &json!({})).await;
    assert_eq!(a.body["events"][0]["event"]["id"], id);
    assert_eq!(
        a.body["events"][0]["event"]["tags"],
        json!(["task:t-1", "workflow:wf-1"])
    );
    assert_eq!(
        a.body["events"][0]["event"]["metadata"],
        json!({"eventSource": "user", "team": "a"})
    );
    assert!(a.body["events"][0]["event"]["recordedAt"].is_string());
    for (body, expect_path) in [
        (json!({"query": {"items": [{}]}}), Some("query.items[0]")),
        (
            json!({"query": {"items": [{"types": [""]}]}}),
            Some("query.items[0].types[0]"),
        ),
        (json!({"limit": -1}), Some("limit")),
        (json!({"from": "x"}), Some("from")),
        (json!({"backwards": 1}), Some("backwards")),
        (json!({"colour": 1}), Some("colour")),
    ] {
        let a = s.post("/v1/events/read", &body).await;
        conforms(&doc, "post", "/v1/events/read", &a);
        assert_eq!(
            (code(&a).0, code(&a).2),
            (400, expect_path),
            "{body}: {}",
            a.body
        );
    }

    // GET /v1/events: the seed's filter.
    for (query, expect) in [
        ("", vec![1, 2, 3]),
        ("?type=TASK.STARTED&type=TASK.ARCHIVED", vec![1, 3]),
        ("?typePattern=TASK.*ED", vec![1, 2, 3]),
        ("?typePattern=*.COMPLETED", vec![2]),
        ("?tag=workflow:wf-1&tag=task:t-1", vec![1, 2]),
        ("?tag=workflow%3Awf-1", vec![1, 2]),
        (
            "?start=2026-01-01T00:01:00Z&end=2026-01-01T00:10:00Z",
            vec![2],
        ),
        ("?start=2026-01-01T01:00:00%2B01:00", vec![1, 2, 3]),
        ("?limit=1&offset=1", vec![2]),
        ("?limit=0", vec![]),
    ] {
        let a = s.get(&format!("/v1/events{query}")).await;
        conforms(&doc, "get", "/v1/events", &a);
        let got: Vec<u64> = a.body["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {}", a.body))
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect();
        assert_eq!(got, expect, "{query}");
    }
    let long_tag = format!("?tag={}", "a".repeat(1025));
    for (query, path) in [
        ("?limit=ten", "limit"),
        ("?offset=-1", "offset"),
        ("?start=yesterday", "start"),
        (
            "?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
            "end",
        ),
        ("?type=", "type"),
        ("?typePattern=", "typePattern"),
        ("?tag=", "tag"),
        ("?tag=a%00b", "tag"),
        (&long_tag, "tag"),
        ("?type=%FF", "type"),
        ("?limit=1&limit=2", "limit"),
        ("?colour=red", "colour"),
    ] {
        let a = s.get(&format!("/v1/events{query}")).await;
        conforms(&doc, "get", "/v1/events", &a);
        assert_eq!((code(&a).0, code(&a).2), (400, Some(path)), "{query}");
    }

    // GET /v1/events/{id}
    let a = s.get(&format!("/v1/events/{id}")).await;
    conforms(&doc, "get", "/v1/events/{id}", &a);
    assert_eq!(a.body["position"], 1);
    assert_eq!(a.body["event"]["data"], json!({"n": 1}));
    let a = s
        .get("/v1/events/0192f0c4-6a8e-7cc0-8000-0000000000ff")
        .await;
    conforms(&doc, "get", "/v1/events/{id}", &a);
    assert_eq!(code(&a), (404, "not_found", Some("id")));
    let a = s.get("/v1/events/nope").await;
    conforms(&doc, "get", "/v1/events/{id}", &a);
    assert_eq!(code(&a), (400, "invalid_parameter", Some("id")));

    // Wrong methods answer 405 in the same shape.
    let a = s
        .send(s.client.delete(format!("{}/v1/events/head", s.base)))
        .await;
    assert_eq!(code(&a).0, 405);
    assert_eq!(code(&a).1, "method_not_allowed");
    let a = s.get("/v1/events/read").await;
    assert_eq!(code(&a).0, 405);

    // Routes without parameters refuse one rather than ignore it.
    for path in ["/v1/events/head?limit=1", &format!("/v1/events/{id}?x=1")] {
        let a = s.get(path).await;
        assert_eq!(
            code(&a),
            (
                400,
                "unknown_parameter",
                Some(path.split(['?', '=']).nth(1).unwrap())
            ),
            "{path}"
        );
        assert!(
            a.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("takes no query parameters")
        );
    }
    let a = s.get("/v1/events/head?").await;
    assert_eq!(code(&a).0, 200, "an empty query string is no parameter");
    conforms(
        &doc,
        "get",
        "/v1/events/head",
        &s.get("/v1/events/head?dryRun").await,
    );
    let head_before_dry_runs = s.get("/v1/events/head").await.body["head"].clone();
    for path in ["/v1/events?dryRun=true", "/v1/events/read?dryRun=true"] {
        let a = s.post(path, &json!({"events": [{"type": "X"}]})).await;
        assert_eq!(
            code(&a),
            (400, "unknown_parameter", Some("dryRun")),
            "{path}"
        );
    }
    assert_eq!(
        s.get("/v1/events/head").await.body["head"],
        head_before_dry_runs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_error_over_the_memory_store() {
    contract(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_error_over_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    contract(sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_default_to_a_page_of_1000_and_clamp_at_10000() {
    let store = memory();
    for _ in 0..11 {
        let batch = (0..1_000).map(|_| Event::new("A")).collect();
        store.append(batch, None).await.unwrap();
    }
    let s = start(app(store, EventsApiLimits::default())).await;
    let len = |a: &Answer| a.body["events"].as_array().unwrap().len();
    assert_eq!(len(&s.get("/v1/events").await), 1_000);
    assert_eq!(len(&s.get("/v1/events?limit=20000").await), 10_000);
    assert_eq!(len(&s.post("/v1/events/read", &json!({})).await), 1_000);
    let a = s
        .post(
            "/v1/events/read",
            &json!({"limit": 4_000_000_000u64, "from": 500}),
        )
        .await;
    assert_eq!(len(&a), 10_000);
    assert_eq!(a.body["events"][0]["position"], 500);
    assert_eq!(a.body["head"], 11_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_events_beyond_the_limits_get_413() {
    let doc = openapi_document();
    let limits = EventsApiLimits {
        max_body_size: 64 * 1024,
        max_event_size: 1024,
        ..EventsApiLimits::default()
    };
    let s = start(app(memory(), limits)).await;
    let a = s
        .post(
            "/v1/events",
            &json!({"events": [{"type": "A"}, {"type": "B", "data": "x".repeat(2_000)}]}),
        )
        .await;
    conforms(&doc, "post", "/v1/events", &a);
    assert_eq!(code(&a), (413, "event_too_large", Some("events[1]")));
    let a = s
        .post(
            "/v1/events",
            &json!({"events": [{"type": "A", "data": "x".repeat(100_000)}]}),
        )
        .await;
    conforms(&doc, "post", "/v1/events", &a);
    assert_eq!(code(&a), (413, "body_too_large", None));
    let a = s
        .post(
            "/v1/events/read",
            &json!({"query": {"items": [{"types": vec!["T".repeat(200); 400]}]}}),
        )
        .await;
    conforms(&doc, "post", "/v1/events/read", &a);
    assert_eq!(code(&a).0, 413);
    // Within the limits all is well, and nothing of the refused appends was stored.
    let a = s
        .post(
            "/v1/events",
            &json!({"events": [{"type": "A", "data": "x".repeat(900)}]}),
        )
        .await;
    assert_eq!(a.body["positions"], json!([1]));
}

/// A store that can be switched to answer `Unavailable`, and whose appends can be held at a gate.
struct Flaky {
    inner: MemoryStore,
    down: AtomicBool,
    gate: Option<Arc<Notify>>,
    parked: AtomicUsize,
}

impl Flaky {
    fn check(&self) -> tamma_events::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(tamma_events::Error::unavailable("database is down"))
        } else {
            Ok(())
        }
    }
}

impl EventStore for Flaky {
    fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> BoxFuture<'_, tamma_events::Result<AppendResult>> {
        Box::pin(async move {
            self.check()?;
            if let Some(gate) = &self.gate {
                self.parked.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
            }
            self.inner.append(events, condition).await
        })
    }
    fn read(&self, query: Query, options: ReadOptions) -> EventStream {
        match self.check() {
            Ok(()) => self.inner.read(query, options),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }
    fn get(&self, id: uuid::Uuid) -> BoxFuture<'_, tamma_events::Result<Option<SequencedEvent>>> {
        Box::pin(async move {
            self.check()?;
            self.inner.get(id).await
        })
    }
    fn head(&self) -> BoxFuture<'_, tamma_events::Result<u64>> {
        Box::pin(async move {
            self.check()?;
            self.inner.head().await
        })
    }
    fn subscribe(&self, query: Query, after: u64) -> EventStream {
        self.inner.subscribe(query, after)
    }
    fn delete_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'_, tamma_events::Result<u64>> {
        self.inner.delete_before(cutoff)
    }
    fn health(&self) -> BoxFuture<'_, tamma_events::Result<StoreHealth>> {
        self.inner.health()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_store_answers_503_with_retry_after() {
    let doc = openapi_document();
    let store = Arc::new(Flaky {
        inner: MemoryStore::new(),
        down: AtomicBool::new(true),
        gate: None,
        parked: AtomicUsize::new(0),
    });
    let limits = EventsApiLimits {
        retry_after: Duration::from_millis(2_500),
        ..EventsApiLimits::default()
    };
    let s = start(app(store.clone(), limits)).await;
    let checks = [
        (
            "post",
            "/v1/events",
            s.post("/v1/events", &json!({"events": [{"type": "A"}]}))
                .await,
        ),
        (
            "post",
            "/v1/events/read",
            s.post("/v1/events/read", &json!({})).await,
        ),
        ("get", "/v1/events", s.get("/v1/events?type=A").await),
        ("get", "/v1/events/head", s.get("/v1/events/head").await),
        (
            "get",
            "/v1/events/{id}",
            s.get(&format!("/v1/events/{}", uuid::Uuid::now_v7())).await,
        ),
        (
            "get",
            "/v1/events/subscribe",
            s.get("/v1/events/subscribe").await,
        ),
    ];
    for (method, path, a) in &checks {
        conforms(&doc, method, path, a);
        assert_eq!(code(a), (503, "unavailable", None), "{method} {path}");
        assert_eq!(a.retry_after.as_deref(), Some("3"), "{method} {path}");
    }
    // Back up: the same append goes through.
    store.down.store(false, Ordering::SeqCst);
    let a = s
        .post("/v1/events", &json!({"events": [{"type": "A"}]}))
        .await;
    assert_eq!(a.body["positions"], json!([1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_beyond_the_concurrency_limit_are_shed_with_429() {
    let doc = openapi_document();
    let gate = Arc::new(Notify::new());
    let store = Arc::new(Flaky {
        inner: MemoryStore::new(),
        down: AtomicBool::new(false),
        gate: Some(Arc::clone(&gate)),
        parked: AtomicUsize::new(0),
    });
    let limits = EventsApiLimits {
        max_concurrent_appends: 1,
        ..EventsApiLimits::default()
    };
    let s = Arc::new(start(app(Arc::clone(&store) as Arc<dyn EventStore>, limits)).await);
    let first = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            s.post("/v1/events", &json!({"events": [{"type": "A"}]}))
                .await
        })
    };
    // Wait until the first append holds the only permit (it is parked at the gate).
    for _ in 0..2_000 {
        if store.parked.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.parked.load(Ordering::SeqCst), 1);
    // A second append while the first holds the only permit is shed.
    let shed = s
        .post("/v1/events", &json!({"events": [{"type": "B"}]}))
        .await;
    conforms(&doc, "post", "/v1/events", &shed);
    assert_eq!(code(&shed), (429, "overloaded", None));
    assert_eq!(shed.retry_after.as_deref(), Some("1"));
    // Reads are not shed.
    assert_eq!(s.get("/v1/events/head").await.status, StatusCode::OK);
    gate.notify_one();
    let a = first.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

/// One parsed SSE message.
#[derive(Debug)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Reads SSE messages from `resp` until `n` arrived (comments are skipped).
async fn next_messages(resp: &mut reqwest::Response, buf: &mut String, n: usize) -> Vec<Message> {
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut m = Message {
                id: None,
                event: None,
                data: String::new(),
            };
            let mut any = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    m.id = Some(v.trim().to_owned());
                    any = true;
                } else if let Some(v) = line.strip_prefix("event:") {
                    m.event = Some(v.trim().to_owned());
                    any = true;
                } else if let Some(v) = line.strip_prefix("data:") {
                    m.data.push_str(v.trim_start());
                    any = true;
                }
            }
            if any {
                out.push(m);
                if out.len() == n {
                    return out;
                }
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
            .await
            .expect("the stream delivers within 20s")
            .unwrap()
            .expect("the stream does not end");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    out
}

/// Subscribes while writers append; drops the connection twice and resumes with `Last-Event-ID`:
/// every position exactly once, in order.
async fn sse_resume(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 60;
    let total = WRITERS * PER_WRITER;
    let s = start(app(Arc::clone(&store), EventsApiLimits::default())).await;
    // Some history before the subscription starts.
    for i in 0..10 {
        let a = s
            .post(
                "/v1/events",
                &json!({"events": [{"type": "PRE", "data": i}]}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let base = s.base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0..PER_WRITER {
                    let r = client
                        .post(format!("{base}/v1/events"))
                        .json(&json!({"events": [{"type": "LIVE", "tags": [format!("writer:{w}")], "data": i}]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    if i % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
        })
        .collect();
    let mut seen: Vec<u64> = Vec::new();
    let mut last: Option<String> = None;
    for part in [70, 90, usize::MAX] {
        let mut req = s
            .client
            .get(format!("{}/v1/events/subscribe?after=0", s.base));
        if let Some(id) = &last {
            req = req.header("Last-Event-ID", id);
        }
        let mut resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut buf = String::new();
        let want = part.min(total + 10 - seen.len());
        for m in next_messages(&mut resp, &mut buf, want).await {
            assert_eq!(m.event, None, "{}", m.data);
            let e: SequencedEvent = serde_json::from_str(&m.data).unwrap();
            assert_eq!(m.id.as_deref(), Some(e.position.to_string().as_str()));
            seen.push(e.position);
            last = m.id;
        }
        drop(resp);
    }
    for w in writers {
        w.await.unwrap();
    }
    let expected: Vec<u64> = (1..=u64::try_from(total + 10).unwrap()).collect();
    assert_eq!(seen, expected);

    // A filtered subscription from `after`.
    let mut resp = s
        .client
        .get(format!(
            "{}/v1/events/subscribe?type=LIVE&tag=writer:2&after=20",
            s.base
        ))
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let ms = next_messages(&mut resp, &mut buf, 5).await;
    for m in &ms {
        let e: SequencedEvent = serde_json::from_str(&m.data).unwrap();
        assert!(e.position > 20 && e.event.tags.contains("writer:2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_from_last_event_id_without_gap_or_duplicate_over_memory() {
    sse_resume(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_from_last_event_id_without_gap_or_duplicate_over_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sse_resume(sqlite(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_keeps_idle_streams_alive_and_rejects_bad_parameters() {
    let doc = openapi_document();
    let limits = EventsApiLimits {
        keep_alive: Duration::from_millis(100),
        ..EventsApiLimits::default()
    };
    let s = start(app(memory(), limits)).await;
    let mut resp = s
        .client
        .get(format!("{}/v1/events/subscribe", s.base))
        .send()
        .await
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        std::str::from_utf8(&chunk).unwrap().starts_with(':'),
        "{chunk:?}"
    );
    let long_tag = format!("?tag={}", "a".repeat(1025));
    let many_tags: String = (0..257).map(|i| format!("&tag=t{i}")).collect();
    let many_tags = format!("?after=0{many_tags}");
    // Every query no store could run is a 400 naming the parameter, never a 200 stream that then ends
    // with an error.
    for (query, header, path) in [
        ("?after=x", None, "after"),
        ("?type=", None, "type"),
        ("?tag=", None, "tag"),
        ("?tag=a%00b", None, "tag"),
        ("?type=A%00", None, "type"),
        (long_tag.as_str(), None, "tag"),
        (many_tags.as_str(), None, "tag"),
        ("?tag=%C3", None, "tag"),
        ("?after=1&after=2", None, "after"),
        ("?typePattern=A*", None, "typePattern"),
        ("", Some("seven"), "Last-Event-ID"),
    ] {
        let mut req = s
            .client
            .get(format!("{}/v1/events/subscribe{query}", s.base));
        if let Some(h) = header {
            req = req.header("Last-Event-ID", h);
        }
        let a = s.send(req).await;
        conforms(&doc, "get", "/v1/events/subscribe", &a);
        assert_eq!((code(&a).0, code(&a).2), (400, Some(path)), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_and_covers_every_route() {
    let s = start(app(memory(), EventsApiLimits::default())).await;
    let a = s.get("/v1/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, openapi_document());
    // The document is itself valid for a JSON Schema 2020-12 validator (all component schemas compile).
    for (name, schema) in a.body["components"]["schemas"].as_object().unwrap() {
        let mut root = schema.clone();
        root["components"] = a.body["components"].clone();
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Every documented GET without required input answers with a documented status and shape.
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/v1/config",
        "/metrics",
        "/v1/openapi.json",
        "/v1/events",
        "/v1/events/head",
    ] {
        let r = s.get(path).await;
        conforms(&a.body, "get", path, &r);
    }
}

/// What a fuzz case sends.
#[derive(Debug, Clone)]
struct Case {
    route: usize,
    query: Vec<(String, String)>,
    body: Body,
    content_type: Option<&'static str>,
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9:._* -]{0,12}".prop_map(Value::from),
        Just(json!("0192f0c4-6a8e-7cc0-8000-000000000001")),
        Just(json!("2026-01-01T00:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let keys = prop_oneof![
            Just("events".to_owned()),
            Just("type".to_owned()),
            Just("types".to_owned()),
            Just("tags".to_owned()),
            Just("id".to_owned()),
            Just("data".to_owned()),
            Just("metadata".to_owned()),
            Just("timestamp".to_owned()),
            Just("condition".to_owned()),
            Just("failIfEventsMatch".to_owned()),
            Just("after".to_owned()),
            Just("items".to_owned()),
            Just("query".to_owned()),
            Just("from".to_owned()),
            Just("backwards".to_owned()),
            Just("limit".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies near the valid ones, so the fuzzer also reaches the store.
fn near_valid() -> impl Strategy<Value = Value> {
    (
        "[A-Z.]{0,8}",
        prop::collection::vec("[a-z:]{0,5}", 0..3),
        arb_json(),
        any::<Option<u64>>(),
        prop::option::of(prop::collection::vec("[A-Z.]{0,4}", 0..2)),
    )
        .prop_map(|(t, tags, data, after, cond_types)| {
            let mut body = json!({"events": [{"type": t, "tags": tags, "data": data}]});
            if let Some(types) = cond_types {
                body["condition"] =
                    json!({"failIfEventsMatch": {"items": [{"types": types}]}, "after": after});
            }
            body["query"] = json!({"items": [{"types": [body["events"][0]["type"].clone()]}]});
            body
        })
}

fn arb_case(routes: usize, params: Vec<String>) -> impl Strategy<Value = Case> {
    let value = prop_oneof![
        "[0-9]{0,5}",
        "-?[0-9]{1,25}",
        "[A-Za-z.*:%?&=+ -]{0,10}",
        Just("2026-01-01T00:00:00Z".to_owned()),
        Just("2026-13-01T00:00:00+25:00".to_owned()),
        Just("%ZZ%ff".to_owned()),
    ];
    let name = prop_oneof![prop::sample::select(params), "[a-zA-Z]{1,6}",];
    (
        0..routes,
        prop::collection::vec((name, value), 0..4),
        prop_oneof![
            arb_json().prop_map(Body::Json),
            near_valid().prop_map(Body::Json),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Raw),
        ],
        prop::sample::select(vec![
            Some("application/json"),
            None,
            Some("text/plain"),
            Some("application/merge-patch+json"),
        ]),
    )
        .prop_map(|(route, query, body, content_type)| Case {
            route,
            query,
            body,
            content_type,
        })
}

/// Every operation of the document: `(method, path template)`.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push((method.clone(), path.clone()));
        }
    }
    ops
}

#[test]
fn fuzzing_every_documented_route_never_yields_a_5xx() {
    let doc = openapi_document();
    let ops = operations(&doc);
    assert!(ops.len() >= 12, "{ops:?}");
    let mut params: Vec<String> = Vec::new();
    for (m, p) in &ops {
        for param in doc["paths"][p][m]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            params.push(param["name"].as_str().unwrap().to_owned());
        }
    }
    params.sort();
    params.dedup();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = rt.block_on(start(app(
        sqlite(&dir),
        EventsApiLimits {
            max_body_size: 16 * 1024,
            ..EventsApiLimits::default()
        },
    )));
    let ids = ["0192f0c4-6a8e-7cc0-8000-000000000001", "nope", "%20", "0"];
    let config = ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(case in arb_case(ops.len(), params.clone()), id in prop::sample::select(ids.to_vec()))| {
        let (method, template) = &ops[case.route];
        let path = template.replace("{id}", id);
        let a = rt.block_on(async {
            let url = reqwest::Url::parse_with_params(&format!("{}{path}", s.base), &case.query).unwrap();
            let mut req = s.client.request(method.to_uppercase().parse().unwrap(), url);
            if let Some(ct) = case.content_type {
                req = req.header("content-type", ct);
            }
            if method != "get" {
                req = match &case.body {
                    Body::Json(v) => req.body(v.to_string()),
                    Body::Raw(b) => req.body(b.clone()),
                };
            }
            if template == "/v1/events/subscribe" {
                // Never read a live stream to its end: the status and headers are what is checked.
                let r = req.send().await.unwrap();
                let status = r.status();
                if status == StatusCode::OK {
                    return Answer { status, retry_after: None, content_type: "text/event-stream".into(), body: Value::Null };
                }
                let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                let body = r.json().await.unwrap();
                return Answer { status, retry_after: None, content_type, body };
            }
            s.send(req).await
        });
        prop_assert!(!a.status.is_server_error(), "{method} {path} {case:?}: {} {}", a.status, a.body);
        if template.starts_with("/v1/events") && !(template == "/v1/events/subscribe" && a.status == StatusCode::OK) {
            // Every answer of the events API has a documented status and validates against the document.
            conforms(&doc, method, template, &a);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_ends_open_subscription_streams() {
    let streams = StreamsShutdown::new();
    let router = events_routes_with_shutdown(memory(), EventsApiLimits::default(), streams.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let trigger = streams.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
                trigger.trigger();
            })
            .await
            .unwrap();
    });
    let client = reqwest::Client::new();
    client
        .post(format!("{base}/v1/events"))
        .json(&json!({"events": [{"type": "A"}]}))
        .send()
        .await
        .unwrap();
    let mut resp = client
        .get(format!("{base}/v1/events/subscribe"))
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    assert_eq!(
        next_messages(&mut resp, &mut buf, 1).await[0].id.as_deref(),
        Some("1")
    );
    stop_tx.send(()).unwrap();
    // The server stops although the subscriber never leaves, and the stream ends cleanly.
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops while a subscriber is connected")
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    assert!(streams.is_triggered());
}

/// A path no route serves answers 404 in the API's JSON error shape (code `not_found`, the method and
/// path named), not an empty body; served paths are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_answer_404_in_the_json_error_shape() {
    let s = start(with_middleware(app(memory(), EventsApiLimits::default()))).await;
    for path in ["/v1/nothing", "/", "/v1/events/head/extra"] {
        let a = s.get(path).await;
        assert_eq!(code(&a), (404, "not_found", None), "{path}: {}", a.body);
        let message = a.body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(&format!("GET {path}")), "{message}");
    }
    assert_eq!(s.get("/v1/events/head").await.status.as_u16(), 200);
}
