//! Traces: a local OTLP/HTTP receiver gets spans with the configured headers and sample rate.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tamma_core::Secret;
use tamma_telemetry::{LoggingConfig, OutputConfig, StreamOutputConfig, TracingConfig};

/// Occurrences of `needle` in every body received (protobuf keeps strings as raw bytes).
fn occurrences(got: &crate::Received, needle: &[u8]) -> usize {
    got.lock()
        .iter()
        .map(|(_, b)| b.windows(needle.len()).filter(|w| *w == needle).count())
        .sum()
}

fn run(rate: f64, roots: usize, env: HashMap<String, String>) -> (crate::Received, usize, usize) {
    let rt = crate::runtime();
    let got = crate::Received::default();
    let mut rx = crate::Receiver::start(&rt, "127.0.0.1:0".parse().unwrap(), &got);
    let tracing_cfg = TracingConfig {
        enabled: true,
        endpoint: format!("http://{}/v1/traces", rx.addr),
        sample_rate: rate,
        headers: BTreeMap::from([("x-otlp-key".to_owned(), Secret::new("otlp-123"))]),
    };
    // Only stderr with level error, so the test's own output stays quiet.
    let logging = LoggingConfig {
        outputs: vec![OutputConfig::Stderr(StreamOutputConfig {
            level: Some(tamma_telemetry::Level::Error),
            ..StreamOutputConfig::default()
        })],
        ..LoggingConfig::default()
    };
    let t = crate::builder(&logging, std::path::Path::new("."))
        .tracing(&tracing_cfg)
        .otel_env(env)
        .build()
        .unwrap();
    tracing::dispatcher::with_default(t.dispatch(), || {
        for i in 0..roots {
            let root = tracing::info_span!("otlp-root-span", i);
            let _g = root.enter();
            let child = tracing::info_span!("otlp-child-span");
            child.in_scope(|| tracing::info!("inside"));
        }
    });
    t.handle().shutdown(Duration::from_secs(10));
    rx.stop(&rt);
    let r = occurrences(&got, b"otlp-root-span");
    let c = occurrences(&got, b"otlp-child-span");
    (got, r, c)
}

#[test]
fn spans_arrive_with_headers_and_all_of_them_at_rate_one() {
    let (got, roots, children) = run(1.0, 20, HashMap::new());
    assert_eq!(roots, 20);
    assert_eq!(children, 20);
    for (h, _) in got.lock().iter() {
        assert_eq!(h["x-otlp-key"], "otlp-123");
        assert_eq!(h["content-type"], "application/x-protobuf");
    }
}

#[test]
fn rate_zero_exports_nothing_and_a_half_about_half_parent_based() {
    let (_, roots, _) = run(0.0, 50, HashMap::new());
    assert_eq!(roots, 0);
    let (_, roots, children) = run(0.5, 400, HashMap::new());
    // Binomial(400, 0.5): sd 10; 120..280 is 8 sd away from failing by chance.
    assert!((120..=280).contains(&roots), "{roots} of 400 sampled");
    assert_eq!(children, roots, "children follow their parent's decision");
}

#[test]
fn otel_variables_are_honoured() {
    let env = HashMap::from([("OTEL_TRACES_SAMPLER".to_owned(), "always_off".to_owned())]);
    let (_, roots, _) = run(1.0, 10, env);
    assert_eq!(
        roots, 0,
        "OTEL_TRACES_SAMPLER=always_off wins over sampleRate"
    );
}
