//! Batches of JSON lines POSTed to a collector, retried with backoff.

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::config::HttpOutputConfig;
use crate::output::{Control, Line, Sink, SinkError};

/// The delay before retry number `attempt` (0-based): "full jitter", a uniform random value in
/// `[0, min(max, initial · 2^attempt)]`.
///
/// Kept as one function so it can be replaced by `tamma-resilience`'s retry policy in one place.
pub(crate) fn full_jitter_backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let cap = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Accumulates lines into a body and sends it when it is full or old enough.
pub(crate) struct HttpSink {
    url: reqwest::Url,
    headers: HeaderMap,
    timeout: Duration,
    client: Option<reqwest::blocking::Client>,
    body: Vec<u8>,
    count: usize,
    first_at: Option<Instant>,
    max_events: usize,
    max_bytes: usize,
    max_wait: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl HttpSink {
    /// A sink for `c`; the config was validated, so the URL and header names parse.
    pub(crate) fn new(c: &HttpOutputConfig) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(&c.url).map_err(|e| format!("invalid url {:?}: {e}", c.url))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        for (k, v) in &c.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?;
            let mut value =
                HeaderValue::from_str(v.expose()).map_err(|e| format!("header {k:?}: {e}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(Self {
            url,
            headers,
            timeout: c.timeout.as_duration(),
            client: None,
            body: Vec::new(),
            count: 0,
            first_at: None,
            max_events: c.max_events.max(1),
            max_bytes: usize::try_from(c.max_bytes.bytes())
                .unwrap_or(usize::MAX)
                .max(1),
            max_wait: c.max_wait.as_duration(),
            initial_backoff: c.retry_initial_backoff.as_duration(),
            max_backoff: c
                .retry_max_backoff
                .as_duration()
                .max(Duration::from_millis(1)),
        })
    }

    /// POSTs the pending body until it is accepted, rejected for good, or shutdown gives up.
    fn send(&mut self, ctl: &Control<'_>) -> Result<(), SinkError> {
        if self.count == 0 {
            return Ok(());
        }
        // Built here, on the output's own thread: a blocking client must not be built or dropped
        // inside an async runtime.
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = reqwest::blocking::Client::builder()
                    .timeout(self.timeout)
                    .default_headers(self.headers.clone())
                    .build()
                    .map_err(|e| SinkError::new(format!("cannot build HTTP client: {e}"), 0))?;
                self.client = Some(c.clone());
                c
            }
        };
        let mut attempt = 0u32;
        loop {
            let outcome = client.post(self.url.clone()).body(self.body.clone()).send();
            let (retry, msg) = match outcome {
                Ok(r) if r.status().is_success() => {
                    self.clear();
                    return Ok(());
                }
                Ok(r) => {
                    let s = r.status();
                    let retry = s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408;
                    (retry, format!("{} answered {s}", self.url))
                }
                Err(e) => (true, format!("POST {}: {e}", without_query(&self.url))),
            };
            if !retry || ctl.give_up() {
                let lost = self.count;
                self.clear();
                return Err(SinkError::new(msg, lost));
            }
            ctl.report_error(&msg);
            ctl.sleep(full_jitter_backoff(
                attempt,
                self.initial_backoff,
                self.max_backoff,
            ));
            attempt = attempt.saturating_add(1);
        }
    }

    fn clear(&mut self) {
        self.body.clear();
        self.count = 0;
        self.first_at = None;
    }
}

fn without_query(u: &reqwest::Url) -> String {
    let mut u = u.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    u.to_string()
}

impl Sink for HttpSink {
    fn write(&mut self, lines: &[Line], ctl: &Control<'_>) -> Result<(), SinkError> {
        let mut lost = 0u64;
        let mut last_err = None;
        for l in lines {
            if self.count > 0
                && self.body.len() + l.bytes.len() > self.max_bytes
                && let Err(e) = self.send(ctl)
            {
                lost += e.lost;
                last_err = Some(e.message);
            }
            self.body.extend_from_slice(&l.bytes);
            if !l.bytes.ends_with(b"\n") {
                self.body.push(b'\n');
            }
            self.count += 1;
            self.first_at.get_or_insert_with(Instant::now);
            if (self.count >= self.max_events || self.body.len() >= self.max_bytes)
                && let Err(e) = self.send(ctl)
            {
                lost += e.lost;
                last_err = Some(e.message);
            }
        }
        match last_err {
            Some(message) => Err(SinkError { message, lost }),
            None => Ok(()),
        }
    }

    fn flush(&mut self, ctl: &Control<'_>) -> Result<(), SinkError> {
        self.send(ctl)
    }

    fn deadline(&self) -> Option<Instant> {
        self.first_at.map(|t| t + self.max_wait)
    }

    fn pending(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..40 {
            let d = full_jitter_backoff(attempt, i, m);
            let cap = i.saturating_mul(1 << attempt.min(20)).min(m);
            assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
        }
    }
}
