//! A small config schema shaped like tamma's, for the tests.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tamma_core::{ByteSize, DurationMs, Problem, Secret, Validate};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct Root {
    /// Mode.
    pub mode: Mode,
    /// Data directory.
    #[schemars(extend("x-tamma-restart" = true))]
    pub data_dir: String,
    /// Logging.
    pub logging: Logging,
    /// Monitoring.
    pub monitoring: Monitoring,
    /// Secrets.
    pub auth: Auth,
    /// Per-operation overrides.
    pub breakers: BTreeMap<String, Breaker>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// One node.
    Standalone,
    /// Orchestrator.
    Orchestrator,
    /// Worker.
    Worker,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct Logging {
    /// Level.
    pub level: String,
    /// Rotation.
    pub rotation: Rotation,
    /// Outputs.
    pub outputs: Vec<Output>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct Rotation {
    /// Max size.
    pub max_size: ByteSize,
    /// Max files.
    pub max_files: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub(crate) enum Output {
    /// Standard output.
    Stdout(Empty),
    /// A file.
    File(FileOut),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FileOut {
    /// Path.
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[derive(Default)]
pub(crate) struct Monitoring {
    /// Health checks.
    pub health_checks: HealthChecks,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct HealthChecks {
    /// Interval.
    pub interval: DurationMs,
    /// Timeout.
    pub timeout: DurationMs,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct Auth {
    /// JWT secret.
    pub jwt_secret: Secret,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct Breaker {
    /// Failure rate threshold in percent.
    pub failure_rate: u8,
}

impl Default for Root {
    fn default() -> Self {
        Self {
            mode: Mode::Standalone,
            data_dir: "./tamma-data".into(),
            logging: Logging::default(),
            monitoring: Monitoring::default(),
            auth: Auth::default(),
            breakers: BTreeMap::new(),
        }
    }
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            level: "info".into(),
            rotation: Rotation::default(),
            outputs: vec![Output::Stdout(Empty {})],
        }
    }
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_size: ByteSize::mb(100),
            max_files: 10,
        }
    }
}

impl Default for HealthChecks {
    fn default() -> Self {
        Self {
            interval: DurationMs::from_secs(30),
            timeout: DurationMs::from_secs(5),
        }
    }
}

impl Validate for Root {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        let hc = &self.monitoring.health_checks;
        if hc.timeout >= hc.interval {
            out.push(Problem::new(
                format!("{path}monitoring.healthChecks.timeout"),
                format!(
                    "must be less than interval ({} ≥ {})",
                    hc.timeout, hc.interval
                ),
            ));
        }
        if !["trace", "debug", "info", "warn", "error"].contains(&self.logging.level.as_str()) {
            out.push(Problem::new(
                "logging.level",
                format!("unknown level {:?}", self.logging.level),
            ));
        }
    }
}
