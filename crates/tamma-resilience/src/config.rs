//! The `resilience` section of the root config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tamma_core::{DurationMs, Problem, Secret, Validate, join_path};

use crate::class::Severity;

/// The `resilience` section: default retry policy and circuit-breaker settings, per-operation
/// overrides, and escalation. (The seed has no defaults for it; each part's `Default` documents its
/// own.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// The retry policy of every operation that has no override.
    #[schemars(extend("x-tamma-restart" = true))]
    pub retry: RetryConfig,
    /// The circuit-breaker settings of every operation that has no override.
    #[schemars(extend("x-tamma-restart" = true))]
    pub breaker: BreakerConfig,
    /// Overrides by operation name `component.operation` (e.g. `"forwarder.ship"`); only the keys
    /// given replace the defaults above.
    #[schemars(extend("x-tamma-restart" = true))]
    pub operations: BTreeMap<String, OperationConfig>,
    /// Where escalations (high/critical errors, breakers opening) are delivered.
    #[schemars(extend("x-tamma-restart" = true))]
    pub escalation: EscalationConfig,
}

impl ResilienceConfig {
    /// The retry policy of `operation` (`component.operation`): the default with its override applied.
    #[must_use]
    pub fn retry_for(&self, operation: &str) -> RetryConfig {
        match self.operations.get(operation) {
            Some(o) => o.retry.apply(&self.retry),
            None => self.retry.clone(),
        }
    }

    /// The breaker settings of `operation` (`component.operation`): the default with its override
    /// applied.
    #[must_use]
    pub fn breaker_for(&self, operation: &str) -> BreakerConfig {
        match self.operations.get(operation) {
            Some(o) => o.breaker.apply(&self.breaker),
            None => self.breaker.clone(),
        }
    }
}

/// A retry policy: exponential backoff with full jitter.
///
/// The n-th retry (n = 0, 1, …) waits a random time in `[0, min(maxDelay, initialDelay ×
/// multiplier^n)]` (full jitter; without jitter, exactly the upper bound). A server's `Retry-After`
/// replaces that wait. Retrying stops after `maxAttempts` attempts in all, or when the next wait would
/// end more than `maxElapsed` after the first failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first one included (`1` = never retry). Default 4: the seed's
    /// "retry up to 3 times".
    pub max_attempts: u32,
    /// Upper bound of the first retry's wait (milliseconds or `"1s"`). Default 1 s (the seed's
    /// retry delay).
    pub initial_delay: DurationMs,
    /// Cap on any single computed wait. Default 30 s.
    pub max_delay: DurationMs,
    /// Growth factor of the wait's upper bound per retry. Default 2.
    pub multiplier: f64,
    /// Time budget for retrying, counted from the first failure: no retry is started whose wait
    /// would end after it. `0` = no budget (only `maxAttempts` stops). Default 2 min, long enough to
    /// honour a rate limit's 60 s.
    pub max_elapsed: DurationMs,
    /// Full jitter on (`true`, the default) or off (deterministic waits; only for tests and
    /// single-client setups).
    pub jitter: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_delay: DurationMs::from_secs(1),
            max_delay: DurationMs::from_secs(30),
            multiplier: 2.0,
            max_elapsed: DurationMs::from_secs(120),
            jitter: true,
        }
    }
}

impl Validate for RetryConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if self.max_attempts == 0 {
            out.push(Problem::new(
                join_path(path, "maxAttempts"),
                "must be at least 1 (1 = never retry)",
            ));
        }
        if self.max_delay < self.initial_delay {
            out.push(Problem::new(
                join_path(path, "maxDelay"),
                format!(
                    "must be at least initialDelay ({} < {})",
                    self.max_delay, self.initial_delay
                ),
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            out.push(Problem::new(
                join_path(path, "multiplier"),
                format!("must be a number ≥ 1 (got {})", self.multiplier),
            ));
        }
    }
}

/// How a breaker's sliding window counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SlidingWindowType {
    /// The last `slidingWindowSize` calls.
    CountBased,
    /// The calls of the last `slidingWindowSize` seconds.
    TimeBased,
}

/// Circuit-breaker settings (resilience4j's names and meaning).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Whether breakers are used at all; when `false` every call goes through and nothing is recorded.
    pub enabled: bool,
    /// Open when at least this percentage (0 < x ≤ 100) of the calls in the window failed. Default 50.
    pub failure_rate_threshold: f64,
    /// Open when at least this percentage (0 < x ≤ 100) of the calls in the window were slow; absent
    /// = slow calls are not tracked (saves two clock reads per call). Default absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_rate_threshold: Option<f64>,
    /// A call that takes at least this long is slow. Default 60 s.
    pub slow_call_duration_threshold: DurationMs,
    /// Count-based (last N calls) or time-based (last N seconds). Default `countBased`.
    pub sliding_window_type: SlidingWindowType,
    /// N: calls (count-based) or seconds (time-based) in the window. Default 50.
    pub sliding_window_size: u32,
    /// No rate is computed before the window holds this many calls. Default 20.
    pub minimum_number_of_calls: u32,
    /// How long an open breaker rejects calls before it lets trial calls through. Default 30 s.
    pub wait_duration_in_open_state: DurationMs,
    /// Trial calls let through in half-open; their outcome decides closed or open again. Default 5.
    pub permitted_number_of_calls_in_half_open_state: u32,
    /// Longest stay in half-open (trial calls that never finish): after it the breaker opens again.
    /// Must be positive. Default 60 s.
    pub max_wait_duration_in_half_open_state: DurationMs,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: None,
            slow_call_duration_threshold: DurationMs::from_secs(60),
            sliding_window_type: SlidingWindowType::CountBased,
            sliding_window_size: 50,
            minimum_number_of_calls: 20,
            wait_duration_in_open_state: DurationMs::from_secs(30),
            permitted_number_of_calls_in_half_open_state: 5,
            max_wait_duration_in_half_open_state: DurationMs::from_secs(60),
        }
    }
}

fn percent_ok(x: f64) -> bool {
    x.is_finite() && x > 0.0 && x <= 100.0
}

/// Longest time-based window: one hour of one-second buckets.
pub(crate) const MAX_TIME_WINDOW_SECONDS: u32 = 3600;
/// Largest count-based window.
pub(crate) const MAX_COUNT_WINDOW: u32 = 1_000_000;

impl Validate for BreakerConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if !percent_ok(self.failure_rate_threshold) {
            out.push(Problem::new(
                join_path(path, "failureRateThreshold"),
                format!(
                    "must be a percentage in (0, 100] (got {})",
                    self.failure_rate_threshold
                ),
            ));
        }
        if let Some(t) = self.slow_call_rate_threshold
            && !percent_ok(t)
        {
            out.push(Problem::new(
                join_path(path, "slowCallRateThreshold"),
                format!("must be a percentage in (0, 100] (got {t})"),
            ));
        }
        let max = match self.sliding_window_type {
            SlidingWindowType::CountBased => MAX_COUNT_WINDOW,
            SlidingWindowType::TimeBased => MAX_TIME_WINDOW_SECONDS,
        };
        if self.sliding_window_size == 0 || self.sliding_window_size > max {
            out.push(Problem::new(
                join_path(path, "slidingWindowSize"),
                format!(
                    "must be between 1 and {max} (got {})",
                    self.sliding_window_size
                ),
            ));
        }
        if self.minimum_number_of_calls == 0 {
            out.push(Problem::new(
                join_path(path, "minimumNumberOfCalls"),
                "must be at least 1",
            ));
        }
        if self.sliding_window_type == SlidingWindowType::CountBased
            && self.minimum_number_of_calls > self.sliding_window_size
        {
            out.push(Problem::new(
                join_path(path, "minimumNumberOfCalls"),
                format!(
                    "must not exceed slidingWindowSize in a count-based window ({} > {}): the breaker could never open",
                    self.minimum_number_of_calls, self.sliding_window_size
                ),
            ));
        }
        if self.permitted_number_of_calls_in_half_open_state == 0 {
            out.push(Problem::new(
                join_path(path, "permittedNumberOfCallsInHalfOpenState"),
                "must be at least 1",
            ));
        }
        if self.wait_duration_in_open_state.is_zero() {
            out.push(Problem::new(
                join_path(path, "waitDurationInOpenState"),
                "must be positive",
            ));
        }
        if self.max_wait_duration_in_half_open_state.is_zero() {
            out.push(Problem::new(
                join_path(path, "maxWaitDurationInHalfOpenState"),
                "must be positive, so a breaker never sticks in half-open",
            ));
        }
        if self.slow_call_rate_threshold.is_some() && self.slow_call_duration_threshold.is_zero() {
            out.push(Problem::new(
                join_path(path, "slowCallDurationThreshold"),
                "must be positive when slowCallRateThreshold is set",
            ));
        }
    }
}

/// Overrides for one operation; every key is optional and replaces only itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OperationConfig {
    /// Retry keys that differ from `resilience.retry`.
    pub retry: RetryOverride,
    /// Breaker keys that differ from `resilience.breaker`.
    pub breaker: BreakerOverride,
}

/// Retry keys that differ from the default policy (see [`RetryConfig`] for each key's meaning).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
#[allow(missing_docs)] // Each field is documented on RetryConfig; the schema links there.
pub struct RetryOverride {
    /// See `resilience.retry.maxAttempts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// See `resilience.retry.initialDelay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<DurationMs>,
    /// See `resilience.retry.maxDelay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<DurationMs>,
    /// See `resilience.retry.multiplier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// See `resilience.retry.maxElapsed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_elapsed: Option<DurationMs>,
    /// See `resilience.retry.jitter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

impl RetryOverride {
    /// `base` with the keys given here replaced.
    #[must_use]
    pub fn apply(&self, base: &RetryConfig) -> RetryConfig {
        RetryConfig {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            initial_delay: self.initial_delay.unwrap_or(base.initial_delay),
            max_delay: self.max_delay.unwrap_or(base.max_delay),
            multiplier: self.multiplier.unwrap_or(base.multiplier),
            max_elapsed: self.max_elapsed.unwrap_or(base.max_elapsed),
            jitter: self.jitter.unwrap_or(base.jitter),
        }
    }
}

/// Breaker keys that differ from the default settings (see [`BreakerConfig`] for each key's meaning).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BreakerOverride {
    /// See `resilience.breaker.enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// See `resilience.breaker.failureRateThreshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate_threshold: Option<f64>,
    /// See `resilience.breaker.slowCallRateThreshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_rate_threshold: Option<f64>,
    /// See `resilience.breaker.slowCallDurationThreshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_call_duration_threshold: Option<DurationMs>,
    /// See `resilience.breaker.slidingWindowType`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliding_window_type: Option<SlidingWindowType>,
    /// See `resilience.breaker.slidingWindowSize`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliding_window_size: Option<u32>,
    /// See `resilience.breaker.minimumNumberOfCalls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_number_of_calls: Option<u32>,
    /// See `resilience.breaker.waitDurationInOpenState`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_duration_in_open_state: Option<DurationMs>,
    /// See `resilience.breaker.permittedNumberOfCallsInHalfOpenState`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permitted_number_of_calls_in_half_open_state: Option<u32>,
    /// See `resilience.breaker.maxWaitDurationInHalfOpenState`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait_duration_in_half_open_state: Option<DurationMs>,
}

impl BreakerOverride {
    /// `base` with the keys given here replaced.
    #[must_use]
    pub fn apply(&self, base: &BreakerConfig) -> BreakerConfig {
        BreakerConfig {
            enabled: self.enabled.unwrap_or(base.enabled),
            failure_rate_threshold: self
                .failure_rate_threshold
                .unwrap_or(base.failure_rate_threshold),
            slow_call_rate_threshold: self
                .slow_call_rate_threshold
                .or(base.slow_call_rate_threshold),
            slow_call_duration_threshold: self
                .slow_call_duration_threshold
                .unwrap_or(base.slow_call_duration_threshold),
            sliding_window_type: self.sliding_window_type.unwrap_or(base.sliding_window_type),
            sliding_window_size: self.sliding_window_size.unwrap_or(base.sliding_window_size),
            minimum_number_of_calls: self
                .minimum_number_of_calls
                .unwrap_or(base.minimum_number_of_calls),
            wait_duration_in_open_state: self
                .wait_duration_in_open_state
                .unwrap_or(base.wait_duration_in_open_state),
            permitted_number_of_calls_in_half_open_state: self
                .permitted_number_of_calls_in_half_open_state
                .unwrap_or(base.permitted_number_of_calls_in_half_open_state),
            max_wait_duration_in_half_open_state: self
                .max_wait_duration_in_half_open_state
                .unwrap_or(base.max_wait_duration_in_half_open_state),
        }
    }
}

/// Escalation delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// Whether escalations are delivered at all (the log notifier included). Default `true`.
    pub enabled: bool,
    /// Escalations below this severity are dropped. Default `high`.
    pub min_severity: Severity,
    /// Per key (e.g. a breaker's name), at most one delivery in this window; repeats inside it are
    /// counted and reported with the next delivery. `0` = no debouncing. Default 5 min.
    pub debounce_window: DurationMs,
    /// An HTTP webhook that receives each escalation as a JSON `POST`; absent = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_severity: Severity::High,
            debounce_window: DurationMs::from_secs(300),
            webhook: None,
        }
    }
}

/// An HTTP webhook for escalations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The URL (`http://` or `https://`) the escalation JSON is posted to.
    pub url: String,
    /// Extra request headers (e.g. `Authorization`); values are secrets, never printed.
    pub headers: BTreeMap<String, Secret>,
    /// Time limit of one delivery. Default 5 s.
    pub timeout: DurationMs,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            headers: BTreeMap::new(),
            timeout: DurationMs::from_secs(5),
        }
    }
}

impl Validate for WebhookConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(u) => out.push(Problem::new(
                join_path(path, "url"),
                format!("must be an http or https URL (got scheme {:?})", u.scheme()),
            )),
            Err(e) => out.push(Problem::new(
                join_path(path, "url"),
                format!("is not a valid URL ({e}): {:?}", self.url),
            )),
        }
        for (name, value) in &self.headers {
            let hpath = join_path(&join_path(path, "headers"), name);
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push(Problem::new(
                    hpath.clone(),
                    "is not a valid HTTP header name",
                ));
            }
            if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                out.push(Problem::new(
                    hpath,
                    "value is not a valid HTTP header value",
                ));
            }
        }
        if self.timeout.is_zero() {
            out.push(Problem::new(join_path(path, "timeout"), "must be positive"));
        }
    }
}

impl Validate for EscalationConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if let Some(w) = &self.webhook {
            w.validate(&join_path(path, "webhook"), out);
        }
    }
}

/// Whether `name` has the `component.operation` shape: two or more non-empty dot-separated parts of
/// letters, digits, `_` and `-`.
pub(crate) fn is_operation_name(name: &str) -> bool {
    let mut parts = 0;
    for part in name.split('.') {
        if part.is_empty()
            || !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return false;
        }
        parts += 1;
    }
    parts >= 2
}

impl Validate for ResilienceConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        self.retry.validate(&join_path(path, "retry"), out);
        self.breaker.validate(&join_path(path, "breaker"), out);
        let ops = join_path(path, "operations");
        for (name, op) in &self.operations {
            let op_path = join_path(&ops, name);
            if !is_operation_name(name) {
                out.push(Problem::new(
                    op_path.clone(),
                    "operation names are `component.operation` (letters, digits, `_`, `-`)",
                ));
            }
            // Validate the merged result, so a rule spanning a default and an override is checked.
            op.retry
                .apply(&self.retry)
                .validate(&join_path(&op_path, "retry"), out);
            op.breaker
                .apply(&self.breaker)
                .validate(&join_path(&op_path, "breaker"), out);
        }
        self.escalation
            .validate(&join_path(path, "escalation"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &ResilienceConfig) -> Vec<Problem> {
        let mut out = Vec::new();
        c.validate("resilience", &mut out);
        out
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = ResilienceConfig::default();
        assert!(problems(&c).is_empty(), "{:?}", problems(&c));
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["retry"]["initialDelay"], 1000);
        assert_eq!(j["breaker"]["slidingWindowType"], "countBased");
        let back: ResilienceConfig = serde_json::from_value(j).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn overrides_replace_only_given_keys() {
        let c: ResilienceConfig = serde_json::from_value(serde_json::json!({
            "retry": {"maxAttempts": 6},
            "operations": {"forwarder.ship": {"retry": {"initialDelay": "250ms"}, "breaker": {"failureRateThreshold": 25}}}
        }))
        .unwrap();
        let r = c.retry_for("forwarder.ship");
        assert_eq!(r.max_attempts, 6);
        assert_eq!(r.initial_delay.as_millis(), 250);
        assert!(
            (c.breaker_for("forwarder.ship").failure_rate_threshold - 25.0).abs() < f64::EPSILON
        );
        assert_eq!(c.retry_for("other.op").initial_delay.as_millis(), 1000);
    }

    #[test]
    fn validation_names_paths() {
        let c: ResilienceConfig = serde_json::from_value(serde_json::json!({
            "retry": {"initialDelay": "10s", "maxDelay": "1s"},
            "breaker": {"failureRateThreshold": 150, "maxWaitDurationInHalfOpenState": 0},
            "operations": {"nodot": {}, "events.append": {"retry": {"multiplier": 0.5}}},
            "escalation": {"webhook": {"url": "ftp://x", "headers": {"Bad Header": "v"}}}
        }))
        .unwrap();
        let paths: Vec<String> = problems(&c).into_iter().map(|p| p.path).collect();
        for want in [
            "resilience.retry.maxDelay",
            "resilience.breaker.failureRateThreshold",
            "resilience.breaker.maxWaitDurationInHalfOpenState",
            "resilience.operations.nodot",
            "resilience.operations.\"events.append\".retry.multiplier",
            "resilience.escalation.webhook.url",
            "resilience.escalation.webhook.headers.Bad Header",
        ] {
            assert!(
                paths.iter().any(|p| p == want),
                "missing {want} in {paths:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_value::<ResilienceConfig>(
            serde_json::json!({"retry": {"maxAttempt": 3}}),
        );
        assert!(e.unwrap_err().to_string().contains("maxAttempt"));
    }
}
