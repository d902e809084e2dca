//! Circuit-breaker administration (the operator's view, as Spring Boot Actuator's
//! `/actuator/circuitbreakers`): list every breaker, force one open (`isolate`) or closed (`reset`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tamma_resilience::BreakerRegistry;

/// `GET /v1/breakers`, `POST /v1/breakers/{name}/isolate`, `POST /v1/breakers/{name}/reset`.
///
/// `isolate` holds the breaker open until `reset` (every call through it fails fast, the breaker
/// check turns degraded and an escalation is raised); `reset` closes it and clears its window.
/// A name that no component uses yet is created, so a breaker can be isolated before first use.
pub fn breaker_routes(registry: Arc<BreakerRegistry>) -> Router {
    Router::new()
        .route("/v1/breakers", get(list))
        .route("/v1/breakers/{name}/isolate", post(isolate))
        .route("/v1/breakers/{name}/reset", post(reset))
        .with_state(registry)
}

async fn list(State(registry): State<Arc<BreakerRegistry>>) -> impl IntoResponse {
    Json(json!({ "breakers": registry.snapshots() }))
}

fn bad_name(name: &str) -> Option<Response> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    (!ok).then(|| {
        let body = json!({"error": {
            "code": "invalid_breaker_name",
            "message": "a breaker name is 1 to 200 characters of letters, digits, '.', '_', '-', ':'",
            "path": "name"
        }});
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    })
}

async fn isolate(
    State(registry): State<Arc<BreakerRegistry>>,
    Path(name): Path<String>,
) -> Response {
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let breaker = registry.get(&name);
    breaker.isolate();
    Json(breaker.snapshot()).into_response()
}

async fn reset(State(registry): State<Arc<BreakerRegistry>>, Path(name): Path<String>) -> Response {
    if let Some(r) = bad_name(&name) {
        return r;
    }
    let breaker = registry.get(&name);
    breaker.reset();
    Json(breaker.snapshot()).into_response()
}
