//! The root config, [`TammaConfig`], assembled from each crate's section.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tamma_core::{DurationMs, Problem, Validate, join_path};

use crate::security::SecurityConfig;

/// The one config schema shared by the orchestrator, worker and standalone modes.
///
/// Keys keep the seed's names (camelCase). Every section is documented in `docs/configuration.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TammaConfig {
    /// How this node runs: `standalone` (everything in one process), `orchestrator` or `worker`.
    #[schemars(extend("x-tamma-restart" = true))]
    pub mode: Mode,
    /// Directory for everything the node writes (event store, logs, spool). Relative paths elsewhere in
    /// the config are relative to it. Created readable by its owner only (mode 0700) when missing.
    #[schemars(extend("x-tamma-restart" = true))]
    pub data_dir: String,
    /// The HTTP server.
    pub server: tamma_server::ServerConfig,
    /// Logs.
    pub logging: tamma_telemetry::LoggingConfig,
    /// Metrics, health checks and traces.
    pub monitoring: MonitoringConfig,
    /// Encryption, authentication, authorization, audit.
    pub security: SecurityConfig,
    /// The PostgreSQL connection shared by the PostgreSQL event store and the database health check.
    pub database: Option<tamma_events_postgres::PostgresConfig>,
    /// Orchestrator settings (mode `orchestrator`).
    pub orchestrator: Option<OrchestratorConfig>,
    /// Worker settings (mode `worker`).
    pub worker: Option<WorkerConfig>,
    /// The event store and emitter.
    pub events: tamma_events::EventsConfig,
    /// Retry, circuit breakers, escalation.
    pub resilience: tamma_resilience::ResilienceConfig,
    /// The emitter: redaction, pending-work bounds, subscriptions, routes, the worker spool.
    pub emitter: tamma_emitter::EmitterConfig,
    /// AI providers, kept as opaque tables for the orchestrator and worker. Values under keys naming
    /// a credential (`apiKey`, `token`, `secret`, `password`…) print as `[REDACTED]`.
    pub providers: Vec<OpaqueTable>,
    /// Code platforms, kept as opaque tables for the orchestrator and worker. Values under keys naming
    /// a credential print as `[REDACTED]`.
    pub platforms: Vec<OpaqueTable>,
    /// Terminal output.
    pub console: ConsoleConfig,
}

impl Default for TammaConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Standalone,
            data_dir: "./tamma-data".into(),
            server: tamma_server::ServerConfig::default(),
            logging: tamma_telemetry::LoggingConfig::default(),
            monitoring: MonitoringConfig::default(),
            security: SecurityConfig::default(),
            database: None,
            orchestrator: None,
            worker: None,
            events: tamma_events::EventsConfig::default(),
            resilience: tamma_resilience::ResilienceConfig::default(),
            emitter: tamma_emitter::EmitterConfig::default(),
            providers: Vec::new(),
            platforms: Vec::new(),
            console: ConsoleConfig::default(),
        }
    }
}

impl TammaConfig {
    /// The data directory as a path.
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.data_dir)
    }

    /// `path` resolved against the data directory when relative.
    #[must_use]
    pub fn under_data_dir(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.data_dir().join(p)
        }
    }
}

/// The run mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Orchestrator and worker in one process.
    Standalone,
    /// Coordinates workers.
    Orchestrator,
    /// Runs tasks for an orchestrator.
    Worker,
}

impl Mode {
    /// The lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Orchestrator => "orchestrator",
            Self::Worker => "worker",
        }
    }
}

/// `monitoring`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// Master switch: when false, neither metrics nor health endpoints are served (liveness stays).
    #[schemars(extend("x-tamma-restart" = true))]
    pub enabled: bool,
    /// Metrics.
    pub metrics: tamma_telemetry::MetricsConfig,
    /// Health checks.
    pub health_checks: tamma_health::HealthChecksConfig,
    /// Traces.
    pub tracing: tamma_telemetry::TracingConfig,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            metrics: tamma_telemetry::MetricsConfig::default(),
            health_checks: tamma_health::HealthChecksConfig::default(),
            tracing: tamma_telemetry::TracingConfig::default(),
        }
    }
}

/// `orchestrator`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// How often workers must report to stay registered.
    pub heartbeat_interval: DurationMs,
    /// A worker silent for this long is considered gone.
    pub worker_timeout: DurationMs,
    /// Most workers accepted at once (0 = no limit).
    pub max_workers: u32,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: DurationMs::from_secs(10),
            worker_timeout: DurationMs::from_secs(30),
            max_workers: 0,
        }
    }
}

/// `worker`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// The orchestrator's base URL (`http://orchestrator:7340`).
    #[schemars(extend("x-tamma-restart" = true))]
    pub orchestrator_url: String,
    /// This worker's id (default: the host name).
    #[schemars(extend("x-tamma-restart" = true))]
    pub id: String,
    /// Tasks run at once.
    pub concurrency: u32,
    /// How often the worker reports to the orchestrator.
    pub heartbeat_interval: DurationMs,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            orchestrator_url: "http://127.0.0.1:7340".into(),
            id: String::new(),
            concurrency: 4,
            heartbeat_interval: DurationMs::from_secs(10),
        }
    }
}

/// `console`: terminal output of the CLI and text logs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Colour: `auto` (only on a terminal), `always` or `never`. `NO_COLOR` sets `never`.
    pub color: ColorMode,
}

/// When to use colour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// Only on a terminal.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl Validate for TammaConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if self.data_dir.trim().is_empty() {
            out.push(Problem::new(
                join_path(path, "dataDir"),
                "must not be empty",
            ));
        }
        self.server.validate(&join_path(path, "server"), out);
        self.logging.validate(&join_path(path, "logging"), out);
        let m = join_path(path, "monitoring");
        self.monitoring
            .metrics
            .validate(&join_path(&m, "metrics"), out);
        self.monitoring
            .health_checks
            .validate(&join_path(&m, "healthChecks"), out);
        self.monitoring
            .tracing
            .validate(&join_path(&m, "tracing"), out);
        self.security.validate(&join_path(path, "security"), out);
        self.events.validate(&join_path(path, "events"), out);
        self.resilience
            .validate(&join_path(path, "resilience"), out);
        if let Some(db) = &self.database {
            db.validate(&join_path(path, "database"), out);
        }
        let storage_is_postgres = matches!(
            self.events.storage,
            tamma_events::EventStorageConfig::Postgres(_)
        );
        if storage_is_postgres && self.database.is_none() {
            out.push(Problem::new(
                join_path(path, "database"),
                "is required when events.storage.type is \"postgres\" (set database.url)",
            ));
        }
        if self.mode == Mode::Worker {
            match &self.worker {
                None => out.push(Problem::new(
                    join_path(path, "worker"),
                    "is required in worker mode (set worker.orchestratorUrl)",
                )),
                Some(w)
                    if !(w.orchestrator_url.starts_with("http://")
                        || w.orchestrator_url.starts_with("https://")) =>
                {
                    out.push(Problem::new(
                        format!("{}.orchestratorUrl", join_path(path, "worker")),
                        format!("{:?} is not an http(s) URL", w.orchestrator_url),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

/// A table kept as given (`providers`, `platforms`) until the orchestrator and worker give it a type.
/// Wherever the config is shown (`tamma config show`, `/v1/config`, `Debug`), the value under any key that
/// names a credential — one containing `key`, `secret`, `token`, `password`, `passwd`, `credential` or
/// `auth`, in any case, `_` and `-` ignored — prints as `[REDACTED]`, at any depth. The table itself
/// ([`OpaqueTable::expose`]) keeps the real values.
#[derive(Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct OpaqueTable(Map<String, Value>);

impl OpaqueTable {
    /// The table with its real values, credentials included.
    #[must_use]
    pub fn expose(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The table as it may be shown: credentials replaced by `[REDACTED]`.
    #[must_use]
    pub fn redacted(&self) -> Value {
        redact_credentials(&Value::Object(self.0.clone()))
    }
}

impl From<Map<String, Value>> for OpaqueTable {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl Serialize for OpaqueTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

impl std::fmt::Debug for OpaqueTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.redacted())
    }
}

/// Whether a key names a credential.
fn names_credential(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    [
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "credential",
        "auth",
    ]
    .iter()
    .any(|w| k.contains(w))
}

fn redact_credentials(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = match v {
                        Value::Null => Value::Null,
                        Value::String(s) if s.is_empty() => v.clone(),
                        _ if names_credential(k) => Value::String(tamma_core::REDACTED.to_owned()),
                        _ => redact_credentials(v),
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_credentials).collect()),
        other => other.clone(),
    }
}
