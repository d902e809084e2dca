//! In-process subscriptions: each on its own task, over a store subscription with its own cursor.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tamma_events::{BoxError, EventStore, Query, QueryItem, SequencedEvent, Tags, glob_match};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::emitter::{Core, Cursor};
use crate::error::Result;

/// What a subscription calls with each stored event. Implemented for every
/// `Fn(SequencedEvent) -> impl Future<Output = Result<(), E>>` closure whose error converts into a
/// boxed error. An `Err` (or a panic) makes the subscription call it again with the same event later.
pub trait Handler: Send + Sync + 'static {
    /// Handles one event.
    fn handle(&self, event: SequencedEvent) -> BoxFuture<'static, Result<(), BoxError>>;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(SequencedEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn handle(&self, event: SequencedEvent) -> BoxFuture<'static, Result<(), BoxError>> {
        let fut = self(event);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// A live subscription; pass it to [`Emitter::unsubscribe`](crate::Emitter::unsubscribe).
#[derive(Clone, Debug)]
pub struct SubscriptionHandle {
    id: u64,
    pattern: String,
    tags: Tags,
    cursor: Arc<Cursor>,
}

impl SubscriptionHandle {
    /// The subscription's id (unique in its emitter).
    #[must_use]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The type pattern it was made with.
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The tags it was made with.
    #[must_use]
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// The position of the last event it handled (or skipped as not matching).
    #[must_use]
    pub fn position(&self) -> u64 {
        self.cursor.position.load(Ordering::Acquire)
    }

    /// Its name in lag reports and the `subscriber` label of the lag gauge.
    #[must_use]
    pub fn label(&self) -> String {
        format!("subscription:{}:{}", self.id, self.pattern)
    }
}

/// Whether the pattern has glob characters.
fn is_glob(p: &str) -> bool {
    p.contains(['*', '?'])
}

/// The store query for a type pattern and tags, and the glob still to apply to what it returns.
pub(crate) fn query_for(pattern: Option<&str>, tags: &Tags) -> (Query, Option<String>) {
    match pattern {
        Some(p) if !is_glob(p) => (
            Query::item(QueryItem {
                types: vec![p.to_owned()],
                tags: tags.clone(),
            }),
            None,
        ),
        Some(p) => {
            let glob = (p != "*").then(|| p.to_owned());
            let q = if tags.is_empty() {
                Query::all()
            } else {
                Query::item(QueryItem::tags(tags.clone()))
            };
            (q, glob)
        }
        None if tags.is_empty() => (Query::all(), None),
        None => (Query::item(QueryItem::tags(tags.clone())), None),
    }
}

pub(crate) fn start(
    core: &Arc<Core>,
    id: u64,
    pattern: &str,
    tags: Tags,
    after: u64,
    handler: Box<dyn Handler>,
    stop: watch::Receiver<bool>,
) -> Result<(SubscriptionHandle, JoinHandle<()>)> {
    if pattern.is_empty() {
        return Err(tamma_events::Error::invalid_query("pattern", "must not be empty").into());
    }
    let (query, glob) = query_for(Some(pattern), &tags);
    query.validate("tags")?;
    let cursor = Arc::new(Cursor::default());
    cursor.position.store(after, Ordering::Release);
    let handle = SubscriptionHandle {
        id,
        pattern: pattern.to_owned(),
        tags,
        cursor: Arc::clone(&cursor),
    };
    let label = handle.label();
    core.cursors
        .lock()
        .insert(label.clone(), Arc::clone(&cursor));
    let d = &core.config.subscriptions;
    let task = tokio::spawn(run(
        Arc::clone(&core.store),
        query,
        glob,
        cursor,
        handler,
        stop,
        label,
        (d.retry_delay.as_duration(), d.max_retry_delay.as_duration()),
    ));
    Ok((handle, task))
}

/// Sleeps `d` unless stopped first; false when stopped.
pub(crate) async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Runs `attempt` through `op` (retry and circuit breaker) until it settles or `stop` is set;
/// `None` when stopped first.
///
/// A stop that comes while an attempt is on the wire lets that attempt finish: the sink may already
/// hold the batch, and only its answer tells whether the cursor may move past it (cancelling would
/// deliver the batch again after a restart). No new attempt starts after the stop, and a retry
/// waiting for its next attempt is dropped at once. Each attempt is bounded by its sink's own
/// timeout, and `Emitter::dispose` stops waiting for the route at its deadline.
pub(crate) async fn call_unless_stopped<F, Fut>(
    op: &tamma_resilience::Operation,
    stop: &mut watch::Receiver<bool>,
    mut attempt: F,
) -> Option<crate::error::Result<()>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<()>>,
{
    let (busy_tx, mut busy_rx) = watch::channel(false);
    let stopping = std::sync::atomic::AtomicBool::new(false);
    let call = op.call(|| {
        let started = (!stopping.load(Ordering::Acquire)).then(|| {
            busy_tx.send_replace(true);
            attempt()
        });
        let busy_tx = &busy_tx;
        async move {
            let Some(fut) = started else {
                return Err(crate::error::Error::Closed);
            };
            let out = fut.await;
            busy_tx.send_replace(false);
            out
        }
    });
    tokio::pin!(call);
    tokio::select! {
        biased;
        out = &mut call => return Some(out),
        _ = stop.wait_for(|s| *s) => {}
    }
    stopping.store(true, Ordering::Release);
    // An attempt that settles finishes `call` in the same poll that clears `busy`, so polling
    // `call` first sees its answer; a cleared `busy` with `call` pending is a retry's pause.
    tokio::select! {
        biased;
        out = &mut call => match out {
            // The attempt that would have started after the stop and did not.
            Err(crate::error::Error::Closed) => None,
            out => Some(out),
        },
        _ = busy_rx.wait_for(|b| !*b) => None,
    }
}

/// The next event of `stream`, marking the cursor idle while waiting; `None` when stopped.
pub(crate) async fn next_or_stop(
    stream: &mut tamma_events::EventStream,
    cursor: &Cursor,
    stop: &mut watch::Receiver<bool>,
) -> Option<Option<tamma_events::Result<SequencedEvent>>> {
    if *stop.borrow() {
        return None;
    }
    if let Some(item) = stream.next().now_or_never() {
        return Some(item);
    }
    cursor.idle.store(true, Ordering::Release);
    let out = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => None,
        item = stream.next() => Some(item),
    };
    cursor.idle.store(false, Ordering::Release);
    out
}

#[allow(clippy::too_many_arguments)]
async fn run(
    store: Arc<dyn EventStore>,
    query: Query,
    glob: Option<String>,
    cursor: Arc<Cursor>,
    handler: Box<dyn Handler>,
    mut stop: watch::Receiver<bool>,
    label: String,
    (first_delay, max_delay): (Duration, Duration),
) {
    let mut resubscribe_delay = first_delay;
    'outer: loop {
        let after = cursor.position.load(Ordering::Acquire);
        let mut stream = store.subscribe(query.clone(), after);
        loop {
            let Some(item) = next_or_stop(&mut stream, &cursor, &mut stop).await else {
                break 'outer;
            };
            let ev = match item {
                None => {
                    tracing::info!(subscriber = %label, "the event store closed; subscription ended");
                    break 'outer;
                }
                Some(Err(e)) => {
                    tracing::warn!(subscriber = %label, after, error = %e, "subscription read failed; resubscribing");
                    if !pause(resubscribe_delay, &mut stop).await {
                        break 'outer;
                    }
                    resubscribe_delay = (resubscribe_delay * 2).min(max_delay);
                    continue 'outer;
                }
                Some(Ok(ev)) => ev,
            };
            resubscribe_delay = first_delay;
            let position = ev.position;
            if glob
                .as_deref()
                .is_none_or(|g| glob_match(g, &ev.event.event_type))
            {
                let mut delay = first_delay;
                loop {
                    let call = AssertUnwindSafe(handler.handle(ev.clone())).catch_unwind();
                    let err = match call.await {
                        Ok(Ok(())) => break,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "the handler panicked".to_owned(),
                    };
                    tracing::warn!(
                        subscriber = %label,
                        position,
                        event_id = %ev.event.id,
                        error = %err,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "subscriber failed; it will get the same event again"
                    );
                    if !pause(delay, &mut stop).await {
                        break 'outer;
                    }
                    delay = (delay * 2).min(max_delay);
                }
            }
            cursor.position.store(position, Ordering::Release);
        }
    }
    cursor.idle.store(true, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_for_patterns() {
        let none = Tags::new();
        let t: Tags = ["team:a"].into_iter().collect();
        assert_eq!(
            query_for(Some("TASK.STARTED"), &t),
            (
                Query::item(QueryItem::types(["TASK.STARTED"]).with_tag("team:a")),
                None
            )
        );
        assert_eq!(query_for(Some("*"), &none), (Query::all(), None));
        assert_eq!(
            query_for(Some("TASK.*"), &t),
            (
                Query::item(QueryItem::tags(t.clone())),
                Some("TASK.*".to_owned())
            )
        );
        assert_eq!(
            query_for(None, &t),
            (Query::item(QueryItem::tags(t.clone())), None)
        );
    }
}
