//! `GET /metrics` (or the configured endpoint): the metrics exposition.
//!
//! The rendered body is kept for up to a second ([`METRICS_MAX_AGE`]): a scrape storm renders once
//! per second, every other request gets the same bytes (a reference count, no copy). Prometheus
//! scrapes every 10–60 s, so a scraper never sees the reuse.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Renders the exposition: the body and its content type (Prometheus text or JSON).
pub type MetricsRender = Arc<dyn Fn() -> (String, &'static str) + Send + Sync>;

/// How long [`metrics_routes`] reuses a rendered body.
pub const METRICS_MAX_AGE: Duration = Duration::from_secs(1);

/// The metrics route at `endpoint`; a rendered body is reused for [`METRICS_MAX_AGE`].
///
/// `render` is called at most once per second however many requests arrive; make it refresh what
/// is sampled (process metrics) before rendering.
pub fn metrics_routes(endpoint: &str, render: MetricsRender) -> Router {
    metrics_routes_with_max_age(endpoint, render, METRICS_MAX_AGE)
}

/// [`metrics_routes`] with another reuse window; `Duration::ZERO` renders on every request.
pub fn metrics_routes_with_max_age(
    endpoint: &str,
    render: MetricsRender,
    max_age: Duration,
) -> Router {
    let cache = Arc::new(Cache {
        render,
        max_age,
        last: Mutex::new(None),
    });
    Router::new().route(endpoint, get(show)).with_state(cache)
}

struct Rendered {
    at: Instant,
    body: Bytes,
    content_type: HeaderValue,
}

struct Cache {
    render: MetricsRender,
    max_age: Duration,
    /// Held while rendering, so concurrent requests after expiry wait for one render instead of
    /// each rendering (the render is synchronous and short: ~100 ns per exposition line).
    last: Mutex<Option<Rendered>>,
}

impl Cache {
    fn get(&self) -> (Bytes, HeaderValue) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = last.as_ref()
            && r.at.elapsed() < self.max_age
        {
            return (r.body.clone(), r.content_type.clone());
        }
        let at = Instant::now();
        let (body, content_type) = (self.render)();
        let rendered = Rendered {
            at,
            body: Bytes::from(body),
            content_type: HeaderValue::from_static(content_type),
        };
        let out = (rendered.body.clone(), rendered.content_type.clone());
        *last = Some(rendered);
        out
    }
}

async fn show(State(cache): State<Arc<Cache>>) -> Response {
    let (body, content_type) = cache.get();
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(renders: &Arc<AtomicUsize>) -> MetricsRender {
        let renders = Arc::clone(renders);
        Arc::new(move || {
            let n = renders.fetch_add(1, Ordering::SeqCst) + 1;
            (format!("# render {n}\n"), "text/plain; version=0.0.4")
        })
    }

    #[test]
    fn a_body_is_reused_within_the_max_age_then_rendered_again() {
        let renders = Arc::new(AtomicUsize::new(0));
        let cache = Cache {
            render: counting(&renders),
            max_age: Duration::from_secs(3600),
            last: Mutex::new(None),
        };
        for _ in 0..100 {
            let (body, ct) = cache.get();
            assert_eq!(&body[..], b"# render 1\n");
            assert_eq!(ct, "text/plain; version=0.0.4");
        }
        assert_eq!(renders.load(Ordering::SeqCst), 1);

        let short = Cache {
            render: counting(&renders),
            max_age: Duration::from_millis(50),
            last: Mutex::new(None),
        };
        assert_eq!(&short.get().0[..], b"# render 2\n");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(&short.get().0[..], b"# render 3\n");
    }

    #[test]
    fn zero_max_age_renders_every_time() {
        let renders = Arc::new(AtomicUsize::new(0));
        let cache = Cache {
            render: counting(&renders),
            max_age: Duration::ZERO,
            last: Mutex::new(None),
        };
        let _ = cache.get();
        let _ = cache.get();
        assert_eq!(renders.load(Ordering::SeqCst), 2);
    }
}
