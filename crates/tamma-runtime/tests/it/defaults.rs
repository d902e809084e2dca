//! The built-in defaults equal the seed's `getDefaultConfig()` except for the documented differences.

use std::path::PathBuf;

use tamma_config::Env;
use tamma_runtime::{ConfigArgs, TammaConfig, builder};

fn seed_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-defaults.json")
}

fn leaves(v: &serde_json::Value, path: &str, out: &mut Vec<(String, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                leaves(
                    x,
                    &if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    },
                    out,
                );
            }
        }
        other => out.push((path.to_owned(), other.clone())),
    }
}

#[test]
fn seed_defaults_load_and_match_except_documented_differences() {
    let args = ConfigArgs {
        file: Some(seed_file()),
        settings: vec![],
    };
    let seeded = builder(&args, Env::default()).build().unwrap();
    let ours = serde_json::to_value(TammaConfig::default()).unwrap();
    let mut a = Vec::new();
    leaves(seeded.current().export(), "", &mut a);
    let mut b = Vec::new();
    leaves(&ours, "", &mut b);
    let differing: Vec<&str> = a
        .iter()
        .filter(|(p, v)| b.iter().find(|(q, _)| q == p).is_none_or(|(_, w)| w != v))
        .map(|(p, _)| p.as_str())
        .collect();
    // Documented in docs/configuration.md ("Differences from the seed").
    assert_eq!(
        differing,
        [
            "logging.redaction.patterns",
            "security.audit.storage.config.path"
        ]
    );
}

#[test]
fn runtime_additions_have_their_defaults() {
    let c = TammaConfig::default();
    assert_eq!(c.data_dir, "./tamma-data");
    assert_eq!(c.server.listen, "127.0.0.1:7340");
    assert_eq!(c.events.retention_days, 0);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["events"]["storage"]["type"], "sqlite");
    assert_eq!(v["monitoring"]["healthChecks"]["timeout"], 5000);
    assert_eq!(v["logging"]["rotation"]["maxSize"], "100MB");
}

#[test]
fn standard_variables_lose_to_tamma_settings_and_show_provenance() {
    let env = Env::from_pairs([
        ("RUST_LOG", "tamma_events=debug,info"),
        ("NO_COLOR", "1"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ("TAMMA_MONITORING__TRACING__SAMPLE_RATE", "0.5"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.9"),
    ]);
    let c = builder(&ConfigArgs::default(), env).build().unwrap();
    let s = c.current();
    assert_eq!(s.logging.directives, ["tamma_events=debug", "info"]);
    assert_eq!(
        s.monitoring.tracing.endpoint,
        "http://collector:4318/v1/traces"
    );
    assert!((s.monitoring.tracing.sample_rate - 0.5).abs() < f64::EPSILON);
    let p = s.provenance();
    assert_eq!(
        p.source_of("logging.directives").unwrap().to_string(),
        "env RUST_LOG"
    );
    assert_eq!(
        p.source_of("console.color").unwrap().to_string(),
        "env NO_COLOR"
    );
    assert_eq!(
        p.source_of("monitoring.tracing.sampleRate")
            .unwrap()
            .to_string(),
        "env TAMMA_MONITORING__TRACING__SAMPLE_RATE"
    );
}

#[test]
fn three_problems_in_three_sections() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tamma.toml");
    std::fs::write(
        &f,
        "[logging.rotation]\nmaxFile = 3\n[server]\nmaxBodySize = true\n[monitoring.healthChecks]\ninterval = 3000\n",
    )
    .unwrap();
    let args = ConfigArgs {
        file: Some(f.clone()),
        settings: vec![],
    };
    let e = builder(&args, Env::default()).build().unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("invalid configuration: 3 problems"),
        "{text}"
    );
    assert!(
        text.contains("logging.rotation.maxFile: unknown key (did you mean \"maxFiles\"?)"),
        "{text}"
    );
    assert!(text.contains("server.maxBodySize:"), "{text}");
    assert!(
        text.contains(
            "monitoring.healthChecks.timeout: must be less than interval (5s ≥ 3s) [file"
        ),
        "{text}"
    );
}

#[test]
fn schema_covers_every_section() {
    let schema = tamma_runtime::schema();
    let props = schema["properties"].as_object().unwrap();
    for key in [
        "mode",
        "dataDir",
        "server",
        "logging",
        "monitoring",
        "security",
        "database",
        "orchestrator",
        "worker",
        "events",
        "resilience",
        "providers",
        "platforms",
    ] {
        assert!(props.contains_key(key), "schema lacks {key}");
    }
}
