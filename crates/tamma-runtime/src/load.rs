//! How the runtime loads its config: the standard variables and short forms it binds.

use std::path::PathBuf;

use serde_json::{Value, json};
use tamma_config::{CliSetting, ConfigBuilder, ConfigManager, Env, ShortVar, StandardVar};

use crate::config::TammaConfig;

/// The standard variables read into the config. Each loses to any explicit tamma setting and shows
/// its variable as the source.
pub const STANDARD_VARS: &[StandardVar] = &[
    StandardVar {
        var: "RUST_LOG",
        path: "logging.directives",
        map: directives,
    },
    StandardVar {
        var: "NO_COLOR",
        path: "console.color",
        map: no_color,
    },
    StandardVar {
        var: "OTEL_EXPORTER_OTLP_ENDPOINT",
        path: "monitoring.tracing.endpoint",
        map: otlp_base,
    },
    StandardVar {
        var: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        path: "monitoring.tracing.endpoint",
        map: text,
    },
    StandardVar {
        var: "OTEL_TRACES_SAMPLER_ARG",
        path: "monitoring.tracing.sampleRate",
        map: number,
    },
    StandardVar {
        var: "OTEL_EXPORTER_OTLP_HEADERS",
        path: "monitoring.tracing.headers",
        map: headers,
    },
];

/// Short forms from the seed.
pub const SHORT_VARS: &[ShortVar] = &[ShortVar {
    var: "TAMMA_LOG_LEVEL",
    path: "logging.level",
}];

fn directives(raw: &str) -> Option<Value> {
    let list: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    (!list.is_empty()).then(|| json!(list))
}

fn no_color(raw: &str) -> Option<Value> {
    (!raw.is_empty()).then(|| json!("never"))
}

fn otlp_base(raw: &str) -> Option<Value> {
    let base = raw.trim().trim_end_matches('/');
    (!base.is_empty()).then(|| json!(format!("{base}/v1/traces")))
}

fn text(raw: &str) -> Option<Value> {
    (!raw.trim().is_empty()).then(|| json!(raw.trim()))
}

fn number(raw: &str) -> Option<Value> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

fn headers(raw: &str) -> Option<Value> {
    let mut map = serde_json::Map::new();
    for pair in raw.split(',') {
        let (k, v) = pair.split_once('=')?;
        map.insert(k.trim().to_owned(), json!(v.trim()));
    }
    Some(Value::Object(map))
}

/// What the command line says about config.
#[derive(Clone, Debug, Default)]
pub struct ConfigArgs {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// `--set PATH=VALUE` and dedicated flags, in order.
    pub settings: Vec<CliSetting>,
}

/// A builder for the node's config with every layer wired: the file (`--config`, `TAMMA_CONFIG`, or
/// `./tamma.toml`), `TAMMA_*` and the standard variables from `env`, and the command line.
#[must_use]
pub fn builder(args: &ConfigArgs, env: Env) -> ConfigBuilder<TammaConfig> {
    let mut b = ConfigManager::<TammaConfig>::builder()
        .env(env)
        .file(args.file.clone());
    for sv in STANDARD_VARS {
        b = b.standard_var(sv.clone());
    }
    for sv in SHORT_VARS {
        b = b.short_var(sv.clone());
    }
    for s in &args.settings {
        b = b.cli(s.clone());
    }
    b
}

/// The JSON Schema of the whole config.
#[must_use]
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(TammaConfig)).unwrap_or(Value::Null)
}
