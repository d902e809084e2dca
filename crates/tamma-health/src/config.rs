//! The `monitoring.healthChecks` config section.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use tamma_core::{DurationMs, Problem, Validate, join_path};

use crate::checker::{LIVE, READY};

/// The `monitoring.healthChecks` section: the health endpoints and the configured checks.
///
/// The defaults are the seed's (`enabled`, `/health`, every 30 s, 5 s timeout, no extra checks).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HealthChecksConfig {
    /// Serve the health endpoints and run the checks. When false the full report and readiness endpoints
    /// answer 404; liveness still answers `ok`.
    #[schemars(extend("x-tamma-restart" = true))]
    pub enabled: bool,
    /// Path of the full report in the `application/health+json` format.
    #[schemars(extend("x-tamma-restart" = true))]
    pub endpoint: String,
    /// Path of the liveness probe (Kubernetes `livenessProbe`): the `live` group only.
    #[schemars(extend("x-tamma-restart" = true))]
    pub live_endpoint: String,
    /// Path of the readiness probe (Kubernetes `readinessProbe`): the `ready` group.
    #[schemars(extend("x-tamma-restart" = true))]
    pub ready_endpoint: String,
    /// Default time between two runs of a check (milliseconds, or a string such as `"30s"`).
    #[schemars(extend("x-tamma-restart" = true))]
    pub interval: DurationMs,
    /// Default time a check may take before it counts as unhealthy; must be less than `interval`.
    #[schemars(extend("x-tamma-restart" = true))]
    pub timeout: DurationMs,
    /// Least time between two forced runs (`?fresh=true`); a forced request inside this window is
    /// served from the cache.
    #[schemars(extend("x-tamma-restart" = true))]
    pub fresh_min_interval: DurationMs,
    /// Add the built-in `memory`, `cpu` and `disk` (of the data directory) checks, each unless a check
    /// of that type is configured in `checks`.
    #[schemars(extend("x-tamma-restart" = true))]
    pub system_checks: bool,
    /// Configured checks, in addition to the ones the runtime registers in code.
    #[schemars(extend("x-tamma-restart" = true))]
    pub checks: Vec<CheckDefinition>,
}

impl Default for HealthChecksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: "/health".to_owned(),
            live_endpoint: "/health/live".to_owned(),
            ready_endpoint: "/health/ready".to_owned(),
            interval: DurationMs::from_millis(30_000),
            timeout: DurationMs::from_millis(5_000),
            fresh_min_interval: DurationMs::from_millis(1_000),
            system_checks: true,
            checks: Vec::new(),
        }
    }
}

/// Warn and fail levels for a check's observed value (higher is worse: percent used, milliseconds).
///
/// A level only ever makes a result worse: a check that already failed stays failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Thresholds {
    /// At or above this value the check is degraded (`warn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warn: Option<f64>,
    /// At or above this value the check is unhealthy (`fail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail: Option<f64>,
}

impl Thresholds {
    /// Both levels.
    #[must_use]
    pub const fn new(warn: f64, fail: f64) -> Self {
        Self {
            warn: Some(warn),
            fail: Some(fail),
        }
    }

    /// Pushes a problem when `warn` exceeds `fail` or a level is not a finite number.
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        for (key, level) in [("warn", self.warn), ("fail", self.fail)] {
            if level.is_some_and(|v| !v.is_finite()) {
                out.push(Problem::new(
                    join_path(path, key),
                    "must be a finite number",
                ));
            }
        }
        if let (Some(warn), Some(fail)) = (self.warn, self.fail)
            && warn > fail
        {
            out.push(Problem::new(
                join_path(path, "warn"),
                format!("must not exceed fail ({warn} > {fail})"),
            ));
        }
    }
}

/// One configured check: `{name, type, config, timeout, interval, critical, groups, thresholds}`.
///
/// `type` and `config` are read together into [`CheckKind`]; `timeout` and `interval` default to the
/// section's values, `groups` to `["ready"]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawDefinition", into = "RawDefinition")]
pub struct CheckDefinition {
    /// Unique name; `component:measurement` names are used as-is as health+json keys.
    pub name: String,
    /// What to check, with its typed settings.
    pub kind: CheckKind,
    /// Time the check may take (default: the section's `timeout`).
    pub timeout: Option<DurationMs>,
    /// Time between runs (default: the section's `interval`).
    pub interval: Option<DurationMs>,
    /// A failure of a critical check makes the whole service unhealthy; others only degrade it.
    /// Unset: critical for `memory` and `disk` (as the built-in checks they replace are), not for the
    /// other types ([`is_critical`](Self::is_critical)).
    pub critical: Option<bool>,
    /// Groups the check belongs to: `ready` (the default), `live` (only for checks of the process
    /// itself), or any custom name.
    pub groups: Vec<String>,
    /// Warn and fail levels for the observed value (default: per type, see [`CheckKind`]).
    pub thresholds: Option<Thresholds>,
}

/// What a configured check checks. In a config file: `"type": "http", "config": {...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub enum CheckKind {
    /// An HTTP request; observed value: response time in ms.
    Http(HttpCheckConfig),
    /// A TCP connect; observed value: connect time in ms.
    Tcp(TcpCheckConfig),
    /// The event store's database, through the pool the store already has (registered in code).
    Database(DatabaseCheckConfig),
    /// A check registered in code under a name.
    Custom(CustomCheckConfig),
    /// Memory used against the cgroup limit, else the machine; percent (default warn 80, fail 90).
    Memory(MemoryCheckConfig),
    /// CPU used against the cgroup quota, else all cores; percent (default warn 80, fail 95).
    Cpu(CpuCheckConfig),
    /// Space used on the filesystem of a directory; percent (default warn 85, fail 95).
    Disk(DiskCheckConfig),
}

impl CheckKind {
    /// The `type` name as written in config.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Tcp(_) => "tcp",
            Self::Database(_) => "database",
            Self::Custom(_) => "custom",
            Self::Memory(_) => "memory",
            Self::Cpu(_) => "cpu",
            Self::Disk(_) => "disk",
        }
    }

    /// The thresholds used when a definition sets none.
    #[must_use]
    pub const fn default_thresholds(&self) -> Option<Thresholds> {
        match self {
            Self::Memory(_) => Some(Thresholds::new(80.0, 90.0)),
            Self::Cpu(_) => Some(Thresholds::new(80.0, 95.0)),
            Self::Disk(_) => Some(Thresholds::new(85.0, 95.0)),
            Self::Http(_) | Self::Tcp(_) | Self::Database(_) | Self::Custom(_) => None,
        }
    }

    /// Whether a check of this type may sit in the `live` group: only checks of the process itself
    /// (custom checks registered in code); never an external dependency or a resource threshold, which
    /// would restart-loop a pod.
    #[must_use]
    pub const fn allowed_in_live(&self) -> bool {
        matches!(self, Self::Custom(_))
    }
}

/// `http` check settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCheckConfig {
    /// The URL to request (`http://` or `https://`).
    pub url: String,
    /// The request method.
    #[serde(default)]
    pub method: HttpMethod,
    /// The status codes that count as healthy (default 200–299).
    #[serde(default)]
    pub expect_status: StatusRange,
    /// Text the response body must contain (the first 64 KiB are searched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

/// The method of an `http` check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET`.
    #[default]
    Get,
    /// `HEAD`.
    Head,
    /// `POST` with an empty body.
    Post,
}

/// An inclusive range of HTTP status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusRange {
    /// Lowest accepted status.
    pub min: u16,
    /// Highest accepted status.
    pub max: u16,
}

impl Default for StatusRange {
    fn default() -> Self {
        Self { min: 200, max: 299 }
    }
}

impl StatusRange {
    /// Whether `status` lies in the range.
    #[must_use]
    pub const fn contains(&self, status: u16) -> bool {
        self.min <= status && status <= self.max
    }
}

/// `tcp` check settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpCheckConfig {
    /// `host:port` to connect to.
    pub address: String,
}

/// `database` check settings: which store's pool to ping (the runtime registers one check per store).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DatabaseCheckConfig {
    /// The store whose pool is used.
    pub store: String,
}

impl Default for DatabaseCheckConfig {
    fn default() -> Self {
        Self {
            store: "events".to_owned(),
        }
    }
}

/// `custom` check settings: the check is code, registered under a name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CustomCheckConfig {
    /// The name the check was registered under in code (default: this definition's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered: Option<String>,
}

/// `memory` check settings (none besides the thresholds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MemoryCheckConfig {}

/// `cpu` check settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CpuCheckConfig {
    /// Sampling window of the first run; later runs average over the time since the previous run.
    /// Must be less than the check's timeout.
    pub window: DurationMs,
}

impl Default for CpuCheckConfig {
    fn default() -> Self {
        Self {
            window: DurationMs::from_millis(250),
        }
    }
}

/// `disk` check settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DiskCheckConfig {
    /// A directory on the filesystem to measure (default: the data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// The wire form of a [`CheckDefinition`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDefinition {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout: Option<DurationMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval: Option<DurationMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    critical: Option<bool>,
    #[serde(default = "default_groups")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thresholds: Option<Thresholds>,
}

fn default_groups() -> Vec<String> {
    vec![READY.to_owned()]
}

impl TryFrom<RawDefinition> for CheckDefinition {
    type Error = String;

    fn try_from(raw: RawDefinition) -> Result<Self, String> {
        let tagged = serde_json::json!({
            "type": raw.kind,
            "config": raw.config.unwrap_or_else(|| serde_json::json!({})),
        });
        let kind: CheckKind = serde_json::from_value(tagged)
            .map_err(|e| format!("check `{}` (type {}): {e}", raw.name, raw.kind))?;
        Ok(Self {
            name: raw.name,
            kind,
            timeout: raw.timeout,
            interval: raw.interval,
            critical: raw.critical,
            groups: raw.groups,
            thresholds: raw.thresholds,
        })
    }
}

impl From<CheckDefinition> for RawDefinition {
    fn from(def: CheckDefinition) -> Self {
        let kind = def.kind.type_name().to_owned();
        // Serializing a plain data enum into a `Value` cannot fail (no maps with non-string keys).
        let mut tagged = serde_json::to_value(&def.kind).unwrap_or_default();
        let config = tagged.get_mut("config").map(serde_json::Value::take);
        Self {
            name: def.name,
            kind,
            config,
            timeout: def.timeout,
            interval: def.interval,
            critical: def.critical,
            groups: def.groups,
            thresholds: def.thresholds,
        }
    }
}

impl CheckDefinition {
    /// A definition in the `ready` group, critical as its type is by default, with the section's
    /// timeout and interval.
    pub fn new(name: impl Into<String>, kind: CheckKind) -> Self {
        Self {
            name: name.into(),
            kind,
            timeout: None,
            interval: None,
            critical: None,
            groups: default_groups(),
            thresholds: None,
        }
    }

    /// Whether the check is critical: as configured, else for `memory` and `disk` only (a memory or
    /// disk check configured to change its levels stays critical like the built-in one it replaces).
    #[must_use]
    pub fn is_critical(&self) -> bool {
        self.critical.unwrap_or(matches!(
            self.kind,
            CheckKind::Memory(_) | CheckKind::Disk(_)
        ))
    }

    /// The thresholds in force: the definition's, else the type's defaults.
    #[must_use]
    pub fn effective_thresholds(&self) -> Option<Thresholds> {
        self.thresholds.or_else(|| self.kind.default_thresholds())
    }
}

impl JsonSchema for CheckDefinition {
    fn schema_name() -> Cow<'static, str> {
        "CheckDefinition".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let duration = generator.subschema_for::<DurationMs>();
        let thresholds = generator.subschema_for::<Thresholds>();
        let variants = [
            ("http", generator.subschema_for::<HttpCheckConfig>(), true),
            ("tcp", generator.subschema_for::<TcpCheckConfig>(), true),
            (
                "database",
                generator.subschema_for::<DatabaseCheckConfig>(),
                false,
            ),
            (
                "custom",
                generator.subschema_for::<CustomCheckConfig>(),
                false,
            ),
            (
                "memory",
                generator.subschema_for::<MemoryCheckConfig>(),
                false,
            ),
            ("cpu", generator.subschema_for::<CpuCheckConfig>(), false),
            ("disk", generator.subschema_for::<DiskCheckConfig>(), false),
        ];
        let one_of: Vec<Schema> = variants
            .into_iter()
            .map(|(name, config, config_required)| {
                let required = if config_required {
                    serde_json::json!(["name", "type", "config"])
                } else {
                    serde_json::json!(["name", "type"])
                };
                json_schema!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": required,
                    "properties": {
                        "name": {
                            "type": "string",
                            "description": "Unique name; `component:measurement` names are used as-is as health+json keys."
                        },
                        "type": { "const": name, "description": "What to check." },
                        "config": config,
                        "timeout": duration.clone(),
                        "interval": duration.clone(),
                        "critical": {
                            "type": "boolean",
                            "description": "A failure of a critical check makes the service unhealthy; others only degrade it. Default: true for memory and disk (as the built-in checks they replace), false for the other types."
                        },
                        "groups": {
                            "type": "array",
                            "items": { "type": "string" },
                            "default": ["ready"],
                            "description": "Groups: `ready` (default), `live` (process-only checks), or custom names."
                        },
                        "thresholds": thresholds.clone()
                    }
                })
            })
            .collect();
        json_schema!({
            "description": "One configured health check: {name, type, config, timeout, interval, critical, groups, thresholds}.",
            "oneOf": one_of
        })
    }
}

impl Validate for HealthChecksConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if self.interval.is_zero() {
            out.push(Problem::new(
                join_path(path, "interval"),
                "must be greater than 0",
            ));
        }
        if self.timeout.is_zero() {
            out.push(Problem::new(
                join_path(path, "timeout"),
                "must be greater than 0",
            ));
        }
        if self.timeout >= self.interval {
            out.push(Problem::new(
                join_path(path, "timeout"),
                format!(
                    "must be less than interval ({} ≥ {})",
                    self.timeout, self.interval
                ),
            ));
        }
        let mut paths = HashSet::new();
        for (key, value) in [
            ("endpoint", &self.endpoint),
            ("liveEndpoint", &self.live_endpoint),
            ("readyEndpoint", &self.ready_endpoint),
        ] {
            if !value.starts_with('/') {
                out.push(Problem::new(
                    join_path(path, key),
                    format!("must start with `/` (got {value:?})"),
                ));
            } else if !paths.insert(value.as_str()) {
                out.push(Problem::new(
                    join_path(path, key),
                    format!("{value:?} is already used by another health endpoint"),
                ));
            }
        }
        let checks_path = join_path(path, "checks");
        let mut names = HashSet::new();
        for (i, def) in self.checks.iter().enumerate() {
            let at = format!("{checks_path}[{i}]");
            if def.name.trim().is_empty() {
                out.push(Problem::new(join_path(&at, "name"), "must not be empty"));
            } else if !names.insert(def.name.as_str()) {
                out.push(Problem::new(
                    join_path(&at, "name"),
                    format!("{:?} is already the name of another check", def.name),
                ));
            }
            def.validate_within(self, &at, out);
        }
    }
}

impl CheckDefinition {
    /// Cross-field rules of one definition, with the section's defaults in force.
    fn validate_within(&self, section: &HealthChecksConfig, at: &str, out: &mut Vec<Problem>) {
        let timeout = self.timeout.unwrap_or(section.timeout);
        let interval = self.interval.unwrap_or(section.interval);
        if self.interval.is_some_and(DurationMs::is_zero) {
            out.push(Problem::new(
                join_path(at, "interval"),
                "must be greater than 0",
            ));
        }
        if self.timeout.is_some_and(DurationMs::is_zero) {
            out.push(Problem::new(
                join_path(at, "timeout"),
                "must be greater than 0",
            ));
        }
        if timeout >= interval && (self.timeout.is_some() || self.interval.is_some()) {
            out.push(Problem::new(
                join_path(at, "timeout"),
                format!("must be less than interval ({timeout} ≥ {interval})"),
            ));
        }
        if let Some(t) = &self.thresholds {
            t.validate(&join_path(at, "thresholds"), out);
        }
        for (j, group) in self.groups.iter().enumerate() {
            if group.trim().is_empty() {
                out.push(Problem::new(
                    format!("{}[{j}]", join_path(at, "groups")),
                    "must not be empty",
                ));
            }
        }
        if self.groups.iter().any(|g| g == LIVE) && !self.kind.allowed_in_live() {
            out.push(Problem::new(
                join_path(at, "groups"),
                format!(
                    "a `{}` check must not be in the `live` group: liveness checks only the process \
                     itself, never a dependency or a resource threshold (use `ready`)",
                    self.kind.type_name()
                ),
            ));
        }
        let config = join_path(at, "config");
        match &self.kind {
            CheckKind::Http(http) => {
                let url_ok = reqwest::Url::parse(&http.url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                if !url_ok {
                    out.push(Problem::new(
                        join_path(&config, "url"),
                        format!("must be an http:// or https:// URL (got {:?})", http.url),
                    ));
                }
                let range = http.expect_status;
                if !(100..=599).contains(&range.min) || !(100..=599).contains(&range.max) {
                    out.push(Problem::new(
                        join_path(&config, "expectStatus"),
                        format!("must lie within 100–599 (got {}–{})", range.min, range.max),
                    ));
                } else if range.min > range.max {
                    out.push(Problem::new(
                        join_path(&join_path(&config, "expectStatus"), "min"),
                        format!("must not exceed max ({} > {})", range.min, range.max),
                    ));
                }
            }
            CheckKind::Tcp(tcp) => {
                let port_ok = tcp
                    .address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_ok {
                    out.push(Problem::new(
                        join_path(&config, "address"),
                        format!("must be host:port (got {:?})", tcp.address),
                    ));
                }
            }
            CheckKind::Cpu(cpu) => {
                if cpu.window >= timeout {
                    out.push(Problem::new(
                        join_path(&config, "window"),
                        format!(
                            "must be less than the check's timeout ({} ≥ {timeout})",
                            cpu.window
                        ),
                    ));
                }
            }
            CheckKind::Database(db) => {
                if db.store.trim().is_empty() {
                    out.push(Problem::new(
                        join_path(&config, "store"),
                        "must not be empty",
                    ));
                }
            }
            CheckKind::Custom(_) | CheckKind::Memory(_) | CheckKind::Disk(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(cfg: &HealthChecksConfig) -> Vec<String> {
        let mut out = Vec::new();
        cfg.validate("monitoring.healthChecks", &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_the_seeds_and_valid() {
        let cfg = HealthChecksConfig::default();
        assert!(cfg.enabled);
        assert_eq!(cfg.endpoint, "/health");
        assert_eq!(cfg.interval.as_millis(), 30_000);
        assert_eq!(cfg.timeout.as_millis(), 5_000);
        assert!(cfg.checks.is_empty());
        assert!(problems(&cfg).is_empty());
        let from_empty: HealthChecksConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(from_empty, cfg);
    }

    #[test]
    fn timeout_must_be_less_than_interval() {
        let cfg = HealthChecksConfig {
            timeout: DurationMs::from_secs(5),
            interval: DurationMs::from_secs(3),
            ..HealthChecksConfig::default()
        };
        assert_eq!(
            problems(&cfg),
            ["monitoring.healthChecks.timeout: must be less than interval (5s ≥ 3s)"]
        );
    }

    #[test]
    fn typed_definitions_round_trip() {
        let json = serde_json::json!({
            "checks": [
                {"name": "api", "type": "http", "config": {"url": "http://127.0.0.1:1/x",
                 "expectStatus": {"min": 200, "max": 204}, "bodyContains": "ok"},
                 "timeout": "2s", "interval": 10000, "critical": true},
                {"name": "nats", "type": "tcp", "config": {"address": "127.0.0.1:4222"}},
                {"name": "mem", "type": "memory", "thresholds": {"warn": 70, "fail": 85}},
                {"name": "data", "type": "disk", "config": {"path": "/var/lib/tamma"}, "groups": ["ready", "storage"]},
                {"name": "db", "type": "database"},
                {"name": "writer", "type": "custom", "groups": ["live"]}
            ]
        });
        let cfg: HealthChecksConfig = serde_json::from_value(json).unwrap();
        assert!(problems(&cfg).is_empty(), "{:?}", problems(&cfg));
        let CheckKind::Http(http) = &cfg.checks[0].kind else {
            panic!("not http")
        };
        assert_eq!(http.expect_status, StatusRange { min: 200, max: 204 });
        assert_eq!(cfg.checks[0].timeout, Some(DurationMs::from_secs(2)));
        assert_eq!(cfg.checks[0].critical, Some(true));
        assert_eq!(cfg.checks[1].groups, ["ready"]);
        assert_eq!(
            cfg.checks[2].effective_thresholds(),
            Some(Thresholds::new(70.0, 85.0))
        );
        assert_eq!(
            cfg.checks[4].kind,
            CheckKind::Database(DatabaseCheckConfig::default())
        );
        let back: HealthChecksConfig =
            serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let err = serde_json::from_value::<HealthChecksConfig>(serde_json::json!({
            "checks": [{"name": "api", "type": "http", "config": {"uri": "x"}}]
        }))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("check `api` (type http)") && err.contains("uri"),
            "{err}"
        );
        let err = serde_json::from_value::<HealthChecksConfig>(serde_json::json!({
            "checks": [{"name": "x", "type": "smoke"}]
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("smoke"), "{err}");
        assert!(
            serde_json::from_value::<HealthChecksConfig>(serde_json::json!({
                "checks": [{"name": "x", "type": "memory", "critical": true, "oops": 1}]
            }))
            .is_err()
        );
    }

    #[test]
    fn cross_field_rules() {
        let json = serde_json::json!({
            "checks": [
                {"name": "api", "type": "http", "config": {"url": "ftp://x", "expectStatus": {"min": 300, "max": 200}},
                 "timeout": 5000, "interval": 3000},
                {"name": "api", "type": "tcp", "config": {"address": "nohost"}, "groups": ["live"]},
                {"name": "m", "type": "memory", "thresholds": {"warn": 95, "fail": 90}}
            ]
        });
        let cfg: HealthChecksConfig = serde_json::from_value(json).unwrap();
        let p = problems(&cfg);
        let expect = [
            "monitoring.healthChecks.checks[0].timeout: must be less than interval (5s ≥ 3s)",
            "monitoring.healthChecks.checks[0].config.url: must be an http:// or https:// URL (got \"ftp://x\")",
            "monitoring.healthChecks.checks[0].config.expectStatus.min: must not exceed max (300 > 200)",
            "monitoring.healthChecks.checks[1].name: \"api\" is already the name of another check",
            "monitoring.healthChecks.checks[1].config.address: must be host:port (got \"nohost\")",
            "monitoring.healthChecks.checks[2].thresholds.warn: must not exceed fail (95 > 90)",
        ];
        for e in expect {
            assert!(p.iter().any(|x| x == e), "missing {e} in {p:#?}");
        }
        assert!(
            p.iter()
                .any(|x| x.starts_with("monitoring.healthChecks.checks[1].groups: a `tcp` check"))
        );
        assert_eq!(p.len(), expect.len() + 1, "{p:#?}");
    }

    #[test]
    fn schema_describes_typed_definitions() {
        let schema = serde_json::to_value(schemars::schema_for!(HealthChecksConfig)).unwrap();
        let text = schema.to_string();
        assert!(text.contains("x-tamma-restart"));
        let def = &schema["$defs"]["CheckDefinition"]["oneOf"];
        assert_eq!(def.as_array().unwrap().len(), 7);
        assert_eq!(def[0]["properties"]["type"]["const"], "http");
        assert!(
            schema["properties"]["interval"]["description"]
                .as_str()
                .is_some()
        );
    }
}
