//! The [`HealthChecker`]: registered checks, their background runs and the cached results.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use parking_lot::Mutex;
use tamma_core::{Check, CheckResult, CheckStatus, DurationMs, metric_names};
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::Thresholds;
use crate::error::{Error, Result};
use crate::report::{CheckReport, HealthReport};

/// The liveness group: checks of the process itself only (never a dependency, never a resource
/// threshold that would restart-loop a pod).
pub const LIVE: &str = "live";
/// The readiness group: dependencies and resources; the default group of a check.
pub const READY: &str = "ready";

/// How a check is run and counted: interval, timeout, criticality, groups, thresholds.
///
/// ```
/// use std::time::Duration;
/// use tamma_health::{CheckOptions, Thresholds};
///
/// let opts = CheckOptions::new()
///     .critical(true)
///     .interval(Duration::from_secs(10))
///     .timeout(Duration::from_secs(2))
///     .groups(["ready", "storage"])
///     .thresholds(Thresholds::new(80.0, 90.0));
/// assert!(opts.critical);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Time between background runs (default: the checker's).
    pub interval: Option<Duration>,
    /// Time a run may take before it counts as unhealthy (default: the checker's).
    pub timeout: Option<Duration>,
    /// Whether a failure makes the whole service unhealthy (otherwise only degraded).
    pub critical: bool,
    /// Groups the check belongs to (default `["ready"]`).
    pub groups: Vec<String>,
    /// Warn and fail levels applied to the check's numeric observed value.
    pub thresholds: Option<Thresholds>,
    /// The health+json `componentType` (default `component`).
    pub component_type: Option<String>,
    /// The measurement half of the health+json key when the name has no `:` (default `status`).
    pub measurement: Option<String>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl CheckOptions {
    /// Not critical, in the `ready` group, with the checker's interval and timeout.
    #[must_use]
    pub fn new() -> Self {
        Self {
            interval: None,
            timeout: None,
            critical: false,
            groups: vec![READY.to_owned()],
            thresholds: None,
            component_type: None,
            measurement: None,
        }
    }

    /// Sets the interval.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Sets the timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets whether the check is critical.
    #[must_use]
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Replaces the groups.
    #[must_use]
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the warn and fail levels.
    #[must_use]
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = Some(thresholds);
        self
    }

    /// Sets the health+json `componentType` (`system`, `datastore`, `component`, …).
    #[must_use]
    pub fn component_type(mut self, component_type: impl Into<String>) -> Self {
        self.component_type = Some(component_type.into());
        self
    }

    /// Sets the measurement name used in the health+json key when the check's name has no `:`.
    #[must_use]
    pub fn measurement(mut self, measurement: impl Into<String>) -> Self {
        self.measurement = Some(measurement.into());
        self
    }
}

/// Which checks a report covers: all, one group, minus excluded names.
///
/// ```
/// use tamma_health::Selection;
/// let s = Selection::group("ready").exclude("cpu:utilization");
/// assert_eq!(s.group_name(), Some("ready"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    group: Option<String>,
    exclude: Vec<String>,
}

impl Selection {
    /// Every check.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// The checks of one group.
    pub fn group(group: impl Into<String>) -> Self {
        Self {
            group: Some(group.into()),
            exclude: Vec::new(),
        }
    }

    /// Leaves out the check called `name`.
    #[must_use]
    pub fn exclude(mut self, name: impl Into<String>) -> Self {
        self.exclude.push(name.into());
        self
    }

    /// The group, if the selection is one group.
    #[must_use]
    pub fn group_name(&self) -> Option<&str> {
        self.group.as_deref()
    }

    fn matches(&self, entry: &Entry) -> bool {
        self.group
            .as_ref()
            .is_none_or(|g| entry.groups.iter().any(|x| x == g))
            && !self.exclude.contains(&entry.name)
    }
}

/// Whether a forced run happened or the rate limit served the cache instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// The selected checks ran now.
    Ran,
    /// A forced run happened less than the minimum interval ago; the report is the cached one.
    RateLimited,
}

/// One run's outcome, as cached.
#[derive(Debug)]
struct Outcome {
    result: CheckResult,
    duration: Duration,
    time: DateTime<Utc>,
    finished: Instant,
}

/// One registered check.
struct Entry {
    name: String,
    key: String,
    component_type: String,
    check: Arc<dyn Check>,
    critical: bool,
    groups: Vec<String>,
    interval: Duration,
    timeout: Duration,
    thresholds: Option<Thresholds>,
    last: ArcSwapOption<Outcome>,
    run_lock: tokio::sync::Mutex<()>,
    runs: AtomicU64,
    task: Mutex<Option<AbortHandle>>,
}

/// When a run may reuse the cached result.
#[derive(Clone, Copy)]
enum Reuse {
    /// Run only when there is no result yet.
    IfPresent,
    /// Run unless the result finished less than this long ago.
    IfYoungerThan(Duration),
}

impl Entry {
    /// Runs the check unless `reuse` allows the cached result; concurrent callers share one run.
    async fn run(&self, reuse: Reuse) -> Arc<Outcome> {
        let seen = self.runs.load(Ordering::Acquire);
        if let Some(cached) = self.reusable(reuse) {
            return cached;
        }
        let _guard = self.run_lock.lock().await;
        if self.runs.load(Ordering::Acquire) != seen
            && let Some(cached) = self.last.load_full()
        {
            // Someone else ran the check while this caller waited: share that run.
            return cached;
        }
        if let Some(cached) = self.reusable(reuse) {
            return cached;
        }
        let outcome = Arc::new(self.execute().await);
        let previous = self.last.swap(Some(Arc::clone(&outcome)));
        self.runs.fetch_add(1, Ordering::AcqRel);
        let before = previous.map(|p| p.result.status);
        if before != Some(outcome.result.status) {
            let output = outcome.result.output.as_deref().unwrap_or("");
            match outcome.result.status {
                CheckStatus::Healthy => tracing::info!(check = %self.name, "health check healthy"),
                CheckStatus::Degraded => {
                    tracing::warn!(check = %self.name, output, "health check degraded");
                }
                CheckStatus::Unhealthy => {
                    tracing::warn!(check = %self.name, critical = self.critical, output, "health check unhealthy");
                }
            }
        }
        outcome
    }

    fn reusable(&self, reuse: Reuse) -> Option<Arc<Outcome>> {
        let cached = self.last.load_full()?;
        match reuse {
            Reuse::IfPresent => Some(cached),
            Reuse::IfYoungerThan(age) => (cached.finished.elapsed() < age).then_some(cached),
        }
    }

    async fn execute(&self) -> Outcome {
        let start = Instant::now();
        let time = Utc::now();
        let check = Arc::clone(&self.check);
        let run = AssertUnwindSafe(async move { check.check().await }).catch_unwind();
        let result = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(result)) => apply_thresholds(result, self.thresholds),
            Ok(Err(_panic)) => CheckResult::unhealthy("the check panicked"),
            Err(_elapsed) => CheckResult::unhealthy(format!(
                "timed out after {}",
                DurationMs::from(self.timeout)
            )),
        };
        let duration = start.elapsed();
        let labels = [("check", self.name.clone())];
        metrics::histogram!(metric_names::HEALTH_CHECK_DURATION_SECONDS, &labels)
            .record(duration.as_secs_f64());
        let level = match result.status {
            CheckStatus::Healthy => 0.0,
            CheckStatus::Degraded => 1.0,
            CheckStatus::Unhealthy => 2.0,
        };
        metrics::gauge!(metric_names::HEALTH_CHECK_STATUS, &labels).set(level);
        Outcome {
            result,
            duration,
            time,
            finished: Instant::now(),
        }
    }

    fn report(&self, outcome: Option<&Outcome>) -> CheckReport {
        let (result, duration, time) = match outcome {
            Some(o) => (o.result.clone(), o.duration, o.time),
            None => (
                CheckResult::unhealthy("not run yet"),
                Duration::ZERO,
                Utc::now(),
            ),
        };
        let error = match result.status {
            CheckStatus::Healthy => None,
            CheckStatus::Degraded | CheckStatus::Unhealthy => Some(
                result
                    .output
                    .clone()
                    .unwrap_or_else(|| "no reason given".to_owned()),
            ),
        };
        CheckReport {
            name: self.name.clone(),
            key: self.key.clone(),
            component_type: self.component_type.clone(),
            status: result.status,
            critical: self.critical,
            groups: self.groups.clone(),
            output: result.output,
            observed_value: result.observed_value,
            observed_unit: result.observed_unit,
            details: result.details,
            duration,
            time,
            error,
        }
    }

    fn abort_task(&self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

/// Makes `result` worse when its numeric observed value reaches a level; never makes it better.
fn apply_thresholds(mut result: CheckResult, thresholds: Option<Thresholds>) -> CheckResult {
    let (Some(t), Some(value)) = (
        thresholds,
        result
            .observed_value
            .as_ref()
            .and_then(serde_json::Value::as_f64),
    ) else {
        return result;
    };
    let (status, which, level) = match (t.fail, t.warn) {
        (Some(fail), _) if value >= fail => (CheckStatus::Unhealthy, "fail", fail),
        (_, Some(warn)) if value >= warn => (CheckStatus::Degraded, "warn", warn),
        _ => return result,
    };
    if status > result.status {
        let unit = result
            .observed_unit
            .as_deref()
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        result.status = status;
        result.output = Some(format!(
            "{value:.1}{unit} is at or above the {which} level {level}"
        ));
    }
    result
}

async fn monitor(entry: Arc<Entry>) {
    let mut ticker = tokio::time::interval(entry.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // A result younger than half an interval (a probe's first run, a forced run) is kept.
        entry.run(Reuse::IfYoungerThan(entry.interval / 2)).await;
    }
}

/// Builds a [`HealthChecker`].
#[derive(Clone, Debug)]
pub struct HealthCheckerBuilder {
    version: String,
    release_id: Option<String>,
    interval: Duration,
    timeout: Duration,
    fresh_min_interval: Duration,
}

impl HealthCheckerBuilder {
    /// The `releaseId` reported in health+json (a build or commit id).
    #[must_use]
    pub fn release_id(mut self, release_id: impl Into<String>) -> Self {
        self.release_id = Some(release_id.into());
        self
    }

    /// The default interval of checks that set none (default 30 s).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The default timeout of checks that set none (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The least time between two forced runs (default 1 s).
    #[must_use]
    pub fn fresh_min_interval(mut self, min: Duration) -> Self {
        self.fresh_min_interval = min;
        self
    }

    /// The checker, with no checks yet.
    #[must_use]
    pub fn build(self) -> HealthChecker {
        HealthChecker {
            entries: ArcSwap::from_pointee(Vec::new()),
            write_lock: Mutex::new(()),
            started: std::time::Instant::now(),
            version: self.version,
            release_id: self.release_id,
            interval: self.interval,
            timeout: self.timeout,
            fresh_min_interval: self.fresh_min_interval,
            last_fresh: Mutex::new(None),
            runtime: Mutex::new(None),
        }
    }
}

/// Runs health checks concurrently under timeouts, caches their results and refreshes them in the
/// background, and aggregates them into a [`HealthReport`].
///
/// Endpoints read the cache ([`report`](Self::report)), so any number of probes costs no more check
/// runs than one per check per interval. Share it as `Arc<HealthChecker>`.
pub struct HealthChecker {
    entries: ArcSwap<Vec<Arc<Entry>>>,
    write_lock: Mutex<()>,
    started: std::time::Instant,
    version: String,
    release_id: Option<String>,
    interval: Duration,
    timeout: Duration,
    fresh_min_interval: Duration,
    last_fresh: Mutex<Option<Instant>>,
    runtime: Mutex<Option<tokio::runtime::Handle>>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker")
            .field("version", &self.version)
            .field("checks", &self.check_names())
            .field("monitoring", &self.is_monitoring())
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// A builder; `version` is the service version reported in every report.
    pub fn builder(version: impl Into<String>) -> HealthCheckerBuilder {
        HealthCheckerBuilder {
            version: version.into(),
            release_id: None,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            fresh_min_interval: Duration::from_secs(1),
        }
    }

    /// Registers a check under its [`Check::name`]. When monitoring runs, its background runs start
    /// at once.
    ///
    /// # Errors
    /// [`Error::DuplicateCheck`] when the name is taken; [`Error::InvalidCheck`] when the name is
    /// empty, the interval or timeout is zero, or the timeout is not below the interval.
    pub fn add_check(&self, check: Arc<dyn Check>, options: CheckOptions) -> Result<()> {
        let name = check.name().to_owned();
        let invalid = |reason: String| Error::InvalidCheck {
            name: name.clone(),
            reason,
        };
        if name.trim().is_empty() {
            return Err(invalid("the name is empty".to_owned()));
        }
        let interval = options.interval.unwrap_or(self.interval);
        let timeout = options.timeout.unwrap_or(self.timeout);
        if interval.is_zero() || timeout.is_zero() {
            return Err(invalid(
                "interval and timeout must be greater than 0".to_owned(),
            ));
        }
        if timeout >= interval {
            return Err(invalid(format!(
                "timeout must be less than interval ({} ≥ {})",
                DurationMs::from(timeout),
                DurationMs::from(interval)
            )));
        }
        let key = if name.contains(':') {
            name.clone()
        } else {
            format!(
                "{name}:{}",
                options.measurement.as_deref().unwrap_or("status")
            )
        };
        let entry = Arc::new(Entry {
            key,
            component_type: options
                .component_type
                .unwrap_or_else(|| "component".to_owned()),
            check,
            critical: options.critical,
            groups: options.groups,
            interval,
            timeout,
            thresholds: options.thresholds,
            last: ArcSwapOption::empty(),
            run_lock: tokio::sync::Mutex::new(()),
            runs: AtomicU64::new(0),
            task: Mutex::new(None),
            name,
        });
        let _writer = self.write_lock.lock();
        let current = self.entries.load();
        if current.iter().any(|e| e.name == entry.name) {
            return Err(Error::DuplicateCheck(entry.name.clone()));
        }
        if let Some(runtime) = self.runtime.lock().as_ref() {
            let task = runtime.spawn(monitor(Arc::clone(&entry)));
            *entry.task.lock() = Some(task.abort_handle());
        }
        let mut next = Vec::with_capacity(current.len() + 1);
        next.extend(current.iter().cloned());
        next.push(entry);
        self.entries.store(Arc::new(next));
        tracing::debug!(check = %self.entries.load().last().map_or("", |e| e.name.as_str()), "health check added");
        Ok(())
    }

    /// Removes the check called `name` and stops its background runs. Returns whether it existed.
    pub fn remove_check(&self, name: &str) -> bool {
        let _writer = self.write_lock.lock();
        let current = self.entries.load();
        let Some(removed) = current.iter().find(|e| e.name == name) else {
            return false;
        };
        removed.abort_task();
        let next: Vec<_> = current.iter().filter(|e| e.name != name).cloned().collect();
        self.entries.store(Arc::new(next));
        tracing::debug!(check = name, "health check removed");
        true
    }

    /// The names of the registered checks, in registration order.
    #[must_use]
    pub fn check_names(&self) -> Vec<String> {
        self.entries.load().iter().map(|e| e.name.clone()).collect()
    }

    /// Starts the background runs: each check runs now and then on its interval. Idempotent.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] when called outside a Tokio runtime.
    pub fn start_monitoring(&self) -> Result<()> {
        let _writer = self.write_lock.lock();
        let mut runtime = self.runtime.lock();
        if runtime.is_some() {
            return Ok(());
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        for entry in self.entries.load().iter() {
            let task = handle.spawn(monitor(Arc::clone(entry)));
            *entry.task.lock() = Some(task.abort_handle());
        }
        *runtime = Some(handle);
        tracing::info!(
            checks = self.entries.load().len(),
            "health monitoring started"
        );
        Ok(())
    }

    /// Stops the background runs; the cache keeps the last results. Idempotent.
    pub fn stop_monitoring(&self) {
        let _writer = self.write_lock.lock();
        if self.runtime.lock().take().is_some() {
            for entry in self.entries.load().iter() {
                entry.abort_task();
            }
            tracing::info!("health monitoring stopped");
        }
    }

    /// Whether background runs are active.
    #[must_use]
    pub fn is_monitoring(&self) -> bool {
        self.runtime.lock().is_some()
    }

    /// The report of the selected checks from the cache. A check that never ran is run now (once,
    /// shared by concurrent callers), so the first probe after start sees real results.
    pub async fn report(&self, selection: &Selection) -> HealthReport {
        let entries = self.entries.load_full();
        let selected: Vec<&Arc<Entry>> = entries.iter().filter(|e| selection.matches(e)).collect();
        if selected.iter().any(|e| e.last.load().is_none()) {
            futures::future::join_all(selected.iter().map(|e| e.run(Reuse::IfPresent))).await;
        }
        self.build_report(&selected)
    }

    /// Runs the selected checks now, concurrently, each under its timeout, and reports — unless a
    /// forced run happened less than the minimum interval ago, in which case the cached report is
    /// returned with [`Refresh::RateLimited`].
    pub async fn fresh_report(&self, selection: &Selection) -> (HealthReport, Refresh) {
        let allowed = {
            let mut last = self.last_fresh.lock();
            let now = Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < self.fresh_min_interval) {
                false
            } else {
                *last = Some(now);
                true
            }
        };
        if !allowed {
            return (self.report(selection).await, Refresh::RateLimited);
        }
        (self.run_now(selection).await, Refresh::Ran)
    }

    /// Runs the selected checks now, concurrently, without the rate limit (for code, tests and the
    /// CLI; HTTP callers go through [`fresh_report`](Self::fresh_report)). Callers arriving while a
    /// check runs share that run.
    pub async fn run_now(&self, selection: &Selection) -> HealthReport {
        let entries = self.entries.load_full();
        let selected: Vec<&Arc<Entry>> = entries.iter().filter(|e| selection.matches(e)).collect();
        futures::future::join_all(
            selected
                .iter()
                .map(|e| e.run(Reuse::IfYoungerThan(Duration::ZERO))),
        )
        .await;
        self.build_report(&selected)
    }

    fn build_report(&self, selected: &[&Arc<Entry>]) -> HealthReport {
        let checks: Vec<CheckReport> = selected
            .iter()
            .map(|e| e.report(e.last.load().as_deref()))
            .collect();
        HealthReport::new(
            checks,
            self.started.elapsed(),
            self.version.clone(),
            self.release_id.clone(),
        )
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        for entry in self.entries.load().iter() {
            entry.abort_task();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_only_make_results_worse() {
        let t = Some(Thresholds::new(80.0, 90.0));
        let r = apply_thresholds(CheckResult::healthy().observed(85.0, "percent"), t);
        assert_eq!(r.status, CheckStatus::Degraded);
        assert_eq!(
            r.output.as_deref(),
            Some("85.0 percent is at or above the warn level 80")
        );
        let r = apply_thresholds(CheckResult::healthy().observed(95, "percent"), t);
        assert_eq!(r.status, CheckStatus::Unhealthy);
        let r = apply_thresholds(CheckResult::healthy().observed(10, "percent"), t);
        assert_eq!(r.status, CheckStatus::Healthy);
        let r = apply_thresholds(CheckResult::unhealthy("down").observed(10, "percent"), t);
        assert_eq!(
            (r.status, r.output.as_deref()),
            (CheckStatus::Unhealthy, Some("down"))
        );
        let r = apply_thresholds(CheckResult::healthy().observed("n/a", "x"), t);
        assert_eq!(r.status, CheckStatus::Healthy);
    }

    #[test]
    fn selection_matches_groups_and_excludes() {
        struct Nop;
        impl Check for Nop {
            fn name(&self) -> &str {
                "nop"
            }
            fn check(&self) -> tamma_core::CheckFuture<'_> {
                Box::pin(async { CheckResult::healthy() })
            }
        }
        let checker = HealthChecker::builder("1").build();
        checker
            .add_check(Arc::new(Nop), CheckOptions::new().groups(["live"]))
            .unwrap();
        let entries = checker.entries.load();
        assert!(Selection::all().matches(&entries[0]));
        assert!(Selection::group(LIVE).matches(&entries[0]));
        assert!(!Selection::group(READY).matches(&entries[0]));
        assert!(!Selection::all().exclude("nop").matches(&entries[0]));
        assert_eq!(entries[0].key, "nop:status");
    }
}
