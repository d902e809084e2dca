//! Integration tests of tamma-telemetry on real files and sockets.

mod files;
mod http;
mod levels;
mod metrics;
mod otlp;
mod secrets;
mod syslog;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use parking_lot::Mutex;
use tamma_telemetry::{LoggingConfig, ServiceInfo, Telemetry, TelemetryBuilder};

pub(crate) fn service() -> ServiceInfo {
    ServiceInfo::new("tamma-test", "0.0.1").with_hostname("testhost")
}

pub(crate) fn builder(logging: &LoggingConfig, dir: &std::path::Path) -> TelemetryBuilder {
    Telemetry::builder(service()).logging(logging).data_dir(dir)
}

/// Polls `f` until it is true or `timeout` passes; returns the last value.
pub(crate) fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a receiver got: (headers, body) per request.
pub(crate) type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A plain HTTP receiver on 127.0.0.1 that stores every POST (any path) and answers 200.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub(crate) fn start(rt: &tokio::runtime::Runtime, addr: SocketAddr, got: &Received) -> Self {
        async fn store(
            State(got): State<Received>,
            headers: HeaderMap,
            body: Bytes,
        ) -> &'static str {
            got.lock().push((headers, body));
            "ok"
        }
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind receiver");
        let addr = listener.local_addr().expect("local addr");
        let app = axum::Router::new()
            .fallback(axum::routing::post(store))
            .with_state(got.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = rt.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        Self {
            addr,
            stop: Some(tx),
            done: Some(done),
        }
    }

    pub(crate) fn stop(&mut self, rt: &tokio::runtime::Runtime) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), d).await });
        }
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
