//! Binding and serving with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// Binds `listen`, turning the usual failures into errors an operator can act on
/// (`address 127.0.0.1:7340 already in use`).
///
/// # Errors
/// [`Error::BadAddress`], [`Error::AddressInUse`], [`Error::Bind`].
pub async fn bind(listen: &str) -> Result<TcpListener> {
    let addr: SocketAddr = listen.parse().map_err(|_| Error::BadAddress {
        listen: listen.to_owned(),
    })?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => Error::AddressInUse { addr },
            _ => Error::Bind { addr, source },
        })
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish. Accepted connections have `TCP_NODELAY` set (`axum::serve` leaves Nagle's
/// algorithm on), so a response is sent as soon as it is written.
///
/// # Errors
/// [`Error::Serve`] when the accept loop fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::trace!(error = %e, "TCP_NODELAY could not be set on an accepted connection");
        }
    });
    axum::serve(listener, router.into_make_service())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, wait forever on this branch; SIGTERM still works.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
