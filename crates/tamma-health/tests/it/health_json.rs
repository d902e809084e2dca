//! The health+json document validated against `health-json.schema.json`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tamma_core::CheckResult;
use tamma_health::{CheckOptions, HealthChecker, HealthReport, Selection};

use crate::support::{Fixed, Hang};

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(include_str!("health-json.schema.json")).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(doc: &Value) {
    let v = validator();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

async fn report(critical_fails: bool) -> HealthReport {
    let c = HealthChecker::builder("1.4.0")
        .release_id("1.4.0-abc123")
        .timeout(Duration::from_millis(50))
        .build();
    let add = |name: &str, r: CheckResult, o: CheckOptions| {
        c.add_check(Arc::new(Fixed::new(name, r)), o).unwrap();
    };
    add(
        "memory:utilization",
        CheckResult::healthy().observed(41.5, "percent"),
        CheckOptions::new().component_type("system"),
    );
    add(
        "api",
        CheckResult::healthy()
            .observed(3.2, "ms")
            .detail("statusCode", 200),
        CheckOptions::new().measurement("responseTime"),
    );
    add(
        "cpu:utilization",
        CheckResult::degraded("load high").observed(88.0, "percent"),
        CheckOptions::new(),
    );
    add("writer", CheckResult::healthy(), CheckOptions::new());
    c.add_check(
        Arc::new(Hang("events:head")),
        CheckOptions::new().critical(critical_fails),
    )
    .unwrap();
    c.run_now(&Selection::all()).await
}

#[tokio::test]
async fn health_json_matches_the_schema() {
    for critical in [false, true] {
        let r = report(critical).await;
        let doc = r.to_health_json();
        assert_valid(&doc);
        assert_eq!(doc["status"], if critical { "fail" } else { "warn" });
        assert_eq!(doc["releaseId"], "1.4.0-abc123");
        assert_eq!(
            doc["checks"]["memory:utilization"][0]["observedValue"],
            41.5
        );
        assert_eq!(
            doc["checks"]["memory:utilization"][0]["componentType"],
            "system"
        );
        assert_eq!(doc["checks"]["api:responseTime"][0]["observedUnit"], "ms");
        assert_eq!(doc["checks"]["writer:status"][0]["status"], "pass");
        assert_eq!(
            doc["checks"]["events:head"][0]["output"],
            "timed out after 50ms"
        );
        assert_eq!(doc["summary"]["total"], 5);
        let body: Value = serde_json::from_slice(&r.render_health_json()).unwrap();
        assert_eq!(body, doc);
    }
}

#[tokio::test]
async fn the_schema_rejects_what_it_should() {
    let good = report(false).await.to_health_json();
    let v = validator();
    let broken = [
        ("status", serde_json::json!("ok")),
        ("uptime", serde_json::json!(-1)),
        (
            "checks",
            serde_json::json!({"nocolon": [{"componentId": "x", "componentType": "c", "status": "pass", "time": "2026-01-01T00:00:00Z"}]}),
        ),
        (
            "checks",
            serde_json::json!({"a:b": [{"componentType": "c", "status": "pass", "time": "2026-01-01T00:00:00Z"}]}),
        ),
    ];
    for (key, value) in broken {
        let mut doc = good.clone();
        doc[key] = value;
        assert!(!v.is_valid(&doc), "{key} should be rejected: {doc}");
    }
    let mut doc = good.clone();
    doc.as_object_mut().unwrap().remove("output");
    assert!(
        !v.is_valid(&doc),
        "a warn document without output is rejected"
    );
}

#[tokio::test]
async fn seed_shape_serialization() {
    let r = report(true).await;
    let seed = serde_json::to_value(&r).unwrap();
    assert_eq!(seed["status"], "unhealthy");
    assert_eq!(seed["version"], "1.4.0");
    assert!(seed["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(seed["uptime"].as_f64().unwrap() >= 0.0);
    let hung = seed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "events:head")
        .unwrap();
    assert_eq!(hung["status"], "unhealthy");
    assert_eq!(hung["error"], "timed out after 50ms");
    assert!(hung["duration"].as_f64().unwrap() >= 50.0);
    assert_eq!(seed["summary"]["critical"], 1);
}
