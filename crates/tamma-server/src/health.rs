//! The health endpoints over a [`HealthChecker`]:
//!
//! - `GET {endpoint}` (default `/health`): the full report in `application/health+json`, 200 for
//!   pass and warn, 503 for fail;
//! - `GET {liveEndpoint}` (`/health/live`) and `GET {readyEndpoint}` (`/health/ready`): Kubernetes
//!   probes over the `live` and `ready` groups, 200 or 503, `ok` or a human list (`?verbose`);
//!
//! all of them serve the checker's cache; `?fresh=true` forces a run (rate-limited by the checker),
//! `?exclude=name` (repeatable or comma-separated) leaves checks out. When the section is disabled
//! no route is added, so the paths answer 404.
//!
//! On top of the checker's cached results, the rendered response (status, body) is kept per
//! route and query ([`HEALTH_BODY_MAX_AGE`], 100 ms): a probe storm assembles and serializes a
//! report ten times a second at most, and every other request sends the same bytes. A forced run
//! (`?fresh=true` that ran) drops the kept bodies, so the next request shows its results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tamma_health::{
    HEALTH_JSON_CONTENT_TYPE, HealthChecker, HealthChecksConfig, HealthReport, LIVE, READY,
    Refresh, Selection,
};

/// The response header saying whether `?fresh=true` ran the checks (`ran`) or was served from the
/// cache by the rate limit (`rate-limited`).
pub const REFRESH_HEADER: &str = "x-tamma-health-refresh";

/// How long [`health_routes`] reuses a rendered health response for the same route and query.
/// Check results change at most once per check interval (seconds); this only bounds how stale
/// the reported `uptime` can be, and how late a just-finished background run shows.
pub const HEALTH_BODY_MAX_AGE: Duration = Duration::from_millis(100);

/// Distinct queries (exclude lists) whose responses are kept at once; beyond it the kept
/// responses are dropped and start over, so odd query strings cannot grow memory.
const MAX_KEPT: usize = 64;

/// The health routes at the paths of `config`, or no route when `config.enabled` is false.
///
/// The checker should be monitoring ([`HealthChecker::start_monitoring`]) so the cache stays fresh;
/// the routes never run a check more than once per interval unless `?fresh=true` asks. Rendered
/// responses are reused for [`HEALTH_BODY_MAX_AGE`].
pub fn health_routes(checker: Arc<HealthChecker>, config: &HealthChecksConfig) -> Router {
    health_routes_with_max_age(checker, config, HEALTH_BODY_MAX_AGE)
}

/// [`health_routes`] with another reuse window for rendered responses; `Duration::ZERO` renders
/// every request from the checker's cache.
pub fn health_routes_with_max_age(
    checker: Arc<HealthChecker>,
    config: &HealthChecksConfig,
    max_age: Duration,
) -> Router {
    if !config.enabled {
        return Router::new();
    }
    let state = HealthState {
        checker,
        kept: Arc::new(Kept {
            max_age,
            responses: Mutex::new(HashMap::new()),
        }),
    };
    Router::new()
        .route(&config.endpoint, get(full))
        .route(&config.live_endpoint, get(live))
        .route(&config.ready_endpoint, get(ready))
        .with_state(state)
}

#[derive(Clone)]
struct HealthState {
    checker: Arc<HealthChecker>,
    kept: Arc<Kept>,
}

/// Which endpoint answers.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Route {
    Full,
    Live,
    Ready,
}

impl Route {
    const fn group(self) -> Option<&'static str> {
        match self {
            Self::Full => None,
            Self::Live => Some(LIVE),
            Self::Ready => Some(READY),
        }
    }
}

/// What a kept response depends on: the route and the query (minus `fresh`).
#[derive(Debug, Hash, PartialEq, Eq)]
struct Key {
    route: Route,
    verbose: bool,
    /// Sorted, without duplicates.
    exclude: Vec<String>,
}

impl Key {
    fn new(route: Route, params: Params) -> Self {
        let mut exclude = params.exclude;
        exclude.sort_unstable();
        exclude.dedup();
        Self {
            route,
            // The full document has no verbose form.
            verbose: params.verbose && route != Route::Full,
            exclude,
        }
    }

    fn selection(&self) -> Selection {
        let base = self
            .route
            .group()
            .map_or_else(Selection::all, Selection::group);
        self.exclude
            .iter()
            .fold(base, |s, name| s.exclude(name.clone()))
    }
}

/// A rendered response.
#[derive(Clone)]
struct Rendered {
    at: Instant,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
}

/// The rendered responses, by key.
struct Kept {
    max_age: Duration,
    responses: Mutex<HashMap<Key, Rendered>>,
}

impl Kept {
    fn get(&self, key: &Key) -> Option<Rendered> {
        let responses = self
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        responses
            .get(key)
            .filter(|r| r.at.elapsed() < self.max_age)
            .cloned()
    }

    fn put(&self, key: Key, rendered: Rendered, forget_others: bool) {
        if self.max_age.is_zero() {
            return;
        }
        let mut responses = self
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if forget_others || (responses.len() >= MAX_KEPT && !responses.contains_key(&key)) {
            responses.clear();
        }
        responses.insert(key, rendered);
    }
}

/// What the query string asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    fresh: bool,
    verbose: bool,
    exclude: Vec<String>,
}

impl Params {
    fn parse(pairs: Vec<(String, String)>) -> Self {
        let mut p = Self::default();
        for (key, value) in pairs {
            let on = !matches!(value.as_str(), "false" | "0" | "no");
            match key.as_str() {
                "fresh" => p.fresh = on,
                "verbose" => p.verbose = on,
                "exclude" => p.exclude.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                _ => {}
            }
        }
        p
    }
}

fn status_code(report: &HealthReport) -> StatusCode {
    if report.http_status() == 200 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The response body of `key.route` for `report`.
fn render(key: &Key, report: &HealthReport) -> Rendered {
    let status = status_code(report);
    let (content_type, body) = match key.route.group() {
        None => (
            HEALTH_JSON_CONTENT_TYPE,
            Bytes::from(report.render_health_json()),
        ),
        // Kubernetes only reads the status; people read the list (always shown on failure).
        Some(group) if key.verbose || status != StatusCode::OK => (
            "text/plain; charset=utf-8",
            Bytes::from(report.render_verbose(group)),
        ),
        Some(_) => ("text/plain; charset=utf-8", Bytes::from_static(b"ok\n")),
    };
    Rendered {
        at: Instant::now(),
        status,
        content_type,
        body,
    }
}

fn respond(rendered: Rendered, refresh: Option<Refresh>) -> Response {
    let mut response = (
        rendered.status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(rendered.content_type),
        )],
        rendered.body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(refresh) = refresh {
        let value = match refresh {
            Refresh::Ran => "ran",
            Refresh::RateLimited => "rate-limited",
        };
        headers.insert(REFRESH_HEADER, HeaderValue::from_static(value));
    }
    response
}

async fn answer(state: &HealthState, query: Option<String>, route: Route) -> Response {
    // A probe sends no query: nothing to parse then.
    let params = match query.as_deref() {
        None | Some("") => Params::default(),
        Some(q) => Params::parse(
            Query::<Vec<(String, String)>>::try_from_uri(
                &format!("/?{q}").parse().unwrap_or_default(),
            )
            .map(|Query(pairs)| pairs)
            .unwrap_or_default(),
        ),
    };
    let fresh = params.fresh;
    let key = Key::new(route, params);
    if !fresh && let Some(kept) = state.kept.get(&key) {
        return respond(kept, None);
    }
    let selection = key.selection();
    let (report, refresh) = if fresh {
        let (report, refresh) = state.checker.fresh_report(&selection).await;
        (report, Some(refresh))
    } else {
        (state.checker.report(&selection).await, None)
    };
    let rendered = render(&key, &report);
    // After a forced run every kept response is older than the results: forget them.
    state
        .kept
        .put(key, rendered.clone(), matches!(refresh, Some(Refresh::Ran)));
    respond(rendered, refresh)
}

async fn full(State(state): State<HealthState>, RawQuery(query): RawQuery) -> Response {
    answer(&state, query, Route::Full).await
}

async fn live(State(state): State<HealthState>, RawQuery(query): RawQuery) -> Response {
    answer(&state, query, Route::Live).await
}

async fn ready(State(state): State<HealthState>, RawQuery(query): RawQuery) -> Response {
    answer(&state, query, Route::Ready).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn query_parameters() {
        assert_eq!(Params::parse(vec![]), Params::default());
        let p = Params::parse(pairs(&[
            ("verbose", ""),
            ("fresh", "true"),
            ("exclude", "a, b"),
            ("exclude", "c"),
            ("other", "x"),
        ]));
        assert_eq!(
            p,
            Params {
                fresh: true,
                verbose: true,
                exclude: vec!["a".into(), "b".into(), "c".into()]
            }
        );
        let p = Params::parse(pairs(&[("fresh", "false"), ("verbose", "0")]));
        assert!(!p.fresh && !p.verbose);
    }

    #[test]
    fn keys_ignore_order_duplicates_and_verbose_on_the_full_document() {
        let a = Key::new(
            Route::Full,
            Params::parse(pairs(&[("exclude", "b,a,b"), ("verbose", "")])),
        );
        let b = Key::new(Route::Full, Params::parse(pairs(&[("exclude", "a,b")])));
        assert_eq!(a, b);
        let probe = Key::new(Route::Ready, Params::parse(pairs(&[("verbose", "")])));
        assert!(probe.verbose);
        assert_eq!(probe.selection().group_name(), Some(READY));
        assert_eq!(a.selection().group_name(), None);
    }

    fn rendered(body: &'static str) -> Rendered {
        Rendered {
            at: Instant::now(),
            status: StatusCode::OK,
            content_type: "text/plain",
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    fn key(exclude: &str) -> Key {
        Key::new(Route::Live, Params::parse(pairs(&[("exclude", exclude)])))
    }

    #[test]
    fn kept_responses_expire_are_bounded_and_forgotten_after_a_forced_run() {
        let kept = Kept {
            max_age: Duration::from_secs(3600),
            responses: Mutex::new(HashMap::new()),
        };
        kept.put(key("a"), rendered("a"), false);
        kept.put(key("b"), rendered("b"), false);
        assert_eq!(&kept.get(&key("a")).unwrap().body[..], b"a");
        kept.put(key("c"), rendered("c"), true);
        assert!(kept.get(&key("a")).is_none() && kept.get(&key("b")).is_none());
        for i in 0..MAX_KEPT * 2 {
            kept.put(key(&format!("x{i}")), rendered("x"), false);
        }
        assert!(kept.responses.lock().unwrap().len() <= MAX_KEPT);

        let expired = Kept {
            max_age: Duration::from_nanos(1),
            responses: Mutex::new(HashMap::new()),
        };
        expired.put(key("a"), rendered("a"), false);
        std::thread::sleep(Duration::from_millis(2));
        assert!(expired.get(&key("a")).is_none());
        let off = Kept {
            max_age: Duration::ZERO,
            responses: Mutex::new(HashMap::new()),
        };
        off.put(key("a"), rendered("a"), false);
        assert!(off.responses.lock().unwrap().is_empty());
    }

    /// A check whose verdict the test flips.
    struct Switch(Arc<std::sync::atomic::AtomicBool>);

    impl tamma_core::Check for Switch {
        fn name(&self) -> &str {
            "switch"
        }
        fn check(&self) -> tamma_core::CheckFuture<'_> {
            let up = self.0.load(std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                if up {
                    tamma_core::CheckResult::healthy()
                } else {
                    tamma_core::CheckResult::unhealthy("switched off")
                }
            })
        }
    }

    type Served = (
        String,
        Arc<std::sync::atomic::AtomicBool>,
        Arc<HealthChecker>,
    );

    async fn serve(max_age: Duration) -> Served {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let checker = Arc::new(
            HealthChecker::builder("1")
                .interval(Duration::from_secs(3600))
                .fresh_min_interval(Duration::ZERO)
                .build(),
        );
        checker
            .add_check(
                Arc::new(Switch(Arc::clone(&up))),
                tamma_health::CheckOptions::new()
                    .critical(true)
                    .groups([LIVE, READY]),
            )
            .unwrap();
        let app = health_routes_with_max_age(
            Arc::clone(&checker),
            &HealthChecksConfig::default(),
            max_age,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), up, checker)
    }

    async fn status(url: String) -> u16 {
        reqwest::get(url).await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn kept_responses_are_served_until_a_forced_run() {
        let (base, up, checker) = serve(Duration::from_secs(3600)).await;
        assert_eq!(status(format!("{base}/health")).await, 200);
        assert_eq!(status(format!("{base}/health/live")).await, 200);
        up.store(false, std::sync::atomic::Ordering::SeqCst);
        // The checker knows, but the kept response (well within its age) still says pass.
        let report = checker.run_now(&Selection::all()).await;
        assert_eq!(report.http_status(), 503);
        assert_eq!(status(format!("{base}/health")).await, 200);
        // A forced run sees the failure and drops every kept response.
        assert_eq!(status(format!("{base}/health/ready?fresh=true")).await, 503);
        assert_eq!(status(format!("{base}/health")).await, 503);
        let r = reqwest::get(format!("{base}/health/live")).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(
            r.text().await.unwrap(),
            "[-]switch failed: switched off\nlive check failed\n"
        );
    }

    #[tokio::test]
    async fn without_a_max_age_every_request_reads_the_checker() {
        let (base, up, _checker) = serve(Duration::ZERO).await;
        assert_eq!(status(format!("{base}/health")).await, 200);
        up.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(status(format!("{base}/health?fresh=true")).await, 503);
        let r = reqwest::get(format!("{base}/health/live?verbose"))
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.text().await.unwrap(),
            "[-]switch failed: switched off\nlive check failed\n"
        );
    }
}
