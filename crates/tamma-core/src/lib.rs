//! The shared vocabulary of the Tamma runtime.
//!
//! Every other tamma crate may depend on `tamma-core`; it depends on no tamma crate and does no I/O.
//! It holds:
//!
//! - config value types that every section uses: [`DurationMs`] (milliseconds, or `"30s"`),
//!   [`ByteSize`] (`"100MB"`, `"100MiB"` or a number of bytes) and [`Secret`] (never printed);
//! - the [`Validate`] trait and [`Problem`] type that config sections use for cross-field rules;
//! - the health [`Check`] trait and its [`CheckResult`];
//! - the metric-name catalogue in [`metric_names`].
//!
//! ```
//! use tamma_core::{ByteSize, DurationMs, Secret};
//!
//! let d: DurationMs = serde_json::from_str("\"1m30s\"").unwrap();
//! assert_eq!(d.as_millis(), 90_000);
//! let s: ByteSize = serde_json::from_str("\"100MiB\"").unwrap();
//! assert_eq!(s.bytes(), 100 * 1024 * 1024);
//! let secret: Secret = serde_json::from_str("\"hunter2\"").unwrap();
//! assert_eq!(format!("{secret:?}"), "[REDACTED]");
//! assert_eq!(secret.expose(), "hunter2");
//! ```

mod bytesize;
mod duration;
pub mod fs;
mod health;
pub mod metric_names;
mod secret;
mod validate;

pub use bytesize::ByteSize;
pub use duration::DurationMs;
pub use health::{Check, CheckFuture, CheckResult, CheckStatus};
pub use secret::{REDACTED, Secret};
pub use validate::{Problem, Validate, join_path};
