//! The crate's error type.

/// What can go wrong while building or changing telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config is invalid; each problem names its path.
    #[error("invalid telemetry config: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidConfig {
        /// Every problem found.
        problems: Vec<tamma_core::Problem>,
    },
    /// An output could not be opened (file not creatable, socket not bindable).
    #[error("cannot open log output {output}: {source}")]
    Output {
        /// The output's name.
        output: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No output has this name.
    #[error("no log output named {0:?}")]
    UnknownOutput(String),
    /// The trace exporter could not be built.
    #[error("cannot build the OTLP trace exporter: {0}")]
    Tracing(String),
    /// A global subscriber or metrics recorder is already installed.
    #[error("a global {0} is already installed")]
    AlreadyInstalled(&'static str),
    /// A background thread could not be started.
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A reload of the filter failed (the subscriber is gone).
    #[error("cannot change the log filter: {0}")]
    Reload(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
