//! The HTTP plumbing of the events API: the JSON error body, request bodies read within limits and
//! parsed with the path of the field at fault, and strict query-string parsing. Nothing here ever lets
//! one of axum's plain-text rejections reach a client.

use std::borrow::Cow;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// The body of every error answer: `{"error": {"code": …, "message": …, "path": …}}`.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub(crate) error: ErrorDetail,
}

/// One error: a stable `snake_case` code, a human sentence and, where one field is at fault, its path.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine-readable code, e.g. `append_condition_failed`.
    #[schema(example = "invalid_event")]
    pub(crate) code: String,
    /// What went wrong, for people.
    pub(crate) message: String,
    /// The field at fault (`events[0].type`, `limit`, `Last-Event-ID`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "events[0].type")]
    pub(crate) path: Option<String>,
    /// For `append_condition_failed`: the first position after the condition's `after` holding a
    /// matching event (re-read from there, decide again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 42)]
    pub(crate) position: Option<u64>,
}

/// An error answer of the events API.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: Cow<'static, str>,
    pub(crate) message: String,
    pub(crate) path: Option<String>,
    /// The conflicting position of `append_condition_failed`.
    pub(crate) position: Option<u64>,
    /// Seconds for the `Retry-After` header (429 and 503).
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            path: None,
            position: None,
            retry_after: None,
        }
    }

    /// A 400 answer about the field at `path`.
    pub(crate) fn bad_request(
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message).at(path)
    }

    /// Sets the path of the field at fault.
    pub(crate) fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Adds `Retry-After: <seconds>`.
    pub(crate) fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(retry_after_secs(after));
        self
    }

    /// The answer for a store error; `retry_after` is used for the answers that invite a retry.
    pub(crate) fn from_store(e: &tamma_events::Error, retry_after: Duration) -> Self {
        use tamma_events::Error as E;
        let status = match e {
            E::InvalidEvent { .. } | E::InvalidQuery { .. } | E::EmptyAppend => {
                StatusCode::BAD_REQUEST
            }
            E::EventTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::AppendConditionFailed { .. } | E::DuplicateEventId { .. } => StatusCode::CONFLICT,
            E::Unavailable { .. } | E::SubscriptionLagged { .. } => StatusCode::SERVICE_UNAVAILABLE,
            E::Backend {
                transient: true, ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut out = Self::new(status, e.code(), e.to_string());
        out.path = e.path().map(str::to_owned);
        if let E::AppendConditionFailed { position } = e {
            out.position = Some(*position);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            out = out.retry_after(retry_after);
        }
        if status.is_server_error() {
            tracing::warn!(code = e.code(), error = %e, "event store error answered with {status}");
        }
        out
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.clone().into_owned(),
                message: self.message.clone(),
                path: self.path.clone(),
                position: self.position,
            },
        }
    }

    /// The body as JSON text (for SSE error messages).
    pub(crate) fn to_json(&self) -> String {
        // Serializing a struct of strings into memory cannot fail.
        serde_json::to_string(&self.body()).unwrap_or_default()
    }
}

/// Whole seconds, rounded up, at least 1: `Retry-After` takes seconds and 0 invites a busy loop.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        (self.status, headers, self.to_json()).into_response()
    }
}

/// The answer for a method a path does not support.
/// The answer for a path no route serves: the JSON error shape, like every other error of the API.
pub(crate) async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route serves {} {}", req.method(), req.uri().path()),
    )
}

pub(crate) async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not supported on {}", req.method(), req.uri().path()),
    )
}

/// Reads a JSON request body: at most the router's body limit (413 beyond), a JSON content type (or
/// none), and parsed with the path of the field at fault.
pub(crate) async fn json_body<T: DeserializeOwned>(
    req: Request,
    max_body_size: u64,
) -> Result<T, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(essence == "application/json" || essence.ends_with("+json")) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("the body must be application/json, not {essence:?}"),
            ));
        }
    }
    let bytes = Bytes::from_request(req, &()).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than the limit of {max_body_size} bytes"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", r.body_text())
        }
    })?;
    // serde would also take a struct written as an array of its fields in order; the API's bodies
    // are objects (as its OpenAPI document says).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be a JSON object, not an array",
        ));
    }
    parse_json(&bytes)
}

/// Parses JSON into `T`; errors name the field (`events[0].id`) and the code says which part is at fault.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        ) {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let code = if path.starts_with("events") {
            "invalid_event"
        } else if path.starts_with("query") || path.starts_with("condition") {
            "invalid_query"
        } else {
            "invalid_request"
        };
        let path = if path == "." { None } else { Some(path) };
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, code, inner.to_string());
        err.path = path;
        err
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// The query string as `(name, value)` pairs, in order (repeated names kept).
pub(crate) fn query_pairs(
    uri: &Uri,
    repeatable: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    // Decoding replaces bytes that are not UTF-8 by U+FFFD: a query naming `type=%FF` would look for a
    // type the client never sent. Refuse it instead, naming the parameter.
    for part in uri.query().unwrap_or("").split('&') {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        if percent_encoding::percent_decode_str(name)
            .decode_utf8()
            .and_then(|n| {
                percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map(|_| n)
            })
            .is_err()
        {
            let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            return Err(ApiError::bad_request(
                "invalid_parameter",
                name.clone(),
                format!("{name} is not UTF-8 once percent-decoded"),
            ));
        }
    }
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", e.body_text()))?;
    // A parameter that takes one value, given twice, is ambiguous: say so rather than pick one.
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !repeatable.contains(&name.as_str()) && pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                name.clone(),
                format!("{name} is given more than once"),
            ));
        }
    }
    Ok(pairs)
}

/// A non-negative integer parameter.
pub(crate) fn parse_u64(name: &str, value: &str) -> Result<u64, ApiError> {
    value.trim().parse::<u64>().map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            name,
            format!("{name} must be a non-negative integer, not {value:?}"),
        )
    })
}

/// An RFC 3339 time parameter.
pub(crate) fn parse_time(
    name: &str,
    value: &str,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_parameter",
                name,
                format!("{name} must be an RFC 3339 time such as 2026-01-02T03:04:05Z, not {value:?}: {e}"),
            )
        })
}

/// A parameter the route does not know.
/// Refuses a query string on a route that takes no parameters: a client adding one expects it to
/// mean something, and silently ignoring it would answer another question than the one asked.
pub(crate) fn no_parameters(uri: &Uri) -> Result<(), ApiError> {
    match query_pairs(uri, &[])?.into_iter().next() {
        Some((name, _)) => Err(unknown_parameter(&name, &[])),
        None => Ok(()),
    }
}

pub(crate) fn unknown_parameter(name: &str, known: &[&str]) -> ApiError {
    ApiError::bad_request(
        "unknown_parameter",
        name,
        if known.is_empty() {
            format!("unknown query parameter {name:?}; this route takes no query parameters")
        } else {
            format!(
                "unknown query parameter {name:?}; this route takes {}",
                known.join(", ")
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        events: Vec<tamma_events::Event>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"events": [{"type": "A"}, {"type": 1}]}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.path.as_deref()),
            ("invalid_event", Some("events[1].type"))
        );
        let e = parse_json::<Body>(br#"{"events": [{"type": "A", "id": "nope"}]}"#).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("events[0].id"));
        let e = parse_json::<Body>(br#"{"events": ["#).unwrap_err();
        assert_eq!((e.code.as_ref(), e.path), ("malformed_json", None));
        let e = parse_json::<Body>(br#"{"events": []} x"#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
        let e = parse_json::<Body>(br#"{"evnts": []}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.path.as_deref()),
            ("invalid_request", Some("evnts"))
        );
        let e = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert_eq!((e.code.as_ref(), e.path), ("invalid_request", None));
        assert!(
            e.message.contains("missing field `events`"),
            "{}",
            e.message
        );
        let e = parse_json::<Body>(br#"{"events": [{"type": "A", "colour": 1}]}"#).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("events[0].colour"));
        let e = parse_json::<Body>(b"[]").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn store_errors_map_to_statuses() {
        let d = Duration::from_millis(1500);
        let e = ApiError::from_store(&tamma_events::Error::unavailable("down"), d);
        assert_eq!(
            (e.status, e.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(2))
        );
        let e = ApiError::from_store(
            &tamma_events::Error::AppendConditionFailed { position: 3 },
            d,
        );
        assert_eq!(
            (e.status, e.code.as_ref()),
            (StatusCode::CONFLICT, "append_condition_failed")
        );
        let e = ApiError::from_store(&tamma_events::Error::EmptyAppend, d);
        assert_eq!(
            (e.status, e.path.as_deref()),
            (StatusCode::BAD_REQUEST, Some("events"))
        );
        let e = ApiError::from_store(
            &tamma_events::Error::EventTooLarge {
                path: "events[0]".into(),
                size: 10,
                limit: 5,
            },
            d,
        );
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = ApiError::from_store(
            &tamma_events::Error::backend(std::io::Error::other("locked"), true),
            d,
        );
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn parameters() {
        assert_eq!(parse_u64("limit", " 5").unwrap(), 5);
        let e = parse_u64("limit", "-1").unwrap_err();
        assert_eq!(e.path.as_deref(), Some("limit"));
        assert!(parse_time("start", "2026-01-02T03:04:05+01:00").is_ok());
        assert_eq!(
            parse_time("end", "yesterday").unwrap_err().path.as_deref(),
            Some("end")
        );
        let uri: Uri = "/v1/events?type=A&type=B%20C&tag=k%3Av".parse().unwrap();
        assert_eq!(
            query_pairs(&uri, &["type", "tag"]).unwrap(),
            vec![
                ("type".into(), "A".into()),
                ("type".into(), "B C".into()),
                ("tag".into(), "k:v".into())
            ]
        );
    }
}
