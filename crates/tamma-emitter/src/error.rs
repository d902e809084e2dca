//! The crate's error type.

use std::time::Duration;

use tamma_resilience::{Category, Classify, ErrorClass, classify_http_status};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when emitting, subscribing, routing or forwarding events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event store refused or failed (invalid event, duplicate id, store down…). Its
    /// [`code`](tamma_events::Error::code) says which.
    #[error(transparent)]
    Store(#[from] tamma_events::Error),
    /// The emitter cannot take the events now: too many are pending (the store is slow or down) or the
    /// circuit breaker in front of the store is open. Nothing was accepted; try again later.
    #[error("emitter unavailable: {message}")]
    Unavailable {
        /// Why.
        message: String,
        /// When trying again makes sense, if known.
        retry_after: Option<Duration>,
    },
    /// The emitter was disposed: it accepts no more events.
    #[error("the emitter is closed")]
    Closed,
    /// A circuit breaker rejected the call.
    #[error(transparent)]
    Resilience(#[from] tamma_resilience::Error),
    /// A configuration value is invalid; `path` names it (`emitter.redaction.patterns[0].regex`).
    #[error("invalid emitter configuration: {path}: {message}")]
    Config {
        /// The offending key.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A sink (webhook, NATS, the orchestrator's `/v1/events`) did not take a delivery.
    #[error("delivery to {sink} failed: {message}")]
    Delivery {
        /// The sink (`webhook:name`, `nats:name`, `forwarder`).
        sink: String,
        /// What went wrong.
        message: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// Whether trying again may succeed.
        retryable: bool,
        /// How long the sink asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The spool file could not be opened.
    #[error("cannot open the spool: {0}")]
    Spool(#[from] tamma_events_sqlite::Error),
}

impl Error {
    /// A [`Error::Delivery`] from an HTTP status answer.
    pub(crate) fn http(sink: &str, status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let class = classify_http_status(status);
        let body: String = body.chars().take(300).collect();
        Self::Delivery {
            sink: sink.to_owned(),
            message: format!("HTTP {status}: {body}"),
            status: Some(status),
            retryable: class.retryable,
            retry_after,
        }
    }

    /// A retryable [`Error::Delivery`] (network failures, timeouts, unacknowledged publishes).
    pub(crate) fn transport(sink: &str, message: impl std::fmt::Display) -> Self {
        Self::Delivery {
            sink: sink.to_owned(),
            message: message.to_string(),
            status: None,
            retryable: true,
            retry_after: None,
        }
    }

    /// Whether trying the same call again later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        self.class().retryable
    }

    /// A `snake_case` code: the store's code for store errors, else `unavailable`, `closed`,
    /// `breaker_open`, `invalid_config`, `delivery_failed`, `spool_open_failed`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(e) => e.code(),
            Self::Unavailable { .. } => "unavailable",
            Self::Closed => "closed",
            Self::Resilience(_) => "breaker_open",
            Self::Config { .. } => "invalid_config",
            Self::Delivery { .. } => "delivery_failed",
            Self::Spool(_) => "spool_open_failed",
        }
    }
}

impl Classify for Error {
    /// Store errors by their category (invalid input and conflicts are never retried; unavailable and
    /// transient ones are); breaker rejections as `tamma-resilience` classes them; delivery errors by
    /// HTTP status or as network errors.
    fn class(&self) -> ErrorClass {
        match self {
            Self::Store(e) => match e.category() {
                "invalid_input" => ErrorClass::of(Category::Validation),
                "conflict" => ErrorClass::of(Category::Business),
                "transient" => ErrorClass::of(Category::Network),
                "unavailable" => ErrorClass::of(Category::System).retryable(true),
                _ => ErrorClass::of(Category::System).retryable(false),
            },
            Self::Unavailable { retry_after, .. } => {
                let c = ErrorClass::of(Category::ResourceExhaustion)
                    .retryable(true)
                    .escalate(false);
                match retry_after {
                    Some(d) => c.with_retry_after(*d),
                    None => c,
                }
            }
            Self::Closed => ErrorClass::of(Category::Business),
            Self::Resilience(e) => e.class(),
            Self::Config { .. } | Self::Spool(_) => ErrorClass::of(Category::Configuration),
            Self::Delivery {
                retryable,
                retry_after,
                status,
                ..
            } => {
                let c = match status {
                    Some(s) => classify_http_status(*s),
                    None => ErrorClass::of(Category::Network),
                }
                .retryable(*retryable);
                match retry_after {
                    Some(d) => c.with_retry_after(*d),
                    None => c,
                }
            }
        }
    }

    fn code(&self) -> Option<&str> {
        Some(Error::code(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let invalid = Error::from(tamma_events::Error::invalid_event(
            "events[0].type",
            "empty",
        ));
        assert!(!invalid.is_retryable());
        assert_eq!(invalid.code(), "invalid_event");
        let down = Error::from(tamma_events::Error::unavailable("down"));
        assert!(down.is_retryable());
        let busy = Error::from(tamma_events::Error::backend(
            std::io::Error::other("locked"),
            true,
        ));
        assert!(busy.is_retryable());
        let broken = Error::from(tamma_events::Error::backend(
            std::io::Error::other("corrupt"),
            false,
        ));
        assert!(!broken.is_retryable());
        let e503 = Error::http("forwarder", 503, "down", Some(Duration::from_secs(2)));
        assert!(e503.is_retryable());
        assert_eq!(e503.class().retry_after, Some(Duration::from_secs(2)));
        assert!(!Error::http("forwarder", 400, "bad", None).is_retryable());
        assert!(Error::http("forwarder", 429, "slow down", None).is_retryable());
        assert!(Error::transport("nats:x", "refused").is_retryable());
        assert_eq!(Error::Closed.code(), "closed");
    }
}
