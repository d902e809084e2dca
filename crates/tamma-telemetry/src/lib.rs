//! `tamma-telemetry`: the one place that turns the `logging`, `monitoring.tracing` and
//! `monitoring.metrics` config into a running `tracing` subscriber, an OpenTelemetry trace exporter
//! and the `metrics` recorder.
//!
//! Libraries in the workspace only emit `tracing` events/spans and `metrics` calls; only the binary
//! installs it: `tamma-runtime` builds a [`Telemetry`] from the config, the binary installs it (and tests
//! that want to look at log lines build their own).
//!
//! What it does:
//!
//! - **Formats**: JSON lines with the entry schema of `docs/logging.md` (`timestamp`, `level`,
//!   `message`, `target`, `meta`, `error`, `source`) from a formatter of our own, or human text
//!   (colour only on a terminal, never with `NO_COLOR`). Span fields appear in `meta` of every line
//!   inside the span; errors passed as `error = &e as &dyn Error` carry their source chain.
//! - **Levels**: a global level plus per-target directives in a reloadable `EnvFilter`, and a level
//!   per output held in atomics (never a reloaded per-layer filter: tracing#1629). All change at
//!   runtime through the [`TelemetryHandle`].
//! - **Redaction** before anything is written: keys matching the configured patterns print
//!   `[REDACTED]`; value redactors (bearer tokens, JWTs, AWS access keys, URL passwords, custom
//!   regexes, `key=value` pairs with a sensitive key) rewrite values and messages; the same policy
//!   applies to exported span attributes.
//! - **Outputs** (`stdout`, `stderr`, `file` with size rotation and gzip, `http` batches with retry,
//!   `syslog` RFC 5424 over UDP/TCP/unix), each behind a bounded queue drained by its own thread, with
//!   a `drop_newest` or `block` policy, health ([`OutputHealth`], [`OutputCheck`]) and a draining
//!   [`TelemetryHandle::shutdown`].
//! - **Traces**: OTLP/HTTP (protobuf) export with a parent-based ratio sampler, honouring the
//!   standard `OTEL_*` variables passed in by the config layer.
//! - **Metrics**: [`MetricsRecorder`], the recorder behind the `metrics` facade, with the configured
//!   labels on every series and Prometheus text / JSON renderers for `/metrics`;
//!   [`ProcessMetrics`] samples `/proc/self` (CPU, RSS, open fds, uptime) into the
//!   `tamma_process_*` series on an interval and right before a render.
//!
//! # Example
//!
//! ```
//! use tamma_telemetry::{LoggingConfig, OutputConfig, FileOutputConfig, ServiceInfo, Telemetry};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut logging = LoggingConfig::default();
//! logging.outputs = vec![OutputConfig::File(FileOutputConfig {
//!     path: "logs/app.log".into(),
//!     ..FileOutputConfig::default()
//! })];
//! let telemetry = Telemetry::builder(ServiceInfo::new("tamma", "1.0.0"))
//!     .logging(&logging)
//!     .data_dir(dir.path())
//!     .build()
//!     .unwrap();
//! // A binary calls `telemetry.install()`; here the subscriber is used for one scope only.
//! tracing::dispatcher::with_default(telemetry.dispatch(), || {
//!     let span = tracing::info_span!("request", requestId = "r-1");
//!     let _guard = span.enter();
//!     tracing::info!(user = "alice", password = "hunter2", "logged in");
//! });
//! let report = telemetry.handle().shutdown(std::time::Duration::from_secs(5));
//! assert!(report.is_clean());
//! let line = std::fs::read_to_string(dir.path().join("logs/app.log")).unwrap();
//! let entry: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
//! assert_eq!(entry["message"], "logged in");
//! assert_eq!(entry["meta"]["requestId"], "r-1");
//! assert_eq!(entry["meta"]["password"], "[REDACTED]");
//! ```
//!
//! # Cargo features
//!
//! None: OTLP/HTTP with protobuf over a blocking `reqwest` client (rustls) is always built in;
//! gRPC/tonic is not used.

mod config;
mod error;
mod format;
mod layer;
mod metrics;
mod otel;
mod output;
mod process;
mod redact;
mod sinks;
mod telemetry;

pub use config::{
    Common, CustomRedactorConfig, DEFAULT_QUEUE_CAPACITY, Facility, FileOutputConfig, Format,
    HttpOutputConfig, Level, LoggingConfig, MetricsConfig, MetricsFormat, OutputConfig,
    QueuePolicy, RedactionConfig, RotationConfig, StreamOutputConfig, SyslogOutputConfig,
    SyslogTransport, TracingConfig,
};
pub use error::{Error, Result};
pub use format::ServiceInfo;
pub use metrics::{COUNT_BUCKETS, MetricsRecorder, SECONDS_BUCKETS};
pub use output::{OutputCheck, OutputHealth};
pub use process::{ProcessMetrics, ProcessMetricsTask, ProcessSample, spawn_process_metrics};
pub use telemetry::{Applied, ShutdownReport, Telemetry, TelemetryBuilder, TelemetryHandle};
