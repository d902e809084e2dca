//! Network checks: `http` (one shared client, a status range, an optional body match) and `tcp`.

use tamma_core::{Check, CheckFuture, CheckResult};
use tokio::time::Instant;

use crate::config::{HttpCheckConfig, HttpMethod, TcpCheckConfig};
use crate::error::{Error, Result};
use crate::system::error_chain;

/// How much of a body is searched for `bodyContains`.
const BODY_LIMIT: usize = 64 * 1024;

/// Builds the HTTP client that every `http` check shares (connection pool, TLS roots). Build it once
/// and clone it (clones share the pool).
///
/// # Errors
/// [`Error::HttpClient`] when TLS cannot be initialised.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("tamma-health/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(Error::HttpClient)
}

fn millis(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

/// An HTTP request whose status must lie in a range and whose body may have to contain a text.
/// Observed: response time in ms. Redirects are not followed (a 3xx is judged by the range).
#[derive(Debug)]
pub struct HttpCheck {
    name: String,
    url: reqwest::Url,
    config: HttpCheckConfig,
    client: reqwest::Client,
}

impl HttpCheck {
    /// An `http` check called `name`, sending through `client` (see [`http_client`]).
    ///
    /// # Errors
    /// [`Error::InvalidCheck`] when the URL does not parse.
    pub fn new(
        name: impl Into<String>,
        config: HttpCheckConfig,
        client: reqwest::Client,
    ) -> Result<Self> {
        let name = name.into();
        let url = reqwest::Url::parse(&config.url).map_err(|e| Error::InvalidCheck {
            name: name.clone(),
            reason: format!("url {:?}: {e}", config.url),
        })?;
        Ok(Self {
            name,
            url,
            config,
            client,
        })
    }

    async fn probe(&self) -> CheckResult {
        let start = Instant::now();
        let method = match self.config.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Head => reqwest::Method::HEAD,
            HttpMethod::Post => reqwest::Method::POST,
        };
        let mut response = match self.client.request(method, self.url.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                return CheckResult::unhealthy(format!("request failed: {}", error_chain(&e)))
                    .detail("url", self.url.as_str());
            }
        };
        let status = response.status().as_u16();
        let range = self.config.expect_status;
        let base = |r: CheckResult| {
            r.detail("url", self.url.as_str())
                .detail("statusCode", status)
        };
        if !range.contains(status) {
            return base(CheckResult::unhealthy(format!(
                "status {status} is outside {}–{}",
                range.min, range.max
            )))
            .observed(millis(start), "ms");
        }
        if let Some(needle) = &self.config.body_contains {
            let mut body = Vec::new();
            let found = loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        body.extend_from_slice(&chunk);
                        if contains(&body, needle.as_bytes()) {
                            break true;
                        }
                        if body.len() >= BODY_LIMIT {
                            break false;
                        }
                    }
                    Ok(None) => break false,
                    Err(e) => {
                        return base(CheckResult::unhealthy(format!(
                            "reading the body failed: {}",
                            error_chain(&e)
                        )));
                    }
                }
            };
            if !found {
                return base(CheckResult::unhealthy(format!(
                    "the body does not contain {needle:?} (first {} KiB searched)",
                    BODY_LIMIT / 1024
                )))
                .observed(millis(start), "ms");
            }
        }
        base(CheckResult::healthy()).observed(millis(start), "ms")
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl Check for HttpCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(self.probe())
    }
}

/// A TCP connect to `host:port`. Observed: connect time in ms.
#[derive(Debug)]
pub struct TcpCheck {
    name: String,
    address: String,
}

impl TcpCheck {
    /// A `tcp` check called `name`.
    pub fn new(name: impl Into<String>, config: &TcpCheckConfig) -> Self {
        Self {
            name: name.into(),
            address: config.address.clone(),
        }
    }
}

impl Check for TcpCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let start = Instant::now();
            match tokio::net::TcpStream::connect(&self.address).await {
                Ok(_stream) => CheckResult::healthy()
                    .observed(millis(start), "ms")
                    .detail("address", self.address.clone()),
                Err(e) => {
                    CheckResult::unhealthy(format!("connect to {} failed: {e}", self.address))
                        .detail("address", self.address.clone())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn contains_finds_needles() {
        assert!(super::contains(b"hello world", b"o w"));
        assert!(!super::contains(b"hello", b"world"));
        assert!(super::contains(b"", b""));
    }
}
