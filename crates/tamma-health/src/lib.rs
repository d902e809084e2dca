//! Health checks for the Tamma runtime.
//!
//! `tamma-health` owns the [`HealthChecker`]: checks registered at runtime ([`HealthChecker::add_check`],
//! [`HealthChecker::remove_check`]) run concurrently, each under its timeout, on their own interval in
//! the background; their results are cached, so the HTTP endpoints (in `tamma-server`) serve the cache and a probe storm never multiplies the work. Checks belong to groups:
//! [`LIVE`] (the process itself), [`READY`] (dependencies and resources) and custom ones.
//! The overall status is unhealthy when a critical check fails and degraded when any other check is
//! not healthy ([`aggregate`]). A [`HealthReport`] serializes to the seed's shape and renders to
//! `application/health+json` ([`HealthReport::to_health_json`]).
//!
//! Built-in checks: [`MemoryCheck`] (against the cgroup v1/v2 limit, else the machine), [`CpuCheck`]
//! (against the cgroup quota, else all cores), [`DiskCheck`] (the filesystem of a directory),
//! [`HttpCheck`] (one shared client, a status range, an optional body match) and [`TcpCheck`].
//! Warn and fail levels are [`Thresholds`] per check. The config section is
//! [`HealthChecksConfig`] (`monitoring.healthChecks`); [`HealthChecker::from_config`] builds a checker
//! from it. Check durations and statuses are recorded through the `metrics` facade
//! (`tamma_health_check_duration_seconds`, `tamma_health_check_status`).
//!
//! Depend on it from the runtime (which registers the checks of its components) and the server
//! (which serves the endpoints).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tamma_core::{Check, CheckFuture, CheckResult, CheckStatus};
//! use tamma_health::{CheckOptions, HealthChecker, Selection};
//!
//! struct QueueDepth;
//! impl Check for QueueDepth {
//!     fn name(&self) -> &str { "queue:depth" }
//!     fn check(&self) -> CheckFuture<'_> {
//!         Box::pin(async { CheckResult::healthy().observed(12, "count") })
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let checker = Arc::new(HealthChecker::builder("1.2.3").build());
//! checker.add_check(
//!     Arc::new(QueueDepth),
//!     CheckOptions::new().critical(true).interval(Duration::from_secs(10)),
//! )?;
//! checker.start_monitoring()?;
//! let report = checker.report(&Selection::group("ready")).await;
//! assert_eq!(report.status, CheckStatus::Healthy);
//! let doc = report.to_health_json();
//! assert_eq!(doc["status"], "pass");
//! assert_eq!(doc["checks"]["queue:depth"][0]["observedValue"], 12);
//! checker.stop_monitoring();
//! # Ok::<(), tamma_health::Error>(())
//! # }).unwrap();
//! ```

mod checker;
mod config;
mod error;
mod net;
mod report;
mod setup;
mod sysfs;
mod system;

pub use checker::{
    CheckOptions, HealthChecker, HealthCheckerBuilder, LIVE, READY, Refresh, Selection,
};
pub use config::{
    CheckDefinition, CheckKind, CpuCheckConfig, CustomCheckConfig, DatabaseCheckConfig,
    DiskCheckConfig, HealthChecksConfig, HttpCheckConfig, HttpMethod, MemoryCheckConfig,
    StatusRange, TcpCheckConfig, Thresholds,
};
pub use error::{Error, Result};
pub use net::{HttpCheck, TcpCheck, http_client};
pub use report::{CheckReport, HEALTH_JSON_CONTENT_TYPE, HealthReport, Summary, aggregate};
pub use setup::CheckContext;
pub use sysfs::{CgroupVersion, CpuSample, MemoryStats, Source, SystemReader};
pub use system::{CpuCheck, DiskCheck, DiskStats, MemoryCheck, disk_stats};
