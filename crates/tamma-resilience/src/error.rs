//! The crate's error type.

use std::sync::Arc;
use std::time::Duration;

use crate::class::{Category, Classify, ErrorClass};

/// What can go wrong in `tamma-resilience`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The circuit breaker is open (or its half-open trial calls are all in flight): the call was not
    /// made. Try again after `retry_after`.
    #[error("circuit breaker {name:?} is open: call not made; next trial in {retry_after:?}")]
    BreakerOpen {
        /// The breaker's name (`component.operation`).
        name: Arc<str>,
        /// How long until the breaker lets a trial call through.
        retry_after: Duration,
    },
    /// The circuit breaker was isolated by an operator: no call is made until it is reset.
    #[error("circuit breaker {name:?} is isolated by an operator: call not made until it is reset")]
    BreakerIsolated {
        /// The breaker's name (`component.operation`).
        name: Arc<str>,
    },
    /// A notifier could not deliver an escalation.
    #[error("notifier {notifier:?} could not deliver the escalation: {reason}")]
    Notify {
        /// The notifier's name.
        notifier: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again may help (a 5xx or a network error, not a 4xx).
        retryable: bool,
    },
    /// A handler pattern's message regex does not compile.
    #[error("handler pattern {name:?}: invalid message regex: {source}")]
    InvalidPattern {
        /// The pattern's name.
        name: String,
        /// The regex error.
        #[source]
        source: regex::Error,
    },
    /// A configuration value is invalid (the message names the path).
    #[error("invalid resilience configuration: {0}")]
    Config(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    /// `BreakerOpen` is retryable after its `retry_after` (a retry policy waits for the breaker, or
    /// gives up at once when that is past its time budget); an isolated breaker is not retryable and
    /// needs an operator; notifier errors are network errors; bad patterns and config are
    /// configuration errors.
    fn class(&self) -> ErrorClass {
        match self {
            Self::BreakerOpen { retry_after, .. } => ErrorClass::of(Category::ResourceExhaustion)
                .retryable(true)
                .escalate(false)
                .user_visible(false)
                .with_retry_after(*retry_after),
            Self::BreakerIsolated { .. } => ErrorClass::of(Category::Configuration)
                .escalate(false)
                .user_visible(false),
            Self::Notify { retryable, .. } => {
                ErrorClass::of(Category::Network).retryable(*retryable)
            }
            Self::InvalidPattern { .. } | Self::Config(_) => {
                ErrorClass::of(Category::Configuration)
            }
        }
    }

    fn kind_name(&self) -> Option<&str> {
        Some(match self {
            Self::BreakerOpen { .. } => "BreakerOpen",
            Self::BreakerIsolated { .. } => "BreakerIsolated",
            Self::Notify { .. } => "Notify",
            Self::InvalidPattern { .. } => "InvalidPattern",
            Self::Config(_) => "Config",
        })
    }
}

/// Lets `std::io::Error` be the error type of an operation guarded by a breaker: a rejection becomes
/// an `io::Error` of kind `ResourceBusy` (open) or `PermissionDenied` (isolated) carrying this error.
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match e {
            Error::BreakerOpen { .. } => std::io::ErrorKind::ResourceBusy,
            Error::BreakerIsolated { .. } => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_open_says_when() {
        let e = Error::BreakerOpen {
            name: "events.append".into(),
            retry_after: Duration::from_secs(3),
        };
        assert!(e.to_string().contains("events.append"));
        assert!(e.to_string().contains("3s"));
        let c = e.class();
        assert!(c.retryable);
        assert_eq!(c.retry_after, Some(Duration::from_secs(3)));
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::ResourceBusy);
    }
}
