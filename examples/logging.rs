//! Logging, metrics and runtime level changes with `tamma-telemetry`.
//!
//! Run with `cargo run -p tamma-examples --example logging`. It logs text to stderr and JSON to a
//! file under the temp directory, changes levels at runtime, and prints the Prometheus exposition.

use std::io::Write;
use std::time::Duration;

use tamma_telemetry::{Level, LoggingConfig, MetricsConfig, ServiceInfo, Telemetry, TracingConfig};

#[derive(Debug, thiserror::Error)]
#[error("cannot reach the event store")]
struct StoreDown {
    #[source]
    cause: std::io::Error,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir =
        std::env::temp_dir().join(format!("tamma-logging-example-{}", std::process::id()));
    // The seed's `{type, config}` shape, as it appears in a config file.
    let logging: LoggingConfig = serde_json::from_value(serde_json::json!({
        "level": "info",
        "outputs": [
            {"type": "stderr", "config": {"format": "text"}},
            {"type": "file", "config": {"name": "audit", "path": "logs/tamma.log", "maxSize": "10MB",
                                        "maxFiles": 5, "policy": "block"}}
        ],
        "redaction": {"customRedactors": [
            {"name": "card", "pattern": "\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b", "replacement": "[CARD]"}
        ]}
    }))?;
    let mut metrics_cfg = MetricsConfig::default();
    metrics_cfg.labels.insert("region".into(), "eu-1".into());

    let telemetry = Telemetry::init(
        &logging,
        &TracingConfig::default(),
        &metrics_cfg,
        &data_dir,
        ServiceInfo::new("tamma-example", env!("CARGO_PKG_VERSION")),
    )?;
    // Installs the global subscriber and the metrics recorder (once per process).
    let handle = telemetry.install()?;

    let span = tracing::info_span!("request", requestId = "req-42", userId = "alice");
    {
        let _in_request = span.enter();
        tracing::info!(path = "/v1/events", status = 201, "request finished");
        tracing::info!(
            password = "hunter2",
            card = "4111-1111-1111-1111",
            "login with a secret"
        );
        let err = StoreDown {
            cause: std::io::Error::other("connection refused"),
        };
        tracing::error!(
            error = &err as &dyn std::error::Error,
            error.code = "E_STORE",
            "append failed"
        );
        tracing::debug!("not written: the level is info");
    }

    // Runtime changes, as a config reload would make them.
    handle.set_level(Level::Debug)?;
    tracing::debug!("written now: the level is debug");
    handle.set_output_level("audit", Some(Level::Warn))?;
    tracing::info!("stderr only: the audit file takes warn and above");
    metrics::counter!(tamma_core::metric_names::HTTP_REQUESTS_TOTAL, "route" => "/v1/events", "method" => "POST", "status" => "201").increment(1);

    let report = handle.shutdown(Duration::from_secs(5));
    let mut out = std::io::stdout().lock();
    writeln!(out, "shutdown clean: {}", report.is_clean())?;
    writeln!(
        out,
        "file output: {}",
        data_dir.join("logs/tamma.log").display()
    )?;
    writeln!(
        out,
        "{}",
        std::fs::read_to_string(data_dir.join("logs/tamma.log"))?
    )?;
    if let Some(m) = handle.metrics() {
        writeln!(out, "{}", m.render_prometheus())?;
    }
    std::fs::remove_dir_all(&data_dir)?;
    Ok(())
}
