//! The runtime's own audit trail: significant actions of the node become events with
//! `eventSource: system`, so the trail is useful from the first start.

use std::sync::Arc;

use serde_json::Value;
use tamma_events::{Event, EventMetadata, EventSource, EventStore};

/// Event types the runtime records.
pub mod types {
    /// The node started (data: mode, listen, version, store).
    pub const NODE_STARTED: &str = "NODE.STARTED";
    /// The node stopped cleanly.
    pub const NODE_STOPPED: &str = "NODE.STOPPED";
    /// The config was loaded at start (data: generation, file).
    pub const CONFIG_LOADED: &str = "CONFIG.LOADED";
    /// A reload was applied (data: generation, changed paths, restart-required paths).
    pub const CONFIG_RELOADED: &str = "CONFIG.RELOADED";
    /// A reload was rejected; the previous config stays (data: problems).
    pub const CONFIG_RELOAD_FAILED: &str = "CONFIG.RELOAD_FAILED";
}

/// Appends system events to the store. Recording never fails the caller: a failed append is logged
/// at `error` with the event type.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn EventStore>,
    node: String,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// An audit trail into `store`; `node` tags every event (`node:<name>`).
    pub fn new(store: Arc<dyn EventStore>, node: impl Into<String>) -> Self {
        Self {
            store,
            node: node.into(),
        }
    }

    /// The event the trail would record (tags `node:<name>` and `component:<component>`).
    #[must_use]
    pub fn event(&self, event_type: &str, component: &str, data: Value) -> Event {
        let metadata = EventMetadata {
            event_source: Some(EventSource::System),
            ..EventMetadata::default()
        };
        Event::new(event_type)
            .tag(format!("node:{}", self.node))
            .tag(format!("component:{component}"))
            .data(data)
            .metadata(metadata)
    }

    /// Records an event and waits until it is durable (or logs why it could not be).
    pub async fn record(&self, event_type: &str, component: &str, data: Value) {
        let event = self.event(event_type, component, data);
        if let Err(e) = self.store.append(vec![event], None).await {
            tracing::error!(event_type, error = %e, "audit event could not be recorded");
        }
    }

    /// Records an event from synchronous code (config watchers): spawned on the current Tokio runtime,
    /// or recorded on a short-lived one when called outside any runtime.
    pub fn record_in_background(
        &self,
        event_type: &'static str,
        component: &'static str,
        data: Value,
    ) {
        let audit = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { audit.record(event_type, component, data).await });
            }
            Err(_) => {
                std::thread::spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(audit.record(event_type, component, data)),
                        Err(e) => {
                            tracing::error!(event_type, error = %e, "audit event could not be recorded");
                        }
                    }
                });
            }
        }
    }
}
