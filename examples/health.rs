//! A health checker with a custom check, the built-in system checks and an HTTP check from config,
//! printed as `application/health+json`. The HTTP check points at a closed port on purpose: it fails,
//! and being non-critical it only makes the overall status `warn` (still HTTP 200).
//!
//! Run with `cargo run -p tamma-examples --example health`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tamma_core::{Check, CheckFuture, CheckResult};
use tamma_health::{
    CheckContext, CheckOptions, HealthChecker, HealthChecksConfig, READY, Selection,
};

/// A custom check: how far a queue is filled. Below 80 % healthy, then degraded, then unhealthy
/// (the levels could also be `Thresholds` in the options; here the check judges itself).
struct QueueFill {
    depth: Arc<AtomicU64>,
    capacity: u64,
}

impl Check for QueueFill {
    fn name(&self) -> &str {
        "jobs:fill"
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let depth = self.depth.load(Ordering::Relaxed);
            #[allow(clippy::cast_precision_loss)] // small counts
            let pct = depth as f64 * 100.0 / self.capacity as f64;
            let result = if pct < 80.0 {
                CheckResult::healthy()
            } else if pct < 95.0 {
                CheckResult::degraded(format!("queue {pct:.0}% full"))
            } else {
                CheckResult::unhealthy(format!("queue {pct:.0}% full"))
            };
            result.observed(pct, "percent").detail("depth", depth)
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The config section as an operator would write it (usually part of tamma.yaml).
    let config: HealthChecksConfig = serde_json::from_value(serde_json::json!({
        "interval": "10s",
        "timeout": "2s",
        "checks": [
            {"name": "example-site", "type": "http",
             "config": {"url": "http://127.0.0.1:9/", "expectStatus": {"min": 200, "max": 399}},
             "critical": false}
        ]
    }))?;
    let data_dir = std::env::temp_dir();
    let context = CheckContext::new(env!("CARGO_PKG_VERSION")).data_dir(&data_dir);
    let checker = Arc::new(HealthChecker::from_config(&config, &context)?);

    // A check registered in code, critical, in the default `ready` group: a full queue takes the
    // instance out of the load balancer (it is not a `live` check: restarting would not empty it).
    let depth = Arc::new(AtomicU64::new(42));
    checker.add_check(
        Arc::new(QueueFill {
            depth: Arc::clone(&depth),
            capacity: 100,
        }),
        CheckOptions::new()
            .critical(true)
            .interval(Duration::from_secs(5)),
    )?;
    checker.start_monitoring()?;

    let report = checker.report(&Selection::all()).await;
    let doc = serde_json::to_string_pretty(&report.to_health_json())?;
    eprintln!("GET /health -> {}\n{doc}", report.http_status());

    depth.store(97, Ordering::Relaxed);
    let ready = checker.fresh_report(&Selection::group(READY)).await.0;
    eprintln!(
        "GET /health/ready?verbose -> {}\n{}",
        ready.http_status(),
        ready.render_verbose(READY)
    );
    checker.stop_monitoring();
    Ok(())
}
