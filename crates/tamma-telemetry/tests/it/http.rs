//! HTTP output: every line arrives exactly once through a receiver outage (policy `block`).

use std::collections::BTreeMap;
use std::time::Duration;

use tamma_core::{DurationMs, Secret};
use tamma_telemetry::{HttpOutputConfig, LoggingConfig, OutputConfig, QueuePolicy};

#[test]
fn every_line_exactly_once_through_an_outage() {
    let rt = crate::runtime();
    let got = crate::Received::default();
    let mut first = crate::Receiver::start(&rt, "127.0.0.1:0".parse().unwrap(), &got);
    let addr = first.addr;
    let logging = LoggingConfig {
        outputs: vec![OutputConfig::Http(HttpOutputConfig {
            url: format!("http://{addr}/ingest"),
            headers: BTreeMap::from([("x-api-key".to_owned(), Secret::new("collector-key"))]),
            max_events: 10,
            max_wait: DurationMs::from_millis(50),
            retry_initial_backoff: DurationMs::from_millis(10),
            retry_max_backoff: DurationMs::from_millis(100),
            timeout: DurationMs::from_millis(2000),
            capacity: 16,
            policy: QueuePolicy::Block,
            ..HttpOutputConfig::default()
        })],
        ..LoggingConfig::default()
    };
    let t = crate::builder(&logging, std::path::Path::new("."))
        .build()
        .unwrap();
    let count = |got: &crate::Received| -> usize {
        got.lock()
            .iter()
            .map(|(_, b)| b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count())
            .sum()
    };
    tracing::dispatcher::with_default(t.dispatch(), || {
        for i in 0..50 {
            tracing::info!(i, "line");
        }
    });
    assert!(
        crate::wait_until(Duration::from_secs(10), || count(&got) >= 50),
        "first 50 lines arrive"
    );
    first.stop(&rt);

    // The receiver comes back on the same port after a while; meanwhile callers block.
    let got2 = got.clone();
    let rt = std::sync::Arc::new(rt);
    let rt2 = rt.clone();
    let back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        crate::Receiver::start(&rt2, addr, &got2)
    });
    tracing::dispatcher::with_default(t.dispatch(), || {
        for i in 50..300 {
            tracing::info!(i, "line");
        }
    });
    let mut second = back.join().unwrap();
    let report = t.handle().shutdown(Duration::from_secs(20));
    assert!(report.is_clean(), "{report:?}");
    second.stop(&rt);

    let health = &t.handle().output_health()[0];
    assert_eq!(health.dropped, 0);
    assert!(health.errors > 0, "the outage was seen: {health:?}");
    let mut seen = vec![0u32; 300];
    for (headers, body) in got.lock().iter() {
        assert_eq!(headers["x-api-key"], "collector-key");
        assert_eq!(headers["content-type"], "application/x-ndjson");
        for line in body.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert_eq!(v["message"], "line");
            seen[usize::try_from(v["meta"]["i"].as_u64().unwrap()).unwrap()] += 1;
        }
    }
    assert!(
        seen.iter().all(|n| *n == 1),
        "each line exactly once: {seen:?}"
    );
}
