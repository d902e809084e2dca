//! `tamma events append|read|get|tail|export`: a running node's events over its HTTP API.
//!
//! Output is a human table on a terminal and JSON otherwise (`--json` forces JSON). Exit codes: 0
//! success, 1 the node refused the request or could not be reached (the error code and message are
//! printed), 2 bad usage (an unreadable file, invalid JSON in a flag).

use std::io::{IsTerminal as _, Read as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tamma_events::{EventFilter, SequencedEvent};

/// `tamma events [--url URL] <command>`.
#[derive(Args, Debug)]
pub(crate) struct EventsArgs {
    /// Base URL of the node (default: http://<server.listen> from the config).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: EventsCommand,
}

/// The `tamma events` commands.
#[derive(Subcommand, Debug)]
pub(crate) enum EventsCommand {
    /// Append events atomically: from a file or stdin, or one event from flags.
    Append(AppendArgs),
    /// Read events by filter (a table on a terminal, JSON otherwise).
    Read(ReadArgs),
    /// Show one event by id.
    Get(GetArgs),
    /// Follow events as they are stored; resumes where it stopped after a disconnect.
    Tail(TailArgs),
    /// Export events as JSON or CSV, page by page (any volume), with a progress bar on a terminal.
    Export(ExportArgs),
    /// Copy the embedded store (`<dataDir>/events.db`) into a new file, as of one moment, while the
    /// node runs; the copy is checked before it is kept. Reads the file, not the node's API.
    Backup(BackupArgs),
    /// Put a backup in place of the embedded store; the node must be stopped. The store it replaces is
    /// kept beside it (`events.db.replaced-<time>`), never deleted.
    Restore(RestoreArgs),
    /// Copy every event, with its position, id and commit time, and the consumers' cursors, from one
    /// store to another: SQLite to PostgreSQL when a node's store moves to a shared database, or back.
    /// Resumes after what the target holds: copy while the node runs, stop it, copy again for the rest.
    Copy(crate::copy_cli::CopyArgs),
}

/// `tamma events restore`.
#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    /// The backup to restore (a file `tamma events backup` wrote).
    #[arg(value_name = "FILE")]
    pub(crate) from: PathBuf,
}

/// `tamma events backup`.
#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    /// The file to write; it must not exist. A directory gets `events-<UTC time>.db` inside it.
    #[arg(value_name = "FILE")]
    pub(crate) to: PathBuf,
}

/// `tamma events append`.
#[derive(Args, Debug)]
pub(crate) struct AppendArgs {
    /// Read the append from FILE (`-` = stdin): one event, an array of events, `{"events": […],
    /// "condition": …}`, or one event per line. Without --file and --type, stdin is read.
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["event_type", "tags", "data", "id"])]
    file: Option<PathBuf>,
    /// The type of the one event to append (`TASK.STARTED`).
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    event_type: Option<String>,
    /// A tag of the event, `key:value` (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// The event's data, as JSON (`'{"attempt": 1}'`).
    #[arg(long, value_name = "JSON")]
    data: Option<String>,
    /// The event's id (a UUID; default: a new one). Retrying with the same id is idempotent.
    #[arg(long, value_name = "UUID")]
    id: Option<String>,
    /// Print the node's JSON answer even on a terminal.
    #[arg(long)]
    json: bool,
}

/// Filter flags shared by `read`, `tail` and `export`.
#[derive(Args, Debug, Default, Clone)]
pub(crate) struct Selection {
    /// Event type, any of which matches (repeatable).
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Tag the events must all carry, `key:value` (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
}

/// `tamma events read`.
#[derive(Args, Debug)]
pub(crate) struct ReadArgs {
    #[command(flatten)]
    select: Selection,
    /// A glob over the type (`TASK.*`).
    #[arg(long, value_name = "GLOB")]
    type_pattern: Option<String>,
    /// Earliest event timestamp (RFC 3339).
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// Latest event timestamp (RFC 3339).
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Most events to return (the node's default page is 1,000, its maximum 10,000).
    #[arg(short = 'n', long, value_name = "N")]
    limit: Option<u64>,
    /// Matching events to skip first.
    #[arg(long, value_name = "N", conflicts_with_all = ["from", "backwards"])]
    offset: Option<u64>,
    /// Start at this position (inclusive).
    #[arg(long, value_name = "POSITION", conflicts_with_all = ["type_pattern", "start", "end"])]
    from: Option<u64>,
    /// Newest first.
    #[arg(long, conflicts_with_all = ["type_pattern", "start", "end"])]
    backwards: bool,
    /// Print JSON even on a terminal.
    #[arg(long)]
    json: bool,
}

/// `tamma events get`.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// The event id.
    id: String,
    /// Print JSON even on a terminal.
    #[arg(long)]
    json: bool,
}

/// `tamma events tail`.
#[derive(Args, Debug)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    select: Selection,
    /// Start after this position (default: the current head, so only new events; 0 = everything).
    #[arg(long, value_name = "POSITION")]
    after: Option<u64>,
    /// Stop after N events.
    #[arg(short = 'n', long, value_name = "N")]
    count: Option<u64>,
    /// Print one JSON event per line even on a terminal.
    #[arg(long)]
    json: bool,
}

/// The export formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON array of stored events.
    Json,
    /// One stored event per line (JSON Lines).
    Ndjson,
    /// CSV: position, id, type, timestamp, recordedAt, tags, metadata, data (the last three as JSON).
    Csv,
}

/// `tamma events export`.
#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// A DCB query as JSON (`'{"items": [{"types": ["TASK.FAILED"]}]}'`); default: every event.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["types", "tags"])]
    query: Option<String>,
    #[command(flatten)]
    select: Selection,
    /// A glob over the type (`TASK.*`), applied to what the query returns.
    #[arg(long, value_name = "GLOB")]
    type_pattern: Option<String>,
    /// Earliest event timestamp (RFC 3339).
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// Latest event timestamp (RFC 3339).
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Events per request.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    page: u64,
}

/// Runs one `tamma events` command against the node at `base_url` (`http://127.0.0.1:7340`).
pub(crate) async fn run(cmd: EventsCommand, base_url: String) -> anyhow::Result<ExitCode> {
    let node = Node::new(base_url)?;
    let outcome = match cmd {
        EventsCommand::Append(a) => append(&node, a).await,
        EventsCommand::Read(a) => read(&node, a).await,
        EventsCommand::Get(a) => get(&node, &a).await,
        EventsCommand::Tail(a) => tail(&node, &a).await,
        EventsCommand::Export(a) => export(&node, &a).await,
        EventsCommand::Backup(_) | EventsCommand::Restore(_) | EventsCommand::Copy(_) => Err(Failure::Usage(
            "backup, restore and copy open the stores themselves; they are run without a node URL".into(),
        )),
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            Ok(ExitCode::from(2))
        }
        Err(Failure::Refused(m)) => {
            eprintln!("error: {m}");
            Ok(ExitCode::from(1))
        }
        Err(Failure::Other(e)) => Err(e),
    }
}

/// Why a command failed.
enum Failure {
    /// Bad input on our side (exit 2).
    Usage(String),
    /// The node refused or could not be reached (exit 1).
    Refused(String),
    /// Anything else (an I/O error writing the output).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Other(e.into())
    }
}

type Outcome<T = ()> = Result<T, Failure>;

/// The node's HTTP API.
struct Node {
    base: String,
    client: reqwest::Client,
    streaming: reqwest::Client,
}

impl Node {
    fn new(mut base: String) -> anyhow::Result<Self> {
        while base.ends_with('/') {
            base.pop();
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        let streaming = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base,
            client,
            streaming,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The URL of `path` with `query` encoded.
    fn url_with(&self, path: &str, query: &[(&str, String)]) -> Outcome<reqwest::Url> {
        reqwest::Url::parse_with_params(&self.url(path), query)
            .map_err(|e| Failure::Usage(format!("invalid node URL {:?}: {e}", self.base)))
    }

    /// Sends `req`; a non-2xx answer becomes [`Failure::Refused`] with the node's error code and message.
    async fn call(&self, req: reqwest::RequestBuilder) -> Outcome<Value> {
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Refused(format!("cannot reach {}: {e}", self.base)))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| Failure::Refused(format!("reading the answer of {}: {e}", self.base)))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(body)
        } else {
            Err(Failure::Refused(describe_error(status.as_u16(), &body)))
        }
    }

    async fn get_json(&self, path: &str, query: &[(&str, String)]) -> Outcome<Value> {
        let url = self.url_with(path, query)?;
        self.call(self.client.get(url)).await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Outcome<Value> {
        self.call(
            self.client
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    async fn head(&self) -> Outcome<u64> {
        let v = self.get_json("/v1/events/head", &[]).await?;
        v["head"]
            .as_u64()
            .ok_or_else(|| Failure::Refused(format!("unexpected answer from the node: {v}")))
    }
}

/// `HTTP 409 append_condition_failed: … (at events[0].type)`.
fn describe_error(status: u16, body: &Value) -> String {
    let e = &body["error"];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(code), Some(message)) => {
            let at = e["path"]
                .as_str()
                .map(|p| format!(" (at {p})"))
                .unwrap_or_default();
            let retry = if matches!(status, 429 | 503) {
                "; retry later"
            } else {
                ""
            };
            format!("HTTP {status} {code}: {message}{at}{retry}")
        }
        _ => format!("HTTP {status}: {body}"),
    }
}

fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// The events of an append file: one event, an array, `{"events": …}`, or one event per line.
fn parse_append_input(text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("the input is empty; expected JSON events".into());
    }
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return match v {
            Value::Array(_) => Ok(json!({ "events": v })),
            Value::Object(ref m) if m.contains_key("events") => Ok(v),
            Value::Object(_) => Ok(json!({ "events": [v] })),
            _ => Err("expected an event, an array of events or {\"events\": […]}".into()),
        };
    }
    let mut events = Vec::new();
    for (i, line) in trimmed.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("line {}: not a JSON event: {e}", i + 1))?;
        events.push(v);
    }
    Ok(json!({ "events": events }))
}

async fn append(node: &Node, a: AppendArgs) -> Outcome {
    let body = if let Some(t) = a.event_type {
        let mut event = json!({"type": t, "tags": a.tags});
        if let Some(data) = &a.data {
            event["data"] = serde_json::from_str(data)
                .map_err(|e| Failure::Usage(format!("--data is not JSON: {e}")))?;
        }
        if let Some(id) = a.id {
            event["id"] = json!(id);
        }
        json!({ "events": [event] })
    } else {
        if !a.tags.is_empty() || a.data.is_some() || a.id.is_some() {
            return Err(Failure::Usage(
                "--tag, --data and --id describe an event given with --type".into(),
            ));
        }
        let text = match a.file.as_deref() {
            Some(p) if p.as_os_str() != "-" => std::fs::read_to_string(p)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", p.display())))?,
            _ => {
                if a.file.is_none() && std::io::stdin().is_terminal() {
                    return Err(Failure::Usage(
                        "give --type (one event), --file FILE, or events on stdin".into(),
                    ));
                }
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))?;
                s
            }
        };
        parse_append_input(&text).map_err(Failure::Usage)?
    };
    let answer = node.post_json("/v1/events", &body).await?;
    let mut out = std::io::stdout().lock();
    if a.json || !stdout_is_tty() {
        writeln!(out, "{answer}")?;
    } else {
        let positions: Vec<String> = answer["positions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Value::to_string)
            .collect();
        let what = if answer["duplicate"] == json!(true) {
            "already stored (idempotent retry) at"
        } else {
            "appended at"
        };
        let n = positions.len();
        let noun = if n == 1 { "event" } else { "events" };
        writeln!(out, "{n} {noun} {what} position {}", positions.join(", "))?;
    }
    Ok(())
}

/// One table row per event: position, timestamp, type, tags, id.
fn table(events: &[Value]) -> String {
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            let ev = &e["event"];
            let tags: Vec<&str> = ev["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            [
                e["position"].to_string(),
                ev["timestamp"].as_str().unwrap_or("").to_owned(),
                ev["type"].as_str().unwrap_or("").to_owned(),
                tags.join(" "),
                ev["id"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    let header = ["POSITION", "TIMESTAMP", "TYPE", "TAGS", "ID"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 5]| {
        let mut s = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i == 4 {
                s.push_str(c);
            } else if i == 0 {
                s.push_str(&format!("{c:>w$}  "));
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = vec![line(&header)];
    out.extend(rows.iter().map(line));
    out.join("\n")
}

async fn read(node: &Node, a: ReadArgs) -> Outcome {
    let answer = if a.from.is_some() || a.backwards {
        let mut body = json!({"query": selection_query(&a.select), "backwards": a.backwards});
        if let Some(f) = a.from {
            body["from"] = json!(f);
        }
        if let Some(l) = a.limit {
            body["limit"] = json!(l);
        }
        node.post_json("/v1/events/read", &body).await?
    } else {
        let mut q: Vec<(&str, String)> = Vec::new();
        q.extend(a.select.types.iter().map(|t| ("type", t.clone())));
        q.extend(a.select.tags.iter().map(|t| ("tag", t.clone())));
        let optional = [
            ("typePattern", a.type_pattern),
            ("start", a.start),
            ("end", a.end),
            ("limit", a.limit.map(|l| l.to_string())),
            ("offset", a.offset.map(|o| o.to_string())),
        ];
        q.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        node.get_json("/v1/events", &q).await?
    };
    let mut out = std::io::stdout().lock();
    if a.json || !stdout_is_tty() {
        writeln!(out, "{answer}")?;
    } else {
        let events = answer["events"].as_array().cloned().unwrap_or_default();
        writeln!(out, "{}", table(&events))?;
        writeln!(out, "({} events; head {})", events.len(), answer["head"])?;
    }
    Ok(())
}

async fn get(node: &Node, a: &GetArgs) -> Outcome {
    // The id goes into the path: keep it one path segment whatever it holds.
    let id: String =
        a.id.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
    if id.is_empty() || id != a.id {
        return Err(Failure::Usage(format!(
            "{:?} is not an event id (a UUID)",
            a.id
        )));
    }
    let answer = node.get_json(&format!("/v1/events/{id}"), &[]).await?;
    let mut out = std::io::stdout().lock();
    if a.json || !stdout_is_tty() {
        writeln!(out, "{answer}")?;
    } else {
        let ev = &answer["event"];
        for (k, v) in [
            ("position", answer["position"].to_string()),
            ("id", ev["id"].as_str().unwrap_or("").to_owned()),
            ("type", ev["type"].as_str().unwrap_or("").to_owned()),
            (
                "timestamp",
                ev["timestamp"].as_str().unwrap_or("").to_owned(),
            ),
            (
                "recordedAt",
                ev["recordedAt"].as_str().unwrap_or("").to_owned(),
            ),
            ("tags", ev["tags"].to_string()),
            ("metadata", ev["metadata"].to_string()),
        ] {
            writeln!(out, "{k:>10}: {v}")?;
        }
        // Pretty-printing a JSON value cannot fail.
        let data = serde_json::to_string_pretty(&ev["data"]).unwrap_or_default();
        writeln!(
            out,
            "{:>10}: {}",
            "data",
            data.replace('\n', "\n            ")
        )?;
    }
    Ok(())
}

fn selection_query(s: &Selection) -> Value {
    if s.types.is_empty() && s.tags.is_empty() {
        json!({})
    } else {
        json!({"items": [{"types": s.types, "tags": s.tags}]})
    }
}

/// One message of an SSE stream.
#[derive(Debug, Default, PartialEq)]
struct SseMessage {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Takes the complete messages out of `buf` (comments and keep-alives are dropped).
fn take_messages(buf: &mut String) -> Vec<SseMessage> {
    let mut out = Vec::new();
    loop {
        let normalized = buf.replace("\r\n", "\n");
        if normalized.len() != buf.len() {
            *buf = normalized;
        }
        let Some(end) = buf.find("\n\n") else {
            return out;
        };
        let block: String = buf.drain(..end + 2).collect();
        let mut m = SseMessage::default();
        let mut any = false;
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => m.id = Some(value.to_owned()),
                "event" => m.event = Some(value.to_owned()),
                "data" => {
                    if !m.data.is_empty() {
                        m.data.push('\n');
                    }
                    m.data.push_str(value);
                }
                _ => continue,
            }
            any = true;
        }
        if any {
            out.push(m);
        }
    }
}

/// Prints one tailed event.
fn print_event(out: &mut impl Write, data: &str, json_out: bool) -> std::io::Result<()> {
    if json_out {
        return writeln!(out, "{data}");
    }
    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let ev = &v["event"];
    let tags: Vec<&str> = ev["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    writeln!(
        out,
        "{:>8}  {}  {}  {}  {}",
        v["position"],
        ev["timestamp"].as_str().unwrap_or(""),
        ev["type"].as_str().unwrap_or(""),
        tags.join(" "),
        ev["data"]
    )
}

async fn tail(node: &Node, a: &TailArgs) -> Outcome {
    let mut last = match a.after {
        Some(p) => p,
        None => node.head().await?,
    };
    let json_out = a.json || !stdout_is_tty();
    let mut seen = 0u64;
    let mut backoff = Duration::from_millis(200);
    let mut query: Vec<(&str, String)> = Vec::new();
    query.extend(a.select.types.iter().map(|t| ("type", t.clone())));
    query.extend(a.select.tags.iter().map(|t| ("tag", t.clone())));
    loop {
        if a.count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        let req = node
            .streaming
            .get(node.url_with("/v1/events/subscribe", &query)?)
            .header("accept", "text/event-stream")
            .header("last-event-id", last.to_string());
        let mut resp = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                if status.is_client_error() {
                    return Err(Failure::Refused(describe_error(status.as_u16(), &body)));
                }
                eprintln!("{}; reconnecting", describe_error(status.as_u16(), &body));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => {
                eprintln!("cannot reach {}: {e}; reconnecting", node.base);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        let mut buf = String::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("stream interrupted: {e}; resuming after position {last}");
                    break;
                }
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            let mut out = std::io::stdout().lock();
            for m in take_messages(&mut buf) {
                if m.event.as_deref() == Some("error") {
                    // A query the node refuses is refused again on every reconnect: stop, as for a
                    // 4xx answer. Anything else (the node stopping, a lagged stream) resumes.
                    let body: Value = serde_json::from_str(&m.data).unwrap_or(Value::Null);
                    if body["error"]["code"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("invalid_"))
                    {
                        return Err(Failure::Refused(describe_error(400, &body)));
                    }
                    eprintln!(
                        "the node ended the stream: {}; resuming after position {last}",
                        m.data
                    );
                    continue;
                }
                if let Some(p) = m.id.as_deref().and_then(|i| i.parse::<u64>().ok()) {
                    last = p;
                }
                print_event(&mut out, &m.data, json_out)?;
                seen += 1;
                if a.count.is_some_and(|c| seen >= c) {
                    out.flush()?;
                    return Ok(());
                }
            }
            out.flush()?;
        }
        tokio::time::sleep(backoff).await;
    }
}

fn csv_row(w: &mut csv::Writer<Box<dyn Write>>, e: &Value) -> anyhow::Result<()> {
    let ev = &e["event"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    w.write_record([
        e["position"].to_string(),
        text(&ev["id"]),
        text(&ev["type"]),
        text(&ev["timestamp"]),
        text(&ev["recordedAt"]),
        ev["tags"].to_string(),
        ev["metadata"].to_string(),
        ev["data"].to_string(),
    ])?;
    Ok(())
}

async fn export(node: &Node, a: &ExportArgs) -> Outcome {
    let query: Value = match &a.query {
        Some(q) => serde_json::from_str(q)
            .map_err(|e| Failure::Usage(format!("--query is not JSON: {e}")))?,
        None => selection_query(&a.select),
    };
    let time = |name: &str, v: &Option<String>| -> Outcome<Option<chrono::DateTime<chrono::Utc>>> {
        v.as_deref()
            .map(|s| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|e| Failure::Usage(format!("{name} is not an RFC 3339 time: {e}")))
            })
            .transpose()
    };
    let filter = EventFilter {
        type_pattern: a.type_pattern.clone(),
        start: time("--start", &a.start)?,
        end: time("--end", &a.end)?,
        ..EventFilter::default()
    };
    // The export is a snapshot: everything up to the head at the start, however long it takes.
    let head = node.head().await?;
    let read = |from: u64| {
        let body = json!({"query": query, "from": from, "limit": a.page});
        async move { node.post_json("/v1/events/read", &body).await }
    };
    // The first page before any output: a query the node refuses leaves no half-written export.
    let mut next = if head > 0 { Some(read(1).await?) } else { None };
    // A file is written beside its final name and renamed when complete: a failed export leaves no
    // file that looks like a whole one.
    let mut partial = None;
    let sink: Box<dyn Write> = match &a.out {
        Some(p) => {
            let tmp = PartialFile::new(p);
            let file = std::fs::File::create(&tmp.path).map_err(|e| {
                Failure::Usage(format!("cannot create {}: {e}", tmp.path.display()))
            })?;
            partial = Some(tmp);
            Box::new(std::io::BufWriter::new(file))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let show_bar = std::io::stderr().is_terminal() && (a.out.is_some() || !stdout_is_tty());
    let bar = positions_bar(show_bar, head)?;
    let mut csv_writer = None;
    let mut plain = None;
    match a.format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(sink);
            w.write_record([
                "position",
                "id",
                "type",
                "timestamp",
                "recordedAt",
                "tags",
                "metadata",
                "data",
            ])
            .map_err(anyhow::Error::from)?;
            csv_writer = Some(w);
        }
        Format::Json => {
            let mut w = sink;
            w.write_all(b"[")?;
            plain = Some(w);
        }
        Format::Ndjson => plain = Some(sink),
    }
    let mut written = 0u64;
    while let Some(page) = next.take() {
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let Some(last) = events.last().and_then(|e| e["position"].as_u64()) else {
            break;
        };
        for e in &events {
            let position = e["position"].as_u64().unwrap_or(0);
            if position > head {
                break;
            }
            if filter.type_pattern.is_some() || filter.start.is_some() || filter.end.is_some() {
                let parsed: SequencedEvent = serde_json::from_value(e.clone())
                    .map_err(|err| anyhow::anyhow!("unexpected event from the node: {err}"))?;
                if !filter.admits(&parsed) {
                    continue;
                }
            }
            if let Some(w) = csv_writer.as_mut() {
                csv_row(w, e)?;
            } else if let Some(w) = plain.as_mut() {
                match a.format {
                    Format::Json if written > 0 => write!(w, ",\n{e}")?,
                    Format::Json => write!(w, "\n{e}")?,
                    _ => writeln!(w, "{e}")?,
                }
            }
            written += 1;
        }
        bar.set_position(last.min(head));
        if last < head {
            next = Some(read(last + 1).await?);
        }
    }
    if let Some(mut w) = csv_writer {
        w.flush()?;
    }
    if let Some(mut w) = plain {
        if a.format == Format::Json {
            w.write_all(if written > 0 { b"\n]\n" } else { b"]\n" })?;
        }
        w.flush()?;
    }
    bar.finish_and_clear();
    if let Some(tmp) = partial {
        tmp.finish()?;
    }
    if let Some(p) = &a.out {
        eprintln!("exported {written} events to {}", p.display());
    }
    Ok(())
}

/// An export file being written: `<name>.partial` beside its final name, renamed to it by
/// [`finish`](Self::finish), removed when dropped unfinished (the export failed).
struct PartialFile {
    path: PathBuf,
    target: PathBuf,
    done: bool,
}

impl PartialFile {
    fn new(target: &std::path::Path) -> Self {
        let mut name = target.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        Self {
            path: target.with_file_name(name),
            target: target.to_owned(),
            done: false,
        }
    }

    fn finish(mut self) -> anyhow::Result<()> {
        std::fs::rename(&self.path, &self.target).map_err(|e| {
            anyhow::anyhow!(
                "cannot rename {} to {}: {e}",
                self.path.display(),
                self.target.display()
            )
        })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A progress bar over positions up to `len` on stderr when `show`, else a hidden one.
pub(crate) fn positions_bar(show: bool, len: u64) -> anyhow::Result<indicatif::ProgressBar> {
    if !show {
        return Ok(indicatif::ProgressBar::hidden());
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} positions  {per_sec}  eta {eta}",
        )
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?,
    );
    Ok(bar)
}

/// The embedded store's file, or (printed) why `what` does not apply to the configured store.
fn store_file(config: &tamma_runtime::TammaConfig, what: &str) -> Option<PathBuf> {
    match &config.events.storage {
        tamma_events::EventStorageConfig::Sqlite(s) => Some(s.resolve_path(&config.data_dir())),
        tamma_events::EventStorageConfig::Postgres(_) => {
            eprintln!(
                "error: events.storage is postgres: {what} its database with PostgreSQL's tools \
                 (pg_dump --format=custom / pg_restore of the whole database; see docs/events.md, Backup and restore)"
            );
            None
        }
        tamma_events::EventStorageConfig::Memory(_) => {
            eprintln!(
                "error: events.storage is memory: its events do not outlive the node, there is no file to {what}"
            );
            None
        }
    }
}

/// `tamma events restore FILE`: puts FILE in place of the configured embedded store.
pub(crate) fn restore(config: &tamma_runtime::TammaConfig, args: &RestoreArgs) -> ExitCode {
    let Some(store) = store_file(config, "restore") else {
        return ExitCode::from(1);
    };
    match tamma_events_sqlite::restore(&args.from, &store) {
        Ok(r) => {
            println!(
                "restored {} events (head {}) from {} into {}",
                r.events,
                r.head,
                args.from.display(),
                r.store.display()
            );
            if let Some(old) = r.replaced {
                println!("the store it replaced is kept as {}", old.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `tamma events backup FILE`: copies the configured embedded store into FILE. PostgreSQL and memory
/// stores are refused with what to do instead.
pub(crate) fn backup(config: &tamma_runtime::TammaConfig, args: &BackupArgs) -> ExitCode {
    let Some(source) = store_file(config, "back up") else {
        return ExitCode::from(1);
    };
    let to = if args.to.is_dir() {
        args.to.join(format!(
            "events-{}.db",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    } else {
        args.to.clone()
    };
    match tamma_events_sqlite::backup(&source, &to) {
        Ok(r) => {
            println!(
                "backed up {} events (head {}, {:.1} MiB) from {} to {} in {:.2} s",
                r.events,
                r.head,
                r.bytes as f64 / (1024.0 * 1024.0),
                r.source.display(),
                r.dest.display(),
                r.took.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_input_forms() {
        assert_eq!(
            parse_append_input(r#"{"type": "A"}"#).unwrap(),
            json!({"events": [{"type": "A"}]})
        );
        assert_eq!(
            parse_append_input(r#"[{"type": "A"}, {"type": "B"}]"#).unwrap(),
            json!({"events": [{"type": "A"}, {"type": "B"}]})
        );
        let with_condition =
            r#"{"events": [{"type": "A"}], "condition": {"failIfEventsMatch": {}}}"#;
        assert_eq!(
            parse_append_input(with_condition).unwrap()["condition"],
            json!({"failIfEventsMatch": {}})
        );
        assert_eq!(
            parse_append_input("{\"type\": \"A\"}\n\n{\"type\": \"B\"}\n").unwrap(),
            json!({"events": [{"type": "A"}, {"type": "B"}]})
        );
        assert!(parse_append_input("  ").is_err());
        assert!(parse_append_input("7").is_err());
        assert!(
            parse_append_input("{\"type\": \"A\"}\nnope")
                .unwrap_err()
                .contains("line 2")
        );
    }

    #[test]
    fn sse_messages() {
        let mut buf =
            ": keep-alive\n\nid: 3\ndata: {\"a\":1}\n\nevent: error\r\ndata: x\r\n\r\nid: 4\nda"
                .to_owned();
        let ms = take_messages(&mut buf);
        assert_eq!(
            ms,
            vec![
                SseMessage {
                    id: Some("3".into()),
                    event: None,
                    data: "{\"a\":1}".into()
                },
                SseMessage {
                    id: None,
                    event: Some("error".into()),
                    data: "x".into()
                },
            ]
        );
        assert_eq!(buf, "id: 4\nda");
    }

    #[test]
    fn errors_and_tables() {
        let body = json!({"error": {"code": "invalid_event", "message": "must not be empty", "path": "events[0].type"}});
        assert_eq!(
            describe_error(400, &body),
            "HTTP 400 invalid_event: must not be empty (at events[0].type)"
        );
        assert!(
            describe_error(
                503,
                &json!({"error": {"code": "unavailable", "message": "down"}})
            )
            .ends_with("retry later")
        );
        assert_eq!(
            describe_error(502, &json!("bad gateway")),
            "HTTP 502: \"bad gateway\""
        );
        let t = table(&[
            json!({"position": 12, "event": {"id": "x", "type": "TASK.STARTED", "timestamp": "t", "tags": ["a:b", "c:d"]}}),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("POSITION  TIMESTAMP"), "{t}");
        assert!(lines[1].contains("TASK.STARTED  a:b c:d"), "{t}");
        assert_eq!(selection_query(&Selection::default()), json!({}));
    }
}
