//! The PostgreSQL connection settings (filled by the runtime from its `database` section).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tamma_core::{DurationMs, Problem, Secret, Validate, join_path};

/// How the PostgreSQL event store connects: the server, the pool and its timeouts.
///
/// On the wire (camelCase, durations in milliseconds or `"5s"`):
/// `{"url": "postgres://tamma@db:5432/tamma", "poolSize": 10, "connectTimeout": 5000,
///   "acquireTimeout": 5000, "statementTimeout": 30000, "pollInterval": 1000}`.
///
/// ```
/// use tamma_events_postgres::PostgresConfig;
///
/// let c: PostgresConfig = serde_json::from_str(
///     r#"{"url": "postgres://postgres@127.0.0.1:5432/test", "poolSize": 4, "statementTimeout": "10s"}"#,
/// ).unwrap();
/// assert_eq!(c.pool_size, 4);
/// assert_eq!(c.statement_timeout.as_millis(), 10_000);
/// assert_eq!(c.connect_timeout, PostgresConfig::default().connect_timeout);
/// assert_eq!(format!("{:?}", c.url), "[REDACTED]");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:5432/database` (libpq URL or key=value form).
    /// TLS as in libpq: `sslmode` `disable`, `prefer` (default), `require`, `verify-ca` or
    /// `verify-full`, `sslrootcert` (a PEM file, or `system`), and `sslcert` with `sslkey` (PEM files:
    /// a client certificate, for servers that authenticate by certificate; the key unencrypted, mode
    /// 0600 or 0640).
    /// Secret because it may carry the password.
    #[schemars(extend("x-tamma-restart" = true))]
    pub url: Secret,
    /// Most connections in the pool used by reads, subscriptions, health and retention. The store opens
    /// more of its own: the group-commit writer, the health check's and, while a subscription is live,
    /// the `LISTEN` connection.
    #[schemars(extend("x-tamma-restart" = true))]
    pub pool_size: u32,
    /// Longest time (ms, or `"5s"`) to open one connection to the server.
    #[schemars(extend("x-tamma-restart" = true))]
    pub connect_timeout: DurationMs,
    /// Longest time (ms) a read waits for a free pooled connection before failing as unavailable.
    #[schemars(extend("x-tamma-restart" = true))]
    pub acquire_timeout: DurationMs,
    /// Server-side limit (ms) on one statement (`statement_timeout`); 0 means no limit.
    #[schemars(extend("x-tamma-restart" = true))]
    pub statement_timeout: DurationMs,
    /// How often (ms) live subscriptions look at the head without a `NOTIFY` (the fallback when a
    /// notification is lost, e.g. while the listening connection reconnects).
    #[schemars(extend("x-tamma-restart" = true))]
    pub poll_interval: DurationMs,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://localhost:5432/tamma"),
            pool_size: 10,
            connect_timeout: DurationMs::from_secs(5),
            acquire_timeout: DurationMs::from_secs(5),
            statement_timeout: DurationMs::from_secs(30),
            poll_interval: DurationMs::from_secs(1),
        }
    }
}

impl PostgresConfig {
    /// The default settings with this connection URL.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            ..Self::default()
        }
    }
}

impl Validate for PostgresConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if self.url.is_empty() {
            out.push(Problem::new(join_path(path, "url"), "must not be empty"));
        } else {
            // Neither message repeats the URL, so the password cannot leak into them.
            match crate::tls::split(self.url.expose()) {
                Err(e) => out.push(Problem::new(join_path(path, "url"), e)),
                Ok((rest, _)) => {
                    if let Err(e) = rest.parse::<tokio_postgres::Config>() {
                        out.push(Problem::new(
                            join_path(path, "url"),
                            format!("is not a PostgreSQL connection string: {e}"),
                        ));
                    }
                }
            }
        }
        if !(1..=1000).contains(&self.pool_size) {
            out.push(Problem::new(
                join_path(path, "poolSize"),
                format!("must be between 1 and 1000 (is {})", self.pool_size),
            ));
        }
        for (key, value) in [
            ("connectTimeout", self.connect_timeout),
            ("acquireTimeout", self.acquire_timeout),
            ("pollInterval", self.poll_interval),
        ] {
            if value.is_zero() {
                out.push(Problem::new(join_path(path, key), "must be more than 0"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_wire_and_validation() {
        let c: PostgresConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, PostgresConfig::default());
        let mut out = Vec::new();
        c.validate("database", &mut out);
        assert!(out.is_empty(), "{out:?}");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["url"], "[REDACTED]");
        assert_eq!(v["poolSize"], 10);
        assert_eq!(v["statementTimeout"], 30_000);
        assert!(serde_json::from_str::<PostgresConfig>(r#"{"poolsize": 1}"#).is_err());

        let bad = PostgresConfig {
            url: Secret::new("postgres://u:hunter2@h:notaport/db"),
            pool_size: 0,
            connect_timeout: DurationMs::from_millis(0),
            ..PostgresConfig::default()
        };
        let mut out = Vec::new();
        bad.validate("database", &mut out);
        let paths: Vec<_> = out.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "database.url",
                "database.poolSize",
                "database.connectTimeout"
            ]
        );
        assert!(
            out.iter().all(|p| !p.message.contains("hunter2")),
            "{out:?}"
        );
    }

    #[test]
    fn schema_marks_restart_and_secret() {
        let s = serde_json::to_value(schemars::schema_for!(PostgresConfig)).unwrap();
        assert_eq!(s["properties"]["poolSize"]["x-tamma-restart"], true);
        assert!(
            s["properties"]["acquireTimeout"]["description"]
                .as_str()
                .unwrap()
                .contains("pooled connection")
        );
    }
}
