//! The aggregated [`HealthReport`] and its renderings: the seed's JSON shape (serde), the
//! `application/health+json` document and a human list for probes.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};
use tamma_core::CheckStatus;

/// The media type of [`HealthReport::to_health_json`].
pub const HEALTH_JSON_CONTENT_TYPE: &str = "application/health+json";

/// The result of one check inside a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// The health+json key, `component:measurement`.
    #[serde(skip)]
    pub key: String,
    /// The health+json `componentType`.
    #[serde(skip)]
    pub component_type: String,
    /// The verdict.
    pub status: CheckStatus,
    /// Whether a failure makes the service unhealthy.
    pub critical: bool,
    /// The groups the check belongs to.
    pub groups: Vec<String>,
    /// The check's sentence, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The measured value, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<Value>,
    /// The unit of `observed_value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    /// Free details.
    pub details: Map<String, Value>,
    /// How long the last run took (milliseconds on the wire).
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
    /// When the last run started.
    pub time: DateTime<Utc>,
    /// Why the check is not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts of a report's checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// Checks in the report.
    pub total: usize,
    /// Healthy checks.
    pub healthy: usize,
    /// Degraded checks.
    pub degraded: usize,
    /// Unhealthy checks.
    pub unhealthy: usize,
    /// Unhealthy critical checks.
    pub critical: usize,
}

/// The aggregate of a set of checks. Serializes to the seed's shape
/// (`{status, timestamp, uptime, version, checks[{name, status, details, duration, error}], summary}`);
/// [`to_health_json`](Self::to_health_json) gives the `application/health+json` document.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HealthReport {
    /// Unhealthy when a critical check fails; degraded when another check is not healthy.
    pub status: CheckStatus,
    /// When the report was assembled.
    pub timestamp: DateTime<Utc>,
    /// Time since the checker started (seconds on the wire).
    #[serde(serialize_with = "as_secs")]
    pub uptime: Duration,
    /// The service version.
    pub version: String,
    /// The release (build, commit) id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    /// Every selected check.
    pub checks: Vec<CheckReport>,
    /// Counts.
    pub summary: Summary,
}

fn as_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn as_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The overall status of a set of check results: unhealthy when a critical check is unhealthy,
/// degraded when any check is not healthy, else healthy.
#[must_use]
pub fn aggregate<'a>(checks: impl IntoIterator<Item = (CheckStatus, bool)> + 'a) -> CheckStatus {
    let mut overall = CheckStatus::Healthy;
    for (status, critical) in checks {
        let effect = match (status, critical) {
            (CheckStatus::Healthy, _) => CheckStatus::Healthy,
            (CheckStatus::Unhealthy, true) => CheckStatus::Unhealthy,
            (CheckStatus::Degraded | CheckStatus::Unhealthy, _) => CheckStatus::Degraded,
        };
        overall = overall.max(effect);
    }
    overall
}

impl HealthReport {
    /// Aggregates `checks` into a report (see [`aggregate`]).
    #[must_use]
    pub fn new(
        checks: Vec<CheckReport>,
        uptime: Duration,
        version: String,
        release_id: Option<String>,
    ) -> Self {
        let mut summary = Summary {
            total: checks.len(),
            ..Summary::default()
        };
        for c in &checks {
            match c.status {
                CheckStatus::Healthy => summary.healthy += 1,
                CheckStatus::Degraded => summary.degraded += 1,
                CheckStatus::Unhealthy => {
                    summary.unhealthy += 1;
                    if c.critical {
                        summary.critical += 1;
                    }
                }
            }
        }
        let status = aggregate(checks.iter().map(|c| (c.status, c.critical)));
        Self {
            status,
            timestamp: Utc::now(),
            uptime,
            version,
            release_id,
            checks,
            summary,
        }
    }

    /// The HTTP status a probe should answer: 200 for pass and warn, 503 for fail.
    #[must_use]
    pub const fn http_status(&self) -> u16 {
        match self.status {
            CheckStatus::Healthy | CheckStatus::Degraded => 200,
            CheckStatus::Unhealthy => 503,
        }
    }

    /// The `application/health+json` document (draft-inadarei-api-health-check): `status`
    /// pass/warn/fail, `version`, `releaseId`, `output` when not passing, `checks` keyed
    /// `component:measurement` with arrays of `{componentId, componentType, observedValue,
    /// observedUnit, status, time, output}`, plus `uptime` (seconds) and `summary`.
    #[must_use]
    pub fn to_health_json(&self) -> Value {
        let mut checks: Map<String, Value> = Map::new();
        for c in &self.checks {
            let mut item = Map::new();
            item.insert("componentId".into(), c.name.clone().into());
            item.insert("componentType".into(), c.component_type.clone().into());
            if let Some(v) = &c.observed_value {
                item.insert("observedValue".into(), v.clone());
            }
            if let Some(u) = &c.observed_unit {
                item.insert("observedUnit".into(), u.clone().into());
            }
            item.insert("status".into(), c.status.as_health_json().into());
            item.insert(
                "time".into(),
                c.time.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
            );
            if let Some(o) = &c.output {
                item.insert("output".into(), o.clone().into());
            }
            let slot = checks
                .entry(c.key.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = slot {
                items.push(Value::Object(item));
            }
        }
        let mut doc = Map::new();
        doc.insert("status".into(), self.status.as_health_json().into());
        doc.insert("version".into(), self.version.clone().into());
        if let Some(r) = &self.release_id {
            doc.insert("releaseId".into(), r.clone().into());
        }
        if self.status != CheckStatus::Healthy {
            let failing: Vec<String> = self
                .checks
                .iter()
                .filter(|c| c.status != CheckStatus::Healthy)
                .map(|c| {
                    format!(
                        "{}: {}",
                        c.name,
                        c.error.as_deref().unwrap_or("not healthy")
                    )
                })
                .collect();
            doc.insert("output".into(), failing.join("; ").into());
        }
        doc.insert("checks".into(), Value::Object(checks));
        doc.insert("uptime".into(), json!(self.uptime.as_secs_f64()));
        doc.insert("summary".into(), json!(self.summary));
        Value::Object(doc)
    }

    /// [`to_health_json`](Self::to_health_json) as bytes, ready to send.
    #[must_use]
    pub fn render_health_json(&self) -> Vec<u8> {
        // Serializing a `Value` into memory cannot fail.
        serde_json::to_vec(&self.to_health_json()).unwrap_or_default()
    }

    /// A human list in the style of Kubernetes' `?verbose`: one `[+]` (healthy), `[~]` (degraded)
    /// or `[-]` (unhealthy) line per check, then `<label> check passed` or `failed`.
    #[must_use]
    pub fn render_verbose(&self, label: &str) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let (mark, word) = match c.status {
                CheckStatus::Healthy => ("+", "ok"),
                CheckStatus::Degraded => ("~", "degraded"),
                CheckStatus::Unhealthy => ("-", "failed"),
            };
            // Writing to a String cannot fail.
            let _ = write!(out, "[{mark}]{} {word}", c.name);
            if let Some(e) = &c.error {
                let _ = write!(out, ": {e}");
            }
            out.push('\n');
        }
        let verdict = if self.http_status() == 200 {
            "passed"
        } else {
            "failed"
        };
        let _ = writeln!(out, "{label} check {verdict}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, status: CheckStatus, critical: bool) -> CheckReport {
        CheckReport {
            name: name.into(),
            key: format!("{name}:status"),
            component_type: "component".into(),
            status,
            critical,
            groups: vec!["ready".into()],
            output: (status != CheckStatus::Healthy).then(|| "broken".to_owned()),
            observed_value: None,
            observed_unit: None,
            details: Map::new(),
            duration: Duration::from_millis(3),
            time: Utc::now(),
            error: (status != CheckStatus::Healthy).then(|| "broken".to_owned()),
        }
    }

    #[test]
    fn aggregation_and_summary() {
        use CheckStatus::*;
        let r = |v: Vec<CheckReport>| HealthReport::new(v, Duration::ZERO, "1".into(), None);
        assert_eq!(r(vec![]).status, Healthy);
        assert_eq!(
            r(vec![
                check("a", Healthy, true),
                check("b", Unhealthy, false)
            ])
            .status,
            Degraded
        );
        assert_eq!(r(vec![check("a", Degraded, true)]).status, Degraded);
        let bad = r(vec![
            check("a", Unhealthy, true),
            check("b", Degraded, false),
            check("c", Healthy, false),
        ]);
        assert_eq!(bad.status, Unhealthy);
        assert_eq!(bad.http_status(), 503);
        assert_eq!(
            bad.summary,
            Summary {
                total: 3,
                healthy: 1,
                degraded: 1,
                unhealthy: 1,
                critical: 1
            }
        );
        let seed = serde_json::to_value(&bad).unwrap();
        assert_eq!(seed["status"], "unhealthy");
        assert_eq!(seed["checks"][0]["duration"], 3.0);
        assert_eq!(seed["checks"][0]["error"], "broken");
        let text = bad.render_verbose("ready");
        assert_eq!(text.lines().next(), Some("[-]a failed: broken"));
        assert!(text.ends_with("ready check failed\n"));
    }
}
