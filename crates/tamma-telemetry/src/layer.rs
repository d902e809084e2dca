//! The `tracing` layer: captures each event once (fields, span fields, error chain), redacts it,
//! renders it in the formats the outputs need and queues it to every output whose level admits it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::Level;
use crate::format::{
    ErrorInfo, LineFormat, Record, json_str, render_json, render_text, text_value,
};
use crate::output::{Line, Output, level_rank};
use crate::redact::Redactor;

/// State shared by the layer and the [`crate::TelemetryHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) outputs: Vec<Arc<Output>>,
    pub(crate) redactor: Arc<ArcSwap<Redactor>>,
    /// Bumped whenever the redactor changes (invalidates the per-thread key cache).
    pub(crate) generation: AtomicU64,
    pub(crate) structured: AtomicBool,
    pub(crate) source_json: String,
    need_json: bool,
    need_text: bool,
}

impl Shared {
    pub(crate) fn new(
        outputs: Vec<Arc<Output>>,
        redactor: Redactor,
        structured: bool,
        source_json: String,
    ) -> Self {
        let need_json = outputs.iter().any(|o| o.format == LineFormat::Json);
        let need_text = outputs.iter().any(|o| o.format != LineFormat::Json);
        Self {
            outputs,
            redactor: Arc::new(ArcSwap::from_pointee(redactor)),
            generation: AtomicU64::new(1),
            structured: AtomicBool::new(structured),
            source_json,
            need_json,
            need_text,
        }
    }

    /// The most verbose rank any output accepts (0 when there is no output).
    fn max_rank(&self) -> u8 {
        self.outputs.iter().map(|o| o.rank()).max().unwrap_or(0)
    }
}

/// The formatting layer. Not a per-layer filter: its levels live in atomics (see tracing#1629).
pub(crate) struct LogLayer {
    pub(crate) shared: Arc<Shared>,
}

/// Span fields rendered once when the span is created (and extended by `Span::record`).
#[derive(Debug, Default)]
struct SpanFields {
    json: String,
    text: String,
}

#[derive(Default)]
struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeyCache = HashMap<usize, bool, BuildHasherDefault<PtrHasher>>;

thread_local! {
    static RECORD: RefCell<Record> = RefCell::new(Record::default());
    /// (generation, field-name pointer → sensitive?)
    static KEYS: RefCell<(u64, KeyCache)> = RefCell::new((0, KeyCache::default()));
    /// 0 unknown, 1 a caller's thread, 2 a telemetry thread (its events are not logged).
    static INTERNAL: Cell<u8> = const { Cell::new(0) };
}

/// Whether the current thread belongs to telemetry itself: an output worker, or a thread of the HTTP
/// client or trace exporter they use. Events there are not logged, so an output can never feed (or
/// block) itself.
fn internal_thread() -> bool {
    INTERNAL.with(|c| match c.get() {
        0 => {
            let t = std::thread::current();
            let yes = t.name().is_some_and(|n| {
                n.starts_with("tamma-log-")
                    || n.starts_with("reqwest-internal")
                    || n.starts_with("OpenTelemetry")
            });
            c.set(if yes { 2 } else { 1 });
            yes
        }
        v => v == 2,
    })
}

fn sensitive(red: &Redactor, generation: u64, key: &'static str) -> bool {
    KEYS.with(|k| {
        let Ok(mut k) = k.try_borrow_mut() else {
            return red.is_sensitive_key(key);
        };
        if k.0 != generation {
            k.0 = generation;
            k.1.clear();
        }
        *k.1.entry(key.as_ptr() as usize ^ key.len().rotate_left(48))
            .or_insert_with(|| red.is_sensitive_key(key))
    })
}

struct Extras<'a> {
    message: &'a mut String,
    error: &'a mut Option<ErrorInfo>,
    error_name: &'a mut Option<String>,
    error_code: &'a mut Option<String>,
}

/// Writes fields as `"k":v` (JSON) and ` k=v` (text), redacted.
struct FieldWriter<'a> {
    json: &'a mut String,
    text: &'a mut String,
    do_json: bool,
    do_text: bool,
    red: &'a Redactor,
    generation: u64,
    extras: Option<Extras<'a>>,
    scratch: String,
}

impl FieldWriter<'_> {
    fn key(&mut self, k: &str) {
        if self.do_json {
            if !self.json.is_empty() {
                self.json.push(',');
            }
            json_str(self.json, k);
            self.json.push(':');
        }
        if self.do_text {
            self.text.push(' ');
            self.text.push_str(k);
            self.text.push('=');
        }
    }

    fn redacted(&mut self, k: &str) {
        self.key(k);
        if self.do_json {
            self.json.push_str("\"[REDACTED]\"");
        }
        if self.do_text {
            self.text.push_str("[REDACTED]");
        }
    }

    fn string(&mut self, f: &Field, v: &str) {
        let k = f.name();
        if let Some(x) = self.extras.as_mut() {
            match k {
                "message" => {
                    x.message.push_str(&self.red.value(v));
                    return;
                }
                "error.name" => {
                    *x.error_name = Some(self.red.value(v).into_owned());
                    return;
                }
                "error.code" => {
                    *x.error_code = Some(self.red.value(v).into_owned());
                    return;
                }
                _ => {}
            }
        }
        if sensitive(self.red, self.generation, k) {
            return self.redacted(k);
        }
        let v = self.red.value(v);
        self.key(k);
        if self.do_json {
            json_str(self.json, &v);
        }
        if self.do_text {
            text_value(self.text, &v);
        }
    }

    fn raw(&mut self, f: &Field, v: fmt::Arguments<'_>) {
        let k = f.name();
        if sensitive(self.red, self.generation, k) {
            return self.redacted(k);
        }
        self.key(k);
        if self.do_json {
            let _ = self.json.write_fmt(v);
        }
        if self.do_text {
            let _ = self.text.write_fmt(v);
        }
    }
}

impl Visit for FieldWriter<'_> {
    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        let _ = write!(s, "{v:?}");
        self.string(f, &s);
        self.scratch = s;
    }

    fn record_str(&mut self, f: &Field, v: &str) {
        self.string(f, v);
    }

    fn record_i64(&mut self, f: &Field, v: i64) {
        self.raw(f, format_args!("{v}"));
    }

    fn record_u64(&mut self, f: &Field, v: u64) {
        self.raw(f, format_args!("{v}"));
    }

    fn record_i128(&mut self, f: &Field, v: i128) {
        self.raw(f, format_args!("{v}"));
    }

    fn record_u128(&mut self, f: &Field, v: u128) {
        self.raw(f, format_args!("{v}"));
    }

    fn record_bool(&mut self, f: &Field, v: bool) {
        self.raw(f, format_args!("{v}"));
    }

    fn record_f64(&mut self, f: &Field, v: f64) {
        if v.is_finite() {
            self.raw(f, format_args!("{v}"));
        } else {
            self.string(f, &v.to_string());
        }
    }

    fn record_error(&mut self, f: &Field, e: &(dyn std::error::Error + 'static)) {
        let red = self.red;
        let mut chain = Vec::new();
        let mut src = e.source();
        while let Some(s) = src {
            chain.push(red.value(&s.to_string()).into_owned());
            src = s.source();
        }
        let message = red.value(&e.to_string()).into_owned();
        if let Some(x) = self.extras.as_mut()
            && x.error.is_none()
        {
            *x.error = Some(ErrorInfo {
                name: error_name(e),
                message,
                chain,
                code: None,
            });
            return;
        }
        let mut all = message;
        for c in chain {
            all.push_str(": ");
            all.push_str(&c);
        }
        self.string(f, &all);
    }
}

/// The leading identifier of the error's `Debug` form (the variant or struct name for derived
/// `Debug`), else `Error`. Only the identifier is kept, never the Debug body.
fn error_name(e: &dyn std::error::Error) -> String {
    let d = format!("{e:?}");
    let ident: String = d
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) {
        "Error".into()
    } else {
        ident
    }
}

fn tracing_rank(l: &tracing::Level) -> u8 {
    level_rank(Level::from_tracing(*l))
}

impl LogLayer {
    fn writer<'a>(
        &self,
        json: &'a mut String,
        text: &'a mut String,
        red: &'a Redactor,
    ) -> FieldWriter<'a> {
        FieldWriter {
            json,
            text,
            do_json: self.shared.need_json,
            do_text: self.shared.need_text,
            red,
            generation: self.shared.generation.load(Ordering::Relaxed),
            extras: None,
            scratch: String::new(),
        }
    }

    fn handle<S>(&self, rec: &mut Record, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let rank = tracing_rank(meta.level());
        let shared = &*self.shared;
        let mut counts = [0usize; 3];
        for o in &shared.outputs {
            if rank <= o.rank() {
                counts[o.format.index()] += 1;
            }
        }
        if counts == [0; 3] {
            return;
        }
        let red = shared.redactor.load();
        rec.clear();
        let level = Level::from_tracing(*meta.level());
        let time = SystemTime::now();
        rec.level = Some(level);
        rec.time = Some(time);
        rec.target.push_str(meta.target());
        {
            let Record {
                message,
                json,
                text,
                error,
                error_name,
                error_code,
                ..
            } = rec;
            let mut w = self.writer(json, text, &red);
            w.extras = Some(Extras {
                message,
                error,
                error_name,
                error_code,
            });
            event.record(&mut w);
        }
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(f) = ext.get::<SpanFields>() {
                    if !f.json.is_empty() {
                        if !rec.span_json.is_empty() {
                            rec.span_json.push(',');
                        }
                        rec.span_json.push_str(&f.json);
                    }
                    rec.span_text.push_str(&f.text);
                }
            }
        }
        let structured = shared.structured.load(Ordering::Relaxed);
        let mut rendered: [Option<Vec<u8>>; 3] = [None, None, None];
        for (i, slot) in rendered.iter_mut().enumerate() {
            if counts[i] == 0 {
                continue;
            }
            let mut s = String::with_capacity(256 + rec.json.len() + rec.span_json.len());
            match i {
                0 => render_json(rec, &shared.source_json, structured, &mut s),
                1 => render_text(rec, false, &mut s),
                _ => render_text(rec, true, &mut s),
            }
            *slot = Some(s.into_bytes());
        }
        for o in &shared.outputs {
            if rank > o.rank() {
                continue;
            }
            let i = o.format.index();
            counts[i] -= 1;
            let bytes = if counts[i] == 0 {
                rendered[i].take().unwrap_or_default()
            } else {
                rendered[i].clone().unwrap_or_default()
            };
            o.push(Line { level, time, bytes }, true);
        }
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() || tracing_rank(meta.level()) <= self.shared.max_rank() {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        meta.is_span() || tracing_rank(meta.level()) <= self.shared.max_rank()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let red = self.shared.redactor.load();
        let mut f = SpanFields::default();
        attrs.record(&mut self.writer(&mut f.json, &mut f.text, &red));
        span.extensions_mut().insert(f);
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let red = self.shared.redactor.load();
        let mut ext = span.extensions_mut();
        if let Some(f) = ext.get_mut::<SpanFields>() {
            values.record(&mut self.writer(&mut f.json, &mut f.text, &red));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if internal_thread() {
            return;
        }
        RECORD.with(|cell| match cell.try_borrow_mut() {
            Ok(mut rec) => self.handle(&mut rec, event, &ctx),
            // An event logged while formatting another (from a Debug impl): use a fresh record.
            Err(_) => self.handle(&mut Record::default(), event, &ctx),
        });
    }
}
