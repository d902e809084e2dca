//! `/metrics` on a real `tamma serve`: after probes, config reads, a 404 and events appended over
//! HTTP, the Prometheus exposition passes `promtool check metrics`, counts requests by route,
//! method and status, counts the appended events, and carries the configured labels on every
//! series; with `format = "json"` the same endpoint serves the JSON document.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `tamma serve` child, killed on drop.
struct Serve {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tamma serve` with `[monitoring.metrics]` set to `metrics` (TOML lines) and waits for
/// `/health/live`.
fn serve(metrics: &str) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("tamma.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[monitoring.metrics]\n{metrics}\n"),
    )
    .unwrap();
    let child = crate::spawn_tamma(dir.path(), &["serve"], Stdio::null());
    let mut node = Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::blocking::get(format!("{}/health/live", node.base))
            .is_ok_and(|r| r.status().is_success())
        {
            return node;
        }
        assert!(
            node.child.try_wait().unwrap().is_none(),
            "tamma serve exited early"
        );
        assert!(Instant::now() < deadline, "tamma serve did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Probes, a config read, a 404 and three appends (five events). Returns the append status.
fn traffic(base: &str) -> u16 {
    let http = reqwest::blocking::Client::new();
    for _ in 0..3 {
        assert!(
            http.get(format!("{base}/health/live"))
                .send()
                .unwrap()
                .status()
                .is_success()
        );
    }
    let _ = http.get(format!("{base}/health")).send().unwrap();
    assert_eq!(
        http.get(format!("{base}/v1/config"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/no/such/path"))
            .send()
            .unwrap()
            .status(),
        404
    );
    let mut status = 0;
    for events in [
        json!([{"type": "ORDER.PLACED", "tags": ["order:1"], "data": {"n": 1}}]),
        json!([{"type": "ORDER.PLACED", "tags": ["order:2"]}]),
        json!([{"type": "ORDER.PAID", "tags": ["order:1"]}, {"type": "ORDER.SHIPPED", "tags": ["order:1"]}, {"type": "ORDER.CLOSED", "tags": ["order:1"]}]),
    ] {
        let r = http
            .post(format!("{base}/v1/events"))
            .json(&json!({ "events": events }))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text());
        status = r.status().as_u16();
    }
    status
}

/// One exposition sample: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of a Prometheus text exposition (promtool checks the syntax; this
/// only has to read what it accepts).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("{line}")),
            }
        })
        .collect()
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{s}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape in {s}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

fn find<'a>(all: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    all.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
    })
}

fn promtool() -> Option<PathBuf> {
    [
        "promtool",
        "/opt/promtool/usr/bin/promtool",
        "/tmp/prom/usr/bin/promtool",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn promtool_check(text: &str) {
    #[allow(clippy::disallowed_methods)] // Tests decide whether a missing tool fails the run.
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let Some(tool) = promtool() else {
        assert!(
            !ci,
            "promtool is required when CI=true (Debian package `prometheus`; .ci/run unpacks it \
             under /opt/promtool)"
        );
        eprintln!("promtool not found: skipped the promtool check (not CI)");
        return;
    };
    let mut child = Command::new(tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_exposition_of_a_live_node() {
    let node = serve("labels = { region = \"eu-1\", cluster = \"it \\\"a\\\"\" }");
    let appended = traffic(&node.base);
    let r = reqwest::blocking::get(format!("{}/metrics", node.base)).unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers()
    );
    let text = r.text().unwrap();
    promtool_check(&text);

    let all = samples(&text);
    assert!(!all.is_empty());
    for s in &all {
        assert_eq!(
            (
                s.labels.get("region").map(String::as_str),
                s.labels.get("cluster").map(String::as_str)
            ),
            (Some("eu-1"), Some("it \"a\"")),
            "configured labels on {s:?}"
        );
    }
    let requests = "tamma_http_requests_total";
    let live = find(
        &all,
        requests,
        &[
            ("route", "/health/live"),
            ("method", "GET"),
            ("status", "200"),
        ],
    )
    .expect("live probes counted");
    // The start-up wait probed too.
    assert!(live.value >= 3.0, "{live:?}");
    let appends = find(
        &all,
        requests,
        &[
            ("route", "/v1/events"),
            ("method", "POST"),
            ("status", &appended.to_string()),
        ],
    )
    .expect("appends counted");
    assert!((appends.value - 3.0).abs() < f64::EPSILON, "{appends:?}");
    let missing = find(&all, requests, &[("route", "unmatched"), ("status", "404")])
        .expect("a 404 is counted under a bounded route label");
    assert!(missing.value >= 1.0, "{missing:?}");
    let latency = find(
        &all,
        "tamma_http_request_duration_seconds_count",
        &[("route", "/v1/events")],
    )
    .expect("append latency histogram");
    assert!((latency.value - 3.0).abs() < f64::EPSILON, "{latency:?}");
    assert!(
        find(
            &all,
            "tamma_http_request_duration_seconds_bucket",
            &[("route", "/v1/events"), ("le", "+Inf")]
        )
        .is_some()
    );
    // Five events over HTTP, plus the node's own audit events (CONFIG.LOADED, NODE.STARTED).
    let events = find(&all, "tamma_events_appended_total", &[]).expect("appended events counted");
    assert!(events.value >= 5.0, "{events:?}");
    // The embedded store's commits each made one timed WAL sync.
    let syncs = find(&all, "tamma_events_wal_sync_seconds_count", &[]).expect("WAL syncs timed");
    assert!(syncs.value >= 1.0, "{syncs:?}");
    assert!(
        find(
            &all,
            "tamma_events_wal_sync_seconds_bucket",
            &[("le", "+Inf")]
        )
        .is_some_and(|b| (b.value - syncs.value).abs() < f64::EPSILON)
    );
    for name in [
        "tamma_process_cpu_seconds_total",
        "tamma_process_resident_memory_bytes",
        "tamma_process_open_fds",
        "tamma_process_uptime_seconds",
    ] {
        assert!(find(&all, name, &[]).is_some(), "{name} missing");
    }
    // Bounded labels only: never an id.
    let unbounded = [
        "id",
        "event_id",
        "request_id",
        "user_id",
        "eventId",
        "requestId",
    ];
    assert!(
        !all.iter()
            .any(|s| s.labels.keys().any(|k| unbounded.contains(&k.as_str()))),
        "an id as a label"
    );
}

#[test]
fn json_format_when_configured() {
    let node = serve("format = \"json\"\nlabels = { region = \"eu-2\" }");
    traffic(&node.base);
    let r = reqwest::blocking::get(format!("{}/metrics", node.base)).unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: serde_json::Value = r.json().unwrap();
    let metrics = doc["metrics"].as_array().expect("a metrics array");
    assert!(!metrics.is_empty());
    for m in metrics {
        for s in m["series"].as_array().unwrap() {
            assert_eq!(s["labels"]["region"], "eu-2", "{m}");
        }
    }
    let requests = metrics
        .iter()
        .find(|m| m["name"] == "tamma_http_requests_total")
        .expect("HTTP requests");
    assert_eq!(requests["type"], "counter");
    let appends = requests["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["labels"]["route"] == "/v1/events" && s["labels"]["method"] == "POST")
        .expect("appends counted");
    assert_eq!(appends["value"], 3);
    let latency = metrics
        .iter()
        .find(|m| m["name"] == "tamma_http_request_duration_seconds")
        .expect("latency histogram");
    assert_eq!(latency["type"], "histogram");
    assert!(
        metrics
            .iter()
            .any(|m| m["name"] == "tamma_events_appended_total")
    );
}
