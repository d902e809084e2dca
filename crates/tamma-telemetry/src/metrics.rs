//! The recorder behind the `metrics` facade, with Prometheus text and JSON renderers.
//!
//! Series live in a `metrics-util` registry (sharded, pre-hashed keys); every new series is also
//! filed under its family with its label set rendered once, so a render is one pass over
//! ready-made strings and atomics.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_util::registry::{Registry, Storage};
use parking_lot::{Mutex, RwLock};
use tamma_core::metric_names::{CATALOGUE, Kind};

use crate::config::{MetricsConfig, MetricsFormat};

/// Buckets of histograms whose name ends in `_seconds`.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of every other histogram (counts, sizes).
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

#[derive(Debug, Default)]
struct CounterCell(AtomicU64);

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct GaugeCell(AtomicU64);

impl GaugeCell {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(f(f64::from_bits(b)).to_bits())
            });
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct HistogramCell {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum: GaugeCell,
}

impl HistogramCell {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: GaugeCell::default(),
        }
    }
}

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.increment(value);
    }
}

#[derive(Clone, Debug)]
enum Cell {
    Counter(Arc<CounterCell>),
    Gauge(Arc<GaugeCell>),
    Histogram(Arc<HistogramCell>),
}

impl Cell {
    const fn kind(&self) -> Kind {
        match self {
            Self::Counter(_) => Kind::Counter,
            Self::Gauge(_) => Kind::Gauge,
            Self::Histogram(_) => Kind::Histogram,
        }
    }
}

#[derive(Debug)]
struct Series {
    /// `k="v",k2="v2"` (global labels first), without braces.
    labels: String,
    label_pairs: Vec<(String, String)>,
    cell: Cell,
}

#[derive(Debug)]
struct Family {
    kind: Kind,
    series: Vec<Series>,
}

#[derive(Debug)]
struct Inner {
    global: Vec<(String, String)>,
    families: Mutex<BTreeMap<String, Family>>,
    help: RwLock<HashMap<String, String>>,
}

/// Files every new series under its family.
#[derive(Debug, Clone)]
struct Filing(Arc<Inner>);

impl Filing {
    fn file(&self, key: &Key, cell: Cell) {
        let name = sanitize_name(key.name());
        let mut pairs: Vec<(String, String)> = self.0.global.clone();
        for l in key.labels() {
            let k = sanitize_label(l.key());
            if let Some(p) = pairs.iter_mut().find(|(pk, _)| *pk == k) {
                p.1 = l.value().to_owned();
            } else {
                pairs.push((k, l.value().to_owned()));
            }
        }
        let mut labels = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                labels.push(',');
            }
            let _ = write!(labels, "{k}=\"");
            escape_label_value(&mut labels, v);
            labels.push('"');
        }
        let mut fams = self.0.families.lock();
        let fam = fams.entry(name).or_insert_with(|| Family {
            kind: cell.kind(),
            series: Vec::new(),
        });
        // A name registered with two kinds keeps its first kind; the other series is not exported.
        if fam.kind == cell.kind() {
            fam.series.push(Series {
                labels,
                label_pairs: pairs,
                cell,
            });
        }
    }
}

impl Storage<Key> for Filing {
    type Counter = Arc<CounterCell>;
    type Gauge = Arc<GaugeCell>;
    type Histogram = Arc<HistogramCell>;

    fn counter(&self, key: &Key) -> Self::Counter {
        let c = Arc::new(CounterCell::default());
        self.file(key, Cell::Counter(c.clone()));
        c
    }

    fn gauge(&self, key: &Key) -> Self::Gauge {
        let g = Arc::new(GaugeCell::default());
        self.file(key, Cell::Gauge(g.clone()));
        g
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        let bounds = if key.name().ends_with("_seconds") {
            SECONDS_BUCKETS
        } else {
            COUNT_BUCKETS
        };
        let h = Arc::new(HistogramCell::new(bounds));
        self.file(key, Cell::Histogram(h.clone()));
        h
    }
}

/// The metrics recorder: install it once with [`MetricsRecorder::install`] (or use it locally with
/// `metrics::with_local_recorder`), then serve [`MetricsRecorder::render_prometheus`] or
/// [`MetricsRecorder::render_json`]. Cloning is cheap and shares the series.
#[derive(Clone)]
pub struct MetricsRecorder {
    registry: Arc<Registry<Key, Filing>>,
    inner: Arc<Inner>,
    format: MetricsFormat,
}

impl std::fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRecorder")
            .field("global", &self.inner.global)
            .finish_non_exhaustive()
    }
}

impl MetricsRecorder {
    /// A recorder with `config.labels` on every series and help texts from
    /// [`tamma_core::metric_names::CATALOGUE`].
    #[must_use]
    pub fn new(config: &MetricsConfig) -> Self {
        let global = config
            .labels
            .iter()
            .map(|(k, v)| (sanitize_label(k), v.clone()))
            .collect();
        let help = CATALOGUE
            .iter()
            .map(|(n, _, h)| ((*n).to_owned(), (*h).to_owned()))
            .collect();
        let inner = Arc::new(Inner {
            global,
            families: Mutex::new(BTreeMap::new()),
            help: RwLock::new(help),
        });
        let registry = Arc::new(Registry::new(Filing(inner.clone())));
        Self {
            registry,
            inner,
            format: config.format,
        }
    }

    /// Installs this recorder as the process-wide `metrics` recorder.
    ///
    /// # Errors
    /// [`crate::Error::AlreadyInstalled`] when a recorder is already installed.
    pub fn install(&self) -> crate::Result<()> {
        metrics::set_global_recorder(self.clone())
            .map_err(|_| crate::Error::AlreadyInstalled("metrics recorder"))
    }

    /// The body and content type for the configured `monitoring.metrics.format`.
    #[must_use]
    pub fn render(&self) -> (String, &'static str) {
        match self.format {
            MetricsFormat::Prometheus => (
                self.render_prometheus(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            MetricsFormat::Json => (self.render_json(), "application/json"),
        }
    }

    /// Every series in the Prometheus text exposition format 0.0.4.
    #[must_use]
    pub fn render_prometheus(&self) -> String {
        let fams = self.inner.families.lock();
        let help = self.inner.help.read();
        let mut out = String::with_capacity(fams.len() * 256);
        for (name, fam) in fams.iter() {
            if fam.series.is_empty() {
                continue;
            }
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_help(
                &mut out,
                help.get(name)
                    .map_or("Undocumented metric.", String::as_str),
            );
            let kind = match fam.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "\n# TYPE {name} {kind}");
            for s in &fam.series {
                match &s.cell {
                    Cell::Counter(c) => {
                        line(&mut out, name, "", &s.labels, "");
                        let _ = writeln!(out, "{}", c.0.load(Ordering::Relaxed));
                    }
                    Cell::Gauge(g) => {
                        line(&mut out, name, "", &s.labels, "");
                        push_f64(&mut out, g.get());
                        out.push('\n');
                    }
                    Cell::Histogram(h) => {
                        let mut cumulative = 0u64;
                        for (i, b) in h.buckets.iter().enumerate() {
                            cumulative += b.load(Ordering::Relaxed);
                            let mut le = String::from("le=\"");
                            match h.bounds.get(i) {
                                Some(v) => push_f64(&mut le, *v),
                                None => le.push_str("+Inf"),
                            }
                            le.push('"');
                            line(&mut out, name, "_bucket", &s.labels, &le);
                            let _ = writeln!(out, "{cumulative}");
                        }
                        line(&mut out, name, "_sum", &s.labels, "");
                        push_f64(&mut out, h.sum.get());
                        out.push('\n');
                        line(&mut out, name, "_count", &s.labels, "");
                        // The count is the bucket total, so a scrape is never inconsistent.
                        let _ = writeln!(out, "{cumulative}");
                    }
                }
            }
        }
        out
    }

    /// Every series as JSON: `{"metrics":[{"name","type","help","series":[{"labels":{…},"value":…}]}]}`;
    /// a histogram series has `buckets` (`[{"le":…,"count":…}]`, cumulative), `sum` and `count`.
    #[must_use]
    pub fn render_json(&self) -> String {
        use serde_json::{Map, Value, json};
        let fams = self.inner.families.lock();
        let help = self.inner.help.read();
        let mut metrics = Vec::with_capacity(fams.len());
        for (name, fam) in fams.iter() {
            let series: Vec<Value> = fam
                .series
                .iter()
                .map(|s| {
                    let labels: Map<String, Value> =
                        s.label_pairs.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
                    match &s.cell {
                        Cell::Counter(c) => json!({"labels": labels, "value": c.0.load(Ordering::Relaxed)}),
                        Cell::Gauge(g) => json!({"labels": labels, "value": json_f64(g.get())}),
                        Cell::Histogram(h) => {
                            let mut cumulative = 0u64;
                            let buckets: Vec<Value> = h
                                .buckets
                                .iter()
                                .enumerate()
                                .map(|(i, b)| {
                                    cumulative += b.load(Ordering::Relaxed);
                                    let le = h.bounds.get(i).map_or(Value::from("+Inf"), |v| json_f64(*v));
                                    json!({"le": le, "count": cumulative})
                                })
                                .collect();
                            json!({"labels": labels, "buckets": buckets, "sum": json_f64(h.sum.get()), "count": cumulative})
                        }
                    }
                })
                .collect();
            let kind = match fam.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            metrics.push(json!({
                "name": name,
                "type": kind,
                "help": help.get(name).map_or("", String::as_str),
                "series": series,
            }));
        }
        json!({ "metrics": metrics }).to_string()
    }

    fn describe(&self, key: &KeyName, description: &SharedString) {
        if !description.is_empty() {
            self.inner
                .help
                .write()
                .insert(sanitize_name(key.as_str()), description.to_string());
        }
    }
}

fn json_f64(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or_else(
        || serde_json::Value::from(v.to_string()),
        serde_json::Value::Number,
    )
}

fn line(out: &mut String, name: &str, suffix: &str, labels: &str, extra: &str) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || !extra.is_empty() {
        out.push('{');
        out.push_str(labels);
        if !labels.is_empty() && !extra.is_empty() {
            out.push(',');
        }
        out.push_str(extra);
        out.push('}');
    }
    out.push(' ');
}

fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape_help(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_label_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`; anything else becomes `_`.
fn sanitize_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`; anything else becomes `_`.
fn sanitize_label(s: &str) -> String {
    sanitize_name(s).replace(':', "_")
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&key, &description);
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&key, &description);
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(&key, &description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.registry.get_or_create_counter(key, Arc::clone))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.registry.get_or_create_gauge(key, Arc::clone))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.registry.get_or_create_histogram(key, Arc::clone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> MetricsRecorder {
        let mut c = MetricsConfig::default();
        c.labels.insert("region".into(), "eu-1".into());
        MetricsRecorder::new(&c)
    }

    #[test]
    fn renders_every_kind_with_global_labels() {
        let r = recorder();
        metrics::with_local_recorder(&r, || {
            metrics::counter!("tamma_log_lines_total", "output" => "stdout").increment(3);
            metrics::gauge!("tamma_log_queue_depth", "output" => "a\"b").set(2.5);
            metrics::histogram!("tamma_events_commit_seconds").record(0.02);
            metrics::histogram!("tamma_events_commit_seconds").record(20.0);
        });
        let text = r.render_prometheus();
        assert!(text.contains("# HELP tamma_log_lines_total Log lines written, by output.\n# TYPE tamma_log_lines_total counter\n"), "{text}");
        assert!(
            text.contains("tamma_log_lines_total{region=\"eu-1\",output=\"stdout\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("tamma_log_queue_depth{region=\"eu-1\",output=\"a\\\"b\"} 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("tamma_events_commit_seconds_bucket{region=\"eu-1\",le=\"0.025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tamma_events_commit_seconds_bucket{region=\"eu-1\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("tamma_events_commit_seconds_count{region=\"eu-1\"} 2\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&r.render_json()).unwrap();
        let names: Vec<_> = json["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "tamma_events_commit_seconds",
                "tamma_log_lines_total",
                "tamma_log_queue_depth"
            ]
        );
        assert_eq!(json["metrics"][1]["series"][0]["value"], 3);
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("a.b-c"), "a_b_c");
        assert_eq!(sanitize_name("9x"), "_9x");
        assert_eq!(sanitize_label("a:b"), "a_b");
    }
}
