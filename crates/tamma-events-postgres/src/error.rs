//! Errors of opening the PostgreSQL store, and how PostgreSQL errors map onto the contract's classes.

use tokio_postgres::error::SqlState;

/// Why the PostgreSQL store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be used (a malformed URL, a pool of size 0).
    #[error("invalid PostgreSQL event store settings: {path}: {message}")]
    InvalidConfig {
        /// The setting at fault (`url`, `poolSize`).
        path: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The server could not be reached or refused the connection (down, wrong credentials, timeout).
    #[error("cannot connect to PostgreSQL: {source}")]
    Connect {
        /// The driver's error.
        #[source]
        source: tamma_events::BoxError,
    },
    /// A schema migration failed; the transaction was rolled back, the schema is as before.
    #[error("cannot apply event store migration {version} ({name}): {}", describe(.source))]
    Migrate {
        /// The migration's version.
        version: i32,
        /// The migration's name.
        name: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database was migrated by a newer Tamma with a schema this version does not know.
    #[error("the event store schema has version {found}; this Tamma knows up to {supported}")]
    SchemaTooNew {
        /// The newest version recorded in the database.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
}

impl Error {
    /// A [`Error::Connect`] from any error.
    pub(crate) fn connect(source: impl Into<tamma_events::BoxError>) -> Self {
        Self::Connect {
            source: source.into(),
        }
    }
}

/// What a PostgreSQL error means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgErrorClass {
    /// The connection is gone or the server cannot serve (lost connection, server shutting down,
    /// `pg_terminate_backend`, too many connections, a full disk), or the store's database or role
    /// cannot be used as configured (the database dropped or renamed, the login refused, a privilege
    /// revoked): the store is unavailable until that changes, retry later.
    Unavailable,
    /// Retrying the same call may succeed (serialization failure `40001`, deadlock `40P01`, lock not
    /// available `55P03`, statement timeout or cancel `57014`).
    Transient,
    /// Retrying will not help (constraint violations, syntax errors, data errors).
    Permanent,
}

/// Classifies a PostgreSQL error: see [`PgErrorClass`].
///
/// A failed driver call with a SQLSTATE is classified by [`classify_code`]; one without (the connection
/// closed, could not be made, broke mid-message) is [`PgErrorClass::Unavailable`].
///
/// ```
/// use tamma_events_postgres::{PgErrorClass, classify_code};
/// use tokio_postgres::error::SqlState;
///
/// assert_eq!(classify_code(&SqlState::T_R_DEADLOCK_DETECTED), PgErrorClass::Transient);
/// assert_eq!(classify_code(&SqlState::ADMIN_SHUTDOWN), PgErrorClass::Unavailable);
/// assert_eq!(classify_code(&SqlState::UNIQUE_VIOLATION), PgErrorClass::Permanent);
/// ```
#[must_use]
pub fn classify(e: &tokio_postgres::Error) -> PgErrorClass {
    if let Some(code) = e.code() {
        return classify_code(code);
    }
    // No SQLSTATE: the driver itself failed, which means the connection is closed, broken, or could
    // not be made (I/O, TLS, protocol); all of them are about the connection, not the request.
    PgErrorClass::Unavailable
}

/// Classifies a SQLSTATE.
#[must_use]
pub fn classify_code(code: &SqlState) -> PgErrorClass {
    let c = code.code();
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
    {
        PgErrorClass::Transient
    } else if c.starts_with("08") // connection exception
        || c.starts_with("28") // invalid authorization: the role or its password was changed
        || c.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
        || c.starts_with("58") // system error: I/O
        || *code == SqlState::INVALID_CATALOG_NAME // the database is gone (dropped, renamed)
        || *code == SqlState::INSUFFICIENT_PRIVILEGE // a grant was revoked
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        PgErrorClass::Unavailable
    } else {
        PgErrorClass::Permanent
    }
}

/// Maps a PostgreSQL error onto the contract's error: connection trouble is
/// [`Unavailable`](tamma_events::Error::Unavailable), serialization failures, deadlocks and timeouts are
/// transient [`Backend`](tamma_events::Error::Backend) errors, everything else is a permanent backend error.
#[must_use]
pub fn to_store_error(e: tokio_postgres::Error) -> tamma_events::Error {
    let class = classify(&e);
    let category = match class {
        PgErrorClass::Unavailable => "unavailable",
        PgErrorClass::Transient => "transient",
        PgErrorClass::Permanent => "internal",
    };
    metrics::counter!(tamma_core::metric_names::EVENTS_STORE_ERRORS_TOTAL, "category" => category)
        .increment(1);
    let e = PgError(e);
    match class {
        PgErrorClass::Unavailable => tamma_events::Error::Unavailable {
            message: format!("the PostgreSQL connection failed: {e}"),
            source: Some(Box::new(e)),
        },
        PgErrorClass::Transient => tamma_events::Error::backend(e, true),
        PgErrorClass::Permanent => tamma_events::Error::backend(e, false),
    }
}

/// A driver error whose message carries the server's own (message, SQLSTATE, detail, where), which the
/// driver's `Display` leaves to its source.
#[derive(Debug)]
pub(crate) struct PgError(pub(crate) tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

/// A driver error as an operator should read it: the server's message, SQLSTATE, detail and where it
/// happened (the driver's own `Display` says only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_description(e, &mut out);
    out
}

fn write_description(e: &tokio_postgres::Error, f: &mut String) -> std::fmt::Result {
    use std::fmt::Write as _;
    match e.as_db_error() {
        Some(db) => {
            write!(f, "{} (SQLSTATE {})", db.message(), db.code().code())?;
            if let Some(detail) = db.detail() {
                write!(f, "; {detail}")?;
            }
            // The context's last line names the function and line (`PL/pgSQL function tamma_append(…)
            // line 104 at SQL statement`); the lines before it repeat the whole statement's text.
            if let Some(at) = db
                .where_()
                .and_then(|w| w.lines().rev().find(|l| !l.trim().is_empty()))
            {
                write!(f, "; at {at}")?;
            }
            Ok(())
        }
        None => match std::error::Error::source(e) {
            Some(cause) => write!(f, "{e}: {cause}"),
            None => write!(f, "{e}"),
        },
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Maps a pool error: a timeout or a closed pool is unavailability, a failed connection is classified.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> tamma_events::Error {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => to_store_error(e),
        other => {
            metrics::counter!(tamma_core::metric_names::EVENTS_STORE_ERRORS_TOTAL, "category" => "unavailable")
                .increment(1);
            tamma_events::Error::Unavailable {
                message: format!("no PostgreSQL connection available: {other}"),
                source: Some(Box::new(other)),
            }
        }
    }
}

impl From<Error> for tamma_events::Error {
    fn from(e: Error) -> Self {
        Self::Unavailable {
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            classify_code(&SqlState::T_R_SERIALIZATION_FAILURE),
            PgErrorClass::Transient
        );
        assert_eq!(
            classify_code(&SqlState::T_R_DEADLOCK_DETECTED),
            PgErrorClass::Transient
        );
        assert_eq!(
            classify_code(&SqlState::ADMIN_SHUTDOWN),
            PgErrorClass::Unavailable
        );
        assert_eq!(
            classify_code(&SqlState::CONNECTION_FAILURE),
            PgErrorClass::Unavailable
        );
        // The store's database or role cannot be used as configured: unavailable until fixed.
        for code in [
            SqlState::INVALID_CATALOG_NAME,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::INVALID_PASSWORD,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            SqlState::DISK_FULL,
            SqlState::IO_ERROR,
        ] {
            assert_eq!(classify_code(&code), PgErrorClass::Unavailable, "{code:?}");
        }
        assert_eq!(
            classify_code(&SqlState::UNIQUE_VIOLATION),
            PgErrorClass::Permanent
        );
        assert_eq!(
            classify_code(&SqlState::CHECK_VIOLATION),
            PgErrorClass::Permanent
        );
        let e: tamma_events::Error = Error::SchemaTooNew {
            found: 9,
            supported: 1,
        }
        .into();
        assert_eq!(e.category(), "unavailable");
    }
}
