//! Escalation through the webhook notifier to a real local HTTP server; debouncing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tamma_core::{DurationMs, Secret};
use tamma_resilience::{
    Escalation, EscalationOutcome, Escalator, ManualClock, Resilience, ResilienceConfig, Severity,
    WebhookConfig, WebhookNotifier,
};
use tokio::sync::mpsc;

type Received = (Option<String>, serde_json::Value);

/// A webhook receiver on 127.0.0.1:<ephemeral>; answers `status`.
async fn receiver(status: StatusCode) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel::<Received>();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State((tx, status)): State<(mpsc::UnboundedSender<Received>, StatusCode)>,
                 headers: HeaderMap,
                 axum::Json(body): axum::Json<serde_json::Value>| async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    tx.send((auth, body)).unwrap();
                    status
                },
            ),
        )
        .with_state((tx, status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), rx)
}

fn webhook(url: &str) -> WebhookConfig {
    let mut headers = BTreeMap::new();
    headers.insert("Authorization".to_owned(), Secret::new("Bearer s3cret"));
    WebhookConfig {
        url: url.to_owned(),
        headers,
        timeout: DurationMs::from_secs(5),
    }
}

#[tokio::test]
async fn webhook_delivers_json_and_debounces_per_key() {
    let (url, mut rx) = receiver(StatusCode::NO_CONTENT).await;
    let clock = ManualClock::new();
    let notifier = WebhookNotifier::new(&webhook(&url)).unwrap();
    assert!(!format!("{notifier:?}").contains("s3cret"));
    let esc = Escalator::new(
        true,
        Severity::High,
        Duration::from_secs(60),
        clock.shared(),
    )
    .with_notifier(Arc::new(notifier));

    let e = || {
        Escalation::new("breaker:events.append", Severity::High, "breaker opened")
            .with_detail("n", 1)
    };
    assert_eq!(
        esc.escalate(e()).await,
        EscalationOutcome::Delivered {
            notifiers: 1,
            failed: 0
        }
    );
    let (auth, body) = rx.recv().await.unwrap();
    assert_eq!(auth.as_deref(), Some("Bearer s3cret"));
    assert_eq!(body["key"], "breaker:events.append");
    assert_eq!(body["severity"], "high");
    assert_eq!(body["message"], "breaker opened");
    assert_eq!(body["details"]["n"], 1);
    assert_eq!(body["suppressed"], 0);

    // Repeats inside the window are suppressed and counted; another key is not affected.
    for _ in 0..999 {
        assert_eq!(esc.escalate(e()).await, EscalationOutcome::Debounced);
    }
    let other = Escalation::new("forwarder.ship", Severity::Critical, "disk full");
    assert_eq!(
        esc.escalate(other).await,
        EscalationOutcome::Delivered {
            notifiers: 1,
            failed: 0
        }
    );
    assert_eq!(rx.recv().await.unwrap().1["key"], "forwarder.ship");

    // After the window, the next one is delivered and reports what was suppressed.
    clock.advance(Duration::from_secs(60));
    assert!(matches!(
        esc.escalate(e()).await,
        EscalationOutcome::Delivered { .. }
    ));
    let (_, body) = rx.recv().await.unwrap();
    assert_eq!(body["suppressed"], 999);
    assert!(rx.try_recv().is_err(), "nothing else was delivered");
}

#[tokio::test]
async fn webhook_errors_are_reported_not_raised() {
    let (url, mut rx) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let esc = Escalator::new(
        true,
        Severity::Low,
        Duration::ZERO,
        ManualClock::new().shared(),
    )
    .with_notifier(Arc::new(WebhookNotifier::new(&webhook(&url)).unwrap()));
    let out = esc
        .escalate(Escalation::new("k", Severity::High, "m"))
        .await;
    assert_eq!(
        out,
        EscalationOutcome::Delivered {
            notifiers: 1,
            failed: 1
        }
    );
    assert!(rx.recv().await.is_some());
    // Nothing listening: a network error, also reported.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let esc = Escalator::new(
        true,
        Severity::Low,
        Duration::ZERO,
        ManualClock::new().shared(),
    )
    .with_notifier(Arc::new(
        WebhookNotifier::new(&webhook(&format!("http://{addr}/"))).unwrap(),
    ));
    let out = esc
        .escalate(Escalation::new("k", Severity::High, "m"))
        .await;
    assert_eq!(
        out,
        EscalationOutcome::Delivered {
            notifiers: 1,
            failed: 1
        }
    );
}

#[tokio::test]
async fn an_opening_breaker_escalates_through_the_configured_webhook() {
    let (url, mut rx) = receiver(StatusCode::OK).await;
    let clock = ManualClock::new();
    let mut cfg = ResilienceConfig::default();
    cfg.escalation.webhook = Some(webhook(&url));
    cfg.breaker.sliding_window_size = 2;
    cfg.breaker.minimum_number_of_calls = 2;
    let r = Resilience::new(cfg, clock.shared()).unwrap();
    let b = r.breakers().get("orchestrator.register");
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().failure();
    let (_, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body["key"], "breaker:orchestrator.register");
    assert_eq!(body["severity"], "high");
    assert_eq!(body["details"]["reason"], "failure_rate");
}

#[test]
fn invalid_config_is_refused_with_paths() {
    let mut cfg = ResilienceConfig::default();
    cfg.retry.max_attempts = 0;
    let e = Resilience::new(cfg, ManualClock::new().shared()).unwrap_err();
    assert!(
        e.to_string().contains("resilience.retry.maxAttempts"),
        "{e}"
    );
}
