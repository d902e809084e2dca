//! The line formats: JSON (the entry schema of `docs/logging.md`) and human text.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Level;

/// The format of one output's lines (colour is a property of the line, not of the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineFormat {
    Json,
    Text,
    TextColor,
}

impl LineFormat {
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Json => 0,
            Self::Text => 1,
            Self::TextColor => 2,
        }
    }
}

/// Who writes: rendered once into the `source` object of every JSON line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The service name (`tamma`).
    pub service: String,
    /// The service version.
    pub version: String,
    /// The host name.
    pub hostname: String,
    /// The process id.
    pub pid: u32,
}

impl ServiceInfo {
    /// A service on this host: the hostname is read from `/proc/sys/kernel/hostname` (or
    /// `/etc/hostname`), the pid from the process.
    pub fn new(service: impl Into<String>, version: impl Into<String>) -> Self {
        let hostname = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        Self {
            service: service.into(),
            version: version.into(),
            hostname,
            pid: std::process::id(),
        }
    }

    /// The same service with another hostname.
    #[must_use]
    pub fn with_hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    pub(crate) fn source_json(&self) -> String {
        let mut s = String::from(",\"source\":{\"service\":");
        json_str(&mut s, &self.service);
        s.push_str(",\"version\":");
        json_str(&mut s, &self.version);
        s.push_str(",\"hostname\":");
        json_str(&mut s, &self.hostname);
        let _ = write!(s, ",\"pid\":{}}}", self.pid);
        s
    }
}

/// The `error` object of a line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrorInfo {
    pub(crate) name: String,
    pub(crate) message: String,
    pub(crate) chain: Vec<String>,
    pub(crate) code: Option<String>,
}

/// One event, captured once and rendered in every format an output needs. Buffers are reused.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) level: Option<Level>,
    pub(crate) time: Option<SystemTime>,
    pub(crate) target: String,
    pub(crate) message: String,
    /// `"k":v` pairs separated by commas (span fields, outermost first).
    pub(crate) span_json: String,
    /// ` k=v` pairs of span fields.
    pub(crate) span_text: String,
    /// `"k":v` pairs of event fields.
    pub(crate) json: String,
    /// ` k=v` pairs of event fields.
    pub(crate) text: String,
    pub(crate) error: Option<ErrorInfo>,
    pub(crate) error_name: Option<String>,
    pub(crate) error_code: Option<String>,
}

impl Record {
    pub(crate) fn clear(&mut self) {
        self.level = None;
        self.time = None;
        self.target.clear();
        self.message.clear();
        self.span_json.clear();
        self.span_text.clear();
        self.json.clear();
        self.text.clear();
        self.error = None;
        self.error_name = None;
        self.error_code = None;
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends `s` for the text format: bare when it has no space, quote or control character, else
/// quoted like JSON.
pub(crate) fn text_value(out: &mut String, s: &str) {
    if !s.is_empty() && s.bytes().all(|b| b > b' ' && b != b'"' && b != 0x7f) {
        out.push_str(s);
    } else {
        json_str(out, s);
    }
}

/// Appends an RFC 3339 UTC timestamp with milliseconds: `2026-11-26T11:05:00.123Z`.
pub(crate) fn timestamp(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
}

/// Days since 1970-01-01 to (year, month, day) — Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Renders `rec` as one JSON line (with the trailing newline) into `out`.
pub(crate) fn render_json(rec: &Record, source_json: &str, structured: bool, out: &mut String) {
    out.push_str("{\"timestamp\":\"");
    timestamp(out, rec.time.unwrap_or_else(SystemTime::now));
    out.push_str("\",\"level\":\"");
    out.push_str(rec.level.unwrap_or(Level::Info).as_str());
    out.push_str("\",\"message\":");
    if structured || rec.text.is_empty() {
        json_str(out, &rec.message);
    } else {
        let mut m = String::with_capacity(rec.message.len() + rec.text.len());
        m.push_str(&rec.message);
        m.push_str(&rec.text);
        json_str(out, &m);
    }
    out.push_str(",\"target\":");
    json_str(out, &rec.target);
    out.push_str(",\"meta\":{");
    out.push_str(&rec.span_json);
    if structured && !rec.json.is_empty() {
        if !rec.span_json.is_empty() {
            out.push(',');
        }
        out.push_str(&rec.json);
    }
    out.push('}');
    if let Some(e) = &rec.error {
        out.push_str(",\"error\":{\"name\":");
        json_str(out, rec.error_name.as_deref().unwrap_or(&e.name));
        out.push_str(",\"message\":");
        json_str(out, &e.message);
        out.push_str(",\"chain\":[");
        for (i, c) in e.chain.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(out, c);
        }
        out.push(']');
        if let Some(code) = rec.error_code.as_ref().or(e.code.as_ref()) {
            out.push_str(",\"code\":");
            json_str(out, code);
        }
        out.push('}');
    }
    out.push_str(source_json);
    out.push_str("}\n");
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";

const fn level_color(level: Level) -> &'static str {
    match level {
        Level::Trace => "\x1b[35m",
        Level::Debug => "\x1b[34m",
        Level::Info => "\x1b[32m",
        Level::Warn => "\x1b[33m",
        Level::Error => "\x1b[31m",
    }
}

/// Renders `rec` as one text line: `timestamp LEVEL target: message span_k=v k=v error=… caused_by=…`.
pub(crate) fn render_text(rec: &Record, color: bool, out: &mut String) {
    let level = rec.level.unwrap_or(Level::Info);
    if color {
        out.push_str(DIM);
    }
    timestamp(out, rec.time.unwrap_or_else(SystemTime::now));
    if color {
        out.push_str(RESET);
    }
    out.push(' ');
    if color {
        out.push_str(level_color(level));
    }
    let _ = write!(out, "{:>5}", level.as_str().to_ascii_uppercase());
    if color {
        out.push_str(RESET);
        out.push_str(DIM);
    }
    out.push(' ');
    out.push_str(&rec.target);
    out.push(':');
    if color {
        out.push_str(RESET);
    }
    out.push(' ');
    // Control characters in the message would let a caller forge lines.
    for ch in rec.message.chars() {
        match ch {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push_str(&rec.span_text);
    out.push_str(&rec.text);
    if let Some(e) = &rec.error {
        out.push_str(" error=");
        text_value(out, &e.message);
        if let Some(name) = rec
            .error_name
            .as_deref()
            .or(Some(e.name.as_str()))
            .filter(|n| !n.is_empty())
        {
            out.push_str(" error.name=");
            text_value(out, name);
        }
        if let Some(code) = rec.error_code.as_ref().or(e.code.as_ref()) {
            out.push_str(" error.code=");
            text_value(out, code);
        }
        for c in &e.chain {
            out.push_str(" caused_by=");
            text_value(out, c);
        }
    }
    out.push('\n');
}

/// Renders a line of the logging system itself (e.g. a drop report) in `format`.
pub(crate) fn render_internal(
    format: LineFormat,
    level: Level,
    message: &str,
    fields: &[(&str, u64)],
    source_json: &str,
) -> Vec<u8> {
    let mut rec = Record {
        level: Some(level),
        time: Some(SystemTime::now()),
        target: "tamma_telemetry".into(),
        message: message.into(),
        ..Record::default()
    };
    for (k, v) in fields {
        if !rec.json.is_empty() {
            rec.json.push(',');
        }
        json_str(&mut rec.json, k);
        let _ = write!(rec.json, ":{v}");
        let _ = write!(rec.text, " {k}={v}");
    }
    let mut out = String::new();
    match format {
        LineFormat::Json => render_json(&rec, source_json, true, &mut out),
        LineFormat::Text => render_text(&rec, false, &mut out),
        LineFormat::TextColor => render_text(&rec, true, &mut out),
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut s = String::new();
        timestamp(
            &mut s,
            UNIX_EPOCH + Duration::from_millis(1_764_155_100_123),
        );
        assert_eq!(s, "2025-11-26T11:05:00.123Z");
        s.clear();
        timestamp(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn json_escaping_is_valid_json() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn json_line_has_the_entry_schema() {
        let info = ServiceInfo {
            service: "tamma".into(),
            version: "1.0".into(),
            hostname: "h".into(),
            pid: 7,
        };
        let rec = Record {
            level: Some(Level::Warn),
            time: Some(UNIX_EPOCH),
            target: "t".into(),
            message: "hello".into(),
            span_json: "\"requestId\":\"r1\"".into(),
            json: "\"n\":1".into(),
            text: " n=1".into(),
            error: Some(ErrorInfo {
                name: "Io".into(),
                message: "boom".into(),
                chain: vec!["disk".into()],
                code: None,
            }),
            error_code: Some("E1".into()),
            ..Record::default()
        };
        let mut out = String::new();
        render_json(&rec, &info.source_json(), true, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "timestamp": "1970-01-01T00:00:00.000Z", "level": "warn", "message": "hello", "target": "t",
                "meta": {"requestId": "r1", "n": 1},
                "error": {"name": "Io", "message": "boom", "chain": ["disk"], "code": "E1"},
                "source": {"service": "tamma", "version": "1.0", "hostname": "h", "pid": 7}
            })
        );
        out.clear();
        render_json(&rec, &info.source_json(), false, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["message"], "hello n=1");
        assert_eq!(v["meta"], serde_json::json!({"requestId": "r1"}));
        out.clear();
        render_text(&rec, false, &mut out);
        assert_eq!(
            out,
            "1970-01-01T00:00:00.000Z  WARN t: hello n=1 error=boom error.name=Io error.code=E1 caused_by=disk\n"
        );
    }
}
