//! The health endpoints over real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tamma_core::{Check, CheckFuture, CheckResult};
use tamma_health::{CheckOptions, HealthChecker, HealthChecksConfig, LIVE};
use tamma_server::{REFRESH_HEADER, health_routes};

struct Counted {
    name: &'static str,
    result: CheckResult,
    runs: Arc<AtomicUsize>,
}

impl Check for Counted {
    fn name(&self) -> &str {
        self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.result.clone()
        })
    }
}

fn add(
    c: &HealthChecker,
    name: &'static str,
    result: CheckResult,
    opts: CheckOptions,
) -> Arc<AtomicUsize> {
    let runs = Arc::new(AtomicUsize::new(0));
    c.add_check(
        Arc::new(Counted {
            name,
            result,
            runs: Arc::clone(&runs),
        }),
        opts,
    )
    .unwrap();
    runs
}

async fn serve(checker: Arc<HealthChecker>, cfg: &HealthChecksConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = health_routes(checker, cfg);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn checker() -> Arc<HealthChecker> {
    Arc::new(
        HealthChecker::builder("3.1.0")
            .release_id("r42")
            .interval(Duration::from_secs(3600))
            .build(),
    )
}

#[tokio::test]
async fn health_json_live_and_ready() {
    let c = checker();
    add(
        &c,
        "loop",
        CheckResult::healthy(),
        CheckOptions::new().groups([LIVE]),
    );
    add(
        &c,
        "cache",
        CheckResult::degraded("slow"),
        CheckOptions::new(),
    );
    add(
        &c,
        "db",
        CheckResult::unhealthy("connection refused"),
        CheckOptions::new().critical(true),
    );
    c.start_monitoring().unwrap();
    let base = format!(
        "http://{}",
        serve(Arc::clone(&c), &HealthChecksConfig::default()).await
    );
    let http = reqwest::Client::new();

    let r = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/health+json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let doc: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(doc["status"], "fail");
    assert_eq!(doc["version"], "3.1.0");
    assert_eq!(doc["releaseId"], "r42");
    assert_eq!(
        doc["checks"]["db:status"][0]["output"],
        "connection refused"
    );
    assert_eq!(doc["summary"]["critical"], 1);

    // Liveness ignores the failing dependency; readiness does not.
    let r = http
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "ok\n".to_owned())
    );
    let r = http
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("[-]db failed: connection refused"), "{text}");
    assert!(text.ends_with("ready check failed\n"), "{text}");

    // Excluding the critical check: degraded, still ready.
    let r = http
        .get(format!("{base}/health/ready?exclude=db&verbose"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(text, "[~]cache degraded: slow\nready check passed\n");
    let r = http
        .get(format!("{base}/health?exclude=db"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json_body().await;
    assert_eq!(doc["status"], "warn");
}

trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn a_thousand_requests_run_each_check_once() {
    let c = checker();
    let a = add(&c, "a", CheckResult::healthy(), CheckOptions::new());
    let b = add(
        &c,
        "b:latency",
        CheckResult::healthy().observed(3, "ms"),
        CheckOptions::new().groups([LIVE]),
    );
    c.start_monitoring().unwrap();
    let base = format!(
        "http://{}",
        serve(Arc::clone(&c), &HealthChecksConfig::default()).await
    );
    let http = reqwest::Client::new();
    let paths = ["/health", "/health/live", "/health/ready"];
    let statuses: Vec<u16> = futures::stream::iter(0..1000)
        .map(|i| {
            let url = format!("{base}{}", paths[i % 3]);
            let http = http.clone();
            async move { http.get(url).send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    assert_eq!(statuses.len(), 1000);
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test]
async fn fresh_runs_are_rate_limited() {
    let c = checker();
    let a = add(&c, "a", CheckResult::healthy(), CheckOptions::new());
    c.start_monitoring().unwrap();
    let base = format!(
        "http://{}",
        serve(Arc::clone(&c), &HealthChecksConfig::default()).await
    );
    let http = reqwest::Client::new();
    let _ = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(a.load(Ordering::SeqCst), 1);
    let r = http
        .get(format!("{base}/health?fresh=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[REFRESH_HEADER], "ran");
    let r = http
        .get(format!("{base}/health/ready?fresh=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[REFRESH_HEADER], "rate-limited");
    assert_eq!(a.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn configured_paths_and_the_enabled_switch() {
    let c = checker();
    add(&c, "a", CheckResult::healthy(), CheckOptions::new());
    let cfg = HealthChecksConfig {
        endpoint: "/status".into(),
        live_endpoint: "/livez".into(),
        ready_endpoint: "/readyz".into(),
        ..HealthChecksConfig::default()
    };
    let base = format!("http://{}", serve(Arc::clone(&c), &cfg).await);
    let http = reqwest::Client::new();
    for (path, code) in [
        ("/status", 200),
        ("/livez", 200),
        ("/readyz", 200),
        ("/health", 404),
    ] {
        assert_eq!(
            http.get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            code,
            "{path}"
        );
    }
    let off = HealthChecksConfig {
        enabled: false,
        ..HealthChecksConfig::default()
    };
    let base = format!("http://{}", serve(c, &off).await);
    for path in ["/health", "/health/live", "/health/ready"] {
        assert_eq!(
            http.get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{path}"
        );
    }
}
