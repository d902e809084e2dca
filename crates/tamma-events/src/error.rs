//! The one error type of the event store contract, shared by every backend.

use uuid::Uuid;

/// A boxed error from a backend's own library (rusqlite, tokio-postgres, I/O).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with an event store operation. Variants say what the caller can do about it.
///
/// [`Error::category`] and [`Error::is_transient`] classify an error without matching on variants, so retry
/// policies and circuit breakers can stay generic; [`Error::code`] is the `snake_case` code of the HTTP error
/// body and [`Error::path`] the field at fault, where one is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An event is malformed (empty or oversize type, empty tag, …). `path` names the field:
    /// `events[0].type`.
    #[error("invalid event: {path}: {message}")]
    InvalidEvent {
        /// The offending field, e.g. `events[2].tags`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// An event is larger than the configured limit (`events.maxEventSize`).
    #[error("invalid event: {path}: {size} bytes is more than the limit of {limit} bytes")]
    EventTooLarge {
        /// The offending event, e.g. `events[0]`.
        path: String,
        /// Its encoded size in bytes.
        size: u64,
        /// The configured limit in bytes.
        limit: u64,
    },
    /// A query is malformed (an item with neither types nor tags, an empty type…).
    #[error("invalid query: {path}: {message}")]
    InvalidQuery {
        /// The offending field, e.g. `query.items[1]` or `condition.failIfEventsMatch.items[0]`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// An append carried no events.
    #[error("invalid append: events: an append needs at least one event")]
    EmptyAppend,
    /// The append condition matched a stored event: someone else decided first. Re-read and decide again.
    #[error(
        "append condition failed: the event at position {position} matches the condition's query"
    )]
    AppendConditionFailed {
        /// The position of a stored event that matched the condition's query (after `after`).
        position: u64,
    },
    /// Event ids are already stored with other content, repeated inside the append, or mixed with new
    /// ids in one append.
    #[error("duplicate event id: {}", join_ids(.ids))]
    DuplicateEventId {
        /// The ids at fault.
        ids: Vec<Uuid>,
    },
    /// A subscription fell too far behind and was ended; subscribe again after `last_position`.
    #[error("subscription ended because it fell behind; resume after position {last_position}")]
    SubscriptionLagged {
        /// The position of the last event delivered to the subscriber (0 when none was).
        last_position: u64,
    },
    /// The store cannot serve right now (closed, database down, writer gone). Retry later.
    #[error("event store unavailable: {message}")]
    Unavailable {
        /// What is unavailable.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend failed. `transient` says whether retrying the same call may succeed (SQLite BUSY,
    /// PostgreSQL serialization failure, deadlock, lost connection).
    #[error("event store backend error: {source}")]
    Backend {
        /// The backend's own error.
        #[source]
        source: BoxError,
        /// Whether retrying may succeed.
        transient: bool,
    },
}

fn join_ids(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// An [`Error::InvalidEvent`] at `path`.
    pub fn invalid_event(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidEvent {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::InvalidQuery`] at `path`.
    pub fn invalid_query(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidQuery {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Unavailable`] without a source.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Backend`] wrapping `source`.
    pub fn backend(source: impl Into<BoxError>, transient: bool) -> Self {
        Self::Backend {
            source: source.into(),
            transient,
        }
    }

    /// Whether retrying the same call later may succeed (store unavailable, a transient backend error,
    /// a lagged subscription that can resume).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::SubscriptionLagged { .. } => true,
            Self::Backend { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The class of the error: `invalid_input` (fix the request), `conflict` (re-read and decide again),
    /// `transient` (retry), `unavailable` (retry later, count towards a breaker) or `internal` (a bug or a
    /// broken backend).
    #[must_use]
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidEvent { .. }
            | Self::EventTooLarge { .. }
            | Self::InvalidQuery { .. }
            | Self::EmptyAppend => "invalid_input",
            Self::AppendConditionFailed { .. } | Self::DuplicateEventId { .. } => "conflict",
            Self::SubscriptionLagged { .. } => "transient",
            Self::Backend {
                transient: true, ..
            } => "transient",
            Self::Unavailable { .. } => "unavailable",
            Self::Backend {
                transient: false, ..
            } => "internal",
        }
    }

    /// The `snake_case` code of the HTTP error body (`append_condition_failed`, `duplicate_event_id`, …).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidEvent { .. } => "invalid_event",
            Self::EventTooLarge { .. } => "event_too_large",
            Self::InvalidQuery { .. } => "invalid_query",
            Self::EmptyAppend => "empty_append",
            Self::AppendConditionFailed { .. } => "append_condition_failed",
            Self::DuplicateEventId { .. } => "duplicate_event_id",
            Self::SubscriptionLagged { .. } => "subscription_lagged",
            Self::Unavailable { .. } => "unavailable",
            Self::Backend { .. } => "backend_error",
        }
    }

    /// The field at fault, when one is (`events[0].type`).
    #[must_use]
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::InvalidEvent { path, .. }
            | Self::EventTooLarge { path, .. }
            | Self::InvalidQuery { path, .. } => Some(path),
            Self::EmptyAppend => Some("events"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let e = Error::invalid_event("events[0].type", "must not be empty");
        assert_eq!(
            e.to_string(),
            "invalid event: events[0].type: must not be empty"
        );
        assert_eq!(e.category(), "invalid_input");
        assert_eq!(e.path(), Some("events[0].type"));
        assert!(!e.is_transient());
        let busy = Error::backend(std::io::Error::other("database is locked"), true);
        assert!(busy.is_transient());
        assert_eq!(busy.category(), "transient");
        let broken = Error::backend(std::io::Error::other("corrupt"), false);
        assert_eq!(broken.category(), "internal");
        assert!(!broken.is_transient());
        assert_eq!(Error::unavailable("closed").category(), "unavailable");
        let dup = Error::DuplicateEventId {
            ids: vec![Uuid::nil(), Uuid::max()],
        };
        assert_eq!(dup.code(), "duplicate_event_id");
        assert!(
            dup.to_string()
                .contains("00000000-0000-0000-0000-000000000000, ffffffff")
        );
        assert_eq!(
            Error::AppendConditionFailed { position: 3 }.category(),
            "conflict"
        );
    }
}
