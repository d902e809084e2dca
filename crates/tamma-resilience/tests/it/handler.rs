//! The handler registry: each seed default decision, overrides, classification, escalation.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tamma_resilience::{
    Action, Category, Decision, ErrorClass, ErrorContext, ErrorHandler, ErrorPattern, ErrorSubject,
    Escalation, Escalator, Handler, HandlerFuture, ManualClock, Notifier, NotifyFuture, Severity,
    handler_fn,
};

use crate::common::TestError;

fn ctx() -> ErrorContext {
    ErrorContext::new("forwarder", "ship")
        .with_request_id("req-1")
        .with_metadata("batch", 7)
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct External(String);

async fn decide_dyn(h: &ErrorHandler, msg: &str) -> (Action, Option<String>) {
    let e = External(msg.to_owned());
    let r = h.handle_dyn(&e, &ctx()).await;
    (r.action, r.handler.map(|s| s.to_string()))
}

#[tokio::test]
async fn seed_default_timeouts_retry_after_1s_three_times() {
    let h = ErrorHandler::with_defaults();
    let r = h
        .handle(&io::Error::from(io::ErrorKind::TimedOut), &ctx())
        .await;
    assert_eq!(
        r.action,
        Action::Retry {
            delay: Duration::from_secs(1),
            max_retries: 3
        }
    );
    assert_eq!(r.handler.as_deref(), Some("network_timeout"));
    assert_eq!(
        decide_dyn(&h, "request timeout after 30000ms").await,
        (
            Action::Retry {
                delay: Duration::from_secs(1),
                max_retries: 3
            },
            Some("network_timeout".into())
        )
    );
}

#[tokio::test]
async fn seed_default_connection_refused_retries_after_5s_twice() {
    let h = ErrorHandler::with_defaults();
    let want = Action::Retry {
        delay: Duration::from_secs(5),
        max_retries: 2,
    };
    let r = h
        .handle(&io::Error::from(io::ErrorKind::ConnectionRefused), &ctx())
        .await;
    assert_eq!(r.action, want);
    assert_eq!(r.handler.as_deref(), Some("network_connection_refused"));
    assert_eq!(
        decide_dyn(&h, "connect ECONNREFUSED 127.0.0.1:5432")
            .await
            .0,
        want
    );
}

#[tokio::test]
async fn seed_default_rate_limit_honours_retry_after_else_60s_once() {
    let h = ErrorHandler::with_defaults();
    let r = h
        .handle(&TestError::RateLimited(Duration::from_secs(7)), &ctx())
        .await;
    assert_eq!(
        r.action,
        Action::Retry {
            delay: Duration::from_secs(7),
            max_retries: 1
        }
    );
    assert_eq!(r.handler.as_deref(), Some("rate_limit"));
    assert_eq!(
        decide_dyn(&h, "Rate limit exceeded, retry after 12")
            .await
            .0,
        Action::Retry {
            delay: Duration::from_secs(12),
            max_retries: 1
        }
    );
    assert_eq!(
        decide_dyn(&h, "rate limited").await.0,
        Action::Retry {
            delay: Duration::from_secs(60),
            max_retries: 1
        }
    );
}

#[tokio::test]
async fn seed_default_authentication_escalates_medium() {
    let h = ErrorHandler::with_defaults();
    let r = h
        .handle_dyn(&External("401 Unauthorized".into()), &ctx())
        .await;
    assert_eq!(
        r.action,
        Action::Escalate {
            level: Severity::Medium
        }
    );
    assert_eq!(
        r.message.as_deref(),
        Some("Authentication failed - check credentials")
    );
    assert_eq!(r.class.category, Category::Authentication);
    assert!(!r.class.retryable);
}

#[tokio::test]
async fn seed_default_validation_is_ignored() {
    let h = ErrorHandler::with_defaults();
    let r = h.handle(&TestError::Invalid, &ctx()).await;
    assert_eq!(r.action, Action::Ignore);
    assert_eq!(r.handler.as_deref(), Some("validation_error"));
    assert_eq!(
        r.message.as_deref(),
        Some("Validation error - user input invalid")
    );
    assert!(r.class.user_visible);
}

#[tokio::test]
async fn default_rules_apply_when_no_handler_matches() {
    let h = ErrorHandler::with_defaults();
    // Retryable without a handler: retry 1 s × 3.
    let r = h.handle(&TestError::Transient, &ctx()).await;
    assert_eq!(
        r.action,
        Action::Retry {
            delay: Duration::from_secs(1),
            max_retries: 3
        }
    );
    assert_eq!(r.handler, None);
    // Escalation required: escalate at its severity.
    let r = h
        .handle(&io::Error::from(io::ErrorKind::StorageFull), &ctx())
        .await;
    assert_eq!(
        r.action,
        Action::Escalate {
            level: Severity::Critical
        }
    );
    // Nothing known: ignore.
    assert_eq!(
        decide_dyn(&h, "the cat sat on the mat").await,
        (Action::Ignore, None)
    );
}

#[tokio::test]
async fn added_handlers_override_and_removal_restores() {
    let h = ErrorHandler::with_defaults();
    h.add(
        ErrorPattern::named("refresh_token").category(Category::Authentication),
        handler_fn(|_, c| {
            assert_eq!(c.component, "forwarder");
            Decision::new(Action::Recover).with_message("token refreshed")
        }),
    );
    let e = External("authentication failed".into());
    let r = h.handle_dyn(&e, &ctx()).await;
    assert_eq!(r.action, Action::Recover);
    assert_eq!(r.handler.as_deref(), Some("refresh_token"));
    assert!(h.remove("refresh_token"));
    assert_eq!(
        h.handle_dyn(&e, &ctx()).await.action,
        Action::Escalate {
            level: Severity::Medium
        }
    );

    // Matching by type, code and kind name.
    h.add(
        ErrorPattern::named("pg_serialization")
            .error_type("io::Error")
            .code("ECONNRESET")
            .kind_name("ConnectionReset"),
        handler_fn(|_, _| {
            Decision::new(Action::Retry {
                delay: Duration::from_millis(10),
                max_retries: 9,
            })
        }),
    );
    let r = h
        .handle(&io::Error::from(io::ErrorKind::ConnectionReset), &ctx())
        .await;
    assert_eq!(
        r.action,
        Action::Retry {
            delay: Duration::from_millis(10),
            max_retries: 9
        }
    );
    // Matching by severity.
    h.add(
        ErrorPattern::named("critical_only").severity(Severity::Critical),
        handler_fn(|_, _| Decision::new(Action::Ignore)),
    );
    assert_eq!(
        h.handle(&io::Error::from(io::ErrorKind::StorageFull), &ctx())
            .await
            .action,
        Action::Ignore
    );
}

#[tokio::test]
async fn classification_overrides_change_the_decision() {
    let h = ErrorHandler::with_defaults();
    // "the cat sat" is unknown → ignored; classify it as a transient system error instead.
    h.add_classification(
        ErrorPattern::named("cat").message("(?i)cat sat").unwrap(),
        ErrorClass::of(Category::System),
    );
    let r = h.handle_dyn(&External("the cat sat".into()), &ctx()).await;
    assert_eq!(r.class.category, Category::System);
    assert_eq!(
        r.action,
        Action::Retry {
            delay: Duration::from_secs(1),
            max_retries: 3
        }
    );
    assert!(h.remove_classification("cat"));
    assert!(!h.remove_classification("cat"));
}

struct Failing;
impl Handler for Failing {
    fn handle<'a>(&'a self, _: &'a ErrorSubject<'a>, _: &'a ErrorContext) -> HandlerFuture<'a> {
        Box::pin(async { Err("handler broke".into()) })
    }
}

#[tokio::test]
async fn a_failing_handler_falls_back_to_the_default_rules() {
    let h = ErrorHandler::with_defaults();
    h.add(
        ErrorPattern::named("broken").category(Category::Network),
        Arc::new(Failing),
    );
    let r = h.handle(&TestError::Transient, &ctx()).await;
    assert_eq!(
        r.action,
        Action::Retry {
            delay: Duration::from_secs(1),
            max_retries: 3
        }
    );
    assert_eq!(r.handler, None);
}

struct Collect(AtomicUsize, std::sync::Mutex<Vec<Escalation>>);
impl Notifier for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }
    fn notify<'a>(&'a self, e: &'a Escalation) -> NotifyFuture<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        self.1.lock().unwrap().push(e.clone());
        Box::pin(std::future::ready(Ok(())))
    }
}

#[tokio::test]
async fn escalate_actions_reach_the_escalator() {
    let n = Arc::new(Collect(AtomicUsize::new(0), std::sync::Mutex::default()));
    let esc = Arc::new(
        Escalator::new(
            true,
            Severity::Medium,
            Duration::from_secs(60),
            ManualClock::new().shared(),
        )
        .with_notifier(n.clone()),
    );
    let h = ErrorHandler::with_defaults().with_escalator(esc);
    for _ in 0..3 {
        h.handle_dyn(&External("authentication failed for user x".into()), &ctx())
            .await;
    }
    // Debounced per key (`forwarder.ship`): one delivery.
    assert_eq!(n.0.load(Ordering::SeqCst), 1);
    let got = n.1.lock().unwrap()[0].clone();
    assert_eq!(got.key, "forwarder.ship");
    assert_eq!(got.severity, Severity::Medium);
    assert_eq!(got.context.unwrap().request_id.as_deref(), Some("req-1"));
}
