//! The `server` config section.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tamma_core::{ByteSize, DurationMs, Problem, Validate, join_path};

/// HTTP server settings (`server`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port the node listens on. Changing it needs a restart.
    #[schemars(extend("x-tamma-restart" = true))]
    pub listen: String,
    /// Largest request body accepted; larger requests get `413`. Changing it needs a restart.
    #[schemars(extend("x-tamma-restart" = true))]
    pub max_body_size: ByteSize,
    /// How long a graceful shutdown waits for in-flight requests and queues to drain.
    pub shutdown_timeout: DurationMs,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7340".into(),
            max_body_size: ByteSize::mib(16),
            shutdown_timeout: DurationMs::from_secs(10),
        }
    }
}

impl Validate for ServerConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push(Problem::new(
                join_path(path, "listen"),
                format!(
                    "{:?} is not an address and port such as 127.0.0.1:7340",
                    self.listen
                ),
            ));
        }
        if self.max_body_size.bytes() < 1024 {
            out.push(Problem::new(
                join_path(path, "maxBodySize"),
                "must be at least 1KiB",
            ));
        }
    }
}
