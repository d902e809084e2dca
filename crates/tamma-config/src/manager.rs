//! The config manager: typed snapshots swapped atomically, dotted-path access, watchers, validators,
//! reload with rollback.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tamma_core::metric_names::{CONFIG_RELOAD_FAILURES_TOTAL, CONFIG_RELOADS_TOTAL};
use tamma_core::{Problem, Validate};

use crate::error::{ConfigError, Result, SourcedProblem};
use crate::layers::{
    CliSetting, ENV_CONFIG_FILE, Env, Inputs, ShortVar, StandardVar, merge, unknown_path_problem,
};
use crate::path::{format_path, parse_path};
use crate::schema::SchemaIndex;
use crate::source::{Provenance, Source};
use crate::tree;

/// What a type must be to serve as the root of a config.
pub trait ConfigRoot:
    Serialize + DeserializeOwned + JsonSchema + Default + Validate + Send + Sync + 'static
{
}
impl<T> ConfigRoot for T where
    T: Serialize + DeserializeOwned + JsonSchema + Default + Validate + Send + Sync + 'static
{
}

/// A custom validator: pushes problems about a typed config.
pub type Validator<T> = Arc<dyn Fn(&T, &mut Vec<Problem>) + Send + Sync>;

type Callback = Arc<dyn Fn(&ConfigChange) + Send + Sync>;
type ReloadCallback = Arc<dyn Fn(&ReloadEvent) + Send + Sync>;

/// One immutable, validated config with its provenance. Dereferences to the typed config.
#[derive(Debug)]
pub struct Snapshot<T> {
    config: T,
    export: Value,
    raw: Value,
    provenance: Provenance,
    generation: u64,
    warnings: Vec<String>,
}

impl<T> Deref for Snapshot<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.config
    }
}

/// One value of the effective config, for `tamma config show` and `/v1/config`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// Dotted path.
    pub path: String,
    /// The value, secrets as `[REDACTED]`.
    pub value: Value,
    /// Which layer set it (`default`, `file tamma.toml`, `env TAMMA_…`, `cli --set …`, `runtime`).
    pub source: String,
}

impl<T> Snapshot<T> {
    /// The typed config.
    pub fn config(&self) -> &T {
        &self.config
    }

    /// The effective config as JSON with every secret shown as `[REDACTED]` (what `export` returns).
    pub fn export(&self) -> &Value {
        &self.export
    }

    /// Which layer set each value.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Starts at 1 and grows with every applied reload or `set`.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Warnings from the load that built this snapshot (unknown `TAMMA_*` variables, …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The value at a dotted path (secrets redacted), or `None`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let segs = parse_path(path).ok()?;
        tree::get(&self.export, &segs)
    }

    /// Every leaf value with its source, in path order (secrets redacted).
    pub fn entries(&self) -> Vec<Entry> {
        let mut leaves = Vec::new();
        tree::flatten(&self.export, "", &mut leaves);
        leaves
            .into_iter()
            .map(|(path, value)| {
                let source = self
                    .provenance
                    .source_at_or_below(&path)
                    .unwrap_or(&Source::Default)
                    .to_string();
                Entry {
                    path,
                    value,
                    source,
                }
            })
            .collect()
    }
}

/// What a watcher is told when values under its path change.
#[derive(Clone, Debug)]
pub struct ConfigChange {
    /// The path the watcher registered (`""` for everything).
    pub path: String,
    /// Every changed leaf path under it.
    pub changed: Vec<String>,
    /// The old value at the watched path (secrets redacted).
    pub old: Value,
    /// The new value at the watched path (secrets redacted).
    pub new: Value,
    /// The generation now in force.
    pub generation: u64,
}

/// What happened in a reload, for listeners registered with [`ConfigManager::on_reload`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ReloadEvent {
    /// A new config is in force.
    Applied {
        /// The generation now in force.
        generation: u64,
        /// Changed leaf paths.
        changed: Vec<String>,
        /// Changed paths that only take effect after a restart (their old values stay in force).
        restart_required: Vec<String>,
    },
    /// The new config was invalid; the old one stays in force.
    Failed {
        /// Every problem.
        problems: Vec<SourcedProblem>,
    },
}

/// The state of reloading, for the health endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    /// The generation in force.
    pub generation: u64,
    /// Reloads applied since start.
    pub reloads: u64,
    /// Reloads rejected since start.
    pub failures: u64,
    /// When the last reload attempt happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<SystemTime>,
    /// The problems of the last attempt, when it failed (cleared by the next success).
    pub last_error: Option<Vec<String>>,
    /// Paths changed on disk that need a restart to take effect.
    pub restart_required: Vec<String>,
}

/// Unsubscribes a watcher when dropped (or by [`WatchGuard::unsubscribe`]).
#[must_use = "the watcher is removed when the guard is dropped"]
pub struct WatchGuard {
    inner: Weak<dyn Unsubscribe>,
    id: u64,
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard").field("id", &self.id).finish()
    }
}

impl WatchGuard {
    /// Removes the watcher now.
    pub fn unsubscribe(self) {}

    /// Keeps the watcher for the life of the manager.
    pub fn detach(mut self) {
        self.inner = Weak::<Inner<()>>::new();
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.unsubscribe(self.id);
        }
    }
}

trait Unsubscribe: Send + Sync {
    fn unsubscribe(&self, id: u64);
}

struct Inner<T> {
    current: ArcSwap<Snapshot<T>>,
    inputs: Mutex<Inputs>,
    schema: SchemaIndex,
    restart_paths: Vec<Vec<String>>,
    validators: Mutex<Vec<Validator<T>>>,
    watchers: Mutex<Vec<(u64, Vec<String>, Callback)>>,
    reload_listeners: Mutex<Vec<(u64, ReloadCallback)>>,
    next_id: AtomicU64,
    status: Mutex<ReloadStatus>,
}

impl<T: Send + Sync> Unsubscribe for Inner<T> {
    fn unsubscribe(&self, id: u64) {
        self.watchers.lock().retain(|(i, _, _)| *i != id);
        self.reload_listeners.lock().retain(|(i, _)| *i != id);
    }
}

/// Builds a [`ConfigManager`]: choose the file, the environment and the command-line values, then
/// [`build`](ConfigBuilder::build) loads and validates.
pub struct ConfigBuilder<T> {
    explicit_file: Option<PathBuf>,
    cwd: Option<PathBuf>,
    inputs: Inputs,
    validators: Vec<Validator<T>>,
}

impl<T: ConfigRoot> Default for ConfigBuilder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ConfigRoot> ConfigBuilder<T> {
    /// A builder with an empty environment, no file and no command-line values.
    #[must_use]
    pub fn new() -> Self {
        Self {
            explicit_file: None,
            cwd: None,
            inputs: Inputs::default(),
            validators: Vec::new(),
        }
    }

    /// The environment to read `TAMMA_*`, `TAMMA_CONFIG` and the standard variables from
    /// (usually [`Env::capture`]).
    #[must_use]
    pub fn env(mut self, env: Env) -> Self {
        self.inputs.env = env;
        self
    }

    /// The config file given on the command line (`--config FILE`). Without one, `TAMMA_CONFIG` is used,
    /// else `./tamma.toml` when it exists.
    #[must_use]
    pub fn file(mut self, path: Option<PathBuf>) -> Self {
        self.explicit_file = path;
        self
    }

    /// The directory in which `tamma.toml` is looked for (default: the current directory).
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Maps a standard variable (`RUST_LOG`, `OTEL_*`, `NO_COLOR`) onto a path.
    #[must_use]
    pub fn standard_var(mut self, v: StandardVar) -> Self {
        self.inputs.standard.push(v);
        self
    }

    /// Maps a short-form variable (`TAMMA_LOG_LEVEL`) onto a path.
    #[must_use]
    pub fn short_var(mut self, v: ShortVar) -> Self {
        self.inputs.short.push(v);
        self
    }

    /// Adds a command-line value.
    #[must_use]
    pub fn cli(mut self, setting: CliSetting) -> Self {
        self.inputs.cli.push(setting);
        self
    }

    /// Adds a custom validator, run on every load, reload and `set`.
    #[must_use]
    pub fn validator(mut self, f: impl Fn(&T, &mut Vec<Problem>) + Send + Sync + 'static) -> Self {
        self.validators.push(Arc::new(f));
        self
    }

    /// The config file this builder would read.
    #[must_use]
    pub fn resolved_file(&self) -> Option<PathBuf> {
        if let Some(f) = &self.explicit_file {
            return Some(f.clone());
        }
        if let Some(f) = self
            .inputs
            .env
            .get(ENV_CONFIG_FILE)
            .filter(|f| !f.is_empty())
        {
            return Some(PathBuf::from(f));
        }
        let default = self
            .cwd
            .as_deref()
            .unwrap_or_else(|| Path::new("."))
            .join("tamma.toml");
        default.is_file().then_some(default)
    }

    /// Loads every layer and validates the result.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every problem, each with its path and source.
    pub fn build(mut self) -> Result<ConfigManager<T>> {
        self.inputs.file = self.resolved_file();
        let schema_value =
            serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Bool(true));
        let schema = SchemaIndex::new(schema_value);
        let restart_paths = restart_paths(&schema);
        let snapshot = build_snapshot::<T>(&self.inputs, &schema, &self.validators, 1)?;
        let status = ReloadStatus {
            generation: 1,
            ..ReloadStatus::default()
        };
        Ok(ConfigManager {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(snapshot),
                inputs: Mutex::new(self.inputs),
                schema,
                restart_paths,
                validators: Mutex::new(self.validators),
                watchers: Mutex::new(Vec::new()),
                reload_listeners: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                status: Mutex::new(status),
            }),
        })
    }
}

/// Validates a config without building a manager: the problems, or `Ok` with the load's warnings.
///
/// # Errors
/// [`ConfigError::Invalid`] listing every problem.
pub fn check<T: ConfigRoot>(builder: ConfigBuilder<T>) -> Result<Vec<String>> {
    builder.build().map(|m| m.current().warnings().to_vec())
}

fn build_snapshot<T: ConfigRoot>(
    inputs: &Inputs,
    schema: &SchemaIndex,
    validators: &[Validator<T>],
    generation: u64,
) -> Result<Snapshot<T>> {
    let defaults = serde_json::to_value(T::default()).unwrap_or(Value::Null);
    let merged = merge(inputs, schema, defaults);
    finish(
        merged.tree,
        merged.prov,
        merged.warnings,
        merged.problems,
        schema,
        validators,
        generation,
    )
}

fn finish<T: ConfigRoot>(
    raw: Value,
    prov: Provenance,
    warnings: Vec<String>,
    mut problems: Vec<SourcedProblem>,
    schema: &SchemaIndex,
    validators: &[Validator<T>],
    generation: u64,
) -> Result<Snapshot<T>> {
    let with_source = |p: Problem| {
        // A cross-field rule names one field, but a sibling may be the one that was set: when the
        // field itself is a default, name the most explicit source in its section.
        let mut source = prov.source_at_or_below(&p.path).cloned();
        if matches!(source, Some(Source::Default))
            && let Some(i) = p.path.rfind(['.', '['])
        {
            source = prov.source_at_or_below(&p.path[..i]).cloned().or(source);
        }
        SourcedProblem::from_problem(p, source)
    };
    let mut shape = Vec::new();
    schema.validate(&raw, schema.root(), "", &mut shape);
    if !shape.is_empty() || !problems.is_empty() {
        // Still run the cross-field rules, on a copy with every bad value put back to its default,
        // so that one report lists every problem.
        let repaired = repair(&raw, &shape);
        if let Ok(config) = serde_json::from_value::<T>(repaired) {
            let mut rules = Vec::new();
            config.validate("", &mut rules);
            for v in validators {
                v(&config, &mut rules);
            }
            let reported: Vec<String> = shape.iter().map(|p| p.path.clone()).collect();
            shape.extend(rules.into_iter().filter(|r| !reported.contains(&r.path)));
        }
        problems.extend(shape.into_iter().map(with_source));
        return Err(ConfigError::Invalid(problems));
    }
    let config: T = match serde_path_to_error::deserialize(raw.clone()) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            return Err(ConfigError::Invalid(vec![with_source(Problem::new(
                path,
                e.into_inner().to_string(),
            ))]));
        }
    };
    let mut rules = Vec::new();
    config.validate("", &mut rules);
    for v in validators {
        v(&config, &mut rules);
    }
    if !rules.is_empty() {
        return Err(ConfigError::Invalid(
            rules.into_iter().map(with_source).collect(),
        ));
    }
    let export = serde_json::to_value(&config).map_err(|e| {
        ConfigError::Invalid(vec![SourcedProblem {
            path: String::new(),
            message: e.to_string(),
            source: None,
        }])
    })?;
    Ok(Snapshot {
        config,
        export,
        raw,
        provenance: prov,
        generation,
        warnings,
    })
}

/// `raw` with every value named by a problem removed (so the typed default applies there).
fn repair(raw: &Value, problems: &[Problem]) -> Value {
    let mut fixed = raw.clone();
    for p in problems {
        let Ok(mut segs) = parse_path(&p.path) else {
            continue;
        };
        let Some(last) = segs.pop() else { continue };
        match tree::get_mut(&mut fixed, &segs) {
            Some(Value::Object(m)) => {
                m.remove(&last);
            }
            Some(parent @ Value::Array(_)) => *parent = Value::Null,
            _ => {}
        }
    }
    strip_nulls(&mut fixed);
    fixed
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

fn restart_paths(schema: &SchemaIndex) -> Vec<Vec<String>> {
    fn walk(
        schema: &SchemaIndex,
        s: &Value,
        at: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
        depth: usize,
    ) {
        if depth > 16 {
            return;
        }
        if s.get("x-tamma-restart") == Some(&Value::Bool(true)) {
            out.push(at.clone());
            return;
        }
        let r = schema.resolve(s);
        if r.get("x-tamma-restart") == Some(&Value::Bool(true)) {
            out.push(at.clone());
            return;
        }
        let mut nodes = vec![r];
        for k in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(bs)) = r.get(k) {
                nodes.extend(bs.iter().map(|b| schema.resolve(b)));
            }
        }
        for n in nodes {
            if let Some(props) = n.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    at.push(k.clone());
                    walk(schema, v, at, out, depth + 1);
                    at.pop();
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(schema, schema.root(), &mut Vec::new(), &mut out, 0);
    out.sort();
    out.dedup();
    out
}

/// The live config: typed snapshots swapped atomically (readers never block), dotted-path `get`/`set`,
/// path watchers, custom validators, reload with rollback, and the reload status for health.
///
/// Cheap to clone: clones share one state.
pub struct ConfigManager<T> {
    inner: Arc<Inner<T>>,
}

impl<T> std::fmt::Debug for ConfigManager<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.inner.status.lock();
        f.debug_struct("ConfigManager")
            .field("generation", &status.generation)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for ConfigManager<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: ConfigRoot> ConfigManager<T> {
    /// A builder.
    #[must_use]
    pub fn builder() -> ConfigBuilder<T> {
        ConfigBuilder::new()
    }

    /// The config in force. Lock-free; hold the `Arc` as long as you need a consistent view.
    #[must_use]
    pub fn current(&self) -> Arc<Snapshot<T>> {
        self.inner.current.load_full()
    }

    /// The JSON Schema of the whole config.
    #[must_use]
    pub fn schema(&self) -> &Value {
        self.inner.schema.root()
    }

    /// The config file in use, if any.
    #[must_use]
    pub fn file(&self) -> Option<PathBuf> {
        self.inner.inputs.lock().file.clone()
    }

    /// The value at a dotted path (secrets redacted).
    ///
    /// # Errors
    /// A malformed path.
    pub fn get(&self, path: &str) -> Result<Option<Value>> {
        let segs = parse_path(path).map_err(|reason| ConfigError::BadPath {
            path: path.to_owned(),
            reason,
        })?;
        Ok(tree::get(self.current().export(), &segs).cloned())
    }

    /// The value at `path` as `V`, or `default` when it is absent or of another type (the seed's
    /// `get(path, default)`).
    pub fn get_or<V: DeserializeOwned>(&self, path: &str, default: V) -> V {
        self.get(path)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or(default)
    }

    /// The effective config with secrets redacted (the seed's `export`).
    #[must_use]
    pub fn export(&self) -> Value {
        self.current().export().clone()
    }

    /// Sets a value at a dotted path, validated like a reload and recorded with provenance `runtime`;
    /// on success the new config is swapped in and watchers are told. Runtime values survive reloads
    /// of the file.
    ///
    /// # Errors
    /// A malformed or unknown path, or a value that makes the config invalid (nothing changes then).
    pub fn set(&self, path: &str, value: Value) -> Result<Vec<String>> {
        let segs = parse_path(path).map_err(|reason| ConfigError::BadPath {
            path: path.to_owned(),
            reason,
        })?;
        let mut inputs = self.inner.inputs.lock();
        if self.inner.schema.node_at(&segs).is_none() {
            return Err(ConfigError::Invalid(vec![unknown_path_problem(
                &self.inner.schema,
                &segs,
                path,
                &Source::Runtime,
            )]));
        }
        let mut candidate = inputs.clone();
        candidate.runtime.retain(|(s, _)| s != &segs);
        candidate.runtime.push((segs, value));
        match self.apply(&candidate) {
            Ok(changed) => {
                *inputs = candidate;
                Ok(changed)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads every layer again (the file from disk), validates, and swaps the new config in. On failure
    /// the old config stays in force, the problems are logged and counted, and [`reload_status`]
    /// reports them until the next success.
    ///
    /// [`reload_status`]: ConfigManager::reload_status
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with every problem of the new config.
    pub fn reload(&self) -> Result<Vec<String>> {
        let inputs = self.inner.inputs.lock();
        self.apply(&inputs)
    }

    fn apply(&self, inputs: &Inputs) -> Result<Vec<String>> {
        let old = self.current();
        let generation = old.generation + 1;
        let validators = self.inner.validators.lock().clone();
        let defaults = serde_json::to_value(T::default()).unwrap_or(Value::Null);
        let merged = merge(inputs, &self.inner.schema, defaults);
        let (mut raw, mut prov) = (merged.tree, merged.prov);
        let mut restart_required = Vec::new();
        // The config as written is validated first, restart-only keys included: a bad value there is
        // refused like any other (it would stop the node at its next start), not reported as waiting
        // for a restart.
        let as_written = finish(
            raw.clone(),
            prov.clone(),
            Vec::new(),
            merged.problems.clone(),
            &self.inner.schema,
            &validators,
            generation,
        );
        let result = match as_written {
            Err(e) => Err(e),
            Ok(_) => {
                for segs in &self.inner.restart_paths {
                    let before = tree::get(&old.raw, segs);
                    if tree::get(&raw, segs) != before {
                        let path = format_path(segs, Some(&raw));
                        if let Some(before) = before {
                            tree::replace(&mut raw, segs, before.clone());
                        }
                        prov.copy_from(&old.provenance, &path);
                        restart_required.push(path);
                    }
                }
                finish(
                    raw,
                    prov,
                    merged.warnings,
                    merged.problems,
                    &self.inner.schema,
                    &validators,
                    generation,
                )
            }
        };
        let snapshot = match result {
            Ok(s) => s,
            Err(e) => {
                let problems = e.problems().to_vec();
                tracing::error!(
                    problems = problems.len(),
                    "config reload rejected, previous config kept:{}",
                    problems
                        .iter()
                        .map(|p| format!("\n  - {p}"))
                        .collect::<String>()
                );
                metrics::counter!(CONFIG_RELOADS_TOTAL, "outcome" => "failure").increment(1);
                metrics::counter!(CONFIG_RELOAD_FAILURES_TOTAL).increment(1);
                {
                    let mut st = self.inner.status.lock();
                    st.failures += 1;
                    st.last_attempt = Some(SystemTime::now());
                    st.last_error = Some(problems.iter().map(ToString::to_string).collect());
                }
                self.notify_reload(&ReloadEvent::Failed { problems });
                return Err(e);
            }
        };
        let mut changed = Vec::new();
        tree::diff(old.export(), snapshot.export(), "", &mut changed);
        for w in snapshot.warnings() {
            tracing::warn!("{w}");
        }
        if !restart_required.is_empty() {
            tracing::warn!(paths = ?restart_required, "config changes that need a restart were not applied");
        }
        let snapshot = Arc::new(snapshot);
        self.inner.current.store(Arc::clone(&snapshot));
        metrics::counter!(CONFIG_RELOADS_TOTAL, "outcome" => "success").increment(1);
        {
            let mut st = self.inner.status.lock();
            st.generation = generation;
            st.reloads += 1;
            st.last_attempt = Some(SystemTime::now());
            st.last_error = None;
            for p in &restart_required {
                if !st.restart_required.contains(p) {
                    st.restart_required.push(p.clone());
                }
            }
        }
        tracing::info!(generation, changed = changed.len(), "config applied");
        self.notify_watchers(&old, &snapshot, &changed);
        self.notify_reload(&ReloadEvent::Applied {
            generation,
            changed: changed.clone(),
            restart_required,
        });
        Ok(changed)
    }

    fn notify_watchers(&self, old: &Snapshot<T>, new: &Snapshot<T>, changed: &[String]) {
        if changed.is_empty() {
            return;
        }
        let watchers: Vec<(Vec<String>, Callback)> = self
            .inner
            .watchers
            .lock()
            .iter()
            .map(|(_, p, c)| (p.clone(), Arc::clone(c)))
            .collect();
        for (segs, cb) in watchers {
            let path = format_path(&segs, Some(new.export()));
            let hits: Vec<String> = changed
                .iter()
                .filter(|c| overlaps(c, &path))
                .cloned()
                .collect();
            if hits.is_empty() {
                continue;
            }
            cb(&ConfigChange {
                path,
                changed: hits,
                old: tree::get(old.export(), &segs)
                    .cloned()
                    .unwrap_or(Value::Null),
                new: tree::get(new.export(), &segs)
                    .cloned()
                    .unwrap_or(Value::Null),
                generation: new.generation,
            });
        }
    }

    fn notify_reload(&self, event: &ReloadEvent) {
        let listeners: Vec<ReloadCallback> = self
            .inner
            .reload_listeners
            .lock()
            .iter()
            .map(|(_, c)| Arc::clone(c))
            .collect();
        for l in listeners {
            l(event);
        }
    }

    /// Calls `callback` whenever a value at or under `path` changes (`""` watches everything). A
    /// watcher on `logging` fires when `logging.level` changes. Callbacks run on the thread that
    /// applied the change: keep them short. Dropping the guard unsubscribes.
    ///
    /// # Errors
    /// A malformed path.
    pub fn watch(
        &self,
        path: &str,
        callback: impl Fn(&ConfigChange) + Send + Sync + 'static,
    ) -> Result<WatchGuard> {
        let segs = if path.is_empty() {
            Vec::new()
        } else {
            parse_path(path).map_err(|reason| ConfigError::BadPath {
                path: path.to_owned(),
                reason,
            })?
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .watchers
            .lock()
            .push((id, segs, Arc::new(callback)));
        Ok(self.guard(id))
    }

    /// Calls `callback` after every reload attempt, applied or failed (the runtime turns these into
    /// audit events and health).
    pub fn on_reload(&self, callback: impl Fn(&ReloadEvent) + Send + Sync + 'static) -> WatchGuard {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .reload_listeners
            .lock()
            .push((id, Arc::new(callback)));
        self.guard(id)
    }

    fn guard(&self, id: u64) -> WatchGuard {
        let weak: Weak<Inner<T>> = Arc::downgrade(&self.inner);
        WatchGuard { inner: weak, id }
    }

    /// Adds a validator (the seed's `addValidator`). It runs on every later reload and `set`; the
    /// config in force is checked now too, and its problems returned (nothing is rolled back).
    pub fn add_validator(
        &self,
        f: impl Fn(&T, &mut Vec<Problem>) + Send + Sync + 'static,
    ) -> Vec<Problem> {
        let mut found = Vec::new();
        f(&self.current(), &mut found);
        self.inner.validators.lock().push(Arc::new(f));
        found
    }

    /// The reload status (generation, failures, last error, restart-required paths).
    #[must_use]
    pub fn reload_status(&self) -> ReloadStatus {
        self.inner.status.lock().clone()
    }
}

fn overlaps(changed: &str, watched: &str) -> bool {
    let below = |a: &str, b: &str| {
        b.is_empty()
            || a == b
            || (a.starts_with(b) && matches!(a.as_bytes().get(b.len()), Some(b'.' | b'[')))
    };
    below(changed, watched) || below(watched, changed)
}
