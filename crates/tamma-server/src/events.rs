//! The events API over any [`EventStore`]: the HTTP wire contract of `docs/dcb.md`.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/events` | append, with an optional condition |
//! | `POST /v1/events/read` | read by DCB query, `from`, `backwards`, `limit` |
//! | `GET /v1/events` | the seed's filter: `type`, `typePattern`, `tag`, `start`, `end`, `limit`, `offset` |
//! | `GET /v1/events/{id}` | one event |
//! | `GET /v1/events/head` | the highest position |
//! | `GET /v1/events/subscribe` | Server-Sent Events from `after` or `Last-Event-ID` |
//!
//! Every error answers `{"error": {"code", "message", "path"}}`; bad input is a 4xx, never a 5xx.

#[path = "events_http.rs"]
mod http;
#[path = "openapi.rs"]
mod openapi;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use tamma_events::{
    AppendCondition, Event, EventFilter, EventStore, EventsConfig, Limits, Query, QueryItem,
    ReadOptions, SequencedEvent, Tags, read_filtered, validate_append,
};
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use crate::ServerConfig;
pub(crate) use http::not_found;
use http::{
    ApiError, ErrorBody, json_body, method_not_allowed, no_parameters, parse_time, parse_u64,
    query_pairs, unknown_parameter,
};
pub use openapi::{openapi_document, openapi_routes};

/// Limits and knobs of the events API ([`events_routes`]).
///
/// ```
/// use tamma_server::EventsApiLimits;
///
/// let limits = EventsApiLimits { max_concurrent_appends: 64, ..EventsApiLimits::default() };
/// assert_eq!(limits.max_body_size, 16 * 1024 * 1024);
/// assert_eq!(limits.max_page, 10_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsApiLimits {
    /// The largest request body, in bytes (`server.maxBodySize`, 16 MiB); larger bodies get `413`.
    pub max_body_size: u64,
    /// The largest event, in bytes of its JSON encoding (`events.maxEventSize`, 1 MiB); larger events
    /// get `413` naming the event (`events[3]`).
    pub max_event_size: u64,
    /// The most appends served at once; one more is shed with `429` and `Retry-After`. 0 = no limit.
    pub max_concurrent_appends: usize,
    /// The `Retry-After` of `429` and `503` answers (rounded up to whole seconds, at least 1).
    pub retry_after: Duration,
    /// Events per read when the request names no `limit` (1,000).
    pub default_page: u64,
    /// The highest `limit` honoured; higher ones are clamped (10,000).
    pub max_page: u64,
    /// Interval of the keep-alive comments on idle subscription streams (15 s).
    pub keep_alive: Duration,
}

impl Default for EventsApiLimits {
    fn default() -> Self {
        Self {
            max_body_size: 16 * 1024 * 1024,
            max_event_size: Limits::default().max_event_size,
            max_concurrent_appends: 256,
            retry_after: Duration::from_secs(1),
            default_page: 1_000,
            max_page: 10_000,
            keep_alive: Duration::from_secs(15),
        }
    }
}

impl EventsApiLimits {
    /// The defaults with the sizes of the `server` and `events` config sections.
    #[must_use]
    pub fn from_config(server: &ServerConfig, events: &EventsConfig) -> Self {
        Self {
            max_body_size: server.max_body_size.bytes(),
            max_event_size: events.max_event_size.bytes(),
            ..Self::default()
        }
    }

    fn page(&self, limit: Option<u64>) -> u64 {
        limit.unwrap_or(self.default_page).min(self.max_page)
    }
}

#[derive(Clone)]
struct Api {
    store: Arc<dyn EventStore>,
    limits: Arc<EventsApiLimits>,
    appends: Option<Arc<Semaphore>>,
    streams: StreamsShutdown,
}

/// Ends the open subscription streams (`/v1/events/subscribe`) of the routes it was given to.
///
/// A graceful shutdown waits for every in-flight response, and a subscription never ends by itself:
/// trigger this when shutdown begins, or the node waits for its last subscriber to leave. Clients
/// resume elsewhere (or after the restart) with `Last-Event-ID`.
///
/// ```
/// use std::sync::Arc;
/// use tamma_events::MemoryStore;
/// use tamma_server::{EventsApiLimits, StreamsShutdown, events_routes_with_shutdown};
///
/// let streams = StreamsShutdown::new();
/// let router = events_routes_with_shutdown(
///     Arc::new(MemoryStore::new()),
///     EventsApiLimits::default(),
///     streams.clone(),
/// );
/// // In the server's shutdown future: `signal.await; streams.trigger();`
/// streams.trigger();
/// assert!(streams.is_triggered());
/// # let _ = router;
/// ```
#[derive(Clone, Debug)]
pub struct StreamsShutdown(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for StreamsShutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsShutdown {
    /// A trigger not yet pulled.
    #[must_use]
    pub fn new() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(false)))
    }

    /// Ends every open subscription stream now, and every one opened later at once.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`trigger`](Self::trigger) was called.
    #[must_use]
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

/// The events routes (`/v1/events…`) over `store`, as `docs/dcb.md`'s wire contract says.
///
/// Merge them into the node's router; `/v1/openapi.json` is served by [`openapi_routes`]. Subscription
/// streams end only when their client leaves: a node that shuts down gracefully should use
/// [`events_routes_with_shutdown`].
///
/// ```
/// use std::sync::Arc;
/// use tamma_events::MemoryStore;
/// use tamma_server::{EventsApiLimits, events_routes, openapi_routes};
///
/// let router = events_routes(Arc::new(MemoryStore::new()), EventsApiLimits::default())
///     .merge(openapi_routes());
/// # let _ = router;
/// ```
pub fn events_routes(store: Arc<dyn EventStore>, limits: EventsApiLimits) -> Router {
    events_routes_with_shutdown(store, limits, StreamsShutdown::new())
}

/// [`events_routes`] whose subscription streams end when `streams` is triggered.
pub fn events_routes_with_shutdown(
    store: Arc<dyn EventStore>,
    limits: EventsApiLimits,
    streams: StreamsShutdown,
) -> Router {
    let appends = (limits.max_concurrent_appends > 0).then(|| {
        Arc::new(Semaphore::new(
            limits.max_concurrent_appends.min(Semaphore::MAX_PERMITS),
        ))
    });
    // The body limit is applied by the `Bytes` extractor; a limit past usize (32-bit) means no limit.
    let body_limit = usize::try_from(limits.max_body_size).unwrap_or(usize::MAX);
    let api = Api {
        store,
        limits: Arc::new(limits),
        appends,
        streams,
    };
    Router::new()
        .route("/v1/events", post(append).get(list))
        .route("/v1/events/read", post(read))
        .route("/v1/events/head", get(head))
        .route("/v1/events/subscribe", get(subscribe))
        .route("/v1/events/{id}", get(get_one))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(api)
}

/// The body of `POST /v1/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AppendRequest {
    /// The events, appended atomically (all or none); at least one.
    #[schema(value_type = Vec<openapi::EventRef>, min_items = 1)]
    events: Vec<Event>,
    /// Fail (409 `append_condition_failed`) if an event after `after` matches `failIfEventsMatch`.
    #[serde(default)]
    #[schema(value_type = Option<openapi::AppendConditionRef>)]
    condition: Option<AppendCondition>,
}

/// The answer of `POST /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppendResponse {
    /// The positions given to the events, in the order sent.
    positions: Vec<u64>,
    /// The highest of them.
    last_position: u64,
    /// Whether this was an idempotent retry: every event already stored with the same id and content,
    /// nothing written, the original positions returned.
    duplicate: bool,
}

/// The body of `POST /v1/events/read`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReadRequest {
    /// The DCB query; absent, `{}` or `{"items": []}` matches every event.
    #[serde(default)]
    #[schema(value_type = openapi::QueryRef)]
    query: Query,
    /// The first position to consider (inclusive): the lowest forwards, the highest backwards.
    #[serde(default)]
    #[schema(minimum = 0)]
    from: Option<u64>,
    /// Read from the highest position down.
    #[serde(default)]
    backwards: bool,
    /// The most events to return: 1,000 when absent, at most 10,000 (higher is clamped).
    #[serde(default)]
    #[schema(minimum = 0)]
    limit: Option<u64>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadResponse {
    /// The events, in position order.
    #[schema(value_type = Vec<openapi::SequencedEventDoc>)]
    events: Vec<SequencedEvent>,
    /// The store's head when the page was read (at least every returned position).
    head: u64,
}

/// The answer of `GET /v1/events/head`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HeadResponse {
    /// The highest committed position (0 for an empty store).
    head: u64,
}

fn store_error(api: &Api, e: &tamma_events::Error) -> ApiError {
    ApiError::from_store(e, api.limits.retry_after)
}

fn ok_json<T: Serialize>(value: &T) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(value),
    )
        .into_response()
}

/// Appends events atomically, if the condition holds.
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body(content = AppendRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Appended (or an idempotent retry)", body = AppendResponse),
        (status = 400, description = "Invalid events or condition; `path` names the field", body = ErrorBody),
        (status = 409, description = "`append_condition_failed` or `duplicate_event_id`", body = ErrorBody),
        (status = 413, description = "`body_too_large` or `event_too_large`", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 429, description = "The node sheds load; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The store cannot take writes; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn append(State(api): State<Api>, req: Request) -> Result<Response, ApiError> {
    no_parameters(req.uri())?;
    // Shed before reading the body: an overloaded node should not buffer 16 MiB to say no.
    let _permit = match &api.appends {
        Some(s) => Some(Arc::clone(s).try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!(
                    "the node is serving {} appends already; retry later",
                    api.limits.max_concurrent_appends
                ),
            )
            .retry_after(api.limits.retry_after)
        })?),
        None => None,
    };
    let body: AppendRequest = json_body(req, api.limits.max_body_size).await?;
    let limits = Limits {
        max_event_size: api.limits.max_event_size,
    };
    validate_append(&body.events, body.condition.as_ref(), &limits)
        .map_err(|e| store_error(&api, &e))?;
    let result = api
        .store
        .append(body.events, body.condition)
        .await
        .map_err(|e| store_error(&api, &e))?;
    Ok(ok_json(&AppendResponse {
        last_position: result.last_position(),
        positions: result.positions,
        duplicate: result.duplicate,
    }))
}

/// Reads events by DCB query.
#[utoipa::path(
    post, path = "/v1/events/read", tag = "events",
    request_body(content = ReadRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A page of events", body = ReadResponse),
        (status = 400, description = "Invalid query; `path` names the field", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn read(State(api): State<Api>, req: Request) -> Result<Response, ApiError> {
    no_parameters(req.uri())?;
    let body: ReadRequest = json_body(req, api.limits.max_body_size).await?;
    body.query
        .validate("query")
        .map_err(|e| store_error(&api, &e))?;
    let options = ReadOptions {
        from: body.from,
        backwards: body.backwards,
        limit: Some(api.limits.page(body.limit)),
    };
    let events: Vec<SequencedEvent> = api
        .store
        .read(body.query, options)
        .try_collect()
        .await
        .map_err(|e| store_error(&api, &e))?;
    let head = api.store.head().await.map_err(|e| store_error(&api, &e))?;
    Ok(ok_json(&ReadResponse { events, head }))
}

const LIST_PARAMS: &[&str] = &[
    "type",
    "typePattern",
    "tag",
    "start",
    "end",
    "limit",
    "offset",
];

/// A type parameter as every store takes it: 1 to 256 bytes, no U+0000.
fn check_type(name: &str, value: &str) -> Result<(), ApiError> {
    check_key(name, value, tamma_events::MAX_TYPE_LEN)
}

/// A tag parameter as every store takes it: 1 to 1,024 bytes, no U+0000.
fn check_tag(name: &str, value: &str) -> Result<(), ApiError> {
    check_key(name, value, tamma_events::MAX_TAG_LEN)
}

fn check_key(name: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let problem = if value.is_empty() || value.len() > max {
        format!("{name} must be 1 to {max} bytes")
    } else if value.contains('\0') {
        format!("{name} must not contain the character U+0000")
    } else {
        return Ok(());
    };
    Err(ApiError::bad_request("invalid_parameter", name, problem))
}

/// At most [`tamma_events::MAX_QUERY_TERMS`] `type` and `tag` parameters in all.
fn check_terms(types: usize, tags: usize) -> Result<(), ApiError> {
    if types + tags > tamma_events::MAX_QUERY_TERMS {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            if tags > types { "tag" } else { "type" },
            format!(
                "{} type and tag parameters, more than {}",
                types + tags,
                tamma_events::MAX_QUERY_TERMS
            ),
        ));
    }
    Ok(())
}

fn list_filter(uri: &Uri, limits: &EventsApiLimits) -> Result<EventFilter, ApiError> {
    let mut f = EventFilter::default();
    let mut limit = None;
    for (name, value) in query_pairs(uri, &["type", "tag"])? {
        match name.as_str() {
            "type" => {
                check_type("type", &value)?;
                f.types.push(value);
            }
            "typePattern" => {
                check_type("typePattern", &value)?;
                f.type_pattern = Some(value);
            }
            "tag" => {
                check_tag("tag", &value)?;
                f.tags.insert(value);
            }
            "start" => f.start = Some(parse_time("start", &value)?),
            "end" => f.end = Some(parse_time("end", &value)?),
            "limit" => limit = Some(parse_u64("limit", &value)?),
            "offset" => f.offset = Some(parse_u64("offset", &value)?),
            other => return Err(unknown_parameter(other, LIST_PARAMS)),
        }
    }
    if let (Some(s), Some(e)) = (f.start, f.end)
        && e < s
    {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "end",
            "end must not be before start",
        ));
    }
    check_terms(f.types.len(), f.tags.len())?;
    f.limit = Some(limits.page(limit));
    Ok(f)
}

/// Lists events with the seed's filter.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(
        ("type" = Option<Vec<String>>, Query, style = Form, explode, description = "Event types, any of which matches (repeatable)"),
        ("typePattern" = Option<String>, Query, description = "A glob over the type: `*` any run, `?` one character (`TASK.*`)"),
        ("tag" = Option<Vec<String>>, Query, style = Form, explode, description = "Tags the events must all carry (repeatable)"),
        ("start" = Option<String>, Query, format = DateTime, description = "Earliest event timestamp, RFC 3339, inclusive"),
        ("end" = Option<String>, Query, format = DateTime, description = "Latest event timestamp, RFC 3339, inclusive"),
        ("limit" = Option<u64>, Query, minimum = 0, description = "Most events to return: 1,000 when absent, at most 10,000"),
        ("offset" = Option<u64>, Query, minimum = 0, description = "Matching events to skip first"),
    ),
    responses(
        (status = 200, description = "The matching events, in position order", body = ReadResponse),
        (status = 400, description = "A bad or unknown parameter; `path` names it", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn list(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let filter = list_filter(&uri, &api.limits)?;
    let events = read_filtered(api.store.as_ref(), &filter)
        .await
        .map_err(|e| store_error(&api, &e))?;
    let head = api.store.head().await.map_err(|e| store_error(&api, &e))?;
    Ok(ok_json(&ReadResponse { events, head }))
}

/// One event by id.
#[utoipa::path(
    get, path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, format = Uuid, description = "The event id")),
    responses(
        (status = 200, description = "The stored event", body = openapi::SequencedEventDoc),
        (status = 400, description = "`id` is not a UUID", body = ErrorBody),
        (status = 404, description = "No event with this id", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn get_one(
    State(api): State<Api>,
    uri: Uri,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    no_parameters(&uri)?;
    let Path(id) =
        id.map_err(|e| ApiError::bad_request("invalid_parameter", "id", e.body_text()))?;
    let uuid = uuid::Uuid::parse_str(&id).map_err(|e| {
        ApiError::bad_request(
            "invalid_parameter",
            "id",
            format!("{id:?} is not a UUID: {e}"),
        )
    })?;
    match api
        .store
        .get(uuid)
        .await
        .map_err(|e| store_error(&api, &e))?
    {
        Some(e) => Ok(ok_json(&e)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no event with id {uuid}"),
        )
        .at("id")),
    }
}

/// The highest committed position.
#[utoipa::path(
    get, path = "/v1/events/head", tag = "events",
    responses(
        (status = 200, description = "The head", body = HeadResponse),
        (status = 400, description = "`unknown_parameter`: this route takes no query parameters", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn head(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    no_parameters(&uri)?;
    let head = api.store.head().await.map_err(|e| store_error(&api, &e))?;
    Ok(ok_json(&HeadResponse { head }))
}

const SUBSCRIBE_PARAMS: &[&str] = &["after", "type", "tag"];

/// The header a reconnecting SSE client sends with the id of the last message it received.
const LAST_EVENT_ID: &str = "last-event-id";

fn subscription(uri: &Uri, headers: &HeaderMap) -> Result<(Query, u64), ApiError> {
    let mut types = Vec::new();
    let mut tags = Tags::new();
    let mut after = 0;
    for (name, value) in query_pairs(uri, &["type", "tag"])? {
        match name.as_str() {
            "after" => after = parse_u64("after", &value)?,
            "type" => {
                check_type("type", &value)?;
                types.push(value);
            }
            "tag" => {
                check_tag("tag", &value)?;
                tags.insert(value);
            }
            other => return Err(unknown_parameter(other, SUBSCRIBE_PARAMS)),
        }
    }
    // A reconnecting client repeats its original URL: the header is the later truth. An empty one is
    // "no event received yet".
    if let Some(v) = headers
        .get(LAST_EVENT_ID)
        .filter(|v| !v.as_bytes().trim_ascii().is_empty())
    {
        let v = v.to_str().map_err(|_| {
            ApiError::bad_request(
                "invalid_parameter",
                "Last-Event-ID",
                "Last-Event-ID must be a position",
            )
        })?;
        after = parse_u64("Last-Event-ID", v)?;
    }
    check_terms(types.len(), tags.len())?;
    let query = if types.is_empty() && tags.is_empty() {
        Query::all()
    } else {
        Query::item(QueryItem { types, tags })
    };
    Ok((query, after))
}

/// Streams matching events as Server-Sent Events: the stored ones after `after` (or `Last-Event-ID`),
/// then live ones, without gap or duplicate.
#[utoipa::path(
    get, path = "/v1/events/subscribe", tag = "events",
    params(
        ("after" = Option<u64>, Query, minimum = 0, description = "Deliver events after this position (default 0: everything)"),
        ("type" = Option<Vec<String>>, Query, style = Form, explode, description = "Event types, any of which matches (repeatable)"),
        ("tag" = Option<Vec<String>>, Query, style = Form, explode, description = "Tags the events must all carry (repeatable)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (overrides `after`)"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "One message per event: `id: <position>`, `data: <SequencedEvent JSON>`; comments keep the stream alive. \
                           A final `event: error` message carries an error body when the stream ends (resume with `Last-Event-ID`)."),
        (status = 400, description = "A bad or unknown parameter; `path` names it", body = ErrorBody),
        (status = 503, description = "The store cannot be read", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn subscribe(
    State(api): State<Api>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (query, after) = subscription(&uri, &headers)?;
    // Answer 503 now rather than a 200 stream that ends at once.
    api.store.head().await.map_err(|e| store_error(&api, &e))?;
    let retry_after = api.limits.retry_after;
    let events = api.store.subscribe(query, after);
    let stop = api.streams.0.subscribe();
    let stream = futures::stream::unfold(Some(events), move |state| {
        let mut stop = stop.clone();
        async move {
            let mut events = state?;
            let next = tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => None,
                next = events.next() => next,
            };
            let message = match next? {
                Ok(e) => {
                    // Serializing a stored event into memory cannot fail (string keys, plain values).
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    (
                        SseEvent::default().id(e.position.to_string()).data(data),
                        Some(events),
                    )
                }
                Err(e) => {
                    let err = ApiError::from_store(&e, retry_after);
                    (SseEvent::default().event("error").data(err.to_json()), None)
                }
            };
            Some((Ok::<_, std::convert::Infallible>(message.0), message.1))
        }
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(api.limits.keep_alive))
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_clamped() {
        let l = EventsApiLimits::default();
        assert_eq!(l.page(None), 1_000);
        assert_eq!(l.page(Some(5)), 5);
        assert_eq!(l.page(Some(1_000_000)), 10_000);
    }

    #[test]
    fn list_parameters() {
        let l = EventsApiLimits::default();
        let uri: Uri = "/v1/events?type=A&type=B&tag=k:v&typePattern=A*&limit=20000&offset=3"
            .parse()
            .unwrap();
        let f = list_filter(&uri, &l).unwrap();
        assert_eq!(f.types, vec!["A", "B"]);
        assert_eq!(
            (f.limit, f.offset, f.type_pattern.as_deref()),
            (Some(10_000), Some(3), Some("A*"))
        );
        let bad: Uri = "/v1/events?colour=red".parse().unwrap();
        assert_eq!(
            list_filter(&bad, &l).unwrap_err().path.as_deref(),
            Some("colour")
        );
        let bad: Uri = "/v1/events?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z"
            .parse()
            .unwrap();
        assert_eq!(
            list_filter(&bad, &l).unwrap_err().path.as_deref(),
            Some("end")
        );
        let bad: Uri = "/v1/events?type=".parse().unwrap();
        assert_eq!(
            list_filter(&bad, &l).unwrap_err().path.as_deref(),
            Some("type")
        );
    }

    #[test]
    fn last_event_id_wins_over_after() {
        let uri: Uri = "/v1/events/subscribe?after=3&type=A".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(subscription(&uri, &h).unwrap().1, 3);
        h.insert(LAST_EVENT_ID, HeaderValue::from_static("9"));
        let (q, after) = subscription(&uri, &h).unwrap();
        assert_eq!(after, 9);
        assert_eq!(q, Query::item(QueryItem::types(["A"])));
        h.insert(LAST_EVENT_ID, HeaderValue::from_static(" "));
        assert_eq!(subscription(&uri, &h).unwrap().1, 3);
        h.insert(LAST_EVENT_ID, HeaderValue::from_static("x"));
        assert_eq!(
            subscription(&uri, &h).unwrap_err().path.as_deref(),
            Some("Last-Event-ID")
        );
    }
}
