//! Production middleware: request ids, HTTP metrics by route and status, a tracing span per request.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use tamma_core::metric_names::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// The request-id header: taken from the request when present, else a new UUID; echoed on the
/// response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the production middleware.
pub fn with_middleware(router: Router) -> Router {
    router
        .layer(axum::middleware::from_fn(observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    // The route template, never the raw path: bounded label values.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().as_str().to_owned();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let span = tracing::debug_span!("http", %method, %route, request_id = %request_id);
    let response = {
        let _entered = span.enter();
        tracing::trace!("request");
        drop(_entered);
        next.run(req).await
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}
