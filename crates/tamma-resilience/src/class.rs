//! Error classes: what an error means, independent of where it came from.

use std::fmt;
use std::io;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// How bad an error is. Ordered: `Low < Medium < High < Critical`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Expected now and then; logged at `info`.
    Low,
    /// Worth a warning; logged at `warn`.
    Medium,
    /// Something is broken; logged at `error`, escalated.
    High,
    /// Service is down or data at risk; logged at `error`, escalated.
    Critical,
}

impl Severity {
    /// The lowercase name used in config, logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of error it is (the seed's categories).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The network failed: connection refused or reset, DNS, broken pipe.
    Network,
    /// The caller's identity was not accepted (bad or expired credentials).
    Authentication,
    /// The caller is known but not allowed to do this.
    Authorization,
    /// The input was invalid; retrying the same input cannot help.
    Validation,
    /// A business rule refused the operation (a conflict, a failed append condition).
    Business,
    /// An internal fault of this or another system (5xx, I/O failure, a bug).
    System,
    /// The operation did not finish in time.
    Timeout,
    /// The other side asked us to slow down.
    RateLimit,
    /// Memory, disk, file descriptors, connections or a queue ran out.
    ResourceExhaustion,
    /// The configuration is wrong; an operator must fix it.
    Configuration,
    /// Nothing more is known.
    Unknown,
}

impl Category {
    /// The snake_case name used in config, logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Authentication => "authentication",
            Self::Authorization => "authorization",
            Self::Validation => "validation",
            Self::Business => "business",
            Self::System => "system",
            Self::Timeout => "timeout",
            Self::RateLimit => "rate_limit",
            Self::ResourceExhaustion => "resource_exhaustion",
            Self::Configuration => "configuration",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of an error: everything retry, circuit breakers and escalation look at. Small and `Copy`,
/// so classifying never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorClass {
    /// How bad it is.
    pub severity: Severity,
    /// What kind of error it is.
    pub category: Category,
    /// Whether the same operation may succeed if tried again (transient). Only retryable errors are
    /// retried, and only retryable errors count as failures in a circuit breaker.
    pub retryable: bool,
    /// Whether the error's message may be shown to an end user as is: it says what went wrong in the
    /// user's terms and holds no internals (no SQL, no host names, no stack). When `false`, show a
    /// generic message and log the real one.
    pub user_visible: bool,
    /// Whether an operator must be told (the error is delivered to the escalation notifiers).
    pub escalation_required: bool,
    /// How long the other side asked us to wait before trying again (`Retry-After`), if it said.
    #[serde(with = "opt_millis", default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Duration>,
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` hands us `&Option<T>`.
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

impl ErrorClass {
    /// A class with the given severity and category; the flags start as the category's defaults
    /// (see [`ErrorClass::of`]).
    #[must_use]
    pub const fn new(severity: Severity, category: Category) -> Self {
        let mut c = Self::of(category);
        c.severity = severity;
        c
    }

    /// The default class of a category (the seed's classifications):
    ///
    /// | category | severity | retryable | user visible | escalate |
    /// |---|---|---|---|---|
    /// | network | medium | yes | no | no |
    /// | timeout | medium | yes | yes | no |
    /// | rate_limit | medium | yes | yes | no |
    /// | authentication | high | no | yes | yes |
    /// | authorization | medium | no | yes | no |
    /// | validation | low | no | yes | no |
    /// | business | low | no | yes | no |
    /// | system | high | yes | no | no |
    /// | resource_exhaustion | critical | no | no | yes |
    /// | configuration | high | no | no | yes |
    /// | unknown | medium | no | no | no |
    #[must_use]
    pub const fn of(category: Category) -> Self {
        use Category as C;
        use Severity as S;
        let (severity, retryable, user_visible, escalation_required) = match category {
            C::Network => (S::Medium, true, false, false),
            C::Timeout | C::RateLimit => (S::Medium, true, true, false),
            C::Authentication => (S::High, false, true, true),
            C::Authorization => (S::Medium, false, true, false),
            C::Validation | C::Business => (S::Low, false, true, false),
            C::System => (S::High, true, false, false),
            C::ResourceExhaustion => (S::Critical, false, false, true),
            C::Configuration => (S::High, false, false, true),
            C::Unknown => (S::Medium, false, false, false),
        };
        Self {
            severity,
            category,
            retryable,
            user_visible,
            escalation_required,
            retry_after: None,
        }
    }

    /// The same class, retryable or not.
    #[must_use]
    pub const fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The same class, with a server-requested wait before the next try.
    #[must_use]
    pub const fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The same class, with escalation required or not.
    #[must_use]
    pub const fn escalate(mut self, escalation_required: bool) -> Self {
        self.escalation_required = escalation_required;
        self
    }

    /// The same class, user visible or not.
    #[must_use]
    pub const fn user_visible(mut self, user_visible: bool) -> Self {
        self.user_visible = user_visible;
        self
    }
}

/// What an error means. Every tamma error type implements it (in the crate that owns the error), so
/// retry, circuit breakers and escalation never look at anything but the class.
///
/// `code` and `kind_name` feed the handler registry's patterns ([`ErrorPattern`](crate::ErrorPattern)).
///
/// ```
/// use tamma_resilience::{Category, Classify, ErrorClass};
///
/// #[derive(Debug)]
/// enum StoreError { Busy, Constraint(String) }
///
/// impl Classify for StoreError {
///     fn class(&self) -> ErrorClass {
///         match self {
///             // SQLite BUSY: transient, try again.
///             StoreError::Busy => ErrorClass::of(Category::ResourceExhaustion)
///                 .retryable(true)
///                 .escalate(false),
///             // A constraint violation never succeeds on retry.
///             StoreError::Constraint(_) => ErrorClass::of(Category::Validation),
///         }
///     }
///     fn code(&self) -> Option<&str> {
///         Some(match self { StoreError::Busy => "SQLITE_BUSY", StoreError::Constraint(_) => "SQLITE_CONSTRAINT" })
///     }
/// }
/// assert!(StoreError::Busy.class().retryable);
/// assert!(!StoreError::Constraint("unique".into()).class().retryable);
/// ```
pub trait Classify {
    /// The class of this error. Must be cheap and must not allocate: it is called on every failure.
    fn class(&self) -> ErrorClass;

    /// A stable machine code, if the error has one (`"40001"`, `"ECONNREFUSED"`, `"429"`).
    fn code(&self) -> Option<&str> {
        None
    }

    /// The error's kind as a name (`"TimedOut"`, `"BreakerOpen"`), if it has one.
    fn kind_name(&self) -> Option<&str> {
        None
    }
}

impl<T: Classify + ?Sized> Classify for &T {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
    fn code(&self) -> Option<&str> {
        (**self).code()
    }
    fn kind_name(&self) -> Option<&str> {
        (**self).kind_name()
    }
}

impl<T: Classify + ?Sized> Classify for Box<T> {
    fn class(&self) -> ErrorClass {
        (**self).class()
    }
    fn code(&self) -> Option<&str> {
        (**self).code()
    }
    fn kind_name(&self) -> Option<&str> {
        (**self).kind_name()
    }
}

/// The class of an [`io::ErrorKind`].
#[must_use]
pub fn classify_io_kind(kind: io::ErrorKind) -> ErrorClass {
    use io::ErrorKind as K;
    match kind {
        K::TimedOut | K::WouldBlock => ErrorClass::of(Category::Timeout),
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable
        | K::Interrupted => ErrorClass::of(Category::Network),
        K::PermissionDenied => ErrorClass::of(Category::Authorization).user_visible(false),
        K::InvalidInput | K::InvalidData | K::InvalidFilename => {
            ErrorClass::of(Category::Validation).user_visible(false)
        }
        K::NotFound
        | K::AlreadyExists
        | K::DirectoryNotEmpty
        | K::NotADirectory
        | K::IsADirectory => ErrorClass::of(Category::Business).user_visible(false),
        K::OutOfMemory | K::StorageFull | K::QuotaExceeded | K::FileTooLarge | K::TooManyLinks => {
            ErrorClass::of(Category::ResourceExhaustion)
        }
        K::ResourceBusy | K::Deadlock => ErrorClass::of(Category::ResourceExhaustion)
            .retryable(true)
            .escalate(false),
        K::Unsupported | K::ReadOnlyFilesystem => ErrorClass::of(Category::Configuration),
        _ => ErrorClass::of(Category::System).retryable(false),
    }
}

/// `std::io::Error`: connection refused/reset, broken pipe and the like are transient network errors;
/// `TimedOut` is a timeout; a full disk is resource exhaustion; invalid input is validation. The code is
/// the POSIX name of the OS error where one is known (`ECONNREFUSED`), the kind name is the
/// [`io::ErrorKind`] variant (`ConnectionRefused`).
impl Classify for io::Error {
    fn class(&self) -> ErrorClass {
        // A breaker rejection converted into an io::Error keeps its own class (and retry-after).
        if let Some(inner) = self
            .get_ref()
            .and_then(|e| e.downcast_ref::<crate::Error>())
        {
            return inner.class();
        }
        classify_io_kind(self.kind())
    }

    fn code(&self) -> Option<&str> {
        use io::ErrorKind as K;
        Some(match self.kind() {
            K::ConnectionRefused => "ECONNREFUSED",
            K::ConnectionReset => "ECONNRESET",
            K::ConnectionAborted => "ECONNABORTED",
            K::TimedOut => "ETIMEDOUT",
            K::BrokenPipe => "EPIPE",
            K::HostUnreachable => "EHOSTUNREACH",
            K::NetworkUnreachable => "ENETUNREACH",
            K::NotFound => "ENOENT",
            K::PermissionDenied => "EACCES",
            K::StorageFull => "ENOSPC",
            K::AddrInUse => "EADDRINUSE",
            _ => return None,
        })
    }

    fn kind_name(&self) -> Option<&str> {
        Some(io_kind_name(self.kind()))
    }
}

fn io_kind_name(kind: io::ErrorKind) -> &'static str {
    use io::ErrorKind as K;
    match kind {
        K::TimedOut => "TimedOut",
        K::WouldBlock => "WouldBlock",
        K::ConnectionRefused => "ConnectionRefused",
        K::ConnectionReset => "ConnectionReset",
        K::ConnectionAborted => "ConnectionAborted",
        K::NotConnected => "NotConnected",
        K::BrokenPipe => "BrokenPipe",
        K::UnexpectedEof => "UnexpectedEof",
        K::PermissionDenied => "PermissionDenied",
        K::NotFound => "NotFound",
        K::AlreadyExists => "AlreadyExists",
        K::InvalidInput => "InvalidInput",
        K::InvalidData => "InvalidData",
        K::OutOfMemory => "OutOfMemory",
        K::StorageFull => "StorageFull",
        K::Interrupted => "Interrupted",
        K::Unsupported => "Unsupported",
        _ => "Other",
    }
}

/// `tokio::time::timeout` expired: a timeout.
impl Classify for tokio::time::error::Elapsed {
    fn class(&self) -> ErrorClass {
        ErrorClass::of(Category::Timeout)
    }
    fn kind_name(&self) -> Option<&str> {
        Some("TimedOut")
    }
}

/// Classifies an HTTP status the way the handler defaults expect: 408/504 timeout, 429 rate limit,
/// 401 authentication, 403 authorization, other 4xx validation, 503/502/500 retryable system errors.
#[must_use]
pub fn classify_http_status(status: u16) -> ErrorClass {
    match status {
        408 | 504 => ErrorClass::of(Category::Timeout),
        429 => ErrorClass::of(Category::RateLimit),
        401 => ErrorClass::of(Category::Authentication),
        403 => ErrorClass::of(Category::Authorization),
        409 => ErrorClass::of(Category::Business),
        400..=499 => ErrorClass::of(Category::Validation),
        500..=599 => ErrorClass::of(Category::System),
        _ => ErrorClass::of(Category::Unknown),
    }
}

/// `reqwest::Error`: timeouts, connection failures (network), and HTTP statuses through
/// [`classify_http_status`]. A `Retry-After` header is not part of a `reqwest::Error`; read it from
/// the response and add it with [`ErrorClass::with_retry_after`] (see [`parse_retry_after`]).
impl Classify for reqwest::Error {
    fn class(&self) -> ErrorClass {
        if self.is_timeout() {
            ErrorClass::of(Category::Timeout)
        } else if let Some(status) = self.status() {
            classify_http_status(status.as_u16())
        } else if self.is_connect() || self.is_request() {
            ErrorClass::of(Category::Network)
        } else if self.is_builder() {
            ErrorClass::of(Category::Configuration)
        } else if self.is_decode() || self.is_body() {
            ErrorClass::of(Category::System)
        } else {
            ErrorClass::of(Category::Unknown)
        }
    }

    fn kind_name(&self) -> Option<&str> {
        Some(if self.is_timeout() {
            "TimedOut"
        } else if self.is_connect() {
            "Connect"
        } else if self.is_status() {
            "Status"
        } else {
            "Request"
        })
    }
}

/// Reads an HTTP `Retry-After` value given in seconds (`"120"`). HTTP dates are not parsed (they
/// would need a date library); `None` then, and the caller's backoff applies.
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

static TIMEOUT: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern: compiling it cannot fail.
    Regex::new(r"(?i)timed? ?out|deadline exceeded").expect("static regex")
});
static RATE_LIMIT: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern: compiling it cannot fail.
    Regex::new(r"(?i)rate.*limit|too many requests").expect("static regex")
});
static AUTHENTICATION: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern: compiling it cannot fail.
    Regex::new(r"(?i)unauthori[sz]ed|authentication").expect("static regex")
});
static CONNECTION: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern: compiling it cannot fail.
    Regex::new(r"(?i)econnrefused|econnreset|connection (refused|reset|closed)|broken pipe")
        .expect("static regex")
});
static RETRY_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern: compiling it cannot fail.
    Regex::new(r"(?i)retry[ -]after:? *(\d+)").expect("static regex")
});

/// Reads the seed's `"retry after N"` (seconds) from an error message.
#[must_use]
pub fn retry_after_from_message(message: &str) -> Option<Duration> {
    RETRY_AFTER
        .captures(message)
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Classifies an error message the way the seed's `classifyError` does, for errors that have no
/// [`Classify`] impl: "timeout" → timeout, `rate.*limit` → rate limit (with "retry after N" read),
/// "unauthorized"/"authentication" → authentication, "connection refused" → network, else unknown.
#[must_use]
pub fn classify_message(message: &str) -> ErrorClass {
    let class = if RATE_LIMIT.is_match(message) {
        ErrorClass::of(Category::RateLimit)
    } else if TIMEOUT.is_match(message) {
        ErrorClass::of(Category::Timeout)
    } else if AUTHENTICATION.is_match(message) {
        ErrorClass::of(Category::Authentication)
    } else if CONNECTION.is_match(message) {
        ErrorClass::of(Category::Network)
    } else {
        ErrorClass::of(Category::Unknown)
    };
    match retry_after_from_message(message) {
        Some(d) => class.with_retry_after(d),
        None => class,
    }
}

/// Classifies any error from outside tamma: walks the `source()` chain looking for an error type this
/// crate knows (`std::io::Error`, `reqwest::Error`, `tokio` timeouts, [`crate::Error`]); if none is
/// found, classifies the top-level message with [`classify_message`].
#[must_use]
pub fn classify_dyn(error: &(dyn std::error::Error + 'static)) -> ErrorClass {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(known) = known_classify(e) {
            return known.class();
        }
        current = e.source();
    }
    classify_message(&error.to_string())
}

/// The first error in the chain that this crate knows how to classify, as a [`Classify`] object.
pub(crate) fn known_classify<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a dyn Classify> {
    if let Some(x) = e.downcast_ref::<io::Error>() {
        return Some(x);
    }
    if let Some(x) = e.downcast_ref::<crate::Error>() {
        return Some(x);
    }
    if let Some(x) = e.downcast_ref::<reqwest::Error>() {
        return Some(x);
    }
    if let Some(x) = e.downcast_ref::<tokio::time::error::Elapsed>() {
        return Some(x);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_classify() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(refused.class().category, Category::Network);
        assert!(refused.class().retryable);
        assert_eq!(refused.code(), Some("ECONNREFUSED"));
        assert_eq!(refused.kind_name(), Some("ConnectionRefused"));
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(timeout.class().category, Category::Timeout);
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert_eq!(full.class().severity, Severity::Critical);
        assert!(!full.class().retryable);
        assert!(
            !io::Error::from(io::ErrorKind::InvalidInput)
                .class()
                .retryable
        );
    }

    #[test]
    fn messages_classify_like_the_seed() {
        let c = classify_message("Rate limit exceeded, retry after 7 seconds");
        assert_eq!(c.category, Category::RateLimit);
        assert_eq!(c.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(
            classify_message("request timeout").category,
            Category::Timeout
        );
        assert_eq!(
            classify_message("401 Unauthorized").category,
            Category::Authentication
        );
        assert_eq!(
            classify_message("connect ECONNREFUSED").category,
            Category::Network
        );
        assert_eq!(classify_message("the cat sat").category, Category::Unknown);
    }

    #[test]
    fn dyn_walks_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("could not ship batch")]
        struct Outer(#[source] io::Error);
        let e = Outer(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(classify_dyn(&e).category, Category::Network);
    }

    #[test]
    fn http_statuses() {
        assert_eq!(classify_http_status(429).category, Category::RateLimit);
        assert_eq!(classify_http_status(503).category, Category::System);
        assert!(classify_http_status(503).retryable);
        assert!(!classify_http_status(422).retryable);
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
    }

    #[test]
    fn severity_orders_and_serializes() {
        assert!(Severity::Low < Severity::Critical);
        assert_eq!(
            serde_json::to_string(&Category::RateLimit).unwrap(),
            "\"rate_limit\""
        );
        let c = ErrorClass::of(Category::RateLimit).with_retry_after(Duration::from_secs(2));
        let j = serde_json::to_value(c).unwrap();
        assert_eq!(j["retryAfter"], 2000);
        assert_eq!(j["userVisible"], true);
    }
}
