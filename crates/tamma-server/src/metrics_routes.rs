//! `GET /metrics` (or the configured endpoint): the metrics exposition.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// Renders the exposition: the body and its content type (Prometheus text or JSON).
pub type MetricsRender = Arc<dyn Fn() -> (String, &'static str) + Send + Sync>;

/// The metrics route at `endpoint`.
pub fn metrics_routes(endpoint: &str, render: MetricsRender) -> Router {
    Router::new().route(endpoint, get(show)).with_state(render)
}

async fn show(State(render): State<MetricsRender>) -> impl IntoResponse {
    let (body, content_type) = render();
    ([(header::CONTENT_TYPE, content_type)], body)
}
