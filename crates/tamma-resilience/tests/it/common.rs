//! Shared test helpers.

use std::time::Duration;

use tamma_resilience::{Category, Classify, ErrorClass};

/// An error type as a tamma crate would define it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TestError {
    /// A transient failure.
    #[error("transient failure")]
    Transient,
    /// Rate limited, with the server's wait.
    #[error("rate limited")]
    RateLimited(Duration),
    /// Invalid input: never retried.
    #[error("invalid input")]
    Invalid,
    /// A breaker rejection.
    #[error(transparent)]
    Resilience(#[from] tamma_resilience::Error),
}

impl Classify for TestError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Transient => ErrorClass::of(Category::Network),
            Self::RateLimited(d) => ErrorClass::of(Category::RateLimit).with_retry_after(*d),
            Self::Invalid => ErrorClass::of(Category::Validation),
            Self::Resilience(e) => e.class(),
        }
    }
}
