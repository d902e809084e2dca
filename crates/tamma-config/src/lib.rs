//! Layered, validated, hot-reloadable configuration with per-key provenance.
//!
//! `tamma-config` is the machinery; the schema is any serde + schemars type (the runtime's
//! `TammaConfig`, assembled from each crate's section). It owns:
//!
//! - **Layers**, later wins: built-in defaults < standard variables (`RUST_LOG`, `OTEL_*`, `NO_COLOR`)
//!   < config file (TOML, YAML or JSON) < `TAMMA_<SECTION>__<KEY>` environment (relaxed binding:
//!   case-insensitive, `_` inside a segment ignored) < command line (`--set path=value`, dedicated flags)
//!   < runtime [`ConfigManager::set`].
//! - **Provenance**: for every value, the layer that set it ([`Source`]).
//! - **Validation** that reports *every* problem at once with its dotted path and source: the untyped
//!   tree is checked against the JSON Schema before the typed load (unknown keys with the closest valid
//!   key, wrong types, bad enum values), then the sections' cross-field rules ([`tamma_core::Validate`])
//!   and custom validators run.
//! - **Secrets** ([`tamma_core::Secret`]) that never print, each also settable as `<NAME>_FILE` (env) or
//!   `<name>File` (file).
//! - **Hot reload** with rollback ([`ConfigManager::watch_file`], [`ConfigManager::reload`]), path
//!   watchers, and the reload status as a health check ([`ConfigCheck`]).
//!
//! Only this crate reads the process environment ([`Env::capture`]).
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//! use tamma_config::{CliSetting, ConfigManager, Env};
//! use tamma_core::{DurationMs, Problem, Validate};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
//! #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
//! struct App {
//!     /// Log level.
//!     level: String,
//!     /// Poll interval.
//!     interval: DurationMs,
//! }
//! impl Default for App {
//!     fn default() -> Self { Self { level: "info".into(), interval: DurationMs::from_secs(30) } }
//! }
//! impl Validate for App {
//!     fn validate(&self, _: &str, out: &mut Vec<Problem>) {
//!         if self.interval.is_zero() { out.push(Problem::new("interval", "must be positive")); }
//!     }
//! }
//!
//! let config = ConfigManager::<App>::builder()
//!     .env(Env::from_pairs([("TAMMA_INTERVAL", "5s")]))
//!     .cli(CliSetting::parse_set("level=debug").unwrap())
//!     .build()
//!     .unwrap();
//! let now = config.current();
//! assert_eq!(now.level, "debug");
//! assert_eq!(now.interval.as_millis(), 5000);
//! assert_eq!(now.provenance().source_of("interval").unwrap().to_string(), "env TAMMA_INTERVAL");
//! ```

mod error;
mod health;
mod layers;
mod manager;
mod path;
mod reference;
mod schema;
mod source;
mod tree;
mod watch;

pub use error::{ConfigError, Result, SourcedProblem};
pub use health::ConfigCheck;
pub use layers::{CliSetting, ENV_CONFIG_FILE, ENV_PREFIX, Env, ShortVar, StandardVar};
pub use manager::{
    ConfigBuilder, ConfigChange, ConfigManager, ConfigRoot, Entry, ReloadEvent, ReloadStatus,
    Snapshot, Validator, WatchGuard, check,
};
pub use path::{format_path, parse_path};
pub use reference::{ReferenceRow, env_var_for, reference_markdown, reference_rows};
pub use source::{Provenance, Source};
pub use watch::FileWatcher;
