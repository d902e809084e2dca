//! Production middleware: request ids, HTTP metrics by route and status, a tracing span per request.
//!
//! One hand-written tower layer does all three, because it runs on every request: no boxed future,
//! one service around each route instead of three, no label strings and no metrics-registry lookup
//! once a series has been seen (its handles are cached), and the span's fields borrowed from the
//! request, so a disabled span costs nothing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use metrics::{Counter, Histogram};
use parking_lot::RwLock;
use tamma_core::metric_names::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};
use tower::{Layer, Service};
use tower_http::request_id::RequestId;

/// The request-id header: taken from the request when present, else a new UUID; echoed on the
/// response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `route` label (and span field) of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// At most this many series (route, method, status) cached per route service; past it, further
/// series are recorded through the `metrics` macros on every request (still correct, only slower).
const MAX_CACHED_SERIES: usize = 32;

/// Wraps `router` in the production middleware.
///
/// Per request: the `x-request-id` header is kept when present, else a new UUID is set on the
/// request, and either way the id is also a [`RequestId`] request extension; a `debug` span `http` with `method`, `route` (the
/// route template, or `unmatched`) and `request_id`; on the response,
/// `tamma_http_requests_total{route,method,status}` and
/// `tamma_http_request_duration_seconds{route}`, and the request id echoed unless the handler set
/// one.
pub fn with_middleware(router: Router) -> Router {
    router
        .fallback(crate::events::not_found)
        .layer(ObserveLayer)
}

/// The production middleware as a tower layer (applied to every route by [`with_middleware`]).
#[derive(Debug, Clone, Copy)]
struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        // One series cache per route service: it usually holds one or two series, so a lookup is
        // a short scan, no hashing, and routes do not share a lock.
        Observe {
            inner,
            series: Arc::default(),
        }
    }
}

/// The middleware around one route.
#[derive(Clone)]
struct Observe<S> {
    inner: S,
    series: Arc<SeriesCache>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let request_id = if let Some(id) = req.headers().get(&REQUEST_ID) {
            id.clone()
        } else {
            let id = new_request_id();
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        };
        if req.extensions().get::<RequestId>().is_none() {
            req.extensions_mut()
                .insert(RequestId::new(request_id.clone()));
        }
        // The route template, never the raw path: bounded label values.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        let span = {
            let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
            let method = method.as_str();
            tracing::debug_span!(
                "http",
                %method,
                %route,
                request_id = %request_id.to_str().unwrap_or("")
            )
        };
        span.in_scope(|| tracing::trace!("request"));
        ObserveFuture {
            inner: self.inner.call(req),
            pending: Some(Pending {
                start,
                route,
                method,
                request_id,
                series: Arc::clone(&self.series),
                _span: span,
            }),
        }
    }
}

/// A new request id: a random (v4) UUID, hyphenated.
fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    // Cannot fail: a hyphenated UUID is hex digits and dashes, all valid header-value bytes.
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

/// The response future of [`Observe`].
struct ObserveFuture<F> {
    inner: F,
    /// Taken when the response is ready.
    pending: Option<Pending>,
}

/// What the response needs from its request.
struct Pending {
    start: Instant,
    route: Option<MatchedPath>,
    method: Method,
    request_id: HeaderValue,
    series: Arc<SeriesCache>,
    /// Kept open until the response is ready, like the request it describes.
    _span: tracing::Span,
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Ok(mut response) = ready!(Pin::new(&mut this.inner).poll(cx));
        if let Some(p) = this.pending.take() {
            let route = p.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
            p.series.record(
                route,
                &p.method,
                response.status().as_u16(),
                p.start.elapsed().as_secs_f64(),
            );
            // Echoed unless the handler set one.
            response
                .headers_mut()
                .entry(REQUEST_ID)
                .or_insert(p.request_id);
        }
        Poll::Ready(Ok(response))
    }
}

/// The metric handles of the series one route service has recorded.
#[derive(Default)]
struct SeriesCache(RwLock<CachedSeries>);

#[derive(Default)]
struct CachedSeries {
    /// The recorder the handles came from (its address): handles are only reused while the same
    /// recorder is current, so a recorder installed after the first request still gets every
    /// series, and a local recorder (tests) its own.
    recorder: Option<usize>,
    entries: Vec<Series>,
}

struct Series {
    route: Box<str>,
    method: Method,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

impl Series {
    fn is(&self, route: &str, method: &Method, status: u16) -> bool {
        self.status == status && self.method == *method && *self.route == *route
    }
}

/// The address of the current `metrics` recorder (local, else global, else the no-op one).
fn current_recorder() -> usize {
    metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>().addr())
}

impl SeriesCache {
    /// Counts one request of `route`, `method` and `status` that took `seconds`.
    fn record(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let recorder = current_recorder();
        {
            let cached = self.0.read();
            if cached.recorder == Some(recorder)
                && let Some(s) = cached.entries.iter().find(|s| s.is(route, method, status))
            {
                s.requests.increment(1);
                s.duration.record(seconds);
                return;
            }
        }
        let requests = metrics::counter!(
            HTTP_REQUESTS_TOTAL,
            "route" => route.to_owned(),
            "method" => method.as_str().to_owned(),
            "status" => status.to_string()
        );
        let duration =
            metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route.to_owned());
        requests.increment(1);
        duration.record(seconds);
        let mut cached = self.0.write();
        if cached.recorder != Some(recorder) {
            cached.recorder = Some(recorder);
            cached.entries.clear();
        }
        if cached.entries.len() < MAX_CACHED_SERIES
            && !cached.entries.iter().any(|s| s.is(route, method, status))
        {
            cached.entries.push(Series {
                route: route.into(),
                method: method.clone(),
                status,
                requests,
                duration,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tamma_telemetry::{MetricsConfig, MetricsRecorder};

    fn router() -> Router {
        with_middleware(
            Router::new()
                .route("/live", get(|| async { "ok" }))
                .route(
                    "/items/{id}",
                    get(|| async { (StatusCode::NOT_FOUND, "no such item") }),
                )
                .route(
                    "/own",
                    get(|| async { ([(REQUEST_ID, "from-handler")], "ok") }),
                )
                .route(
                    "/seen",
                    get(|req: Request| async move {
                        // The handler sees the request id as header and as extension.
                        let header = req.headers().get(&REQUEST_ID).cloned();
                        let ext = req.extensions().get::<RequestId>().cloned();
                        assert_eq!(header.as_ref(), ext.as_ref().map(RequestId::header_value));
                        header.map_or_else(String::new, |h| h.to_str().unwrap().to_owned())
                    }),
                ),
        )
    }

    /// Sends `requests` (path, request id) through `router` with `recorder` as the local recorder.
    fn send(
        recorder: &MetricsRecorder,
        router: &Router,
        requests: &[(&str, Option<&str>)],
    ) -> Vec<Response> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        metrics::with_local_recorder(recorder, || {
            rt.block_on(async {
                let mut out = Vec::new();
                for (path, id) in requests {
                    let mut req = Request::builder().uri(*path);
                    if let Some(id) = id {
                        req = req.header(REQUEST_ID, *id);
                    }
                    let mut svc = router.clone();
                    out.push(svc.call(req.body(Body::empty()).unwrap()).await.unwrap());
                }
                out
            })
        })
    }

    fn recorder() -> MetricsRecorder {
        MetricsRecorder::new(&MetricsConfig::default())
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn counts_every_request_of_a_cached_series() {
        let r = recorder();
        let router = router();
        send(&r, &router, &[("/live", None), ("/live", None)]);
        send(&r, &router, &[("/live", None)]);
        send(&r, &router, &[("/items/7", None), ("/nowhere", None)]);
        let text = r.render_prometheus();
        assert_eq!(
            line(
                &text,
                r#"tamma_http_requests_total{route="/live",method="GET",status="200"} "#
            ),
            Some(r#"tamma_http_requests_total{route="/live",method="GET",status="200"} 3"#),
            "{text}"
        );
        assert_eq!(
            line(
                &text,
                r#"tamma_http_request_duration_seconds_count{route="/live"} "#
            ),
            Some(r#"tamma_http_request_duration_seconds_count{route="/live"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tamma_http_requests_total{route="/items/{id}",method="GET",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tamma_http_requests_total{route="unmatched",method="GET",status="404"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_new_recorder_gets_its_own_series() {
        let (first, second) = (recorder(), recorder());
        let router = router();
        send(&first, &router, &[("/live", None)]);
        send(&second, &router, &[("/live", None), ("/live", None)]);
        send(&first, &router, &[("/live", None)]);
        let count = |r: &MetricsRecorder| {
            let text = r.render_prometheus();
            line(
                &text,
                r#"tamma_http_requests_total{route="/live",method="GET",status="200"} "#,
            )
            .map(str::to_owned)
        };
        assert!(count(&first).unwrap().ends_with(" 2"));
        assert!(count(&second).unwrap().ends_with(" 2"));
    }

    #[test]
    fn request_ids_are_kept_or_made_and_echoed() {
        let r = recorder();
        let router = router();
        let res = send(
            &r,
            &router,
            &[("/seen", Some("abc-123")), ("/seen", None), ("/seen", None)],
        );
        let ids: Vec<_> = res
            .iter()
            .map(|r| {
                r.headers()
                    .get(&REQUEST_ID)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids[0], "abc-123");
        assert!(uuid::Uuid::parse_str(&ids[1]).is_ok(), "{}", ids[1]);
        assert_ne!(ids[1], ids[2]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bodies: Vec<String> = res
            .into_iter()
            .map(|r| {
                let bytes = rt
                    .block_on(axum::body::to_bytes(r.into_body(), 1024))
                    .unwrap();
                String::from_utf8(bytes.to_vec()).unwrap()
            })
            .collect();
        assert_eq!(bodies, ids, "the handler saw the id the response echoes");
        let own = send(&r, &router, &[("/own", Some("abc-123"))]);
        assert_eq!(
            own[0]
                .headers()
                .get_all(&REQUEST_ID)
                .iter()
                .collect::<Vec<_>>(),
            ["from-handler"],
            "a request id the handler set is kept"
        );
    }
}
