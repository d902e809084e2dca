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

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
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

/// The health routes at the paths of `config`, or no route when `config.enabled` is false.
///
/// The checker should be monitoring ([`HealthChecker::start_monitoring`]) so the cache stays fresh;
/// the routes never run a check more than once per interval unless `?fresh=true` asks.
pub fn health_routes(checker: Arc<HealthChecker>, config: &HealthChecksConfig) -> Router {
    if !config.enabled {
        return Router::new();
    }
    Router::new()
        .route(&config.endpoint, get(full))
        .route(&config.live_endpoint, get(live))
        .route(&config.ready_endpoint, get(ready))
        .with_state(checker)
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

    fn selection(&self, group: Option<&str>) -> Selection {
        let base = group.map_or_else(Selection::all, Selection::group);
        self.exclude
            .iter()
            .fold(base, |s, name| s.exclude(name.clone()))
    }
}

async fn load(
    checker: &HealthChecker,
    params: &Params,
    group: Option<&str>,
) -> (HealthReport, Option<Refresh>) {
    let selection = params.selection(group);
    if params.fresh {
        let (report, refresh) = checker.fresh_report(&selection).await;
        (report, Some(refresh))
    } else {
        (checker.report(&selection).await, None)
    }
}

fn status_code(report: &HealthReport) -> StatusCode {
    if report.http_status() == 200 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn finish(mut response: Response, refresh: Option<Refresh>) -> Response {
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

async fn full(
    State(checker): State<Arc<HealthChecker>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let params = Params::parse(pairs);
    let (report, refresh) = load(&checker, &params, None).await;
    let response = (
        status_code(&report),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(HEALTH_JSON_CONTENT_TYPE),
        )],
        report.render_health_json(),
    )
        .into_response();
    finish(response, refresh)
}

async fn probe(checker: &HealthChecker, pairs: Vec<(String, String)>, group: &str) -> Response {
    let params = Params::parse(pairs);
    let (report, refresh) = load(checker, &params, Some(group)).await;
    let code = status_code(&report);
    // Kubernetes only reads the status; people read the list (always shown on failure).
    let body = if params.verbose || code != StatusCode::OK {
        report.render_verbose(group)
    } else {
        "ok\n".to_owned()
    };
    let response = (
        code,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response();
    finish(response, refresh)
}

async fn live(
    State(checker): State<Arc<HealthChecker>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    probe(&checker, pairs, LIVE).await
}

async fn ready(
    State(checker): State<Arc<HealthChecker>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    probe(&checker, pairs, READY).await
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
}
