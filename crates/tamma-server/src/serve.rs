//! Binding and serving with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;

use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
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
/// requests finish (idle keep-alive connections are closed; a connection in the middle of a request
/// closes after answering it).
///
/// HTTP/1.1 through hyper directly rather than `axum::serve`, for two settings a probe-heavy server
/// wants: `TCP_NODELAY` on accepted connections (a response leaves as soon as it is written), and
/// each response's head and body written with one `write` (no vectored write for a few bytes).
///
/// Accept errors never end it: a failed connection is skipped, anything else (out of file
/// descriptors) is logged and retried a second later.
///
/// # Errors
/// None today: it returns `Ok` once shut down. The `Result` leaves room for setup that can fail.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // No timer: like `axum::serve`, no per-request header-read deadline (arming one costs a
    // timer-wheel entry per request).
    http.writev(false);
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum::serve does, rather than spin.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::trace!(error = %e, "TCP_NODELAY could not be set on an accepted connection");
        }
        let connection = graceful.watch(http.serve_connection(TokioIo::new(tcp), service.clone()));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one connection that leave the listener fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
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
