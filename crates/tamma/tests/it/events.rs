//! `tamma events …` as a real process against a real node: the events API served on an ephemeral port
//! (in this test process) over the in-memory or the SQLite store.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use futures::StreamExt as _;
use serde_json::{Value, json};
use tamma_events::{
    AppendCondition, AppendResult, Event, EventStore, EventStream, MemoryStore, Query, ReadOptions,
    SequencedEvent, StoreHealth,
};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};
use tamma_server::{EventsApiLimits, events_routes};

use crate::text;

/// A node serving the events API on 127.0.0.1; stops when dropped.
struct Node {
    base: String,
    store: Arc<dyn EventStore>,
    rt: tokio::runtime::Runtime,
}

impl Node {
    fn start(store: Arc<dyn EventStore>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let router = events_routes(Arc::clone(&store), EventsApiLimits::default());
        let base = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
            format!("http://{addr}")
        });
        Self { base, store, rt }
    }

    fn append(&self, events: Vec<Event>) -> AppendResult {
        self.rt.block_on(self.store.append(events, None)).unwrap()
    }

    /// Runs `tamma events --url <node> args…` with `stdin` as its input.
    fn events(&self, dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tamma"));
        cmd.arg("events")
            .args(["--url", &self.base])
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the tamma binary runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }
}

fn ok_json(o: &Output) -> Value {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "{:?}\nstdout: {out}\nstderr: {err}",
        o.status
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn lines_json(o: &Output) -> Vec<Value> {
    let (out, err) = text(o);
    assert!(
        o.status.success(),
        "{:?}\nstdout: {out}\nstderr: {err}",
        o.status
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn positions(events: &Value) -> Vec<u64> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect()
}

fn append_read_get(node: &Node) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // From flags.
    let a = ok_json(&node.events(
        d,
        &[
            "append",
            "--type",
            "TASK.STARTED",
            "--tag",
            "workflow:wf-1",
            "--data",
            r#"{"attempt": 1}"#,
        ],
        None,
    ));
    assert_eq!(
        a,
        json!({"positions": [1], "lastPosition": 1, "duplicate": false})
    );
    // From a file, one event per line.
    let file = d.join("events.ndjson");
    std::fs::write(
        &file,
        "{\"type\": \"TASK.COMPLETED\", \"tags\": [\"workflow:wf-1\"]}\n{\"type\": \"USER.LOGIN\", \"tags\": {\"user\": \"ann\"}}\n",
    )
    .unwrap();
    let a = ok_json(&node.events(d, &["append", "--file", file.to_str().unwrap()], None));
    assert_eq!(a["positions"], json!([2, 3]));
    // From stdin, with a condition that holds, then one that fails.
    let id = "0192f0c4-6a8e-7cc0-8000-00000000abcd";
    let conditional = json!({
        "events": [{"id": id, "type": "WORKFLOW.CLOSED", "tags": ["workflow:wf-1"]}],
        "condition": {"failIfEventsMatch": {"items": [{"tags": ["workflow:wf-1"]}]}, "after": 2}
    })
    .to_string();
    let a = ok_json(&node.events(d, &["append"], Some(&conditional)));
    assert_eq!(a["positions"], json!([4]));
    // The same id again: an idempotent retry.
    let a = ok_json(&node.events(d, &["append", "-f", "-"], Some(&conditional)));
    assert_eq!(a["duplicate"], json!(true));
    let conflict = json!({
        "events": [{"type": "WORKFLOW.CLOSED", "tags": ["workflow:wf-1"]}],
        "condition": {"failIfEventsMatch": {"items": [{"tags": ["workflow:wf-1"]}]}, "after": 2}
    })
    .to_string();
    let o = node.events(d, &["append"], Some(&conflict));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("HTTP 409 append_condition_failed"),
        "{}",
        text(&o).1
    );
    // Refused input names the field; bad local input exits 2.
    let o = node.events(d, &["append", "--type", ""], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("invalid_event") && text(&o).1.contains("(at events[0].type)"),
        "{}",
        text(&o).1
    );
    let o = node.events(d, &["append", "--type", "A", "--data", "{nope"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    let o = node.events(d, &["append"], Some("not json"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    let o = node.events(d, &["append", "--file", "/nonexistent/events.json"], None);
    assert_eq!(o.status.code(), Some(2));

    // read: the seed's filter, and by position.
    let r = ok_json(&node.events(d, &["read", "--tag", "workflow:wf-1"], None));
    assert_eq!(
        (positions(&r["events"]), r["head"].as_u64()),
        (vec![1, 2, 4], Some(4))
    );
    let r = ok_json(&node.events(
        d,
        &[
            "read",
            "--type-pattern",
            "TASK.*",
            "--limit",
            "1",
            "--offset",
            "1",
        ],
        None,
    ));
    assert_eq!(positions(&r["events"]), vec![2]);
    let r = ok_json(&node.events(
        d,
        &["read", "--from", "3", "--backwards", "--limit", "2"],
        None,
    ));
    assert_eq!(positions(&r["events"]), vec![3, 2]);
    let r = ok_json(&node.events(d, &["read", "--type", "USER.LOGIN", "--from", "1"], None));
    assert_eq!(r["events"][0]["event"]["tags"], json!(["user:ann"]));
    let o = node.events(d, &["read", "--start", "yesterday"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("(at start)"), "{}", text(&o).1);

    // get
    let g = ok_json(&node.events(d, &["get", id], None));
    assert_eq!(
        (g["position"].as_u64(), g["event"]["type"].as_str()),
        (Some(4), Some("WORKFLOW.CLOSED"))
    );
    let o = node.events(d, &["get", "0192f0c4-6a8e-7cc0-8000-00000000ffff"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("HTTP 404 not_found"), "{}", text(&o).1);
    let o = node.events(d, &["get", "../health"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn append_read_and_get_against_a_memory_node() {
    append_read_get(&Node::start(Arc::new(MemoryStore::new())));
}

#[test]
fn append_read_and_get_against_a_sqlite_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"), SqliteOptions::default()).unwrap();
    append_read_get(&Node::start(Arc::new(store)));
}

#[test]
fn an_unreachable_node_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let o = crate::tamma(
        dir.path(),
        &[
            "events",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "read",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("cannot reach"), "{}", text(&o).1);
}

#[test]
fn export_streams_every_event_page_by_page_in_each_format() {
    let node = Node::start(Arc::new(MemoryStore::new()));
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    for batch in 0..5 {
        let events = (0..500)
            .map(|i| {
                let n = batch * 500 + i;
                let ty = if n % 2 == 0 {
                    "TASK.STARTED"
                } else {
                    "USER.LOGIN"
                };
                Event::new(ty)
                    .tag(format!("n:{n}"))
                    .timestamp(t0 + chrono::Duration::seconds(n))
                    .data(json!({"n": n, "text": "a, \"quoted\"\nline"}))
            })
            .collect();
        node.append(events);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("all.json");
    let o = node.events(
        d,
        &["export", "--page", "300", "--out", out.to_str().unwrap()],
        None,
    );
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(
        text(&o).1.contains("exported 2500 events"),
        "{}",
        text(&o).1
    );
    let all: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(positions(&all), (1..=2500).collect::<Vec<u64>>());
    let stored: SequencedEvent = serde_json::from_value(all[7].clone()).unwrap();
    assert_eq!(stored.event.data.to_value()["n"], 7);

    // NDJSON to stdout, by DCB query.
    let o = node.events(
        d,
        &[
            "export",
            "--format",
            "ndjson",
            "--query",
            r#"{"items": [{"types": ["USER.LOGIN"]}]}"#,
        ],
        None,
    );
    let lines = lines_json(&o);
    assert_eq!(lines.len(), 1250);
    assert!(lines.iter().all(|e| e["event"]["type"] == "USER.LOGIN"));

    // CSV with client-side pattern and time filters.
    let o = node.events(
        d,
        &[
            "export",
            "--format",
            "csv",
            "--type-pattern",
            "TASK.*",
            "--start",
            "2026-01-01T00:00:10Z",
            "--end",
            "2026-01-01T00:00:19Z",
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let mut reader = csv::Reader::from_reader(o.stdout.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "position",
            "id",
            "type",
            "timestamp",
            "recordedAt",
            "tags",
            "metadata",
            "data"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let got: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(got, ["11", "13", "15", "17", "19"]);
    let data: Value = serde_json::from_str(&rows[0][7]).unwrap();
    assert_eq!(data, json!({"n": 10, "text": "a, \"quoted\"\nline"}));
    assert_eq!(&rows[0][5], r#"["n:10"]"#);

    // An empty selection is an empty, valid document.
    let o = node.events(d, &["export", "--type", "NOTHING"], None);
    assert_eq!(ok_json(&o), json!([]));
    let o = node.events(d, &["export", "--query", "{nope"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_failing_export_leaves_no_partial_output() {
    let store = Arc::new(Faulty {
        reads_fail_from: Some(301),
        ..Faulty::new()
    });
    let node = Node::start(store);
    node.append((0..500).map(|i| Event::new("A").data(json!(i))).collect());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // A query the node refuses: nothing on stdout, not even the opening bracket.
    let o = node.events(d, &["export", "--query", r#"{"items": [{}]}"#], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o).1);
    assert!(o.stdout.is_empty(), "{:?}", text(&o).0);
    assert!(text(&o).1.contains("items[0]"), "{}", text(&o).1);

    // A failure after the first page, into a file: no file, whole or partial, is left behind.
    let out = d.join("all.json");
    let o = node.events(
        d,
        &["export", "--page", "300", "--out", out.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o).1);
    assert!(text(&o).1.contains("failing from 301"), "{}", text(&o).1);
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Starts `tamma events --url <node> <args>` in `dir`, its output piped.
fn spawn_events(node: &Node, dir: &tempfile::TempDir, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tamma"))
        .args(["events", "--url", &node.base])
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A memory store that fails as a test asks.
struct Faulty {
    inner: MemoryStore,
    /// Subscriptions end with "lagged" after two events, as a slow subscriber's would: the node sends an
    /// `event: error` message and closes the stream, and the client must resume.
    lagging: bool,
    /// Every subscription ends at once with an invalid-query error.
    refusing: bool,
    /// Reads from this position on fail, as a node losing its database halfway through an export.
    reads_fail_from: Option<u64>,
}

impl Faulty {
    fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            lagging: false,
            refusing: false,
            reads_fail_from: None,
        }
    }
}

impl EventStore for Faulty {
    fn append(
        &self,
        events: Vec<Event>,
        condition: Option<AppendCondition>,
    ) -> futures::future::BoxFuture<'_, tamma_events::Result<AppendResult>> {
        self.inner.append(events, condition)
    }
    fn read(&self, query: Query, options: ReadOptions) -> EventStream {
        if let Some(at) = self.reads_fail_from
            && options.from.is_some_and(|f| f >= at)
        {
            return Box::pin(futures::stream::once(async move {
                Err(tamma_events::Error::unavailable(format!(
                    "this test store is failing from {at}"
                )))
            }));
        }
        self.inner.read(query, options)
    }
    fn get(
        &self,
        id: uuid::Uuid,
    ) -> futures::future::BoxFuture<'_, tamma_events::Result<Option<SequencedEvent>>> {
        self.inner.get(id)
    }
    fn head(&self) -> futures::future::BoxFuture<'_, tamma_events::Result<u64>> {
        self.inner.head()
    }
    fn subscribe(&self, query: Query, after: u64) -> EventStream {
        if self.refusing {
            return Box::pin(futures::stream::once(async {
                Err(tamma_events::Error::invalid_query(
                    "query.items[0].tags",
                    "refused by this test store",
                ))
            }));
        }
        if !self.lagging {
            return self.inner.subscribe(query, after);
        }
        let lagged = futures::stream::once(async move {
            Err(tamma_events::Error::SubscriptionLagged {
                last_position: after + 2,
            })
        });
        Box::pin(self.inner.subscribe(query, after).take(2).chain(lagged))
    }
    fn delete_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> futures::future::BoxFuture<'_, tamma_events::Result<u64>> {
        self.inner.delete_before(cutoff)
    }
    fn health(&self) -> futures::future::BoxFuture<'_, tamma_events::Result<StoreHealth>> {
        self.inner.health()
    }
}

#[test]
fn tail_follows_live_appends_and_resumes_after_the_stream_ends() {
    let node = Node::start(Arc::new(Faulty {
        lagging: true,
        ..Faulty::new()
    }));
    node.append(vec![Event::new("PRE"), Event::new("PRE")]);
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_events(&node, &dir, &["tail", "--after", "0", "--count", "12"]);
    // Writers append while the tail follows; every stream ends after two events.
    for i in 0..10 {
        node.append(vec![Event::new("LIVE").data(json!(i))]);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let events = lines_json(&o);
    let got: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (1..=12).collect::<Vec<u64>>(), "{}", text(&o).1);
    assert!(
        text(&o).1.contains("resuming after position"),
        "{}",
        text(&o).1
    );
}

/// A query the node refuses in the stream is refused on every reconnect: the tail stops with the
/// node's reason and exit code 1 instead of reconnecting forever.
#[test]
fn tail_stops_when_the_node_refuses_its_query() {
    let node = Node::start(Arc::new(Faulty {
        refusing: true,
        ..Faulty::new()
    }));
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_events(&node, &dir, &["tail", "--after", "0"]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("tail kept reconnecting to a stream that refuses its query");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("refused by this test store"), "{err}");
}

#[test]
fn a_terminal_gets_tables() {
    let node = Node::start(Arc::new(MemoryStore::new()));
    node.append(vec![Event::new("TASK.STARTED").tag("workflow:wf-1")]);
    let dir = tempfile::tempdir().unwrap();
    // `script` runs the command on a pseudo-terminal, as a person at a shell would.
    let cmd = format!(
        "{} events --url {} read",
        env!("CARGO_BIN_EXE_tamma"),
        node.base
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("POSITION") && out.contains("TASK.STARTED") && out.contains("workflow:wf-1"),
        "{out}"
    );
    assert!(out.contains("(1 events; head 1)"), "{out}");
}

#[test]
fn against_a_real_tamma_serve_with_the_url_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = crate::spawn_tamma(dir.path(), &["--listen", &listen, "serve"], Stdio::null());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reqwest::blocking::get(format!("http://{listen}/health/live"))
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "tamma serve exited early"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "tamma serve did not answer"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // No --url: the CLI finds the node at http://<server.listen>.
    let run = |args: &[&str]| {
        let mut all = vec!["--listen", listen.as_str(), "events"];
        all.extend_from_slice(args);
        crate::tamma(dir.path(), &all, &[])
    };
    let a = ok_json(&run(&[
        "append",
        "--type",
        "CLI.CHECKED",
        "--tag",
        "cli:e2e",
    ]));
    let position = a["lastPosition"].as_u64().unwrap();
    let r = ok_json(&run(&["read", "--tag", "cli:e2e"]));
    assert_eq!(positions(&r["events"]), vec![position]);
    let o = run(&["export", "--format", "ndjson", "--type", "CLI.CHECKED"]);
    assert_eq!(lines_json(&o).len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `tamma events backup FILE` copies the configured `<dataDir>/events.db` while another process keeps
/// appending to it: the copy holds every event acknowledged before the command started, as stored.
#[test]
fn backup_copies_the_embedded_store_while_it_takes_appends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store =
        Arc::new(SqliteStore::open(data.join("events.db"), SqliteOptions::default()).unwrap());
    let node = Node::start(store.clone());
    for i in 0..300 {
        node.append(vec![
            Event::new("BACKUP.TESTED").tag(format!("entity:{}", i % 5)),
        ]);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rt.block_on(store.append(vec![Event::new("BACKUP.DURING")], None))
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let acknowledged = node.rt.block_on(store.head()).unwrap();
    let out = crate::tamma(
        dir.path(),
        &["--data-dir", "data", "events", "backup", "copy.db"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = appender.join().unwrap();
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(during > 0);
    assert!(
        stdout.starts_with("backed up ") && stdout.contains(" to copy.db in "),
        "{stdout}"
    );
    let head: u64 = stdout
        .split("(head ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("no head in {stdout}"));
    assert!(head >= acknowledged, "{head} < {acknowledged}");

    let copy = SqliteStore::open(dir.path().join("copy.db"), SqliteOptions::default()).unwrap();
    let read = |s: &dyn EventStore| -> Vec<SequencedEvent> {
        node.rt.block_on(async {
            let mut out = Vec::new();
            let mut stream = s.read(Query::all(), ReadOptions::forwards());
            while let Some(e) = stream.next().await {
                out.push(e.unwrap());
            }
            out
        })
    };
    let copied = read(&copy);
    assert_eq!(copied.len() as u64, head);
    assert_eq!(copied[..], read(store.as_ref())[..copied.len()]);

    // Again to the same file: refused, the copy untouched.
    let before = std::fs::read(dir.path().join("copy.db")).unwrap();
    drop(copy);
    let out = crate::tamma(
        dir.path(),
        &["--data-dir", "data", "events", "backup", "copy.db"],
        &[],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.trim(),
        "error: copy.db exists already; a backup is only written to a new file"
    );
    assert_eq!(std::fs::read(dir.path().join("copy.db")).unwrap(), before);

    // Into a directory: a file named for the time.
    std::fs::create_dir(dir.path().join("backups")).unwrap();
    let out = crate::tamma(
        dir.path(),
        &["--data-dir", "data", "events", "backup", "backups"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let written: Vec<String> = std::fs::read_dir(dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written.len(), 1);
    assert!(
        written[0].starts_with("events-") && written[0].ends_with("Z.db"),
        "{written:?}"
    );
    assert!(
        stdout.contains(&format!("to backups/{}", written[0])),
        "{stdout}"
    );
}

#[test]
fn backup_of_a_store_that_is_not_a_file_says_what_to_do_instead() {
    let dir = tempfile::tempdir().unwrap();
    let backup = |settings: &[&str]| {
        let mut args: Vec<&str> = settings.iter().flat_map(|s| ["--set", s]).collect();
        args.extend(["events", "backup", "copy.db"]);
        crate::tamma(dir.path(), &args, &[])
    };
    let out = backup(&[
        r#"events.storage={"type":"postgres","config":{}}"#,
        "database.url=postgres://tamma@db.internal/tamma",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with(
            "error: events.storage is postgres: back up its database with PostgreSQL's tools"
        ),
        "{stderr}"
    );
    let out = backup(&[r#"events.storage={"type":"memory","config":{}}"#]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: events.storage is memory"),
        "{stderr}"
    );
    let out = backup(&[]);
    let (_, stderr) = text(&out);
    assert_eq!(
        stderr.trim(),
        "error: there is no event store at ./tamma-data/events.db"
    );
    assert!(!dir.path().join("copy.db").exists());
}

/// `tamma events restore FILE` puts a backup in place of a stopped node's store, keeping the store it
/// replaces, and refuses while the store is open.
#[test]
fn restore_puts_a_backup_in_place_of_a_stopped_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("events.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    for i in 0..4 {
        rt.block_on(store.append(
            vec![Event::new("RESTORE.TESTED").tag(format!("n:{i}"))],
            None,
        ))
        .unwrap();
    }
    let events = |args: &[&str]| {
        let mut all = vec!["--data-dir", "data", "events"];
        all.extend(args);
        crate::tamma(dir.path(), &all, &[])
    };
    assert!(events(&["backup", "copy.db"]).status.success());
    rt.block_on(store.append(vec![Event::new("RESTORE.AFTER")], None))
        .unwrap();

    // The node (here: this process) still has the store open.
    let out = events(&["restore", "copy.db"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("is open in another process (a running node?); stop it before restoring"),
        "{stderr}"
    );
    drop(store);

    let out = events(&["restore", "copy.db"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("restored 4 events (head 4) from copy.db into data/events.db")
    );
    let kept = lines
        .next()
        .and_then(|l| l.strip_prefix("the store it replaced is kept as "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let restored = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(rt.block_on(restored.head()).unwrap(), 4);
    let kept = SqliteStore::open(dir.path().join(kept), SqliteOptions::default()).unwrap();
    assert_eq!(rt.block_on(kept.head()).unwrap(), 5);
}
