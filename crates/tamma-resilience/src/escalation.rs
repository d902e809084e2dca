//! Escalation: telling operators, through pluggable notifiers, debounced per key.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tamma_core::metric_names::RESILIENCE_ESCALATIONS_TOTAL;

use crate::breaker::{BreakerState, Transition, TransitionListener};
use crate::class::{ErrorClass, Severity};
use crate::clock::Clock;
use crate::config::{EscalationConfig, WebhookConfig};
use crate::error::{Error, Result};
use crate::handler::ErrorContext;

/// Something an operator must hear about. Serialized (camelCase JSON) as the webhook's body.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Escalation {
    /// What repeats of the same problem share (`breaker:events.append`, `forwarder.ship`):
    /// debouncing is per key.
    pub key: String,
    /// How urgent.
    pub severity: Severity,
    /// A sentence for a human.
    pub message: String,
    /// The error's class, when an error caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<ErrorClass>,
    /// Where it happened, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ErrorContext>,
    /// Free details.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Repeats of this key suppressed by debouncing since the last delivery (set by the escalator).
    pub suppressed: u64,
    /// Wall-clock time of the escalation, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl Escalation {
    /// An escalation for `key`, stamped now.
    pub fn new(key: impl Into<String>, severity: Severity, message: impl Into<String>) -> Self {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            key: key.into(),
            severity,
            message: message.into(),
            class: None,
            context: None,
            details: serde_json::Map::new(),
            suppressed: 0,
            timestamp_ms,
        }
    }

    /// Adds the error's class.
    #[must_use]
    pub fn with_class(mut self, class: ErrorClass) -> Self {
        self.class = Some(class);
        self
    }

    /// Adds where it happened.
    #[must_use]
    pub fn with_context(mut self, context: &ErrorContext) -> Self {
        self.context = Some(context.clone());
        self
    }

    /// Adds one detail.
    #[must_use]
    pub fn with_detail(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// The future a [`Notifier`] returns.
pub type NotifyFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Delivers escalations somewhere (the log, a webhook, the audit trail). Object safe: the escalator
/// holds `Arc<dyn Notifier>`; async through a boxed future.
///
/// ```
/// use tamma_resilience::{Escalation, Notifier, NotifyFuture};
///
/// /// Appends escalations to an audit trail (here: a vector).
/// struct Audit(std::sync::Mutex<Vec<String>>);
///
/// impl Notifier for Audit {
///     fn name(&self) -> &str { "audit" }
///     fn notify<'a>(&'a self, e: &'a Escalation) -> NotifyFuture<'a> {
///         Box::pin(async move {
///             self.0.lock().unwrap().push(e.key.clone());
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait Notifier: Send + Sync + 'static {
    /// A short name for logs (`log`, `webhook`, `audit`).
    fn name(&self) -> &str;

    /// Delivers one escalation.
    fn notify<'a>(&'a self, escalation: &'a Escalation) -> NotifyFuture<'a>;
}

/// Writes escalations to the log (target `tamma_resilience::escalation`) at the severity's level:
/// `info` for low, `warn` for medium, `error` for high and critical.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn name(&self) -> &'static str {
        "log"
    }

    fn notify<'a>(&'a self, e: &'a Escalation) -> NotifyFuture<'a> {
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    target: "tamma_resilience::escalation",
                    key = %e.key,
                    severity = e.severity.as_str(),
                    category = e.class.map(|c| c.category.as_str()),
                    component = e.context.as_ref().map(|c| c.component.as_str()),
                    operation = e.context.as_ref().map(|c| c.operation.as_str()),
                    suppressed = e.suppressed,
                    "escalation: {}", e.message
                )
            };
        }
        match e.severity {
            Severity::Low => emit!(info),
            Severity::Medium => emit!(warn),
            Severity::High | Severity::Critical => emit!(error),
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Posts each escalation as JSON to an HTTP webhook. A non-2xx answer is an error
/// ([`Error::Notify`], retryable for 429 and 5xx).
#[derive(Clone)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may be credentials: names only.
        f.debug_struct("WebhookNotifier")
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier for `config`.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL or a header is invalid or the HTTP client cannot be built.
    pub fn new(config: &WebhookConfig) -> Result<Self> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| Error::Config(format!("escalation.webhook.url: {e}: {:?}", config.url)))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::Config(format!(
                    "escalation.webhook.headers.{name}: invalid header name"
                ))
            })?;
            let mut v = reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
                Error::Config(format!(
                    "escalation.webhook.headers.{name}: invalid header value"
                ))
            })?;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout.as_duration())
            .build()
            .map_err(|e| {
                Error::Config(format!("escalation.webhook: cannot build HTTP client: {e}"))
            })?;
        Ok(Self {
            client,
            url,
            headers,
        })
    }
}

impl Notifier for WebhookNotifier {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn notify<'a>(&'a self, e: &'a Escalation) -> NotifyFuture<'a> {
        Box::pin(async move {
            let fail = |reason: String, retryable: bool| Error::Notify {
                notifier: "webhook".into(),
                reason,
                retryable,
            };
            let resp = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .json(e)
                .send()
                .await
                .map_err(|err| fail(format!("POST {} failed: {err}", self.url), true))?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(fail(
                    format!("POST {} answered {status}", self.url),
                    status.is_server_error() || status.as_u16() == 429,
                ))
            }
        })
    }
}

/// What [`Escalator::escalate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscalationOutcome {
    /// Handed to every notifier; `failed` of them reported an error (logged).
    Delivered {
        /// Notifiers asked.
        notifiers: usize,
        /// Notifiers that failed.
        failed: usize,
    },
    /// Suppressed: the same key was delivered less than the debounce window ago.
    Debounced,
    /// Dropped: below the configured minimum severity.
    BelowMinSeverity,
    /// Dropped: escalation is disabled.
    Disabled,
}

#[derive(Debug, Clone, Copy)]
struct KeyState {
    last_sent: Duration,
    suppressed: u64,
}

/// Delivers escalations to its notifiers, at most once per key per debounce window; repeats inside
/// the window are counted and reported in the next delivery's `suppressed`.
pub struct Escalator {
    notifiers: RwLock<Vec<Arc<dyn Notifier>>>,
    enabled: bool,
    min_severity: Severity,
    debounce: Duration,
    clock: Arc<dyn Clock>,
    keys: Mutex<HashMap<String, KeyState>>,
}

impl fmt::Debug for Escalator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Escalator")
            .field("notifiers", &self.notifier_names())
            .field("enabled", &self.enabled)
            .field("min_severity", &self.min_severity)
            .field("debounce", &self.debounce)
            .finish_non_exhaustive()
    }
}

/// Keys kept for debouncing before stale ones are pruned.
const PRUNE_AT: usize = 1024;

impl Escalator {
    /// An escalator with no notifiers (add them with [`with_notifier`](Self::with_notifier)).
    #[must_use]
    pub fn new(
        enabled: bool,
        min_severity: Severity,
        debounce: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            notifiers: RwLock::new(Vec::new()),
            enabled,
            min_severity,
            debounce,
            clock,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The escalator `config` describes: the [`LogNotifier`], plus a [`WebhookNotifier`] when a
    /// webhook is configured.
    ///
    /// # Errors
    /// [`Error::Config`] when the webhook settings are invalid.
    pub fn from_config(config: &EscalationConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut e = Self::new(
            config.enabled,
            config.min_severity,
            config.debounce_window.as_duration(),
            clock,
        )
        .with_notifier(Arc::new(LogNotifier));
        if let Some(w) = &config.webhook {
            e = e.with_notifier(Arc::new(WebhookNotifier::new(w)?));
        }
        Ok(e)
    }

    /// Adds a notifier.
    #[must_use]
    pub fn with_notifier(self, notifier: Arc<dyn Notifier>) -> Self {
        self.add_notifier(notifier);
        self
    }

    /// Adds a notifier to a running escalator (e.g. the audit-trail notifier, once the event store
    /// is up).
    pub fn add_notifier(&self, notifier: Arc<dyn Notifier>) {
        self.notifiers.write().push(notifier);
    }

    /// The notifiers' names, in delivery order.
    #[must_use]
    pub fn notifier_names(&self) -> Vec<String> {
        self.notifiers
            .read()
            .iter()
            .map(|n| n.name().to_owned())
            .collect()
    }

    /// Delivers `escalation` to every notifier (concurrently), unless disabled, below the minimum
    /// severity, or debounced. Notifier failures are logged, never returned: escalation is best
    /// effort and must not fail the operation that escalates.
    pub async fn escalate(&self, mut escalation: Escalation) -> EscalationOutcome {
        if !self.enabled {
            return EscalationOutcome::Disabled;
        }
        if escalation.severity < self.min_severity {
            return EscalationOutcome::BelowMinSeverity;
        }
        let now = self.clock.now();
        {
            let mut keys = self.keys.lock();
            if keys.len() >= PRUNE_AT {
                let window = self.debounce;
                keys.retain(|_, s| now.saturating_sub(s.last_sent) < window);
            }
            match keys.get_mut(&escalation.key) {
                Some(s) if now.saturating_sub(s.last_sent) < self.debounce => {
                    s.suppressed += 1;
                    tracing::debug!(
                        target: "tamma_resilience::escalation",
                        key = %escalation.key,
                        suppressed = s.suppressed,
                        "escalation debounced"
                    );
                    return EscalationOutcome::Debounced;
                }
                Some(s) => {
                    escalation.suppressed = s.suppressed;
                    *s = KeyState {
                        last_sent: now,
                        suppressed: 0,
                    };
                }
                None => {
                    keys.insert(
                        escalation.key.clone(),
                        KeyState {
                            last_sent: now,
                            suppressed: 0,
                        },
                    );
                }
            }
        }
        metrics::counter!(RESILIENCE_ESCALATIONS_TOTAL, "severity" => escalation.severity.as_str())
            .increment(1);
        let notifiers = self.notifiers.read().clone();
        let results =
            futures::future::join_all(notifiers.iter().map(|n| n.notify(&escalation))).await;
        let mut failed = 0;
        for (n, r) in notifiers.iter().zip(results) {
            if let Err(e) = r {
                failed += 1;
                tracing::error!(
                    target: "tamma_resilience::escalation",
                    notifier = n.name(),
                    key = %escalation.key,
                    error = %e,
                    "escalation not delivered"
                );
            }
        }
        EscalationOutcome::Delivered {
            notifiers: notifiers.len(),
            failed,
        }
    }

    /// A breaker listener that escalates (severity high, key `breaker:<name>`) when the breaker
    /// opens or is isolated. Delivery runs on a spawned tokio task; outside a tokio runtime it is
    /// only logged.
    #[must_use]
    pub fn breaker_listener(self: &Arc<Self>) -> TransitionListener {
        let me = Arc::clone(self);
        Arc::new(move |t: &Transition| {
            if !matches!(t.to, BreakerState::Open | BreakerState::Isolated) {
                return;
            }
            let mut esc = Escalation::new(
                format!("breaker:{}", t.breaker),
                Severity::High,
                format!("circuit breaker {} is {} ({})", t.breaker, t.to, t.reason),
            )
            .with_detail("breaker", t.breaker.as_ref())
            .with_detail("from", t.from.as_str())
            .with_detail("to", t.to.as_str())
            .with_detail("reason", t.reason);
            if let Some(r) = t.failure_rate {
                esc = esc.with_detail("failureRate", r);
            }
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    let me = Arc::clone(&me);
                    h.spawn(async move {
                        me.escalate(esc).await;
                    });
                }
                Err(_) => tracing::warn!(
                    target: "tamma_resilience::escalation",
                    key = %esc.key,
                    "no tokio runtime: breaker escalation not delivered: {}", esc.message
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    impl Notifier for Count {
        fn name(&self) -> &'static str {
            "count"
        }
        fn notify<'a>(&'a self, _: &'a Escalation) -> NotifyFuture<'a> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(Ok(())))
        }
    }

    #[tokio::test]
    async fn filters_by_severity_and_enabled() {
        let clock = ManualClock::new();
        let n = Arc::new(Count(AtomicUsize::new(0)));
        let e = Escalator::new(true, Severity::High, Duration::ZERO, clock.shared())
            .with_notifier(n.clone());
        assert_eq!(
            e.escalate(Escalation::new("k", Severity::Medium, "m"))
                .await,
            EscalationOutcome::BelowMinSeverity
        );
        assert_eq!(
            e.escalate(Escalation::new("k", Severity::Critical, "m"))
                .await,
            EscalationOutcome::Delivered {
                notifiers: 1,
                failed: 0
            }
        );
        let off = Escalator::new(false, Severity::Low, Duration::ZERO, clock.shared());
        assert_eq!(
            off.escalate(Escalation::new("k", Severity::Critical, "m"))
                .await,
            EscalationOutcome::Disabled
        );
        assert_eq!(n.0.load(Ordering::SeqCst), 1);
        // A notifier added later (the audit trail) receives the next escalations.
        let late = Arc::new(Count(AtomicUsize::new(0)));
        e.add_notifier(late.clone());
        assert_eq!(e.notifier_names(), vec!["count", "count"]);
        e.escalate(Escalation::new("k2", Severity::High, "m")).await;
        assert_eq!(late.0.load(Ordering::SeqCst), 1);
    }
}
