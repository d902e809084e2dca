//! The checker: timeouts, aggregation, caching under load, groups, runtime add/remove, metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tamma_core::{CheckResult, CheckStatus, metric_names};
use tamma_health::{
    CheckOptions, Error, HealthChecker, LIVE, READY, Refresh, Selection, Thresholds,
};

use crate::support::{Fixed, Hang, Panics};

fn checker() -> HealthChecker {
    HealthChecker::builder("9.9.9")
        .release_id("abc123")
        .interval(Duration::from_secs(10))
        .timeout(Duration::from_millis(200))
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_times_out_and_the_others_still_report() {
    let c = checker();
    let slow = Fixed::new("slow", CheckResult::healthy()).delayed(Duration::from_millis(150));
    c.add_check(Arc::new(Hang("hangs")), CheckOptions::new().critical(true))
        .unwrap();
    c.add_check(Arc::new(slow), CheckOptions::new()).unwrap();
    c.add_check(
        Arc::new(Fixed::new("fine", CheckResult::healthy())),
        CheckOptions::new(),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let report = c.run_now(&Selection::all()).await;
    // All ran concurrently: the whole run took the timeout, not the sum of the checks.
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    let by_name = |n: &str| report.checks.iter().find(|c| c.name == n).unwrap();
    let hung = by_name("hangs");
    assert_eq!(hung.status, CheckStatus::Unhealthy);
    assert_eq!(hung.error.as_deref(), Some("timed out after 200ms"));
    assert_eq!(hung.duration, Duration::from_millis(200));
    assert_eq!(by_name("slow").status, CheckStatus::Healthy);
    assert_eq!(by_name("slow").duration, Duration::from_millis(150));
    assert_eq!(by_name("fine").status, CheckStatus::Healthy);
    assert_eq!(report.status, CheckStatus::Unhealthy);
    assert_eq!(report.summary.critical, 1);
}

#[tokio::test]
async fn a_panicking_check_is_unhealthy_not_a_crash() {
    let c = checker();
    c.add_check(Arc::new(Panics), CheckOptions::new()).unwrap();
    let report = c.run_now(&Selection::all()).await;
    assert_eq!(
        report.checks[0].error.as_deref(),
        Some("the check panicked")
    );
    assert_eq!(report.status, CheckStatus::Degraded);
}

#[tokio::test]
async fn critical_and_non_critical_aggregation() {
    let cases = [
        // (critical check's result, other check's result, expected overall, http status)
        (
            CheckResult::healthy(),
            CheckResult::healthy(),
            CheckStatus::Healthy,
            200,
        ),
        (
            CheckResult::healthy(),
            CheckResult::unhealthy("x"),
            CheckStatus::Degraded,
            200,
        ),
        (
            CheckResult::healthy(),
            CheckResult::degraded("x"),
            CheckStatus::Degraded,
            200,
        ),
        (
            CheckResult::degraded("x"),
            CheckResult::healthy(),
            CheckStatus::Degraded,
            200,
        ),
        (
            CheckResult::unhealthy("x"),
            CheckResult::healthy(),
            CheckStatus::Unhealthy,
            503,
        ),
    ];
    for (critical, other, expected, http) in cases {
        let c = checker();
        c.add_check(
            Arc::new(Fixed::new("crit", critical.clone())),
            CheckOptions::new().critical(true),
        )
        .unwrap();
        c.add_check(
            Arc::new(Fixed::new("other", other.clone())),
            CheckOptions::new(),
        )
        .unwrap();
        let report = c.report(&Selection::all()).await;
        assert_eq!(report.status, expected, "{critical:?} / {other:?}");
        assert_eq!(report.http_status(), http);
        let s = report.summary;
        assert_eq!(s.total, 2);
        assert_eq!(s.healthy + s.degraded + s.unhealthy, 2);
        assert_eq!(
            s.critical,
            usize::from(critical.status == CheckStatus::Unhealthy)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_probes_run_each_check_once_per_interval() {
    let c = Arc::new(checker());
    let a = Fixed::new("a", CheckResult::healthy()).delayed(Duration::from_millis(20));
    let b = Fixed::new("b", CheckResult::healthy());
    let (runs_a, runs_b) = (a.runs(), b.runs());
    c.add_check(Arc::new(a), CheckOptions::new()).unwrap();
    c.add_check(
        Arc::new(b),
        CheckOptions::new().interval(Duration::from_secs(5)),
    )
    .unwrap();
    c.start_monitoring().unwrap();

    let probe_storm = |c: Arc<HealthChecker>| async move {
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let c = Arc::clone(&c);
                tokio::spawn(async move { c.report(&Selection::group(READY)).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().summary.total, 2);
        }
    };
    probe_storm(Arc::clone(&c)).await;
    assert_eq!(
        (runs_a.load(Ordering::SeqCst), runs_b.load(Ordering::SeqCst)),
        (1, 1)
    );

    // One interval of `b` later: b ran once more, a (10 s) did not; probes still add nothing.
    tokio::time::sleep(Duration::from_secs(5) + Duration::from_millis(50)).await;
    probe_storm(Arc::clone(&c)).await;
    assert_eq!(
        (runs_a.load(Ordering::SeqCst), runs_b.load(Ordering::SeqCst)),
        (1, 2)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    probe_storm(Arc::clone(&c)).await;
    assert_eq!(
        (runs_a.load(Ordering::SeqCst), runs_b.load(Ordering::SeqCst)),
        (2, 3)
    );

    // Forced runs: the first runs everything once even when a hundred arrive together, the next
    // ones inside the minimum interval are served from the cache.
    let forced: Vec<_> = (0..100)
        .map(|_| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.fresh_report(&Selection::all()).await.1 })
        })
        .collect();
    let mut ran = 0;
    for f in forced {
        if f.await.unwrap() == Refresh::Ran {
            ran += 1;
        }
    }
    assert_eq!(ran, 1);
    assert_eq!(
        (runs_a.load(Ordering::SeqCst), runs_b.load(Ordering::SeqCst)),
        (3, 4)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.fresh_report(&Selection::all()).await.1, Refresh::Ran);
    assert_eq!(
        (runs_a.load(Ordering::SeqCst), runs_b.load(Ordering::SeqCst)),
        (4, 5)
    );
    c.stop_monitoring();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_on_many_threads_share_the_first_run() {
    let c = Arc::new(
        HealthChecker::builder("1")
            .interval(Duration::from_secs(3600))
            .build(),
    );
    let check = Fixed::new("db", CheckResult::healthy()).delayed(Duration::from_millis(30));
    let runs = check.runs();
    c.add_check(Arc::new(check), CheckOptions::new()).unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.report(&Selection::all()).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), CheckStatus::Healthy);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn checks_are_added_and_removed_while_monitoring() {
    let c = checker();
    c.start_monitoring().unwrap();
    let late = Fixed::new("late", CheckResult::healthy());
    let runs = late.runs();
    c.add_check(Arc::new(late), CheckOptions::new()).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "monitoring runs a check added later at once"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(c.remove_check("late"));
    assert!(!c.remove_check("late"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "a removed check no longer runs"
    );
    assert!(c.report(&Selection::all()).await.checks.is_empty());
}

#[tokio::test]
async fn groups_exclude_and_thresholds() {
    let c = checker();
    let live = Fixed::new("loop", CheckResult::healthy());
    let mem = Fixed::new(
        "memory:utilization",
        CheckResult::healthy().observed(85.0, "percent"),
    );
    let api = Fixed::new("api", CheckResult::unhealthy("refused"));
    c.add_check(Arc::new(live), CheckOptions::new().groups([LIVE]))
        .unwrap();
    c.add_check(
        Arc::new(mem),
        CheckOptions::new().thresholds(Thresholds::new(80.0, 90.0)),
    )
    .unwrap();
    c.add_check(
        Arc::new(api),
        CheckOptions::new()
            .critical(true)
            .groups([READY, "external"]),
    )
    .unwrap();

    let live = c.report(&Selection::group(LIVE)).await;
    assert_eq!(
        live.checks
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["loop"]
    );
    assert_eq!(live.http_status(), 200);
    let ready = c.report(&Selection::group(READY)).await;
    assert_eq!(ready.checks.len(), 2);
    assert_eq!(ready.http_status(), 503);
    let mem = &ready.checks[0];
    assert_eq!(mem.status, CheckStatus::Degraded);
    assert_eq!(
        mem.error.as_deref(),
        Some("85.0 percent is at or above the warn level 80")
    );
    let without_api = c.report(&Selection::group(READY).exclude("api")).await;
    assert_eq!(without_api.status, CheckStatus::Degraded);
    assert_eq!(
        c.report(&Selection::group("external")).await.checks[0].name,
        "api"
    );
    assert_eq!(c.check_names(), ["loop", "memory:utilization", "api"]);
}

#[test]
fn invalid_registrations_are_refused() {
    let c = checker();
    let ok = || Arc::new(Fixed::new("x", CheckResult::healthy()));
    c.add_check(ok(), CheckOptions::new()).unwrap();
    assert!(
        matches!(c.add_check(ok(), CheckOptions::new()), Err(Error::DuplicateCheck(n)) if n == "x")
    );
    let err = c
        .add_check(
            Arc::new(Fixed::new("y", CheckResult::healthy())),
            CheckOptions::new()
                .timeout(Duration::from_secs(5))
                .interval(Duration::from_secs(3)),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "health check `y`: timeout must be less than interval (5s ≥ 3s)"
    );
    assert!(matches!(c.start_monitoring(), Err(Error::NoRuntime)));
}

#[test]
fn durations_and_statuses_are_recorded_as_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        let c = checker();
        c.add_check(
            Arc::new(Fixed::new("ok", CheckResult::healthy())),
            CheckOptions::new(),
        )
        .unwrap();
        c.add_check(
            Arc::new(Fixed::new("bad", CheckResult::unhealthy("x"))),
            CheckOptions::new(),
        )
        .unwrap();
        rt.block_on(c.run_now(&Selection::all()));
    });
    let mut seen = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let check = key
            .labels()
            .find(|l| l.key() == "check")
            .unwrap()
            .value()
            .to_owned();
        match value {
            DebugValue::Gauge(g) => {
                assert_eq!(key.name(), metric_names::HEALTH_CHECK_STATUS);
                let expected = if check == "bad" { 2.0 } else { 0.0 };
                assert!((g.into_inner() - expected).abs() < f64::EPSILON, "{check}");
                seen.push(format!("gauge:{check}"));
            }
            DebugValue::Histogram(h) => {
                assert_eq!(key.name(), metric_names::HEALTH_CHECK_DURATION_SECONDS);
                assert_eq!(h.len(), 1);
                seen.push(format!("histogram:{check}"));
            }
            DebugValue::Counter(_) => panic!("no counters expected"),
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["gauge:bad", "gauge:ok", "histogram:bad", "histogram:ok"]
    );
}
