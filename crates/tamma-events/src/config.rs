//! The `events` config section.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tamma_core::{ByteSize, DurationMs, Problem, Validate, join_path};

use crate::Limits;

/// The `events` section: batching of the emitter, retention, event size limit and the storage backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Most events the emitter gathers before it flushes them to the store.
    #[schemars(extend("x-tamma-restart" = true))]
    pub batch_size: u32,
    /// Longest time (ms, or `"1s"`) an emitted event waits in the emitter before it is flushed.
    #[schemars(extend("x-tamma-restart" = true))]
    pub flush_interval: DurationMs,
    /// Days to keep events; 0 keeps them forever. Retention removes a prefix of the log, and removed
    /// events no longer count for append conditions.
    #[schemars(extend("x-tamma-restart" = true))]
    pub retention_days: u32,
    /// Largest event accepted, counted as the length of its JSON encoding (`"1MiB"`).
    #[schemars(extend("x-tamma-restart" = true))]
    pub max_event_size: ByteSize,
    /// Where events are stored.
    #[schemars(extend("x-tamma-restart" = true))]
    pub storage: EventStorageConfig,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            flush_interval: DurationMs::from_millis(1000),
            retention_days: 0,
            max_event_size: ByteSize::mib(1),
            storage: EventStorageConfig::default(),
        }
    }
}

impl EventsConfig {
    /// The append limits a store built from this config enforces.
    #[must_use]
    pub fn limits(&self) -> Limits {
        Limits {
            max_event_size: self.max_event_size.bytes(),
        }
    }

    /// The retention period, `None` when events are kept forever.
    #[must_use]
    pub fn retention(&self) -> Option<chrono::Duration> {
        (self.retention_days > 0).then(|| chrono::Duration::days(i64::from(self.retention_days)))
    }
}

/// The storage backend of the event store (`{"type": "sqlite", "config": {…}}`; `config` may be left
/// out). Changing it needs a restart.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub enum EventStorageConfig {
    /// The embedded SQLite store, one file (the default).
    Sqlite(SqliteStorageConfig),
    /// PostgreSQL, configured by the shared `database` section (many machines, one store).
    Postgres(PostgresStorageConfig),
    /// In memory only: everything is lost at exit (tests, demos).
    Memory(MemoryStorageConfig),
}

impl<'de> Deserialize<'de> for EventStorageConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Kind {
            Sqlite,
            Postgres,
            Memory,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(rename = "type")]
            kind: Kind,
            #[serde(default)]
            config: Option<serde_json::Value>,
        }
        fn typed<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            v: Option<serde_json::Value>,
        ) -> Result<T, E> {
            serde_json::from_value(v.unwrap_or_else(|| serde_json::json!({})))
                .map_err(|e| E::custom(format_args!("config: {e}")))
        }
        let raw = Raw::deserialize(d)?;
        Ok(match raw.kind {
            Kind::Sqlite => Self::Sqlite(typed(raw.config)?),
            Kind::Postgres => Self::Postgres(typed(raw.config)?),
            Kind::Memory => Self::Memory(typed(raw.config)?),
        })
    }
}

impl JsonSchema for EventStorageConfig {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventStorageConfig".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let variant = |name: &str, description: &str, config: schemars::Schema| {
            schemars::json_schema!({
                "type": "object",
                "description": description,
                "properties": {"type": {"const": name}, "config": config},
                "required": ["type"],
                "additionalProperties": false
            })
        };
        schemars::json_schema!({
            "description": "The storage backend of the event store; `config` may be left out.",
            "oneOf": [
                variant("sqlite", "The embedded SQLite store, one file (the default).", g.subschema_for::<SqliteStorageConfig>()),
                variant("postgres", "PostgreSQL, configured by the shared `database` section.", g.subschema_for::<PostgresStorageConfig>()),
                variant("memory", "In memory only: everything is lost at exit.", g.subschema_for::<MemoryStorageConfig>()),
            ]
        })
    }
}

impl Default for EventStorageConfig {
    fn default() -> Self {
        Self::Sqlite(SqliteStorageConfig::default())
    }
}

/// Settings of the embedded SQLite store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SqliteStorageConfig {
    /// The database file; default `<dataDir>/events.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl SqliteStorageConfig {
    /// The database file: `path`, or `events.db` in `data_dir`.
    #[must_use]
    pub fn resolve_path(&self, data_dir: &std::path::Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("events.db"))
    }
}

/// Settings of the PostgreSQL store (the connection comes from the shared `database` section).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PostgresStorageConfig {}

/// Settings of the in-memory store (none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MemoryStorageConfig {}

impl Validate for EventsConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if self.batch_size == 0 {
            out.push(Problem::new(
                join_path(path, "batchSize"),
                "must be at least 1",
            ));
        }
        if self.flush_interval.is_zero() {
            out.push(Problem::new(
                join_path(path, "flushInterval"),
                "must be more than 0",
            ));
        }
        let size = self.max_event_size.bytes();
        if !(1024..=16 * 1024 * 1024).contains(&size) {
            out.push(Problem::new(
                join_path(path, "maxEventSize"),
                format!(
                    "must be between 1KiB and 16MiB (is {})",
                    self.max_event_size
                ),
            ));
        }
        if let EventStorageConfig::Sqlite(SqliteStorageConfig { path: Some(p) }) = &self.storage
            && p.as_os_str().is_empty()
        {
            out.push(Problem::new(
                join_path(&join_path(path, "storage"), "config.path"),
                "must not be empty",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_wire() {
        let c: EventsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, EventsConfig::default());
        assert_eq!(c.limits().max_event_size, 1024 * 1024);
        assert_eq!(c.retention(), None);
        let c: EventsConfig = serde_json::from_str(
            r#"{"batchSize": 10, "flushInterval": "2s", "retentionDays": 30, "maxEventSize": "64KiB",
                "storage": {"type": "sqlite", "config": {"path": "/tmp/e.db"}}}"#,
        )
        .unwrap();
        assert_eq!(c.flush_interval.as_millis(), 2000);
        assert_eq!(c.retention(), Some(chrono::Duration::days(30)));
        assert_eq!(
            c.storage,
            EventStorageConfig::Sqlite(SqliteStorageConfig {
                path: Some("/tmp/e.db".into())
            })
        );
        let m: EventStorageConfig = serde_json::from_str(r#"{"type": "memory"}"#).unwrap();
        assert_eq!(m, EventStorageConfig::Memory(MemoryStorageConfig {}));
        let s: EventStorageConfig = serde_json::from_str(r#"{"type": "sqlite"}"#).unwrap();
        assert_eq!(
            SqliteStorageConfig::default().resolve_path("d".as_ref()),
            PathBuf::from("d/events.db")
        );
        assert_eq!(s, EventStorageConfig::default());
        assert!(serde_json::from_str::<EventsConfig>(r#"{"batchSise": 1}"#).is_err());
        assert!(serde_json::from_str::<EventStorageConfig>(r#"{"type": "kafka"}"#).is_err());
        let e = serde_json::from_str::<EventStorageConfig>(
            r#"{"type": "sqlite", "config": {"pth": "x"}}"#,
        );
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("config: unknown field `pth`")
        );
        let back: EventsConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn validates_with_paths() {
        let c = EventsConfig {
            batch_size: 0,
            flush_interval: DurationMs::from_millis(0),
            max_event_size: ByteSize::new(10),
            ..EventsConfig::default()
        };
        let mut out = Vec::new();
        c.validate("events", &mut out);
        let paths: Vec<_> = out.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "events.batchSize",
                "events.flushInterval",
                "events.maxEventSize"
            ]
        );
        let mut out = Vec::new();
        EventsConfig::default().validate("events", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn schema_marks_storage_restart() {
        let s = serde_json::to_value(schemars::schema_for!(EventsConfig)).unwrap();
        // The store, the emitter, the retention job and the HTTP limits are built once, at start.
        for key in [
            "storage",
            "batchSize",
            "flushInterval",
            "retentionDays",
            "maxEventSize",
        ] {
            assert_eq!(s["properties"][key]["x-tamma-restart"], true, "{key}");
        }
        assert!(
            s["properties"]["batchSize"]["description"]
                .as_str()
                .unwrap()
                .contains("emitter")
        );
    }
}
