//! The HTTP face of a Tamma node (axum): every route and the middleware live here; `tamma-runtime` only
//! assembles them.
//!
//! It owns the routes and the production middleware; the runtime assembles them:
//!
//! - [`health_routes`]: `GET /health` (`application/health+json`), `/health/live`, `/health/ready`;
//! - [`metrics_routes`]: `GET /metrics`, the exposition rendered at most once per second;
//! - [`config_routes`]: `GET /v1/config`, the effective config with secrets redacted and each value's
//!   source;
//! - [`events_routes`] / [`events_routes_with_shutdown`]: the events API (`/v1/events…`, SSE subscribe);
//! - [`openapi_routes`]: `GET /v1/openapi.json`, the OpenAPI 3.1 document of the node;
//! - [`breaker_routes`]: `/v1/breakers` (list, isolate, reset);
//! - [`with_middleware`]: request ids (`x-request-id`), HTTP metrics by route and status, a tracing span
//!   per request;
//! - [`bind`] / [`serve`] / [`shutdown_signal`]: start-up errors an operator can act on
//!   (`address 127.0.0.1:7340 already in use`) and graceful shutdown on SIGINT/SIGTERM.
//!
//! The `server` config section is [`ServerConfig`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use tamma_server::{bind, config_routes, serve, shutdown_signal, with_middleware};
//!
//! # async fn run() -> Result<(), tamma_server::Error> {
//! let router = with_middleware(config_routes(Arc::new(|| serde_json::json!({"mode": "standalone"}))));
//! let listener = bind("127.0.0.1:7340").await?;
//! serve(listener, router, shutdown_signal()).await
//! # }
//! ```

mod breakers;
mod config;
mod config_routes;
mod error;
mod events;
mod health;
mod metrics_routes;
mod middleware;
mod serve;

pub use breakers::breaker_routes;
pub use config::ServerConfig;
pub use config_routes::{ConfigView, config_routes};
pub use error::{Error, Result};
pub use events::{
    EventsApiLimits, StreamsShutdown, events_routes, events_routes_with_shutdown, openapi_document,
    openapi_routes,
};
pub use health::{HEALTH_BODY_MAX_AGE, REFRESH_HEADER, health_routes, health_routes_with_max_age};
pub use metrics_routes::{
    METRICS_MAX_AGE, MetricsRender, metrics_routes, metrics_routes_with_max_age,
};
pub use middleware::{REQUEST_ID, with_middleware};
pub use serve::{bind, serve, shutdown_signal};
