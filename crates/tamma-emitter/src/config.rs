//! The `emitter` config section: redaction, pending-work bounds, subscriptions, routes, spool, retention.
//!
//! Batching (`batchSize`, `flushInterval`), `retentionDays`, `maxEventSize` and the storage backend stay in
//! the `events` section ([`tamma_events::EventsConfig`]); this section holds what only the emitter uses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tamma_core::{DurationMs, Problem, Secret, Validate, join_path};
use tamma_events::Tags;

/// The `emitter` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EmitterConfig {
    /// Redaction applied to every event before it is stored or logged.
    pub redaction: RedactionConfig,
    /// Most events accepted and not yet stored (durable emits in flight plus fire-and-forget events
    /// queued or retrying). Producers beyond it wait (`emit`) or are refused (`emit_nowait`).
    #[schemars(extend("x-tamma-restart" = true))]
    pub max_pending: u32,
    /// Longest time `emit` waits for room among the pending events before it fails with `unavailable`.
    #[schemars(extend("x-tamma-restart" = true))]
    pub enqueue_timeout: DurationMs,
    /// Defaults of in-process subscriptions.
    #[schemars(extend("x-tamma-restart" = true))]
    pub subscriptions: SubscriptionDefaults,
    /// How often the lag of every subscription and route is measured (the
    /// `tamma_emitter_subscriber_lag` gauge).
    #[schemars(extend("x-tamma-restart" = true))]
    pub lag_interval: DurationMs,
    /// Routes: stored events delivered to external sinks, each from its own cursor persisted in the
    /// store's database.
    #[schemars(extend("x-tamma-restart" = true))]
    pub routes: Vec<RouteConfig>,
    /// The durable spool of a worker process and its forwarder (`Spool`, `Forwarder`); `tamma serve`
    /// does not open them yet, in any mode.
    #[schemars(extend("x-tamma-restart" = true))]
    pub spool: SpoolConfig,
    /// How often the retention job applies `events.retentionDays` (first run at start).
    #[schemars(extend("x-tamma-restart" = true))]
    pub retention_interval: DurationMs,
}

impl Default for EmitterConfig {
    fn default() -> Self {
        Self {
            redaction: RedactionConfig::default(),
            max_pending: 10_000,
            enqueue_timeout: DurationMs::from_secs(5),
            subscriptions: SubscriptionDefaults::default(),
            lag_interval: DurationMs::from_secs(1),
            routes: Vec::new(),
            spool: SpoolConfig::default(),
            // The seed runs its retention cleanup once a day.
            retention_interval: DurationMs::from_secs(24 * 60 * 60),
        }
    }
}

/// Redaction of event fields (the seed's `redaction {enabled, fields, patterns}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Whether redaction is applied at all.
    pub enabled: bool,
    /// Dotted paths whose value is replaced by `"[REDACTED]"` when present: `data.user.password`,
    /// `data.cards.*.number` (`*` is any key or array element), `metadata.userId`.
    pub fields: Vec<String>,
    /// Regex replacements inside string values under a path (`data` = every string of the payload).
    pub patterns: Vec<RedactionPattern>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            fields: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

/// One regex replacement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedactionPattern {
    /// The dotted path under which every string value is searched (`data`, `data.message`,
    /// `metadata.sessionId`).
    pub field: String,
    /// The regular expression (Rust `regex` syntax).
    #[serde(alias = "pattern")]
    pub regex: String,
    /// The replacement; `$1`, `${name}` refer to capture groups.
    pub replacement: String,
}

/// Defaults of in-process subscriptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SubscriptionDefaults {
    /// First wait before a failed handler is called again with the same event (doubling each time).
    pub retry_delay: DurationMs,
    /// Longest wait between two calls of a failing handler. The handler is retried until it succeeds:
    /// a subscriber never skips an event.
    pub max_retry_delay: DurationMs,
}

impl Default for SubscriptionDefaults {
    fn default() -> Self {
        Self {
            retry_delay: DurationMs::from_millis(100),
            max_retry_delay: DurationMs::from_secs(30),
        }
    }
}

/// Where a new route (one with no saved cursor) starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StartAt {
    /// With the events appended after the route first starts (the default).
    #[default]
    Latest,
    /// With the oldest stored event.
    Earliest,
}

/// A route: `{"type": "webhook" | "nats", "config": {…}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub enum RouteConfig {
    /// HTTP POST of event batches to a URL.
    Webhook(WebhookRouteConfig),
    /// Publish to NATS JetStream, one message per event.
    Nats(NatsRouteConfig),
}

impl RouteConfig {
    /// The route's name (also its cursor's name).
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Webhook(c) => &c.name,
            Self::Nats(c) => &c.name,
        }
    }

    /// The events the route takes.
    #[must_use]
    pub fn filter(&self) -> RouteFilter {
        let (type_pattern, tags, start_at) = match self {
            Self::Webhook(c) => (&c.type_pattern, &c.tags, c.start_at),
            Self::Nats(c) => (&c.type_pattern, &c.tags, c.start_at),
        };
        RouteFilter {
            type_pattern: type_pattern.clone(),
            tags: tags.clone(),
            start_at,
        }
    }

    /// Most events per delivery.
    #[must_use]
    pub fn batch_size(&self) -> u32 {
        match self {
            Self::Webhook(c) => c.batch_size,
            Self::Nats(c) => c.batch_size,
        }
    }
}

/// Which stored events a route takes (the `typePattern`, `tags` and `startAt` keys of its config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteFilter {
    /// A glob over the event type (`TASK.*`); `*` or absent = every type.
    pub type_pattern: Option<String>,
    /// Tags the events must all carry.
    pub tags: Tags,
    /// Where the route starts the first time (no saved cursor).
    pub start_at: StartAt,
}

/// An HTTP webhook route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookRouteConfig {
    /// The route's name: unique, letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The URL events are POSTed to as `{"events": [SequencedEvent…]}`.
    pub url: String,
    /// Extra request headers (e.g. `Authorization`); never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// A glob over the event type (`TASK.*`); absent = every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_pattern: Option<String>,
    /// Tags the events must all carry.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Where the route starts the first time (no saved cursor): `latest` (default) or `earliest`.
    #[serde(default)]
    pub start_at: StartAt,
    /// Most events per request.
    #[serde(default = "default_route_batch")]
    pub batch_size: u32,
    /// Timeout of one request.
    #[serde(default = "default_route_timeout")]
    pub timeout: DurationMs,
}

/// A NATS JetStream route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsRouteConfig {
    /// The route's name: unique, letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The NATS server (`nats://127.0.0.1:4222`).
    #[serde(default = "default_nats_url")]
    pub url: String,
    /// The subject; `{type}` is replaced by the event type (characters NATS forbids in a subject
    /// token become `_`). A JetStream stream must cover it.
    #[serde(default = "default_nats_subject")]
    pub subject: String,
    /// A glob over the event type (`TASK.*`); absent = every type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_pattern: Option<String>,
    /// Tags the events must all carry.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Where the route starts the first time (no saved cursor): `latest` (default) or `earliest`.
    #[serde(default)]
    pub start_at: StartAt,
    /// Most events published before waiting for their acknowledgements.
    #[serde(default = "default_route_batch")]
    pub batch_size: u32,
    /// Timeout of one publish acknowledgement.
    #[serde(default = "default_route_timeout")]
    pub timeout: DurationMs,
}

fn default_route_batch() -> u32 {
    100
}
fn default_route_timeout() -> DurationMs {
    DurationMs::from_secs(10)
}
fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}
fn default_nats_subject() -> String {
    "tamma.events.{type}".to_owned()
}

/// The durable spool of worker mode and its forwarder to the orchestrator's `/v1/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// The spool's SQLite file; default `<dataDir>/spool.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Most events per forwarded batch (one `POST /v1/events`).
    pub batch_size: u32,
    /// Timeout of one forward request.
    pub timeout: DurationMs,
    /// Extra request headers (e.g. `Authorization`); never logged.
    pub headers: BTreeMap<String, Secret>,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            path: None,
            batch_size: 500,
            timeout: DurationMs::from_secs(30),
            headers: BTreeMap::new(),
        }
    }
}

impl SpoolConfig {
    /// The spool file: `path`, or `spool.db` in `data_dir`.
    #[must_use]
    pub fn resolve_path(&self, data_dir: &std::path::Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("spool.db"))
    }
}

/// Whether `name` is a valid route name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a redaction path (`data…` or `metadata.<key>`); `None` when valid, else what is wrong.
pub(crate) fn path_problem(path: &str) -> Option<String> {
    let mut parts = path.split('.');
    match parts.next() {
        Some("data") => {
            if path.split('.').any(str::is_empty) {
                Some("has an empty segment".to_owned())
            } else {
                None
            }
        }
        Some("metadata") => match (parts.next(), parts.next()) {
            (Some("eventSource"), _) => Some("metadata.eventSource cannot be redacted".to_owned()),
            (Some(k), None) if !k.is_empty() => None,
            (None, _) => None,
            _ => Some("metadata has one level: metadata.<key>".to_owned()),
        },
        _ => Some("must start with `data` or `metadata`".to_owned()),
    }
}

impl Validate for EmitterConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        let red = join_path(path, "redaction");
        for (i, f) in self.redaction.fields.iter().enumerate() {
            if f == "data" || f == "metadata" {
                out.push(Problem::new(
                    format!("{red}.fields[{i}]"),
                    "names a whole section; name a field inside it",
                ));
            } else if let Some(p) = path_problem(f) {
                out.push(Problem::new(format!("{red}.fields[{i}]"), p));
            }
        }
        for (i, p) in self.redaction.patterns.iter().enumerate() {
            if let Some(m) = path_problem(&p.field) {
                out.push(Problem::new(format!("{red}.patterns[{i}].field"), m));
            }
            if let Err(e) = regex::Regex::new(&p.regex) {
                out.push(Problem::new(
                    format!("{red}.patterns[{i}].regex"),
                    format!("is not a valid regular expression: {e}"),
                ));
            }
        }
        if self.max_pending == 0 {
            out.push(Problem::new(
                join_path(path, "maxPending"),
                "must be at least 1",
            ));
        }
        if self.enqueue_timeout.is_zero() {
            out.push(Problem::new(
                join_path(path, "enqueueTimeout"),
                "must be more than 0",
            ));
        }
        if self.lag_interval.is_zero() {
            out.push(Problem::new(
                join_path(path, "lagInterval"),
                "must be more than 0",
            ));
        }
        if self.retention_interval.is_zero() {
            out.push(Problem::new(
                join_path(path, "retentionInterval"),
                "must be more than 0",
            ));
        }
        let subs = join_path(path, "subscriptions");
        if self.subscriptions.retry_delay.is_zero() {
            out.push(Problem::new(
                join_path(&subs, "retryDelay"),
                "must be more than 0",
            ));
        }
        if self.subscriptions.max_retry_delay < self.subscriptions.retry_delay {
            out.push(Problem::new(
                join_path(&subs, "maxRetryDelay"),
                "must be at least retryDelay",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("{}[{i}].config", join_path(path, "routes"));
            if !valid_name(r.name()) {
                out.push(Problem::new(
                    join_path(&at, "name"),
                    "must be 1 to 128 letters, digits, `-`, `_` or `.`",
                ));
            } else if !names.insert(r.name()) {
                out.push(Problem::new(
                    join_path(&at, "name"),
                    format!("route name {:?} is used twice", r.name()),
                ));
            }
            if r.batch_size() == 0 {
                out.push(Problem::new(
                    join_path(&at, "batchSize"),
                    "must be at least 1",
                ));
            }
            if r.filter().type_pattern.as_deref() == Some("") {
                out.push(Problem::new(
                    join_path(&at, "typePattern"),
                    "must not be empty (leave it out to take every type)",
                ));
            }
            if r.filter().tags.iter().any(str::is_empty) {
                out.push(Problem::new(
                    join_path(&at, "tags"),
                    "a tag must not be empty",
                ));
            }
            match r {
                RouteConfig::Webhook(w) => {
                    match reqwest::Url::parse(&w.url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                        Ok(u) => out.push(Problem::new(
                            join_path(&at, "url"),
                            format!("must be http or https (is {})", u.scheme()),
                        )),
                        Err(e) => out.push(Problem::new(
                            join_path(&at, "url"),
                            format!("is not a URL: {e}"),
                        )),
                    }
                    if w.timeout.is_zero() {
                        out.push(Problem::new(
                            join_path(&at, "timeout"),
                            "must be more than 0",
                        ));
                    }
                }
                RouteConfig::Nats(n) => {
                    if n.url.is_empty() {
                        out.push(Problem::new(join_path(&at, "url"), "must not be empty"));
                    }
                    if n.subject.is_empty()
                        || n.subject.contains(char::is_whitespace)
                        || n.subject.split('.').any(str::is_empty)
                    {
                        out.push(Problem::new(
                            join_path(&at, "subject"),
                            "must be dot-separated non-empty tokens without spaces",
                        ));
                    }
                    if n.timeout.is_zero() {
                        out.push(Problem::new(
                            join_path(&at, "timeout"),
                            "must be more than 0",
                        ));
                    }
                }
            }
        }
        let spool = join_path(path, "spool");
        if self.spool.batch_size == 0 {
            out.push(Problem::new(
                join_path(&spool, "batchSize"),
                "must be at least 1",
            ));
        }
        if self.spool.timeout.is_zero() {
            out.push(Problem::new(
                join_path(&spool, "timeout"),
                "must be more than 0",
            ));
        }
        if self
            .spool
            .path
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            out.push(Problem::new(join_path(&spool, "path"), "must not be empty"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_wire() {
        let c: EmitterConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, EmitterConfig::default());
        let c: EmitterConfig = serde_json::from_str(
            r#"{
              "redaction": {"enabled": true, "fields": ["data.password", "metadata.userId"],
                            "patterns": [{"field": "data", "pattern": "\\d{16}", "replacement": "****"}]},
              "maxPending": 50, "enqueueTimeout": "2s",
              "routes": [
                {"type": "webhook", "config": {"name": "hook", "url": "http://127.0.0.1:9/x",
                  "typePattern": "TASK.*", "tags": {"team": "a"}, "headers": {"Authorization": "Bearer t"}}},
                {"type": "nats", "config": {"name": "bus", "startAt": "earliest"}}
              ]
            }"#,
        )
        .unwrap();
        assert_eq!(c.enqueue_timeout.as_millis(), 2000);
        assert_eq!(c.redaction.patterns[0].regex, "\\d{16}");
        assert_eq!(c.routes[0].name(), "hook");
        assert_eq!(c.routes[0].filter().type_pattern.as_deref(), Some("TASK.*"));
        assert!(c.routes[0].filter().tags.contains("team:a"));
        let RouteConfig::Nats(n) = &c.routes[1] else {
            panic!("nats")
        };
        assert_eq!(n.subject, "tamma.events.{type}");
        assert_eq!(n.start_at, StartAt::Earliest);
        assert_eq!(n.batch_size, 100);
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("Bearer t"), "{text}");
        let mut problems = Vec::new();
        c.validate("emitter", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(serde_json::from_str::<EmitterConfig>(r#"{"maxPendng": 1}"#).is_err());
        let typo = serde_json::from_str::<EmitterConfig>(
            r#"{"routes": [{"type": "nats", "config": {"name": "n", "subjekt": "x"}}]}"#,
        );
        assert!(typo.unwrap_err().to_string().contains("subjekt"));
        assert!(
            serde_json::from_str::<EmitterConfig>(
                r#"{"routes": [{"type": "kafka", "config": {}}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn validates_with_paths() {
        let c: EmitterConfig = serde_json::from_str(
            r#"{
              "redaction": {"fields": ["password", "metadata.eventSource", "data"],
                            "patterns": [{"field": "data", "regex": "(", "replacement": ""}]},
              "maxPending": 0,
              "subscriptions": {"retryDelay": 100, "maxRetryDelay": 10},
              "routes": [
                {"type": "webhook", "config": {"name": "a b", "url": "ftp://x", "batchSize": 0}},
                {"type": "nats", "config": {"name": "n", "subject": "a..b"}},
                {"type": "nats", "config": {"name": "n"}}
              ],
              "spool": {"batchSize": 0}
            }"#,
        )
        .unwrap();
        let mut out = Vec::new();
        c.validate("emitter", &mut out);
        let paths: Vec<_> = out.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "emitter.redaction.fields[0]",
                "emitter.redaction.fields[1]",
                "emitter.redaction.fields[2]",
                "emitter.redaction.patterns[0].regex",
                "emitter.maxPending",
                "emitter.subscriptions.maxRetryDelay",
                "emitter.routes[0].config.name",
                "emitter.routes[0].config.batchSize",
                "emitter.routes[0].config.url",
                "emitter.routes[1].config.subject",
                "emitter.routes[2].config.name",
                "emitter.spool.batchSize",
            ]
        );
    }

    #[test]
    fn schema_has_descriptions_and_restart_marks() {
        let s = serde_json::to_value(schemars::schema_for!(EmitterConfig)).unwrap();
        assert_eq!(s["properties"]["routes"]["x-tamma-restart"], true);
        assert!(
            s["properties"]["maxPending"]["description"]
                .as_str()
                .unwrap()
                .contains("not yet stored")
        );
        assert_eq!(
            SpoolConfig::default().resolve_path("d".as_ref()),
            PathBuf::from("d/spool.db")
        );
    }
}
