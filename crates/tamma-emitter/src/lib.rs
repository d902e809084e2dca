//! `tamma-emitter`: what the orchestrator and workers call to record what happens, and the ways events
//! leave the node again — over any [`EventStore`](tamma_events::EventStore) (`Arc<dyn EventStore>`).
//!
//! | piece | what it does |
//! |---|---|
//! | [`Emitter`] | `emit` (durable), `emit_nowait` (fire-and-forget), `emit_batch` (atomic); timestamps, redaction, validation; bounded pending work (`maxPending`, `enqueueTimeout`); retries through `tamma-resilience`; `dispose` with a deadline and a report |
//! | [`Redactor`] | dotted field paths and regex patterns applied to the event's JSON values in place |
//! | [`Emitter::subscribe`] | in-process subscribers by type glob and tags, each on its own task over a store subscription with its own cursor; lag measured |
//! | routes ([`RouteConfig`]) | stored events delivered to an HTTP webhook or a NATS JetStream subject from a cursor persisted in the store |
//! | [`Spool`], [`Forwarder`] | worker mode: a durable SQLite spool and a forwarder shipping fixed batches to the orchestrator's `/v1/events` |
//! | [`RetentionJob`] | applies `events.retentionDays` in the background |
//! | [`AuditNotifier`], [`system_event`] | escalations and the runtime's own actions as `eventSource: system` events |
//! | [`EmitterConfig`] | the `emitter` config section |
//!
//! Depend on it from the runtime (wiring) and from any component that records events. Metrics (names from
//! `tamma_core::metric_names`): `tamma_emitter_pending`, `tamma_emitter_flush_seconds`,
//! `tamma_emitter_failed_total`, `tamma_emitter_subscriber_lag`.
//!
//! ```
//! use std::sync::Arc;
//! use tamma_emitter::{Emitter, EmitterConfig};
//! use tamma_events::{Event, EventStore, MemoryStore, Tags};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
//! let mut config = EmitterConfig::default();
//! config.redaction.fields = vec!["data.password".into()];
//! let emitter = Emitter::new(store, config)?;
//!
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let sub = emitter
//!     .subscribe("USER.*", Tags::new(), move |e: tamma_events::SequencedEvent| {
//!         let tx = tx.clone();
//!         async move { tx.send(e).map_err(|_| "receiver gone") }
//!     })
//!     .await?;
//!
//! let position = emitter
//!     .emit(Event::new("USER.SIGNED_UP").data(serde_json::json!({"name": "ann", "password": "pw"})))
//!     .await?;
//! let seen = rx.recv().await.unwrap();
//! assert_eq!(seen.position, position);
//! assert_eq!(seen.event.data.to_value()["password"], "[REDACTED]");
//!
//! assert!(emitter.unsubscribe(&sub));
//! let report = emitter.dispose(std::time::Duration::from_secs(5)).await;
//! assert!(report.is_complete());
//! # Ok::<(), tamma_emitter::Error>(())
//! # }).unwrap();
//! ```

mod audit;
mod check;
mod config;
mod emitter;
mod error;
mod redact;
mod retention;
mod route;
mod spool;
mod subscribe;

pub use audit::{AuditNotifier, ESCALATION_RAISED, escalation_event, system_event};
pub use check::EmitterCheck;
pub use config::{
    EmitterConfig, NatsRouteConfig, RedactionConfig, RedactionPattern, RouteConfig, RouteFilter,
    SpoolConfig, StartAt, SubscriptionDefaults, WebhookRouteConfig,
};
pub use emitter::{DisposeReport, Emitter, EmitterBuilder};
pub use error::{Error, Result};
pub use redact::{REDACTED, Redactor};
pub use retention::{RetentionHandle, RetentionJob};
pub use route::cursor_name as route_cursor_name;
pub use spool::{
    ACKED_CURSOR, BATCH_CURSOR, Forwarder, ForwarderCheck, ForwarderHandle, ForwarderStatus, Spool,
};
pub use subscribe::{Handler, SubscriptionHandle};
