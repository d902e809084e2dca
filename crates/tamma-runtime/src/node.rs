//! A running node: health, config and metrics endpoints over the configured mode, hot reload, and a
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tamma_config::{ConfigCheck, ConfigManager, Env, FileWatcher, WatchGuard};
use tamma_health::{CheckContext, CheckOptions, HealthChecker};
use tamma_telemetry::{ServiceInfo, Telemetry, TelemetryHandle};
use tokio::net::TcpListener;

use crate::config::{ColorMode, TammaConfig};
use crate::error::{Error, Result};

/// The version every node reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds the telemetry (subscriber, outputs, metrics recorder, tracer) a node's config asks for.
/// Only the binary installs it ([`Telemetry::install`]).
///
/// # Errors
/// An output that cannot be opened, a bad directive or regex.
pub fn telemetry(config: &TammaConfig, env: &Env) -> Result<Telemetry> {
    let otel: std::collections::HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("OTEL_"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(Telemetry::builder(ServiceInfo::new("tamma", VERSION))
        .logging(&config.logging)
        .tracing(&config.monitoring.tracing)
        .metrics(&config.monitoring.metrics)
        .data_dir(config.data_dir())
        .otel_env(otel)
        .no_color(config.console.color == ColorMode::Never)
        .build()?)
}

/// A started node. Call [`Node::run_until`] to serve until a shutdown signal.
pub struct Node {
    config: ConfigManager<TammaConfig>,
    listener: TcpListener,
    router: Router,
    checker: Arc<HealthChecker>,
    _watchers: Vec<WatchGuard>,
    _file_watcher: Option<FileWatcher>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node: data directory, health checks, routes, the listener, config hot reload.
    /// `telemetry` is the installed telemetry, if any (log levels then follow config reloads, and
    /// `/metrics` serves its recorder).
    ///
    /// # Errors
    /// The data directory cannot be created, a health check cannot be built, or the address cannot
    /// be bound (`address 127.0.0.1:7340 already in use`).
    pub async fn start(
        config: ConfigManager<TammaConfig>,
        telemetry: Option<TelemetryHandle>,
    ) -> Result<Self> {
        let cfg = config.current();
        let data_dir = cfg.data_dir();
        std::fs::create_dir_all(&data_dir).map_err(|source| Error::Io {
            path: data_dir.clone(),
            source,
        })?;

        let context = CheckContext::new(VERSION).data_dir(&data_dir);
        let checker = Arc::new(HealthChecker::from_config(
            &cfg.monitoring.health_checks,
            &context,
        )?);
        checker.add_check(
            Arc::new(ConfigCheck::new(config.clone())),
            CheckOptions::new().critical(false),
        )?;
        if let Some(t) = &telemetry {
            for c in t.checks() {
                checker.add_check(c, CheckOptions::new().critical(false))?;
            }
        }
        checker.start_monitoring()?;

        let mut router = tamma_server::config_routes(Arc::new({
            let config = config.clone();
            move || config_document(&config)
        }));
        let monitoring = &cfg.monitoring;
        if monitoring.enabled && monitoring.health_checks.enabled {
            router = router.merge(tamma_server::health_routes(
                Arc::clone(&checker),
                &monitoring.health_checks,
            ));
        } else {
            router = router.route(
                &monitoring.health_checks.live_endpoint,
                get(|| async { "ok" }),
            );
        }
        if monitoring.enabled && monitoring.metrics.enabled {
            if let Some(recorder) = telemetry.as_ref().and_then(|t| t.metrics()).cloned() {
                router = router.merge(tamma_server::metrics_routes(
                    &monitoring.metrics.endpoint,
                    Arc::new(move || recorder.render()),
                ));
            }
        }
        let router = tamma_server::with_middleware(router);
        let listener = tamma_server::bind(&cfg.server.listen).await?;

        let mut watchers = Vec::new();
        if let Some(t) = telemetry {
            let c = config.clone();
            watchers.push(config.watch("logging", move |_| {
                if let Err(e) = t.apply(&c.current().logging) {
                    tracing::error!(error = %e, "new logging settings could not be applied");
                }
            })?);
        }
        let file_watcher = match config.file() {
            Some(_) => Some(config.watch_file(Duration::from_millis(250))?),
            None => None,
        };
        tracing::info!(
            mode = cfg.mode.as_str(),
            listen = %listener.local_addr().map_or_else(|_| cfg.server.listen.clone(), |a| a.to_string()),
            data_dir = %data_dir.display(),
            config_file = ?config.file(),
            "node started"
        );
        for w in cfg.warnings() {
            tracing::warn!("{w}");
        }
        Ok(Self {
            config,
            listener,
            router,
            checker,
            _watchers: watchers,
            _file_watcher: file_watcher,
        })
    }

    /// The address the node listens on.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The health checker (to add checks of components wired later).
    #[must_use]
    pub fn health(&self) -> &Arc<HealthChecker> {
        &self.checker
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and stops the background work.
    ///
    /// # Errors
    /// The accept loop failed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Self {
            config,
            listener,
            router,
            checker,
            ..
        } = self;
        tamma_server::serve(listener, router, shutdown).await?;
        checker.stop_monitoring();
        tracing::info!(generation = config.current().generation(), "node stopped");
        Ok(())
    }
}

/// The `/v1/config` document: the effective config (secrets redacted), each value's source, and the
/// reload status.
#[must_use]
pub fn config_document(config: &ConfigManager<TammaConfig>) -> serde_json::Value {
    let snap = config.current();
    let sources: serde_json::Map<String, serde_json::Value> = snap
        .entries()
        .into_iter()
        .map(|e| (e.path, serde_json::Value::String(e.source)))
        .collect();
    serde_json::json!({
        "generation": snap.generation(),
        "file": config.file(),
        "config": snap.export(),
        "sources": sources,
        "reload": config.reload_status(),
    })
}
