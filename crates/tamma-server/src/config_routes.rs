//! `GET /v1/config`: the effective config, secrets redacted, each value with its source.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::Value;

/// Produces the document `/v1/config` serves (the runtime passes a closure over its config manager,
/// so this crate needs no knowledge of the root config type).
pub type ConfigView = Arc<dyn Fn() -> Value + Send + Sync>;

/// The `GET /v1/config` route.
pub fn config_routes(view: ConfigView) -> Router {
    Router::new()
        .route("/v1/config", get(show))
        .with_state(view)
}

async fn show(State(view): State<ConfigView>) -> impl IntoResponse {
    Json(view())
}
