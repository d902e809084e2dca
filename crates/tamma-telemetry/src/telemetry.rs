//! Assembly: config → outputs, layers, filter, tracer provider, metrics recorder; and the handle
//! that changes them at runtime and shuts them down.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use parking_lot::Mutex;
use tamma_core::{Check, Problem, Validate};
use tracing::Dispatch;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Registry, reload};

use crate::config::{Format, Level, LoggingConfig, MetricsConfig, OutputConfig, TracingConfig};
use crate::error::{Error, Result};
use crate::format::{LineFormat, ServiceInfo};
use crate::layer::{LogLayer, Shared};
use crate::metrics::MetricsRecorder;
use crate::output::{Output, OutputCheck, OutputHealth, Sink};
use crate::redact::Redactor;
use crate::sinks::{FileSink, HttpSink, Rotation, StdioSink, Stream, SyslogSink};

/// Builds a [`Telemetry`]. Every setting has a default: the seed's defaults for the three config
/// sections, the current directory as data directory, no `OTEL_*` variables, colour allowed.
#[derive(Debug, Clone)]
pub struct TelemetryBuilder {
    service: ServiceInfo,
    logging: LoggingConfig,
    tracing: TracingConfig,
    metrics: MetricsConfig,
    data_dir: PathBuf,
    otel_env: HashMap<String, String>,
    no_color: bool,
}

impl TelemetryBuilder {
    /// The `logging` section.
    #[must_use]
    pub fn logging(mut self, c: &LoggingConfig) -> Self {
        self.logging = c.clone();
        self
    }

    /// The `monitoring.tracing` section.
    #[must_use]
    pub fn tracing(mut self, c: &TracingConfig) -> Self {
        self.tracing = c.clone();
        self
    }

    /// The `monitoring.metrics` section.
    #[must_use]
    pub fn metrics(mut self, c: &MetricsConfig) -> Self {
        self.metrics = c.clone();
        self
    }

    /// The directory relative `file` output paths are resolved against.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// The `OTEL_*` environment variables (read by the config layer, passed in here).
    #[must_use]
    pub fn otel_env(mut self, env: HashMap<String, String>) -> Self {
        self.otel_env = env;
        self
    }

    /// Whether `NO_COLOR` is set: text on a terminal is then written without colour.
    #[must_use]
    pub const fn no_color(mut self, no_color: bool) -> Self {
        self.no_color = no_color;
        self
    }

    /// Validates the config, opens the outputs, starts one worker thread per output and builds the
    /// subscriber (not yet installed).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming every bad path; [`Error::Output`] when a file cannot be
    /// opened; [`Error::Tracing`] when the OTLP exporter cannot be built.
    pub fn build(self) -> Result<Telemetry> {
        let mut problems = Vec::new();
        self.logging.validate("logging", &mut problems);
        self.tracing.validate("monitoring.tracing", &mut problems);
        self.metrics.validate("monitoring.metrics", &mut problems);
        if !problems.is_empty() {
            return Err(Error::InvalidConfig { problems });
        }
        let redactor = Redactor::new(&self.logging.redaction, "logging.redaction")?;
        let filter = env_filter(self.logging.level, &self.logging.directives)?;
        let source_json = self.service.source_json();

        let names = output_names(&self.logging.outputs);
        let mut outputs = Vec::new();
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        for (o, name) in self.logging.outputs.iter().zip(&names) {
            let common = o.common();
            let format = common.format.unwrap_or(self.logging.format);
            let tty = match o {
                OutputConfig::Stdout(_) => std::io::stdout().is_terminal(),
                OutputConfig::Stderr(_) => std::io::stderr().is_terminal(),
                _ => false,
            };
            let line_format = match format {
                Format::Json => LineFormat::Json,
                Format::Text if tty && !self.no_color => LineFormat::TextColor,
                Format::Text => LineFormat::Text,
            };
            let sink: Box<dyn Sink> = match o {
                OutputConfig::Stdout(_) => Box::new(StdioSink(Stream::Stdout)),
                OutputConfig::Stderr(_) => Box::new(StdioSink(Stream::Stderr)),
                OutputConfig::File(f) => {
                    let rot = &self.logging.rotation;
                    let rotation = Rotation {
                        max_size: f
                            .max_size
                            .or(rot.enabled.then_some(rot.max_size))
                            .map(tamma_core::ByteSize::bytes),
                        max_files: f.max_files.unwrap_or(rot.max_files),
                        compress: f.compress.unwrap_or(rot.compress),
                    };
                    let path = resolve_path(&self.data_dir, &f.path);
                    Box::new(
                        FileSink::open(path, rotation).map_err(|source| Error::Output {
                            output: name.clone(),
                            source,
                        })?,
                    )
                }
                OutputConfig::Http(h) => {
                    Box::new(HttpSink::new(h).map_err(|e| Error::InvalidConfig {
                        problems: vec![Problem::new("logging.outputs", e)],
                    })?)
                }
                OutputConfig::Syslog(s) => {
                    Box::new(SyslogSink::new(s, &self.service.hostname, self.service.pid))
                }
            };
            outputs.push(Arc::new(Output::new(
                name.clone(),
                o.type_name(),
                line_format,
                common.level,
                common.capacity,
                common.policy,
            )));
            sinks.push(sink);
        }

        let shared = Arc::new(Shared::new(
            outputs.clone(),
            redactor,
            self.logging.structured,
            source_json.clone(),
        ));
        let mut workers = Vec::new();
        for (output, sink) in outputs.iter().cloned().zip(sinks) {
            let (tx, rx) = mpsc::channel();
            let src = source_json.clone();
            std::thread::Builder::new()
                .name(format!("tamma-log-{}", output.name))
                .spawn(move || {
                    let lost = output.run(sink, &src);
                    let _ = tx.send(lost);
                })
                .map_err(|source| Error::Output {
                    output: "worker thread".into(),
                    source,
                })?;
            workers.push(rx);
        }

        let provider = if self.tracing.enabled {
            match crate::otel::resolve(&self.tracing, &self.otel_env, &self.service) {
                Some(r) => Some(crate::otel::provider(&r, shared.redactor.clone())?),
                None => None,
            }
        } else {
            None
        };

        let (filter_layer, filter_handle) = reload::Layer::new(filter);
        let otel_layer = provider
            .as_ref()
            .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("tamma")));
        let subscriber = Registry::default()
            .with(filter_layer)
            .with(LogLayer {
                shared: shared.clone(),
            })
            .with(otel_layer);
        let metrics = self
            .metrics
            .enabled
            .then(|| MetricsRecorder::new(&self.metrics));
        let handle = TelemetryHandle {
            inner: Arc::new(HandleInner {
                shared,
                filter: filter_handle,
                logging: Mutex::new(self.logging),
                workers: Mutex::new(workers),
                provider,
                metrics,
            }),
        };
        Ok(Telemetry {
            dispatch: Dispatch::new(subscriber),
            handle,
        })
    }
}

fn resolve_path(data_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        data_dir.join(p)
    }
}

/// The name of each output: its `name`, else its type, with `#2`, `#3` … for repeats.
fn output_names(outputs: &[OutputConfig]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    outputs
        .iter()
        .map(|o| {
            let base = o
                .common()
                .name
                .map_or_else(|| o.type_name().to_owned(), str::to_owned);
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { base } else { format!("{base}#{n}") }
        })
        .collect()
}

fn env_filter(level: Level, directives: &[String]) -> Result<EnvFilter> {
    // The level is a bare directive: `with_default_directive` applies only when there is none.
    let mut spec = level.as_str().to_owned();
    for d in directives {
        spec.push(',');
        spec.push_str(d);
    }
    EnvFilter::builder()
        .parse(spec)
        .map_err(|e| Error::InvalidConfig {
            problems: vec![Problem::new("logging.directives", e.to_string())],
        })
}

/// A built telemetry stack: the subscriber ([`Telemetry::dispatch`]) and its [`TelemetryHandle`].
///
/// A process installs one with [`Telemetry::install`]; tests use the dispatch locally with
/// `tracing::dispatcher::with_default`.
#[derive(Debug)]
pub struct Telemetry {
    dispatch: Dispatch,
    handle: TelemetryHandle,
}

impl Telemetry {
    /// A builder for `service`.
    #[must_use]
    pub fn builder(service: ServiceInfo) -> TelemetryBuilder {
        TelemetryBuilder {
            service,
            logging: LoggingConfig::default(),
            tracing: TracingConfig::default(),
            metrics: MetricsConfig::default(),
            data_dir: PathBuf::from("."),
            otel_env: HashMap::new(),
            no_color: false,
        }
    }

    /// Builds from the three config sections in one call (see [`TelemetryBuilder::build`]).
    ///
    /// # Errors
    /// As [`TelemetryBuilder::build`].
    pub fn init(
        logging: &LoggingConfig,
        tracing: &TracingConfig,
        metrics: &MetricsConfig,
        data_dir: impl Into<PathBuf>,
        service: ServiceInfo,
    ) -> Result<Self> {
        Self::builder(service)
            .logging(logging)
            .tracing(tracing)
            .metrics(metrics)
            .data_dir(data_dir)
            .build()
    }

    /// The subscriber, for `tracing::dispatcher::with_default` / `set_default`.
    #[must_use]
    pub const fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// The runtime handle.
    #[must_use]
    pub const fn handle(&self) -> &TelemetryHandle {
        &self.handle
    }

    /// Installs the subscriber as the global default, the metrics recorder (when enabled) as the
    /// global recorder and the tracer provider as OpenTelemetry's global provider.
    ///
    /// # Errors
    /// [`Error::AlreadyInstalled`] when a global subscriber or recorder exists already.
    pub fn install(self) -> Result<TelemetryHandle> {
        tracing::dispatcher::set_global_default(self.dispatch)
            .map_err(|_| Error::AlreadyInstalled("tracing subscriber"))?;
        if let Some(m) = &self.handle.inner.metrics {
            m.install()?;
        }
        if let Some(p) = &self.handle.inner.provider {
            opentelemetry::global::set_tracer_provider(p.clone());
        }
        Ok(self.handle)
    }
}

#[derive(Debug)]
struct HandleInner {
    shared: Arc<Shared>,
    filter: reload::Handle<EnvFilter, Registry>,
    logging: Mutex<LoggingConfig>,
    workers: Mutex<Vec<mpsc::Receiver<u64>>>,
    provider: Option<SdkTracerProvider>,
    metrics: Option<MetricsRecorder>,
}

/// Changes levels, directives and redaction at runtime, reports output health and shuts down.
/// Cheap to clone.
///
/// Level changes rebuild `tracing`'s callsite interest cache. With the subscriber installed
/// globally that always works; when it is only a scoped default (`with_default` in tests) and no
/// other dispatcher exists, `tracing` rebuilds against the *current thread's* default, so make the
/// change inside the scope.
#[derive(Debug, Clone)]
pub struct TelemetryHandle {
    inner: Arc<HandleInner>,
}

/// What [`TelemetryHandle::apply`] could not change without a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Dotted paths of changed settings that take effect only after a restart.
    pub restart_required: Vec<String>,
}

/// What [`TelemetryHandle::shutdown`] achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Lines not delivered, by output (dropped at the end, or lost to errors while draining).
    pub undelivered: BTreeMap<String, u64>,
    /// Outputs whose worker had not finished when the timeout passed.
    pub timed_out: Vec<String>,
}

impl ShutdownReport {
    /// Whether every queued line was delivered in time.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.timed_out.is_empty() && self.undelivered.values().all(|n| *n == 0)
    }
}

impl TelemetryHandle {
    fn reload_filter(&self, level: Level, directives: &[String]) -> Result<()> {
        let f = env_filter(level, directives)?;
        // `reload` rebuilds the callsite interest cache itself.
        self.inner
            .filter
            .reload(f)
            .map_err(|e| Error::Reload(e.to_string()))
    }

    /// Changes the global level (keeping the directives).
    ///
    /// # Errors
    /// [`Error::Reload`] when the subscriber is gone.
    pub fn set_level(&self, level: Level) -> Result<()> {
        let mut cfg = self.inner.logging.lock();
        self.reload_filter(level, &cfg.directives)?;
        cfg.level = level;
        Ok(())
    }

    /// Replaces the per-target directives (`tamma_events=debug`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad directive (nothing changes); [`Error::Reload`].
    pub fn set_directives(&self, directives: Vec<String>) -> Result<()> {
        let mut cfg = self.inner.logging.lock();
        self.reload_filter(cfg.level, &directives)?;
        cfg.directives = directives;
        Ok(())
    }

    /// Sets one output's own level (`None`: everything the global filter lets through).
    ///
    /// # Errors
    /// [`Error::UnknownOutput`] when no output has that name.
    pub fn set_output_level(&self, output: &str, level: Option<Level>) -> Result<()> {
        let o = self
            .inner
            .shared
            .outputs
            .iter()
            .find(|o| o.name == output)
            .ok_or_else(|| Error::UnknownOutput(output.to_owned()))?;
        o.set_level(level);
        tracing::callsite::rebuild_interest_cache();
        Ok(())
    }

    /// Applies a reloaded `logging` section: level, directives, output levels, redaction and
    /// `structured` change at once; a bad section changes nothing.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming every problem.
    pub fn apply(&self, new: &LoggingConfig) -> Result<Applied> {
        let mut problems = Vec::new();
        new.validate("logging", &mut problems);
        if !problems.is_empty() {
            return Err(Error::InvalidConfig { problems });
        }
        let redactor = Redactor::new(&new.redaction, "logging.redaction")?;
        let filter = env_filter(new.level, &new.directives)?;
        let mut cur = self.inner.logging.lock();
        let mut applied = Applied::default();
        let strip = |c: &LoggingConfig| -> Vec<serde_json::Value> {
            c.outputs
                .iter()
                .map(|o| {
                    let mut v = serde_json::to_value(o).unwrap_or_default();
                    if let Some(cfg) = v
                        .get_mut("config")
                        .and_then(serde_json::Value::as_object_mut)
                    {
                        cfg.remove("level");
                    }
                    v
                })
                .collect()
        };
        if strip(&cur) != strip(new) {
            applied.restart_required.push("logging.outputs".into());
        }
        if cur.format != new.format {
            applied.restart_required.push("logging.format".into());
        }
        if cur.rotation != new.rotation {
            applied.restart_required.push("logging.rotation".into());
        }
        self.inner
            .filter
            .reload(filter)
            .map_err(|e| Error::Reload(e.to_string()))?;
        let shared = &self.inner.shared;
        if cur.redaction != new.redaction {
            shared.redactor.store(Arc::new(redactor));
            shared.generation.fetch_add(1, Ordering::Relaxed);
        }
        shared.structured.store(new.structured, Ordering::Relaxed);
        for (o, name) in new.outputs.iter().zip(output_names(&new.outputs)) {
            if let Some(out) = shared
                .outputs
                .iter()
                .find(|x| x.name == name && x.kind == o.type_name())
            {
                out.set_level(o.common().level);
            }
        }
        tracing::callsite::rebuild_interest_cache();
        *cur = new.clone();
        Ok(applied)
    }

    /// A snapshot of every output.
    #[must_use]
    pub fn output_health(&self) -> Vec<OutputHealth> {
        self.inner
            .shared
            .outputs
            .iter()
            .map(|o| o.health())
            .collect()
    }

    /// One health check per output, named `logging:<output>`.
    #[must_use]
    pub fn checks(&self) -> Vec<Arc<dyn Check>> {
        self.inner
            .shared
            .outputs
            .iter()
            .map(|o| Arc::new(OutputCheck::new(o.clone())) as Arc<dyn Check>)
            .collect()
    }

    /// The metrics recorder (when `monitoring.metrics.enabled`), for the `/metrics` endpoint.
    #[must_use]
    pub fn metrics(&self) -> Option<&MetricsRecorder> {
        self.inner.metrics.as_ref()
    }

    /// Flushes pending spans to the collector (no-op when tracing is off).
    pub fn flush_traces(&self) {
        if let Some(p) = &self.inner.provider {
            let _ = p.force_flush();
        }
    }

    /// Closes every output queue, lets the workers drain them (HTTP retries stop at the deadline),
    /// then shuts the trace exporter down. Lines logged afterwards are dropped and counted.
    /// Calling it twice is harmless.
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        for o in &self.inner.shared.outputs {
            o.close(deadline);
        }
        let mut report = ShutdownReport::default();
        let mut workers = self.inner.workers.lock();
        for (o, rx) in self.inner.shared.outputs.iter().zip(workers.iter()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(lost) => {
                    report.undelivered.insert(o.name.clone(), lost);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => report.timed_out.push(o.name.clone()),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    report.undelivered.entry(o.name.clone()).or_insert(0);
                }
            }
        }
        workers.clear();
        drop(workers);
        if let Some(p) = &self.inner.provider {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            let _ = p.shutdown_with_timeout(left);
        }
        report
    }
}
