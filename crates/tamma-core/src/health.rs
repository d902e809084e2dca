//! The health `Check` trait: what every component that talks to something external hands back.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Works as it should.
    Healthy,
    /// Works, but something needs attention (a warn threshold, an open breaker, a failed reload).
    Degraded,
    /// Does not work.
    Unhealthy,
}

impl CheckStatus {
    /// The `application/health+json` name: `pass`, `warn` or `fail`.
    #[must_use]
    pub const fn as_health_json(self) -> &'static str {
        match self {
            Self::Healthy => "pass",
            Self::Degraded => "warn",
            Self::Unhealthy => "fail",
        }
    }
}

/// What a check observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The verdict.
    pub status: CheckStatus,
    /// A human sentence, required when the status is not healthy (`"queue 98% full"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The measured value, if the check measures one (`0.42`, `1234`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<serde_json::Value>,
    /// The unit of `observed_value` (`percent`, `bytes`, `ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    /// Free details for humans and dashboards.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl CheckResult {
    /// A healthy result with no details.
    #[must_use]
    pub fn healthy() -> Self {
        Self::with_status(CheckStatus::Healthy, None)
    }

    /// A degraded result saying why.
    pub fn degraded(output: impl Into<String>) -> Self {
        Self::with_status(CheckStatus::Degraded, Some(output.into()))
    }

    /// An unhealthy result saying why.
    pub fn unhealthy(output: impl Into<String>) -> Self {
        Self::with_status(CheckStatus::Unhealthy, Some(output.into()))
    }

    fn with_status(status: CheckStatus, output: Option<String>) -> Self {
        Self {
            status,
            output,
            observed_value: None,
            observed_unit: None,
            details: serde_json::Map::new(),
        }
    }

    /// Adds the observed value and its unit.
    #[must_use]
    pub fn observed(
        mut self,
        value: impl Into<serde_json::Value>,
        unit: impl Into<String>,
    ) -> Self {
        self.observed_value = Some(value.into());
        self.observed_unit = Some(unit.into());
        self
    }

    /// Adds one detail.
    #[must_use]
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// The future a [`Check`] returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;

/// A health check. Object safe: the health checker holds `Arc<dyn Check>`.
///
/// A check must not panic and should finish quickly; the checker still runs it under a timeout and turns
/// a timeout into an unhealthy result.
pub trait Check: Send + Sync + 'static {
    /// A stable name, `component:measurement` where it measures something (`events:head`,
    /// `memory:utilization`).
    fn name(&self) -> &str;

    /// Runs the check once.
    fn check(&self) -> CheckFuture<'_>;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Always;
    impl Check for Always {
        fn name(&self) -> &str {
            "always:ok"
        }
        fn check(&self) -> CheckFuture<'_> {
            Box::pin(async { CheckResult::healthy().observed(1, "count") })
        }
    }

    #[test]
    fn object_safe_and_serializes() {
        let c: Box<dyn Check> = Box::new(Always);
        let r = futures::executor::block_on(c.check());
        assert_eq!(r.status, CheckStatus::Healthy);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"status": "healthy", "observedValue": 1, "observedUnit": "count"})
        );
        assert_eq!(CheckStatus::Degraded.as_health_json(), "warn");
    }
}
