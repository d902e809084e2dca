//! Metrics: the Prometheus exposition passes `promtool check metrics`; JSON renders the same series.

use std::io::Write;
use std::process::{Command, Stdio};

use tamma_core::metric_names::{CATALOGUE, Kind};
use tamma_telemetry::{MetricsConfig, MetricsRecorder};

fn recorder_with_every_catalogue_metric() -> MetricsRecorder {
    let mut cfg = MetricsConfig::default();
    cfg.labels.insert("region".into(), "eu-1".into());
    cfg.labels
        .insert("instance".into(), "a \"quoted\" \\ value".into());
    let r = MetricsRecorder::new(&cfg);
    metrics::with_local_recorder(&r, || {
        for (name, kind, _) in CATALOGUE {
            match kind {
                Kind::Counter => {
                    metrics::counter!(*name, "output" => "stdout").increment(2);
                    metrics::counter!(*name, "output" => "file").increment(1);
                }
                Kind::Gauge => metrics::gauge!(*name).set(1.5),
                Kind::Histogram => {
                    for v in [0.0005, 0.02, 3.0, 50.0, 20_000.0] {
                        metrics::histogram!(*name, "route" => "/v1/events").record(v);
                    }
                }
            }
        }
        metrics::counter!("undescribed.metric_total").increment(1);
    });
    r
}

fn promtool() -> Option<std::path::PathBuf> {
    let candidates = [
        "promtool",
        "/usr/bin/promtool",
        "/tmp/prom/usr/bin/promtool",
    ];
    candidates.iter().map(std::path::PathBuf::from).find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

#[test]
fn prometheus_text_passes_promtool() {
    let r = recorder_with_every_catalogue_metric();
    let text = r.render_prometheus();
    for (name, _, help) in CATALOGUE {
        assert!(
            text.contains(&format!("# HELP {name} {help}\n")),
            "{name} described"
        );
    }
    assert!(
        text.contains("undescribed_metric_total{"),
        "names are sanitized"
    );
    #[allow(clippy::disallowed_methods)] // Tests decide whether a missing tool fails the run.
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let Some(tool) = promtool() else {
        assert!(
            !ci,
            "promtool is required when CI=true (Debian package `prometheus`)"
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
        "promtool rejected the exposition:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_has_every_series() {
    let r = recorder_with_every_catalogue_metric();
    let v: serde_json::Value = serde_json::from_str(&r.render_json()).unwrap();
    let metrics = v["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), CATALOGUE.len() + 1);
    let commit = metrics
        .iter()
        .find(|m| m["name"] == "tamma_events_commit_seconds")
        .unwrap();
    let s = &commit["series"][0];
    assert_eq!(s["labels"]["region"], "eu-1");
    assert_eq!(s["count"], 5);
    assert_eq!(s["buckets"].as_array().unwrap().last().unwrap()["count"], 5);
}
