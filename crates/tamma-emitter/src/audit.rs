//! The audit trail: escalations and the runtime's own significant actions as `eventSource: system` events.

use tamma_events::{Event, EventMetadata, EventSource};
use tamma_resilience::{Escalation, Notifier, NotifyFuture};

use crate::emitter::Emitter;

/// The type of the event an escalation becomes.
pub const ESCALATION_RAISED: &str = "ESCALATION.RAISED";

/// An event of the runtime itself: `eventSource: system`, tagged `component:<component>`.
///
/// ```
/// use tamma_emitter::system_event;
///
/// let e = system_event("CONFIG.RELOADED", "config").data(serde_json::json!({"changed": ["logging.level"]}));
/// assert!(e.tags.contains("component:config"));
/// assert_eq!(e.metadata.event_source, Some(tamma_events::EventSource::System));
/// ```
#[must_use]
pub fn system_event(event_type: &str, component: &str) -> Event {
    Event::new(event_type)
        .tag(format!("component:{component}"))
        .metadata(EventMetadata {
            event_source: Some(EventSource::System),
            ..EventMetadata::default()
        })
}

/// The component an escalation is about: its context's component, else the key's first word
/// (`breaker:events.append` → `events`, `forwarder.ship` → `forwarder`).
fn component_of(e: &Escalation) -> String {
    if let Some(c) = e
        .context
        .as_ref()
        .map(|c| c.component.clone())
        .filter(|c| !c.is_empty())
    {
        return c;
    }
    let key = e
        .key
        .split_once(':')
        .map_or(e.key.as_str(), |(_, rest)| rest);
    let word = key.split('.').next().unwrap_or(key);
    if word.is_empty() {
        "unknown".to_owned()
    } else {
        word.to_owned()
    }
}

/// The event an escalation becomes: `ESCALATION.RAISED`, tags `component:<c>`, `severity:<s>` and
/// `escalation:<key>`, the escalation itself as data, `eventSource: system`.
#[must_use]
pub fn escalation_event(e: &Escalation) -> Event {
    let at = i64::try_from(e.timestamp_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_else(chrono::Utc::now);
    system_event(ESCALATION_RAISED, &component_of(e))
        .tag(format!("severity:{}", e.severity))
        .tag(format!("escalation:{}", e.key))
        .timestamp(at)
        .data(serde_json::to_value(e).unwrap_or_default())
}

/// A [`Notifier`] that appends every escalation to the audit trail (through the emitter, durably).
/// Add it to the node's escalator: `escalator.add_notifier(Arc::new(AuditNotifier::new(emitter)))`.
#[derive(Clone, Debug)]
pub struct AuditNotifier {
    emitter: Emitter,
}

impl AuditNotifier {
    /// A notifier appending through `emitter`.
    #[must_use]
    pub fn new(emitter: Emitter) -> Self {
        Self { emitter }
    }
}

impl Notifier for AuditNotifier {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn notify<'a>(&'a self, escalation: &'a Escalation) -> NotifyFuture<'a> {
        Box::pin(async move {
            self.emitter
                .emit(escalation_event(escalation))
                .await
                .map(|_| ())
                .map_err(|e| tamma_resilience::Error::Notify {
                    notifier: "audit".to_owned(),
                    reason: e.to_string(),
                    retryable: e.is_retryable(),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tamma_resilience::{ErrorContext, Severity};

    #[test]
    fn components_and_tags() {
        let e = Escalation::new("breaker:events.append", Severity::High, "open");
        let ev = escalation_event(&e);
        assert_eq!(ev.event_type, ESCALATION_RAISED);
        assert!(ev.tags.contains("component:events"), "{:?}", ev.tags);
        assert!(ev.tags.contains("severity:high"), "{:?}", ev.tags);
        assert!(ev.tags.contains("escalation:breaker:events.append"));
        assert_eq!(ev.data.to_value()["message"], "open");
        let e = Escalation::new("forwarder.ship", Severity::Critical, "x");
        assert!(escalation_event(&e).tags.contains("component:forwarder"));
        let e = Escalation::new("k", Severity::Low, "x")
            .with_context(&ErrorContext::new("store", "append"));
        assert!(escalation_event(&e).tags.contains("component:store"));
    }
}
