//! Errors of the runtime.

use std::path::PathBuf;

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] tamma_config::ConfigError),
    /// The HTTP server could not start or failed.
    #[error(transparent)]
    Server(#[from] tamma_server::Error),
    /// Logging, traces or metrics could not be set up.
    #[error("cannot set up telemetry: {0}")]
    Telemetry(#[from] tamma_telemetry::Error),
    /// The health checks could not be set up.
    #[error("cannot set up health checks: {0}")]
    Health(#[from] tamma_health::Error),
    /// The event store could not be opened.
    #[error("cannot open the event store: {0}")]
    Events(#[from] tamma_events::Error),
    /// The configured event store could not be opened.
    #[error("cannot open the {backend} event store: {source}")]
    Store {
        /// `sqlite`, `postgres` or `memory`.
        backend: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The resilience section could not be turned into policies.
    #[error("cannot set up retry and circuit breakers: {0}")]
    Resilience(#[source] Box<tamma_resilience::Error>),
    /// The emitter could not be built from its section.
    #[error("cannot set up the emitter: {0}")]
    Emitter(#[from] tamma_emitter::Error),
    /// A directory or file the node needs.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The one-line summary printed first (`invalid configuration: 3 problems`,
    /// `address 127.0.0.1:7340 already in use`).
    #[must_use]
    pub fn summary(&self) -> String {
        match self {
            Self::Config(c) => c.summary(),
            other => other.to_string(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
