//! Errors of the HTTP layer.

use std::net::SocketAddr;

/// What can go wrong starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `server.listen` is not an address.
    #[error("invalid listen address {listen:?} (expected host:port such as 127.0.0.1:7340)")]
    BadAddress {
        /// What was configured.
        listen: String,
    },
    /// Another process holds the port.
    #[error("address {addr} already in use")]
    AddressInUse {
        /// The address.
        addr: SocketAddr,
    },
    /// Binding failed for another reason (permissions, no such interface).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
