//! A running node: health, config and metrics endpoints over the configured mode, hot reload, and a
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{Audit, types};
use axum::Router;
use axum::routing::get;
use serde_json::json;
use tamma_config::{ConfigCheck, ConfigManager, Env, FileWatcher, ReloadEvent, WatchGuard};
use tamma_emitter::{AuditNotifier, Emitter, RetentionHandle, RetentionJob};
use tamma_events::EventStore;
use tamma_health::{CheckContext, CheckOptions, HealthChecker};
use tamma_resilience::{MonotonicClock, Resilience};
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
    store: Arc<dyn EventStore>,
    audit: Audit,
    resilience: Arc<Resilience>,
    emitter: Emitter,
    retention: RetentionHandle,
    streams: tamma_server::StreamsShutdown,
    _process: Option<tamma_telemetry::ProcessMetricsTask>,
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
        tamma_core::fs::create_private_dir(&data_dir).map_err(|source| Error::Io {
            path: data_dir.clone(),
            source,
        })?;

        let store = crate::store::open_store(&cfg).await?;
        let store_check: Arc<dyn tamma_core::Check> =
            Arc::new(tamma_events::StoreCheck::new(Arc::clone(&store)));
        let context = CheckContext::new(VERSION)
            .data_dir(&data_dir)
            .database("events", Arc::clone(&store_check));
        let checker = Arc::new(HealthChecker::from_config(
            &cfg.monitoring.health_checks,
            &context,
        )?);
        checker.add_check(
            Arc::new(ConfigCheck::new(config.clone())),
            CheckOptions::new().critical(false),
        )?;
        checker.add_check(store_check, CheckOptions::new().critical(true))?;
        let resilience = Arc::new(
            Resilience::new(cfg.resilience.clone(), MonotonicClock::shared())
                .map_err(|e| Error::Resilience(Box::new(e)))?,
        );
        let breakers: Arc<dyn tamma_core::Check> =
            Arc::clone(resilience.breakers()) as Arc<dyn tamma_core::Check>;
        checker.add_check(breakers, CheckOptions::new().critical(false))?;
        let emitter = Emitter::builder(Arc::clone(&store), cfg.emitter.clone())
            .events(&cfg.events)
            .resilience(&resilience)
            .build()?;
        resilience
            .escalator()
            .add_notifier(Arc::new(AuditNotifier::new(emitter.clone())));
        checker.add_check(
            Arc::new(emitter.health_check()),
            CheckOptions::new().critical(false),
        )?;
        let retention = RetentionJob::new(Arc::clone(&store), &cfg.events, &cfg.emitter).spawn();
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
        let mut process = None;
        if monitoring.enabled
            && monitoring.metrics.enabled
            && let Some(recorder) = telemetry.as_ref().and_then(|t| t.metrics()).cloned()
        {
            // Process CPU, memory, fds and uptime, sampled on the metrics interval and refreshed
            // right before each render.
            let task = tamma_telemetry::spawn_process_metrics(monitoring.metrics.interval.into())?;
            let sampler = task.sampler();
            router = router.merge(tamma_server::metrics_routes(
                &monitoring.metrics.endpoint,
                Arc::new(move || {
                    sampler.record();
                    recorder.render()
                }),
            ));
            process = Some(task);
        }
        let streams = tamma_server::StreamsShutdown::new();
        let limits = tamma_server::EventsApiLimits {
            max_body_size: cfg.server.max_body_size.bytes(),
            max_event_size: cfg.events.max_event_size.bytes(),
            ..tamma_server::EventsApiLimits::default()
        };
        router = router
            .merge(tamma_server::breaker_routes(Arc::clone(
                resilience.breakers(),
            )))
            .merge(tamma_server::events_routes_with_shutdown(
                Arc::clone(&store),
                limits,
                streams.clone(),
            ))
            .merge(tamma_server::openapi_routes());
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
        {
            // Redaction is the one emitter setting applied live: new rules for the events emitted
            // from now on (`emitter.redaction`; the schema marks the others restart-only).
            let (c, emitter) = (config.clone(), emitter.clone());
            watchers.push(config.watch("emitter.redaction", move |_| {
                if let Err(e) = emitter.reload_redaction(&c.current().emitter.redaction) {
                    tracing::error!(error = %e, "new redaction rules could not be applied; the old ones stay");
                }
            })?);
        }
        let audit = Audit::new(Arc::clone(&store), node_name(&cfg));
        {
            let audit = audit.clone();
            watchers.push(config.on_reload(move |event| match event {
                ReloadEvent::Applied { generation, changed, restart_required, .. } => audit.record_in_background(
                    types::CONFIG_RELOADED,
                    "config",
                    json!({"generation": generation, "changed": changed, "restartRequired": restart_required}),
                ),
                ReloadEvent::Failed { problems, .. } => audit.record_in_background(
                    types::CONFIG_RELOAD_FAILED,
                    "config",
                    json!({"problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>()}),
                ),
                _ => {}
            }));
        }
        let file_watcher = match config.file() {
            Some(_) => Some(config.watch_file(Duration::from_millis(250))?),
            None => None,
        };
        tracing::info!(
            mode = cfg.mode.as_str(),
            listen = %listener.local_addr().map_or_else(|_| cfg.server.listen.clone(), |a| a.to_string()),
            data_dir = %data_dir.display(),
            store = store_name(&cfg),
            config_file = ?config.file(),
            "node started"
        );
        for w in cfg.warnings() {
            tracing::warn!("{w}");
        }
        if let Ok(addr) = listener.local_addr()
            && !addr.ip().is_loopback()
        {
            // No authentication yet (the security section refuses to switch it on): say so where
            // the operator looks when the API becomes reachable from other machines.
            tracing::warn!(
                listen = %addr,
                "the HTTP API is reachable from other machines and does not authenticate callers: \
                 anyone who can connect can append and read events; put the node behind an \
                 authenticating proxy or a firewall (docs/security.md)"
            );
        }
        let listen = listener
            .local_addr()
            .map_or_else(|_| cfg.server.listen.clone(), |a| a.to_string());
        audit
            .record(
                types::CONFIG_LOADED,
                "config",
                json!({"generation": cfg.generation(), "file": config.file()}),
            )
            .await;
        audit
            .record(
                types::NODE_STARTED,
                "node",
                json!({"mode": cfg.mode.as_str(), "listen": listen, "version": VERSION, "store": store_name(&cfg)}),
            )
            .await;
        Ok(Self {
            config,
            listener,
            router,
            checker,
            store,
            audit,
            resilience,
            emitter,
            retention,
            streams,
            _process: process,
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

    /// Retry policies, circuit breakers and escalation, built from `resilience`.
    #[must_use]
    pub fn resilience(&self) -> &Arc<Resilience> {
        &self.resilience
    }

    /// The emitter over the node's store.
    #[must_use]
    pub fn emitter(&self) -> &Emitter {
        &self.emitter
    }

    /// The event store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
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
            audit,
            emitter,
            retention,
            streams,
            ..
        } = self;
        // Open event streams (SSE subscriptions) never end by themselves: end them when shutdown
        // starts, so the graceful drain does not wait for their clients.
        let shutdown = async move {
            shutdown.await;
            streams.trigger();
        };
        tamma_server::serve(listener, router, shutdown).await?;
        checker.stop_monitoring();
        retention.stop().await;
        audit.record(types::NODE_STOPPED, "node", json!({})).await;
        let deadline = config.current().server.shutdown_timeout.as_duration();
        let report = emitter.dispose(deadline).await;
        if !report.is_complete() {
            tracing::error!(report = ?report, "events not flushed at shutdown");
        }
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

fn store_name(cfg: &TammaConfig) -> &'static str {
    match cfg.events.storage {
        tamma_events::EventStorageConfig::Sqlite(_) => "sqlite",
        tamma_events::EventStorageConfig::Postgres(_) => "postgres",
        tamma_events::EventStorageConfig::Memory(_) => "memory",
    }
}

/// The node's name in audit tags: the worker id when set, else the mode.
fn node_name(cfg: &TammaConfig) -> String {
    cfg.worker
        .as_ref()
        .map(|w| w.id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| cfg.mode.as_str().to_owned())
}
