//! Config sections owned by this crate: `logging`, `monitoring.tracing` and `monitoring.metrics`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tamma_core::{ByteSize, DurationMs, Problem, Validate, join_path};

/// A log level, from the most verbose (`trace`) to the least (`error`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed diagnostics, usually only for one target at a time.
    Trace,
    /// Diagnostics for developers.
    Debug,
    /// Normal operation worth recording (the default).
    Info,
    /// Something unexpected that the process recovered from.
    Warn,
    /// An operation failed.
    Error,
}

impl Level {
    /// The lowercase name used in config and in log lines.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    /// The matching `tracing` level.
    #[must_use]
    pub const fn to_tracing(self) -> tracing::Level {
        match self {
            Self::Trace => tracing::Level::TRACE,
            Self::Debug => tracing::Level::DEBUG,
            Self::Info => tracing::Level::INFO,
            Self::Warn => tracing::Level::WARN,
            Self::Error => tracing::Level::ERROR,
        }
    }

    /// The level of a `tracing` level.
    #[must_use]
    pub fn from_tracing(level: tracing::Level) -> Self {
        match level {
            tracing::Level::TRACE => Self::Trace,
            tracing::Level::DEBUG => Self::Debug,
            tracing::Level::INFO => Self::Info,
            tracing::Level::WARN => Self::Warn,
            _ => Self::Error,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(Self::Trace),
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" | "warning" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            _ => Err(format!(
                "unknown level {s:?} (use trace, debug, info, warn or error)"
            )),
        }
    }
}

/// How a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object a line, the entry schema in `docs/logging.md`.
    Json,
    /// Human text: `timestamp LEVEL target: message key=value …` (colour only on a terminal).
    Text,
}

/// What an output does when its queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Never block the caller: the new line is dropped, counted, and the count is reported in a
    /// later line of the same output.
    #[default]
    DropNewest,
    /// Block the caller until the output has room (backpressure; for audit-grade logs).
    Block,
}

/// Default queue capacity, in lines, of every output.
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;

/// The `logging` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// The global level: events less severe than this are discarded everywhere (unless a directive
    /// raises the level of their target). Changes at runtime.
    pub level: Level,
    /// Per-target levels in `tracing` directive syntax, e.g. `tamma_events=debug` or
    /// `tamma_server::auth=trace`. They override `level` for the targets they name. Changes at runtime.
    pub directives: Vec<String>,
    /// The default format of outputs that do not set their own.
    #[schemars(extend("x-tamma-restart" = true))]
    pub format: Format,
    /// Where lines go: a list of `{type, config}` objects (`stdout`, `stderr`, `file`, `http`,
    /// `syslog`). Any change here, an output's `level` included, needs a restart (a program embedding
    /// the telemetry can change output levels with `TelemetryHandle::set_output_level`).
    #[schemars(extend("x-tamma-restart" = true))]
    pub outputs: Vec<OutputConfig>,
    /// When `true` (the default), event fields go to `meta` in JSON lines. When `false`, they are also
    /// appended to the message as `key=value` and `meta` holds only span fields, for collectors that
    /// index only the message.
    pub structured: bool,
    /// Redaction of secrets before anything is written.
    pub redaction: RedactionConfig,
    /// Default rotation of `file` outputs that do not set their own `maxSize`/`maxFiles`/`compress`.
    #[schemars(extend("x-tamma-restart" = true))]
    pub rotation: RotationConfig,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: Level::Info,
            directives: Vec::new(),
            format: Format::Json,
            outputs: vec![OutputConfig::Stdout(StreamOutputConfig::default())],
            structured: true,
            redaction: RedactionConfig::default(),
            rotation: RotationConfig::default(),
        }
    }
}

/// The `logging.redaction` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RedactionConfig {
    /// Whether redaction is on (it is by default).
    pub enabled: bool,
    /// Rust regular expressions matched case-insensitively, unanchored, against field keys (event
    /// fields, span fields, `key=value` pairs inside messages). The value of a matching key prints as
    /// `[REDACTED]`. The default adds `authorization`, `cookie` and `credential` to the seed's
    /// `password`, `token`, `secret`, `key`.
    pub patterns: Vec<String>,
    /// Whether the built-in value redactors run: bearer tokens, JWT-shaped strings, AWS access key
    /// ids.
    pub builtin_redactors: bool,
    /// Extra value redactors: every match of `pattern` in a value or message is replaced.
    pub custom_redactors: Vec<CustomRedactorConfig>,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            patterns: [
                "password",
                "token",
                "secret",
                "key",
                "authorization",
                "cookie",
                "credential",
            ]
            .map(String::from)
            .to_vec(),
            builtin_redactors: true,
            custom_redactors: Vec::new(),
        }
    }
}

/// One custom value redactor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CustomRedactorConfig {
    /// A name for messages about this redactor.
    pub name: String,
    /// A Rust regular expression; every match in a value or message is replaced.
    pub pattern: String,
    /// The replacement; `$1`/`${name}` refer to capture groups. Default `[REDACTED]`.
    pub replacement: String,
}

/// The `logging.rotation` section: size-based rotation of file outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Whether file outputs without their own `maxSize` rotate.
    pub enabled: bool,
    /// Rotate when the active file would grow past this size.
    pub max_size: ByteSize,
    /// How many rotated files to keep besides the active one (older ones are deleted).
    pub max_files: u32,
    /// Gzip rotated files (`app.log.1.gz`).
    pub compress: bool,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_size: ByteSize::mb(100),
            max_files: 10,
            compress: true,
        }
    }
}

/// One output: the seed's `{type, config}` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub enum OutputConfig {
    /// The process's standard output.
    Stdout(StreamOutputConfig),
    /// The process's standard error.
    Stderr(StreamOutputConfig),
    /// A file below the data directory, rotated by size.
    File(FileOutputConfig),
    /// Batches of JSON lines POSTed to a URL.
    Http(HttpOutputConfig),
    /// RFC 5424 syslog over UDP, TCP or a local socket.
    Syslog(SyslogOutputConfig),
}

impl OutputConfig {
    /// The type name (`stdout`, `file`, …).
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::Stdout(_) => "stdout",
            Self::Stderr(_) => "stderr",
            Self::File(_) => "file",
            Self::Http(_) => "http",
            Self::Syslog(_) => "syslog",
        }
    }

    /// The settings every output has.
    #[must_use]
    pub fn common(&self) -> Common<'_> {
        macro_rules! c {
            ($c:expr) => {
                Common {
                    name: $c.name.as_deref(),
                    level: $c.level,
                    format: $c.format,
                    capacity: $c.capacity,
                    policy: $c.policy,
                }
            };
        }
        match self {
            Self::Stdout(c) | Self::Stderr(c) => c!(c),
            Self::File(c) => c!(c),
            Self::Http(c) => c!(c),
            Self::Syslog(c) => c!(c),
        }
    }
}

/// The settings every output has (a view over an [`OutputConfig`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Common<'a> {
    /// The output's name, if set.
    pub name: Option<&'a str>,
    /// The output's own level.
    pub level: Option<Level>,
    /// The output's own format.
    pub format: Option<Format>,
    /// Queue capacity in lines.
    pub capacity: usize,
    /// What happens when the queue is full.
    pub policy: QueuePolicy,
}

/// Config of `stdout` and `stderr` outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StreamOutputConfig {
    /// The output's name in health and in `set_output_level` (default: the type, `stdout`).
    pub name: Option<String>,
    /// This output's level; lines less severe are not written here. Default: all lines the global
    /// level lets through. Changes at runtime.
    pub level: Option<Level>,
    /// This output's format (default: `logging.format`).
    pub format: Option<Format>,
    /// Queue capacity in lines.
    pub capacity: usize,
    /// What happens when the queue is full.
    pub policy: QueuePolicy,
}

impl Default for StreamOutputConfig {
    fn default() -> Self {
        Self {
            name: None,
            level: None,
            format: None,
            capacity: DEFAULT_QUEUE_CAPACITY,
            policy: QueuePolicy::DropNewest,
        }
    }
}

/// Config of a `file` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FileOutputConfig {
    /// The output's name in health and in `set_output_level` (default: `file`).
    pub name: Option<String>,
    /// The file, relative to the data directory (an absolute path is used as is).
    pub path: String,
    /// Rotate when the file would grow past this size. Default: `logging.rotation.maxSize` when
    /// `logging.rotation.enabled`, else no rotation.
    pub max_size: Option<ByteSize>,
    /// Rotated files to keep besides the active one. Default: `logging.rotation.maxFiles`.
    pub max_files: Option<u32>,
    /// Gzip rotated files. Default: `logging.rotation.compress`.
    pub compress: Option<bool>,
    /// This output's level. Changes at runtime.
    pub level: Option<Level>,
    /// This output's format (default: `logging.format`).
    pub format: Option<Format>,
    /// Queue capacity in lines.
    pub capacity: usize,
    /// What happens when the queue is full.
    pub policy: QueuePolicy,
}

impl Default for FileOutputConfig {
    fn default() -> Self {
        Self {
            name: None,
            path: String::new(),
            max_size: None,
            max_files: None,
            compress: None,
            level: None,
            format: None,
            capacity: DEFAULT_QUEUE_CAPACITY,
            policy: QueuePolicy::DropNewest,
        }
    }
}

/// Config of an `http` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpOutputConfig {
    /// The output's name in health and in `set_output_level` (default: `http`).
    pub name: Option<String>,
    /// Where batches are POSTed (`http://` or `https://`).
    pub url: String,
    /// Extra request headers (e.g. an API key for the collector). Values never print.
    pub headers: BTreeMap<String, tamma_core::Secret>,
    /// Send a batch when it holds this many lines.
    pub max_events: usize,
    /// Send a batch when it holds this many bytes.
    pub max_bytes: ByteSize,
    /// Send a batch at most this long after its first line.
    pub max_wait: DurationMs,
    /// Timeout of one request.
    pub timeout: DurationMs,
    /// First retry delay after a failed request (full jitter, doubling).
    pub retry_initial_backoff: DurationMs,
    /// Largest retry delay.
    pub retry_max_backoff: DurationMs,
    /// This output's level. Changes at runtime.
    pub level: Option<Level>,
    /// This output's format (default: `json`, whatever `logging.format` says).
    pub format: Option<Format>,
    /// Queue capacity in lines.
    pub capacity: usize,
    /// What happens when the queue is full (`block` for lines that must not be lost).
    pub policy: QueuePolicy,
}

impl Default for HttpOutputConfig {
    fn default() -> Self {
        Self {
            name: None,
            url: String::new(),
            headers: BTreeMap::new(),
            max_events: 1000,
            max_bytes: ByteSize::mib(1),
            max_wait: DurationMs::from_millis(1000),
            timeout: DurationMs::from_secs(10),
            retry_initial_backoff: DurationMs::from_millis(100),
            retry_max_backoff: DurationMs::from_secs(30),
            level: None,
            format: Some(Format::Json),
            capacity: DEFAULT_QUEUE_CAPACITY,
            policy: QueuePolicy::DropNewest,
        }
    }
}

/// How syslog messages travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    /// One datagram per message (RFC 5426).
    #[default]
    Udp,
    /// A TCP stream with octet-counting framing (RFC 6587).
    Tcp,
    /// A local unix socket (datagram, or stream with octet counting), e.g. `/dev/log`.
    Unix,
}

/// Syslog facilities (RFC 5424 §6.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Facility {
    Kern,
    #[default]
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The facility code (0–23).
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Kern => 0,
            Self::User => 1,
            Self::Mail => 2,
            Self::Daemon => 3,
            Self::Auth => 4,
            Self::Syslog => 5,
            Self::Lpr => 6,
            Self::News => 7,
            Self::Uucp => 8,
            Self::Cron => 9,
            Self::Authpriv => 10,
            Self::Ftp => 11,
            Self::Local0 => 16,
            Self::Local1 => 17,
            Self::Local2 => 18,
            Self::Local3 => 19,
            Self::Local4 => 20,
            Self::Local5 => 21,
            Self::Local6 => 22,
            Self::Local7 => 23,
        }
    }
}

/// Config of a `syslog` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SyslogOutputConfig {
    /// The output's name in health and in `set_output_level` (default: `syslog`).
    pub name: Option<String>,
    /// `udp`, `tcp` or `unix`.
    pub transport: SyslogTransport,
    /// `host:port` for `udp`/`tcp`, a socket path for `unix` (e.g. `/dev/log`).
    pub address: String,
    /// The facility of every message.
    pub facility: Facility,
    /// The APP-NAME field (at most 48 printable ASCII characters).
    pub app_name: String,
    /// This output's level. Changes at runtime.
    pub level: Option<Level>,
    /// The format of the MSG part (default: `logging.format`).
    pub format: Option<Format>,
    /// Queue capacity in lines.
    pub capacity: usize,
    /// What happens when the queue is full.
    pub policy: QueuePolicy,
}

impl Default for SyslogOutputConfig {
    fn default() -> Self {
        Self {
            name: None,
            transport: SyslogTransport::Udp,
            address: "127.0.0.1:514".into(),
            facility: Facility::User,
            app_name: "tamma".into(),
            level: None,
            format: None,
            capacity: DEFAULT_QUEUE_CAPACITY,
            policy: QueuePolicy::DropNewest,
        }
    }
}

/// The `monitoring.tracing` section: OpenTelemetry traces over OTLP/HTTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Whether spans are exported.
    #[schemars(extend("x-tamma-restart" = true))]
    pub enabled: bool,
    /// The OTLP/HTTP traces URL (`http://collector:4318/v1/traces`). Empty: the `OTEL_EXPORTER_OTLP_*`
    /// variables, else `http://localhost:4318/v1/traces`.
    #[schemars(extend("x-tamma-restart" = true))]
    pub endpoint: String,
    /// Fraction of new traces sampled (0–1), parent-based: a child follows its parent's decision.
    #[schemars(extend("x-tamma-restart" = true))]
    pub sample_rate: f64,
    /// Request headers for the collector (e.g. an API key). Values never print.
    #[schemars(extend("x-tamma-restart" = true))]
    pub headers: BTreeMap<String, tamma_core::Secret>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: String::new(),
            sample_rate: 0.1,
            headers: BTreeMap::new(),
        }
    }
}

/// The exposition format of `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    /// Prometheus text format 0.0.4.
    #[default]
    Prometheus,
    /// A JSON document (see `docs/logging.md`).
    Json,
}

/// The `monitoring.metrics` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether metrics are recorded and served.
    #[schemars(extend("x-tamma-restart" = true))]
    pub enabled: bool,
    /// The HTTP path that serves them.
    #[schemars(extend("x-tamma-restart" = true))]
    pub endpoint: String,
    /// How often periodic gauges (process stats) are refreshed.
    #[schemars(extend("x-tamma-restart" = true))]
    pub interval: DurationMs,
    /// The format served at `endpoint`.
    #[schemars(extend("x-tamma-restart" = true))]
    pub format: MetricsFormat,
    /// Labels added to every series (e.g. `{"region": "eu-1"}`).
    #[schemars(extend("x-tamma-restart" = true))]
    pub labels: BTreeMap<String, String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: "/metrics".into(),
            interval: DurationMs::from_millis(30_000),
            format: MetricsFormat::Prometheus,
            labels: BTreeMap::new(),
        }
    }
}

fn check_regex(pattern: &str, path: String, out: &mut Vec<Problem>) {
    if let Err(e) = regex::Regex::new(pattern) {
        out.push(Problem::new(
            path,
            format!("invalid regular expression: {e}"),
        ));
    }
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

impl Validate for LoggingConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        for (i, d) in self.directives.iter().enumerate() {
            if let Err(e) = d.parse::<tracing_subscriber::filter::Directive>() {
                out.push(Problem::new(
                    format!("{}[{i}]", join_path(path, "directives")),
                    format!("invalid directive {d:?}: {e}"),
                ));
            }
        }
        let red = join_path(path, "redaction");
        for (i, p) in self.redaction.patterns.iter().enumerate() {
            check_regex(p, format!("{}[{i}]", join_path(&red, "patterns")), out);
        }
        for (i, c) in self.redaction.custom_redactors.iter().enumerate() {
            let p = format!("{}[{i}]", join_path(&red, "customRedactors"));
            check_regex(&c.pattern, join_path(&p, "pattern"), out);
            if c.pattern.is_empty() {
                out.push(Problem::new(join_path(&p, "pattern"), "must not be empty"));
            }
        }
        let rot = join_path(path, "rotation");
        if self.rotation.enabled && self.rotation.max_size.bytes() == 0 {
            out.push(Problem::new(
                join_path(&rot, "maxSize"),
                "must be greater than 0",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, o) in self.outputs.iter().enumerate() {
            let p = format!("{}[{i}].config", join_path(path, "outputs"));
            let common = o.common();
            if common.capacity == 0 {
                out.push(Problem::new(
                    join_path(&p, "capacity"),
                    "must be at least 1",
                ));
            }
            if let Some(n) = common.name {
                if n.is_empty() {
                    out.push(Problem::new(join_path(&p, "name"), "must not be empty"));
                } else if !names.insert(n.to_owned()) {
                    out.push(Problem::new(
                        join_path(&p, "name"),
                        format!("duplicate output name {n:?}"),
                    ));
                }
            }
            match o {
                OutputConfig::Stdout(_) | OutputConfig::Stderr(_) => {}
                OutputConfig::File(f) => {
                    if f.path.trim().is_empty() {
                        out.push(Problem::new(
                            join_path(&p, "path"),
                            "a file output needs a path",
                        ));
                    }
                    if f.max_size.is_some_and(|s| s.bytes() == 0) {
                        out.push(Problem::new(
                            join_path(&p, "maxSize"),
                            "must be greater than 0",
                        ));
                    }
                }
                OutputConfig::Http(h) => {
                    match reqwest::Url::parse(&h.url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                        Ok(u) => out.push(Problem::new(
                            join_path(&p, "url"),
                            format!("scheme {:?} is not http or https", u.scheme()),
                        )),
                        Err(e) => out.push(Problem::new(
                            join_path(&p, "url"),
                            format!("invalid URL {:?}: {e}", h.url),
                        )),
                    }
                    if h.max_events == 0 {
                        out.push(Problem::new(
                            join_path(&p, "maxEvents"),
                            "must be at least 1",
                        ));
                    }
                    if h.max_bytes.bytes() == 0 {
                        out.push(Problem::new(
                            join_path(&p, "maxBytes"),
                            "must be greater than 0",
                        ));
                    }
                    if h.retry_initial_backoff > h.retry_max_backoff {
                        out.push(Problem::new(
                            join_path(&p, "retryInitialBackoff"),
                            format!(
                                "must not exceed retryMaxBackoff ({} > {})",
                                h.retry_initial_backoff, h.retry_max_backoff
                            ),
                        ));
                    }
                    for k in h.headers.keys() {
                        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                            out.push(Problem::new(
                                join_path(&join_path(&p, "headers"), k),
                                "invalid header name",
                            ));
                        }
                    }
                }
                OutputConfig::Syslog(s) => {
                    if s.address.trim().is_empty() {
                        out.push(Problem::new(join_path(&p, "address"), "must not be empty"));
                    } else if s.transport != SyslogTransport::Unix
                        && s.address.parse::<std::net::SocketAddr>().is_err()
                        && !s.address.contains(':')
                    {
                        out.push(Problem::new(
                            join_path(&p, "address"),
                            format!("{:?} is not host:port", s.address),
                        ));
                    }
                    if s.app_name.is_empty()
                        || s.app_name.len() > 48
                        || !s.app_name.bytes().all(|b| (33..=126).contains(&b))
                    {
                        out.push(Problem::new(
                            join_path(&p, "appName"),
                            "must be 1 to 48 printable ASCII characters without spaces",
                        ));
                    }
                }
            }
        }
    }
}

impl Validate for TracingConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            out.push(Problem::new(
                join_path(path, "sampleRate"),
                format!("must be between 0 and 1 (got {})", self.sample_rate),
            ));
        }
        if !self.endpoint.is_empty() {
            match reqwest::Url::parse(&self.endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => out.push(Problem::new(
                    join_path(path, "endpoint"),
                    format!("{:?} is not an http(s) URL", self.endpoint),
                )),
            }
        }
        for k in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                out.push(Problem::new(
                    join_path(&join_path(path, "headers"), k),
                    "invalid header name",
                ));
            }
        }
    }
}

impl Validate for MetricsConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        if !self.endpoint.starts_with('/') {
            out.push(Problem::new(
                join_path(path, "endpoint"),
                "must start with /",
            ));
        }
        if self.interval.is_zero() {
            out.push(Problem::new(
                join_path(path, "interval"),
                "must be greater than 0",
            ));
        }
        for k in self.labels.keys() {
            if !valid_label_name(k) {
                out.push(Problem::new(
                    join_path(&join_path(path, "labels"), k),
                    "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems<T: Validate>(t: &T, path: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        t.validate(path, &mut out);
        out
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = LoggingConfig::default();
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["level"], "info");
        assert_eq!(j["format"], "json");
        assert_eq!(j["structured"], true);
        assert_eq!(j["outputs"][0]["type"], "stdout");
        assert_eq!(j["rotation"]["maxSize"], "100MB");
        assert_eq!(j["rotation"]["maxFiles"], 10);
        let t = serde_json::to_value(TracingConfig::default()).unwrap();
        assert_eq!(
            t,
            serde_json::json!({"enabled": false, "endpoint": "", "sampleRate": 0.1, "headers": {}})
        );
        let m = serde_json::to_value(MetricsConfig::default()).unwrap();
        assert_eq!(m["interval"], 30000);
        assert_eq!(m["format"], "prometheus");
        assert!(problems(&c, "logging").is_empty());
    }

    #[test]
    fn seed_shaped_outputs_parse() {
        let c: LoggingConfig = serde_json::from_value(serde_json::json!({
            "outputs": [
                {"type": "stdout", "config": {}},
                {"type": "file", "config": {"path": "logs/tamma.log", "maxSize": "10MB", "level": "debug"}},
                {"type": "http", "config": {"url": "http://127.0.0.1:9/logs", "maxWait": "2s", "policy": "block"}},
                {"type": "syslog", "config": {"transport": "tcp", "address": "127.0.0.1:601", "facility": "local3"}}
            ]
        }))
        .unwrap();
        assert_eq!(c.outputs.len(), 4);
        let OutputConfig::Http(h) = &c.outputs[2] else {
            panic!("not http")
        };
        assert_eq!(h.max_wait.as_millis(), 2000);
        assert_eq!(h.policy, QueuePolicy::Block);
        assert!(
            problems(&c, "logging").is_empty(),
            "{:?}",
            problems(&c, "logging")
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_value::<LoggingConfig>(serde_json::json!({"levle": "info"}));
        assert!(e.is_err());
        let e = serde_json::from_value::<LoggingConfig>(
            serde_json::json!({"outputs": [{"type": "file", "config": {"pth": "x"}}]}),
        );
        assert!(e.is_err());
    }

    #[test]
    fn validation_names_paths() {
        let mut c = LoggingConfig::default();
        c.redaction.patterns.push("(unclosed".into());
        c.directives.push("tamma_events=loud".into());
        c.outputs
            .push(OutputConfig::File(FileOutputConfig::default()));
        let p = problems(&c, "logging");
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert!(
            paths.contains(&"logging.redaction.patterns[7]"),
            "{paths:?}"
        );
        assert!(paths.contains(&"logging.directives[0]"), "{paths:?}");
        assert!(
            paths.contains(&"logging.outputs[1].config.path"),
            "{paths:?}"
        );

        let t = TracingConfig {
            sample_rate: 1.5,
            ..TracingConfig::default()
        };
        assert_eq!(
            problems(&t, "monitoring.tracing")[0].path,
            "monitoring.tracing.sampleRate"
        );
        let mut m = MetricsConfig::default();
        m.labels.insert("bad-label".into(), "x".into());
        assert_eq!(
            problems(&m, "monitoring.metrics")[0].path,
            "monitoring.metrics.labels.bad-label"
        );
    }
}
