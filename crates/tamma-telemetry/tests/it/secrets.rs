//! A known secret emitted through every path never appears in any output.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

use tamma_core::{DurationMs, Secret};
use tamma_telemetry::{
    FileOutputConfig, Format, HttpOutputConfig, LoggingConfig, OutputConfig, SyslogOutputConfig,
    TracingConfig,
};

const SECRET: &str = "hunter2SECRETvalue";

#[derive(Debug, thiserror::Error)]
#[error("connect to postgres://app:{SECRET}@db/x failed")]
struct ConnectError {
    #[source]
    cause: std::io::Error,
}

#[derive(Debug)]
#[allow(dead_code)] // Read through Debug only.
struct DbConfig {
    user: String,
    password: Secret,
}

#[test]
fn a_secret_never_reaches_any_output() {
    let rt = crate::runtime();
    let dir = tempfile::tempdir().unwrap();
    let http_got = crate::Received::default();
    let mut http_rx = crate::Receiver::start(&rt, "127.0.0.1:0".parse().unwrap(), &http_got);
    let otlp_got = crate::Received::default();
    let mut otlp_rx = crate::Receiver::start(&rt, "127.0.0.1:0".parse().unwrap(), &otlp_got);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();

    let logging = LoggingConfig {
        outputs: vec![
            OutputConfig::File(FileOutputConfig {
                path: "json.log".into(),
                ..FileOutputConfig::default()
            }),
            OutputConfig::File(FileOutputConfig {
                path: "text.log".into(),
                format: Some(Format::Text),
                ..FileOutputConfig::default()
            }),
            OutputConfig::Http(HttpOutputConfig {
                url: format!("http://{}/logs", http_rx.addr),
                max_wait: DurationMs::from_millis(20),
                ..HttpOutputConfig::default()
            }),
            OutputConfig::Syslog(SyslogOutputConfig {
                address: udp.local_addr().unwrap().to_string(),
                ..SyslogOutputConfig::default()
            }),
        ],
        ..LoggingConfig::default()
    };
    let tracing_cfg = TracingConfig {
        enabled: true,
        endpoint: format!("http://{}/v1/traces", otlp_rx.addr),
        sample_rate: 1.0,
        headers: BTreeMap::new(),
    };
    let t = crate::builder(&logging, dir.path())
        .tracing(&tracing_cfg)
        .build()
        .unwrap();
    let jwt = format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{SECRET}In0.c2lnbmF0dXJl");
    tracing::dispatcher::with_default(t.dispatch(), || {
        let span = tracing::info_span!("secret-span", token = SECRET, requestId = "req-1");
        let _g = span.enter();
        tracing::info!(password = SECRET, user = "alice", "marker-field");
        tracing::info!("marker-message password={SECRET} and Authorization: Bearer {SECRET}");
        tracing::info!(header = format!("Bearer {SECRET}"), "marker-bearer-value");
        tracing::info!(jwt = %jwt, "marker-jwt");
        let cfg = DbConfig {
            user: "app".into(),
            password: Secret::new(SECRET),
        };
        tracing::info!(config = ?cfg, "marker-debug");
        let e = ConnectError {
            cause: std::io::Error::other(format!("auth failed, apiKey: {SECRET}")),
        };
        tracing::error!(
            error = &e as &(dyn std::error::Error + 'static),
            "marker-error"
        );
        tracing::info!(api_key = SECRET, "marker-api-key");
    });
    assert!(t.handle().shutdown(Duration::from_secs(10)).is_clean());
    http_rx.stop(&rt);
    otlp_rx.stop(&rt);

    let mut outputs: Vec<(String, Vec<u8>)> = vec![
        (
            "json file".into(),
            std::fs::read(dir.path().join("json.log")).unwrap(),
        ),
        (
            "text file".into(),
            std::fs::read(dir.path().join("text.log")).unwrap(),
        ),
        (
            "http".into(),
            http_got
                .lock()
                .iter()
                .flat_map(|(_, b)| b.to_vec())
                .collect(),
        ),
        (
            "otlp".into(),
            otlp_got
                .lock()
                .iter()
                .flat_map(|(_, b)| b.to_vec())
                .collect(),
        ),
    ];
    let mut syslog = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = udp.recv(&mut buf) {
        syslog.extend_from_slice(&buf[..n]);
        syslog.push(b'\n');
    }
    outputs.push(("syslog".into(), syslog));

    let needle = SECRET.as_bytes();
    for (name, bytes) in &outputs {
        let text = String::from_utf8_lossy(bytes);
        assert!(!bytes.is_empty(), "{name} got nothing");
        if name != "otlp" {
            for marker in [
                "marker-field",
                "marker-message",
                "marker-bearer-value",
                "marker-jwt",
                "marker-debug",
                "marker-error",
                "marker-api-key",
            ] {
                assert!(text.contains(marker), "{name} lacks {marker}: {text}");
            }
            assert!(text.contains("req-1"), "{name} lacks the span field");
        } else {
            assert!(text.contains("secret-span"), "otlp lacks the span");
        }
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{name} leaked the secret: {text}"
        );
    }
    // The error chain is there, redacted.
    let json = String::from_utf8_lossy(&outputs[0].1).into_owned();
    let err_line = json.lines().find(|l| l.contains("marker-error")).unwrap();
    let v: serde_json::Value = serde_json::from_str(err_line).unwrap();
    assert_eq!(v["error"]["name"], "ConnectError");
    assert_eq!(v["error"]["chain"].as_array().unwrap().len(), 1);
}
