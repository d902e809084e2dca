//! Building the merged config tree from its layers:
//! defaults < standard variables < file < `TAMMA_*` environment < command line < runtime `set`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tamma_core::Problem;

use crate::error::SourcedProblem;
use crate::path::{format_path, parse_path};
use crate::schema::SchemaIndex;
use crate::source::{Provenance, Source};
use crate::tree::merge_at;

/// The prefix of tamma's own environment variables.
pub const ENV_PREFIX: &str = "TAMMA_";
/// The variable naming the config file (reserved).
pub const ENV_CONFIG_FILE: &str = "TAMMA_CONFIG";

/// A captured process environment. Only this crate reads the environment; everything else is handed
/// values from here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Captures the current process environment (variables that are not valid UTF-8 are skipped).
    #[must_use]
    #[allow(clippy::disallowed_methods)] // tamma-config is the one crate that reads the environment.
    pub fn capture() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment made of the given pairs (for tests and embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// One variable.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A standard (non-tamma) variable mapped onto a config path, such as `RUST_LOG` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT`. It loses to any explicit tamma setting (file, `TAMMA_*`, CLI).
#[derive(Clone, Debug)]
pub struct StandardVar {
    /// The variable's name.
    pub var: &'static str,
    /// The config path it sets.
    pub path: &'static str,
    /// Turns the variable's text into the value to set; `None` sets nothing.
    pub map: fn(&str) -> Option<Value>,
}

/// A short-form `TAMMA_*` variable (the seed's `TAMMA_LOG_LEVEL`) and the path it sets. It loses to the
/// long form (`TAMMA_LOGGING__LEVEL`).
#[derive(Clone, Debug)]
pub struct ShortVar {
    /// The variable's name.
    pub var: &'static str,
    /// The config path it sets.
    pub path: &'static str,
}

/// A value set on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliSetting {
    /// The flag as the user wrote it (`--set logging.level`, `--listen`), for provenance.
    pub flag: String,
    /// The dotted config path.
    pub path: String,
    /// The raw text, coerced to the schema's type.
    pub raw: String,
}

impl CliSetting {
    /// Parses a `--set PATH=VALUE` argument.
    ///
    /// # Errors
    /// When there is no `=`.
    pub fn parse_set(arg: &str) -> Result<Self, String> {
        let (path, raw) = arg
            .split_once('=')
            .ok_or_else(|| format!("--set {arg:?}: expected PATH=VALUE"))?;
        Ok(Self {
            flag: format!("--set {}", path.trim()),
            path: path.trim().to_owned(),
            raw: raw.to_owned(),
        })
    }

    /// A dedicated flag (`--listen 127.0.0.1:8000`) that sets `path`.
    pub fn flag(flag: impl Into<String>, path: impl Into<String>, raw: impl Into<String>) -> Self {
        Self {
            flag: flag.into(),
            path: path.into(),
            raw: raw.into(),
        }
    }
}

/// Everything a load reads, kept so that a reload rebuilds the same layers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inputs {
    pub(crate) file: Option<PathBuf>,
    pub(crate) env: Env,
    pub(crate) standard: Vec<StandardVar>,
    pub(crate) short: Vec<ShortVar>,
    pub(crate) cli: Vec<CliSetting>,
    pub(crate) runtime: Vec<(Vec<String>, Value)>,
}

/// The merged, not yet typed, tree.
pub(crate) struct Merged {
    pub(crate) tree: Value,
    pub(crate) prov: Provenance,
    pub(crate) warnings: Vec<String>,
    pub(crate) problems: Vec<SourcedProblem>,
}

/// Reads a config file (TOML, YAML or JSON by extension; TOML when there is none).
pub(crate) fn read_file(path: &Path) -> Result<Value, SourcedProblem> {
    let source = Source::File {
        path: path.to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| SourcedProblem {
        path: String::new(),
        message: format!("cannot read {}: {e}", path.display()),
        source: Some(source.clone()),
    })?;
    parse_text(path, &text).map_err(|message| SourcedProblem {
        path: String::new(),
        message,
        source: Some(source),
    })
}

fn parse_text(path: &Path, text: &str) -> Result<Value, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let v: Value = match ext.as_str() {
        "json" => serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?,
        "yaml" | "yml" => {
            if text.trim().is_empty() {
                Value::Object(serde_json::Map::new())
            } else {
                serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?
            }
        }
        _ => toml::from_str(text)
            .map_err(|e| format!("not valid TOML: {}", e.to_string().trim_end()))?,
    };
    if v.is_object() {
        Ok(v)
    } else {
        Err("the top level of a config file must be a table".into())
    }
}

/// Builds the merged tree from every layer. Problems found while reading layers (a bad file, a
/// `--set` path that does not exist, an unreadable secret file) are returned with the tree; warnings
/// (an unknown `TAMMA_*` variable) do not fail the load.
pub(crate) fn merge(inputs: &Inputs, schema: &SchemaIndex, defaults: Value) -> Merged {
    let mut tree = Value::Object(serde_json::Map::new());
    let mut prov = Provenance::default();
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    merge_at(&mut tree, &mut prov, &[], defaults, &Source::Default);

    for sv in &inputs.standard {
        if let Some(raw) = inputs.env.get(sv.var)
            && let (Some(v), Ok(segs)) = ((sv.map)(raw), parse_path(sv.path))
        {
            merge_at(
                &mut tree,
                &mut prov,
                &segs,
                v,
                &Source::StandardEnv {
                    var: sv.var.to_owned(),
                },
            );
        }
    }

    if let Some(file) = &inputs.file {
        match read_file(file) {
            Ok(v) => {
                let source = Source::File { path: file.clone() };
                merge_at(&mut tree, &mut prov, &[], v, &source);
                resolve_secret_files(
                    &mut tree,
                    &mut prov,
                    schema,
                    &source,
                    &mut problems,
                    file.parent(),
                );
            }
            Err(p) => problems.push(p),
        }
    }

    for sv in &inputs.short {
        if let Some(raw) = inputs.env.get(sv.var) {
            let segs = parse_path(sv.path).unwrap_or_default();
            let value = schema
                .node_at(&segs)
                .map_or_else(|| Value::String(raw.to_owned()), |n| schema.coerce(&n, raw));
            merge_at(
                &mut tree,
                &mut prov,
                &segs,
                value,
                &Source::Env {
                    var: sv.var.to_owned(),
                },
            );
        }
    }
    for (var, raw) in inputs.env.iter() {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if var == ENV_CONFIG_FILE || inputs.short.iter().any(|s| s.var == var) {
            continue;
        }
        let source = Source::Env {
            var: var.to_owned(),
        };
        let raw_segs: Vec<String> = rest.split("__").map(str::to_owned).collect();
        match schema.bind_relaxed(&raw_segs) {
            Ok(b) => {
                let value = schema.coerce(&b.node, raw);
                merge_at(&mut tree, &mut prov, &b.segments, value, &source);
            }
            Err(msg) => {
                let file_binding = rest.strip_suffix("_FILE").and_then(|stem| {
                    let segs: Vec<String> = stem.split("__").map(str::to_owned).collect();
                    schema.bind_relaxed(&segs).ok().filter(|b| b.secret)
                });
                match file_binding {
                    Some(b) => match read_secret_file(Path::new(raw)) {
                        Ok(secret) => merge_at(
                            &mut tree,
                            &mut prov,
                            &b.segments,
                            Value::String(secret),
                            &source,
                        ),
                        Err(e) => problems.push(SourcedProblem {
                            path: format_path(&b.segments, None),
                            message: format!("cannot read secret file {raw}: {e}"),
                            source: Some(source),
                        }),
                    },
                    None => warnings.push(format!("ignoring environment variable {var}: {msg}")),
                }
            }
        }
    }

    let mut cli_runtime: Vec<(Vec<String>, String, Source)> = inputs
        .cli
        .iter()
        .map(|c| {
            (
                Vec::new(),
                c.path.clone(),
                Source::Cli {
                    flag: c.flag.clone(),
                },
            )
        })
        .collect();
    for ((segs, path, source), c) in cli_runtime.iter_mut().zip(&inputs.cli) {
        match parse_path(path) {
            Ok(s) => match schema.node_at(&s) {
                Some(node) => {
                    let value = schema.coerce(&node, &c.raw);
                    merge_at(&mut tree, &mut prov, &s, value, source);
                    *segs = s;
                }
                None => problems.push(unknown_path_problem(schema, &s, path, source)),
            },
            Err(e) => problems.push(SourcedProblem {
                path: path.clone(),
                message: e,
                source: Some(source.clone()),
            }),
        }
    }
    for (segs, value) in &inputs.runtime {
        merge_at(&mut tree, &mut prov, segs, value.clone(), &Source::Runtime);
    }
    Merged {
        tree,
        prov,
        warnings,
        problems,
    }
}

/// A problem for a path the schema does not have, naming the closest existing key.
pub(crate) fn unknown_path_problem(
    schema: &SchemaIndex,
    segs: &[String],
    path: &str,
    source: &Source,
) -> SourcedProblem {
    let message = match schema.suggest_path(segs) {
        Some(p) => format!("unknown key (did you mean {p}?)"),
        None => "unknown key".to_owned(),
    };
    SourcedProblem {
        path: path.to_owned(),
        message,
        source: Some(source.clone()),
    }
}

fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text)
        .to_owned())
}

/// In a file, a secret `x` may be given as `xFile = "/run/secrets/x"`: read it in place.
fn resolve_secret_files(
    tree: &mut Value,
    prov: &mut Provenance,
    schema: &SchemaIndex,
    source: &Source,
    problems: &mut Vec<SourcedProblem>,
    base: Option<&Path>,
) {
    let mut found = Vec::new();
    find_secret_files(tree, schema, schema.root(), &mut Vec::new(), &mut found);
    for (segs, key, file) in found {
        let mut parent = segs.clone();
        parent.pop();
        let mut file_key = parent.clone();
        file_key.push(key);
        let file_path = base.map_or_else(|| PathBuf::from(&file), |b| b.join(&file));
        if let Some(Value::Object(m)) = crate::tree::get_mut(tree, &parent) {
            m.remove(file_key.last().map_or("", String::as_str));
        }
        prov.remove_below(&format_path(&file_key, None));
        match read_secret_file(&file_path) {
            Ok(secret) => merge_at(tree, prov, &segs, Value::String(secret), source),
            Err(e) => problems.push(SourcedProblem::from_problem(
                Problem::new(
                    format_path(&file_key, None),
                    format!("cannot read secret file {}: {e}", file_path.display()),
                ),
                Some(source.clone()),
            )),
        }
    }
}

fn find_secret_files(
    node: &Value,
    schema: &SchemaIndex,
    s: &Value,
    at: &mut Vec<String>,
    found: &mut Vec<(Vec<String>, String, String)>,
) {
    let Value::Object(map) = node else { return };
    let resolved = schema.resolve(s);
    let branches: Vec<&Value> = match (resolved.get("anyOf"), resolved.get("oneOf")) {
        (Some(Value::Array(b)), _) | (_, Some(Value::Array(b))) => {
            b.iter().map(|b| schema.resolve(b)).collect()
        }
        _ => vec![resolved],
    };
    for b in branches {
        let Some(props) = b.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in map {
            if let Some(ps) = props.get(k) {
                at.push(k.clone());
                find_secret_files(v, schema, ps, at, found);
                at.pop();
            } else if let (Some(stem), Some(file)) = (k.strip_suffix("File"), v.as_str())
                && props.get(stem).is_some_and(|ps| schema.is_secret(ps))
            {
                let mut segs = at.clone();
                segs.push(stem.to_owned());
                found.push((segs, k.clone(), file.to_owned()));
            }
        }
    }
}
