//! Mode wiring of a Tamma node.
//!
//! `tamma-runtime` owns the root config, [`TammaConfig`], assembled from each crate's section
//! (`server` from `tamma-server`, `logging` and `monitoring.{metrics,tracing}` from `tamma-telemetry`,
//! `monitoring.healthChecks` from `tamma-health`, `events` from `tamma-events`, `resilience` from
//! `tamma-resilience`, `emitter` from `tamma-emitter`, `database` from `tamma-events-postgres`;
//! `security`, `orchestrator`, `worker`, `console`, `providers` and `platforms` here), how it is
//! loaded ([`builder`]: file, `TAMMA_*`, the standard `RUST_LOG`/`NO_COLOR`/`OTEL_*` variables, the
//! command line), and [`Node`]: a running node with its endpoints, hot reload and graceful shutdown.
//! The `tamma` binary is a thin CLI over this crate.
//!
//! ```
//! use tamma_config::Env;
//! use tamma_runtime::{ConfigArgs, Mode, builder};
//!
//! let config = builder(&ConfigArgs::default(), Env::from_pairs([("TAMMA_MODE", "worker"),
//!     ("TAMMA_WORKER__ORCHESTRATOR_URL", "http://orch:7340")])).build().unwrap();
//! assert_eq!(config.current().mode, Mode::Worker);
//! assert_eq!(config.current().server.listen, "127.0.0.1:7340");
//! ```

mod audit;
mod config;
mod error;
mod load;
mod node;
mod security;
mod store;

pub use audit::{Audit, types as audit_types};
pub use config::{
    ColorMode, ConsoleConfig, Mode, MonitoringConfig, OpaqueTable, OrchestratorConfig, TammaConfig,
    WorkerConfig,
};
pub use error::{Error, Result};
pub use load::{ConfigArgs, SHORT_VARS, STANDARD_VARS, builder, schema};
pub use node::{Node, VERSION, config_document, telemetry};
pub use security::{
    AbacConfig, ApiKeyMethodConfig, AuditConfig, AuditDatabaseConfig, AuditFileConfig, AuditFormat,
    AuditS3Config, AuditStorage, AuthMethod, AuthenticationConfig, AuthorizationConfig,
    BasicMethodConfig, Condition, Effect, EncryptionConfig, JwtConfig, JwtMethodConfig,
    KeyRotationConfig, KeySource, OAuthConfig, OAuthMethodConfig, OAuthProvider, Permission,
    Policy, RbacConfig, Role, SecurityConfig,
};
pub use store::open_store;
