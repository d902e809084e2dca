//! The errors of `tamma-health`.

use std::path::PathBuf;

/// What can go wrong while registering checks, building them from config or reading system stats.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A check with this name is already registered; remove it first or pick another name.
    #[error("a health check named `{0}` is already registered")]
    DuplicateCheck(String),

    /// The check's options are inconsistent (for example its timeout is not below its interval).
    #[error("health check `{name}`: {reason}")]
    InvalidCheck {
        /// The check's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A `database` or `custom` check in config names a check that no code registered.
    #[error(
        "health check `{name}` (type {kind}) refers to `{registered}`, but no check was registered \
         in code under that name"
    )]
    MissingProvider {
        /// The configured check's name.
        name: String,
        /// The configured type (`database` or `custom`).
        kind: &'static str,
        /// The name the check was looked up under.
        registered: String,
    },

    /// A `disk` check has no path and no data directory was given.
    #[error("health check `{0}` (type disk) has no path and no data directory was given")]
    MissingDiskPath(String),

    /// Background monitoring was started outside a Tokio runtime.
    #[error("health monitoring needs a Tokio runtime: call start_monitoring from inside one")]
    NoRuntime,

    /// The shared HTTP client could not be built (TLS initialisation).
    #[error("could not build the shared HTTP client for health checks")]
    HttpClient(#[source] reqwest::Error),

    /// A system file (cgroup, `/proc`) could not be read.
    #[error("could not read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A system file (cgroup, `/proc`) did not hold what was expected.
    #[error("unexpected content in {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was unexpected.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
