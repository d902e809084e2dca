//! Routes: stored events delivered to external sinks (HTTP webhook, NATS JetStream) from a cursor
//! persisted in the store's database.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tamma_events::{EventStore, SequencedEvent, glob_match};
use tamma_resilience::{Classify, Operation, parse_retry_after};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{NatsRouteConfig, RouteConfig, StartAt, WebhookRouteConfig};
use crate::emitter::{Core, Cursor};
use crate::error::{Error, Result};
use crate::subscribe::{call_unless_stopped, next_or_stop, pause, query_for};

/// Longest wait between two delivery attempts of a failing route.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Something a route delivers batches of stored events to.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Delivers `events` (in position order); `Ok` once the sink acknowledged all of them.
    fn deliver<'a>(&'a self, events: &'a [SequencedEvent]) -> BoxFuture<'a, Result<()>>;
}

/// A running route.
pub(crate) struct RouteTask {
    pub(crate) task: JoinHandle<()>,
}

/// The cursor name of a route in the store's database.
#[must_use]
pub fn cursor_name(route: &str) -> String {
    format!("route:{route}")
}

pub(crate) fn start(
    core: &Arc<Core>,
    config: &RouteConfig,
    stop: watch::Receiver<bool>,
) -> Result<RouteTask> {
    let name = config.name().to_owned();
    let sink: Arc<dyn Sink> = match config {
        RouteConfig::Webhook(c) => Arc::new(WebhookSink::new(c)?),
        RouteConfig::Nats(c) => Arc::new(NatsSink::new(c)),
    };
    let cursor = Arc::new(Cursor::default());
    core.cursors
        .lock()
        .insert(cursor_name(&name), Arc::clone(&cursor));
    let route = Route {
        store: Arc::clone(&core.store),
        op: core.resilience.operation(&format!("route.{name}")),
        sink,
        filter: config.filter(),
        batch_size: config.batch_size().max(1) as usize,
        cursor,
        name,
    };
    Ok(RouteTask {
        task: tokio::spawn(route.run(stop)),
    })
}

struct Route {
    store: Arc<dyn EventStore>,
    op: Operation,
    sink: Arc<dyn Sink>,
    filter: crate::config::RouteFilter,
    batch_size: usize,
    cursor: Arc<Cursor>,
    name: String,
}

impl Route {
    /// Where to start: the saved cursor, or (first start) the head or 0, saved at once so `latest`
    /// means the head when the route was first started.
    async fn start_position(&self, stop: &mut watch::Receiver<bool>) -> Option<u64> {
        let key = cursor_name(&self.name);
        let mut delay = Duration::from_millis(100);
        loop {
            let found = match self.store.load_cursor(&key).await {
                Ok(Some(p)) => Ok(p),
                Ok(None) => {
                    let start = match self.filter.start_at {
                        StartAt::Earliest => Ok(0),
                        StartAt::Latest => self.store.head().await,
                    };
                    match start {
                        Ok(p) => self.store.save_cursor(&key, p).await.map(|()| p),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match found {
                Ok(p) => return Some(p),
                Err(e) => {
                    tracing::warn!(route = %self.name, error = %e, "cannot read the route's cursor; retrying");
                    if !pause(delay, stop).await {
                        return None;
                    }
                    delay = (delay * 2).min(MAX_DELAY);
                }
            }
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let Some(start) = self.start_position(&mut stop).await else {
            return;
        };
        self.cursor.position.store(start, Ordering::Release);
        let key = cursor_name(&self.name);
        let (query, glob) = query_for(self.filter.type_pattern.as_deref(), &self.filter.tags);
        let mut delay = Duration::from_millis(100);
        tracing::info!(route = %self.name, after = start, "route started");
        'outer: loop {
            let after = self.cursor.position.load(Ordering::Acquire);
            let mut stream = self.store.subscribe(query.clone(), after);
            loop {
                let Some(first) = next_or_stop(&mut stream, &self.cursor, &mut stop).await else {
                    break 'outer;
                };
                let mut batch = Vec::with_capacity(self.batch_size);
                let mut failed = None;
                match first {
                    None => break 'outer,
                    Some(Ok(e)) => batch.push(e),
                    Some(Err(e)) => failed = Some(e),
                }
                while failed.is_none() && batch.len() < self.batch_size {
                    match futures::StreamExt::next(&mut stream).now_or_never() {
                        Some(Some(Ok(e))) => batch.push(e),
                        Some(Some(Err(e))) => failed = Some(e),
                        _ => break,
                    }
                }
                if let Some(last) = batch.last().map(|e| e.position) {
                    batch.retain(|e| {
                        glob.as_deref()
                            .is_none_or(|g| glob_match(g, &e.event.event_type))
                    });
                    if !batch.is_empty() && !self.deliver(&batch, &mut stop).await {
                        break 'outer;
                    }
                    if let Err(e) = self.store.save_cursor(&key, last).await {
                        // Delivered but not recorded: after a restart these events are delivered
                        // again, which the sinks' idempotency (event ids) absorbs.
                        tracing::warn!(route = %self.name, position = last, error = %e, "cannot save the route's cursor");
                    }
                    self.cursor.position.store(last, Ordering::Release);
                    delay = Duration::from_millis(100);
                }
                if let Some(e) = failed {
                    tracing::warn!(route = %self.name, error = %e, "route read failed; resubscribing");
                    if !pause(delay, &mut stop).await {
                        break 'outer;
                    }
                    delay = (delay * 2).min(MAX_DELAY);
                    continue 'outer;
                }
            }
        }
        self.cursor.idle.store(true, Ordering::Release);
        tracing::info!(route = %self.name, position = self.cursor.position.load(Ordering::Acquire), "route stopped");
    }

    /// Delivers one batch until the sink acknowledges it; false when stopped first. Never skips.
    async fn deliver(&self, batch: &[SequencedEvent], stop: &mut watch::Receiver<bool>) -> bool {
        let mut delay = Duration::from_millis(200);
        loop {
            let e = match call_unless_stopped(&self.op, stop, || self.sink.deliver(batch)).await {
                None => return false,
                Some(Ok(())) => return true,
                Some(Err(e)) => e,
            };
            let wait = e.class().retry_after.unwrap_or(delay).min(MAX_DELAY);
            if e.is_retryable() {
                tracing::warn!(route = %self.name, events = batch.len(), first = batch[0].position, error = %e, "route delivery failed; retrying");
            } else {
                tracing::error!(route = %self.name, events = batch.len(), first = batch[0].position, error = %e, "route delivery refused; the route waits and tries again (fix the sink)");
            }
            if !pause(wait, stop).await {
                return false;
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
    }
}

/// A stable key for a batch: FNV-1a over its event ids.
pub(crate) fn batch_key(ids: impl Iterator<Item = uuid::Uuid>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("tamma-{h:016x}")
}

/// HTTP POST of `{"events": [SequencedEvent…]}` with the event ids in `X-Tamma-Event-Id`.
struct WebhookSink {
    label: String,
    client: reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
}

impl WebhookSink {
    fn new(c: &WebhookRouteConfig) -> Result<Self> {
        let bad = |path: &str, message: String| Error::Config {
            path: format!("route {}: {path}", c.name),
            message,
        };
        let url = reqwest::Url::parse(&c.url).map_err(|e| bad("url", e.to_string()))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &c.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| bad(&format!("headers.{k}"), e.to_string()))?;
            let mut value = reqwest::header::HeaderValue::from_str(v.expose())
                .map_err(|e| bad(&format!("headers.{k}"), e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .timeout(c.timeout.as_duration())
            .build()
            .map_err(|e| bad("timeout", e.to_string()))?;
        Ok(Self {
            label: format!("webhook:{}", c.name),
            client,
            url,
            headers,
        })
    }
}

impl Sink for WebhookSink {
    fn deliver<'a>(&'a self, events: &'a [SequencedEvent]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let ids: Vec<String> = events.iter().map(|e| e.event.id.to_string()).collect();
            let body = serde_json::json!({ "events": events });
            let resp = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .header("X-Tamma-Event-Id", ids.join(","))
                .header(
                    "Idempotency-Key",
                    batch_key(events.iter().map(|e| e.event.id)),
                )
                .json(&body)
                .send()
                .await
                .map_err(|e| Error::transport(&self.label, e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = resp.text().await.unwrap_or_default();
            Err(Error::http(
                &self.label,
                status.as_u16(),
                &text,
                retry_after,
            ))
        })
    }
}

/// Publishes each event to JetStream with `Nats-Msg-Id` = event id, then waits for the acks.
struct NatsSink {
    label: String,
    url: String,
    subject: String,
    timeout: Duration,
    js: tokio::sync::Mutex<Option<async_nats::jetstream::Context>>,
}

impl NatsSink {
    fn new(c: &NatsRouteConfig) -> Self {
        Self {
            label: format!("nats:{}", c.name),
            url: c.url.clone(),
            subject: c.subject.clone(),
            timeout: c.timeout.as_duration(),
            js: tokio::sync::Mutex::new(None),
        }
    }

    async fn context(&self) -> Result<async_nats::jetstream::Context> {
        let mut js = self.js.lock().await;
        if let Some(c) = js.as_ref() {
            return Ok(c.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(self.timeout)
            .connect(self.url.as_str())
            .await
            .map_err(|e| Error::transport(&self.label, e))?;
        let mut ctx = async_nats::jetstream::new(client);
        ctx.set_timeout(self.timeout);
        *js = Some(ctx.clone());
        Ok(ctx)
    }
}

/// The subject of an event: `{type}` replaced by the type, with characters NATS forbids in a token
/// (space, `*`, `>`, control characters) replaced by `_`.
pub(crate) fn subject_for(template: &str, event_type: &str) -> String {
    let clean: String = event_type
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '*' || c == '>' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let clean = clean
        .split('.')
        .map(|t| if t.is_empty() { "_" } else { t })
        .collect::<Vec<_>>()
        .join(".");
    template.replace("{type}", &clean)
}

impl Sink for NatsSink {
    fn deliver<'a>(&'a self, events: &'a [SequencedEvent]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let js = self.context().await?;
            let mut acks = Vec::with_capacity(events.len());
            for e in events {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    e.event.id.to_string().as_str(),
                );
                headers.insert("Tamma-Position", e.position.to_string().as_str());
                let payload =
                    serde_json::to_vec(e).map_err(|err| Error::transport(&self.label, err))?;
                let ack = js
                    .publish_with_headers(
                        subject_for(&self.subject, &e.event.event_type),
                        headers,
                        payload.into(),
                    )
                    .await
                    .map_err(|err| Error::transport(&self.label, err))?;
                acks.push(ack);
            }
            for ack in acks {
                match tokio::time::timeout(self.timeout, ack.into_future()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Err(Error::transport(&self.label, err)),
                    Err(_) => {
                        return Err(Error::transport(
                            &self.label,
                            "no JetStream acknowledgement within the timeout",
                        ));
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_keys() {
        assert_eq!(
            subject_for("tamma.events.{type}", "TASK.STARTED"),
            "tamma.events.TASK.STARTED"
        );
        assert_eq!(subject_for("x.{type}", "A B.*.>..c"), "x.A_B._._._.c");
        let a = uuid::Uuid::now_v7();
        let b = uuid::Uuid::now_v7();
        assert_eq!(batch_key([a, b].into_iter()), batch_key([a, b].into_iter()));
        assert_ne!(batch_key([a, b].into_iter()), batch_key([b, a].into_iter()));
        assert_eq!(cursor_name("hook"), "route:hook");
    }
}
