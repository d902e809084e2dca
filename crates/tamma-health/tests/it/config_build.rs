//! Building a checker from the config section.

use std::sync::Arc;

use tamma_core::{CheckResult, CheckStatus, Problem, Validate};
use tamma_health::{
    CheckContext, Error, HealthChecker, HealthChecksConfig, LIVE, Selection, SystemReader,
};

use crate::support::Fixed;

fn config(json: serde_json::Value) -> HealthChecksConfig {
    let cfg: HealthChecksConfig = serde_json::from_value(json).unwrap();
    let mut problems: Vec<Problem> = Vec::new();
    cfg.validate("monitoring.healthChecks", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    cfg
}

#[tokio::test]
async fn from_config_builds_typed_and_registered_checks() {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = config(serde_json::json!({
        "interval": "10s",
        "timeout": "2s",
        "checks": [
            {"name": "broker", "type": "tcp", "config": {"address": addr.to_string()}, "critical": true},
            {"name": "events-db", "type": "database", "config": {"store": "events"}, "critical": true},
            {"name": "writer", "type": "custom", "groups": ["live"]},
            {"name": "mem", "type": "memory", "thresholds": {"warn": 1, "fail": 99.99}}
        ]
    }));
    let ctx = CheckContext::new("2.0.0")
        .data_dir(data.path())
        .system(SystemReader::live())
        .register(Arc::new(Fixed::new("writer", CheckResult::healthy())))
        .database(
            "events",
            Arc::new(Fixed::new("pg-ping", CheckResult::healthy())),
        );
    let checker = HealthChecker::from_config(&cfg, &ctx).unwrap();
    assert_eq!(
        checker.check_names(),
        [
            "broker",
            "events-db",
            "writer",
            "mem",
            "cpu:utilization",
            "disk:utilization"
        ],
        "configured checks, then the built-ins not configured (memory is)"
    );
    let report = checker.run_now(&Selection::all()).await;
    let by = |n: &str| report.checks.iter().find(|c| c.name == n).unwrap().clone();
    assert_eq!(by("broker").status, CheckStatus::Healthy);
    assert_eq!(by("broker").key, "broker:responseTime");
    assert_eq!(by("events-db").component_type, "datastore");
    assert_eq!(
        by("mem").status,
        CheckStatus::Degraded,
        "warn level 1 % is always reached"
    );
    assert_eq!(by("disk:utilization").component_type, "system");
    let live = checker.report(&Selection::group(LIVE)).await;
    assert_eq!(live.checks.len(), 1);
    assert_eq!(live.checks[0].name, "writer");
}

#[test]
fn missing_providers_are_named() {
    let cfg = config(serde_json::json!({
        "systemChecks": false,
        "checks": [{"name": "flags", "type": "custom", "config": {"registered": "feature-flags"}}]
    }));
    let err = HealthChecker::from_config(&cfg, &CheckContext::new("1")).unwrap_err();
    assert!(matches!(
        &err,
        Error::MissingProvider { kind: "custom", .. }
    ));
    assert_eq!(
        err.to_string(),
        "health check `flags` (type custom) refers to `feature-flags`, but no check was registered in code under that name"
    );
    let cfg = config(serde_json::json!({
        "systemChecks": false,
        "checks": [{"name": "d", "type": "disk"}]
    }));
    assert!(
        matches!(HealthChecker::from_config(&cfg, &CheckContext::new("1")), Err(Error::MissingDiskPath(n)) if n == "d")
    );
}

#[test]
fn system_checks_can_be_turned_off() {
    let cfg = config(serde_json::json!({"systemChecks": false}));
    let checker = HealthChecker::from_config(&cfg, &CheckContext::new("1").data_dir("/")).unwrap();
    assert!(checker.check_names().is_empty());
    let cfg = config(serde_json::json!({}));
    let checker = HealthChecker::from_config(&cfg, &CheckContext::new("1")).unwrap();
    assert_eq!(
        checker.check_names(),
        ["memory:utilization", "cpu:utilization"],
        "no data dir, no disk"
    );
}

#[tokio::test]
async fn a_configured_memory_check_stays_critical_unless_it_says_otherwise() {
    // Levels every machine exceeds: the memory check fails.
    let failing = |critical: Option<bool>| {
        let mut check = serde_json::json!({"name": "mem", "type": "memory", "thresholds": {"warn": 0.001, "fail": 0.002}});
        if let Some(c) = critical {
            check["critical"] = serde_json::json!(c);
        }
        config(serde_json::json!({"systemChecks": false, "checks": [check]}))
    };
    let ctx = CheckContext::new("1").system(SystemReader::live());
    for (critical, expected) in [
        (None, CheckStatus::Unhealthy),
        (Some(true), CheckStatus::Unhealthy),
        (Some(false), CheckStatus::Degraded),
    ] {
        let checker = HealthChecker::from_config(&failing(critical), &ctx).unwrap();
        let report = checker.run_now(&Selection::all()).await;
        assert_eq!(report.checks[0].status, CheckStatus::Unhealthy);
        assert_eq!(report.status, expected, "critical: {critical:?}");
    }
}
