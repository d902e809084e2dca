//! Subscriptions that read the store from their own cursor: catch-up and live are the same loop.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Either};
use tokio::sync::watch;

use crate::{EventStream, Query, Result, SequencedEvent};

/// Reads up to `limit` events matching the query at positions `>= from`, ascending.
pub type PageFetch =
    Arc<dyn Fn(Query, u64, u64) -> BoxFuture<'static, Result<Vec<SequencedEvent>>> + Send + Sync>;

/// What a backend gives [`subscription`]: a way to read a page, and a signal of its committed head.
pub struct SubscriptionSource {
    /// Reads one page.
    pub fetch: PageFetch,
    /// The committed head, published by the backend after each commit is visible to readers. When the
    /// sender is dropped (the store closed) the subscription ends.
    pub head: watch::Receiver<u64>,
    /// Also re-read this often without a signal (for commits made by other processes), if set.
    pub poll_interval: Option<Duration>,
    /// Events per read.
    pub page_size: u64,
}

struct State {
    src: SubscriptionSource,
    query: Query,
    delivered: u64,
    scanned: u64,
    buf: VecDeque<SequencedEvent>,
    must_fetch: bool,
    done: bool,
    /// Transient read errors in a row (see [`RETRIES`]).
    failed_reads: u32,
}

/// Transient read errors (a killed connection, a busy pool) a subscription rides out in a row, waiting
/// 100, 200, then 400 ms, before it yields the error and ends: a blip of the database then costs a live
/// subscriber nothing, while an outage still reaches it within a second.
const RETRIES: u32 = 3;

/// A subscription stream over a backend that keeps positions gapless and in commit order: it reads pages
/// after its cursor, and when it has read up to the head it waits for the head to move.
///
/// Each subscriber pulls at its own pace from its own cursor, so a slow subscriber holds at most one page
/// in memory and never slows the writer or other subscribers (backpressure, no loss). A transient read
/// error is retried up to three times (100, 200, 400 ms) from the same cursor; a read error that
/// persists, or a permanent one, is yielded once and ends the stream, and the subscriber resumes after
/// the last position it received.
pub fn subscription(src: SubscriptionSource, query: Query, after: u64) -> EventStream {
    let state = State {
        src,
        query,
        delivered: after,
        scanned: after,
        buf: VecDeque::new(),
        must_fetch: true,
        done: false,
        failed_reads: 0,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.buf.pop_front() {
                st.delivered = ev.position;
                return Some((Ok(ev), st));
            }
            if st.done {
                return None;
            }
            if !st.must_fetch && !wait(&mut st.src).await {
                return None;
            }
            // Read the head before the page: every event at or below it is visible to the read, so once
            // a short page comes back the cursor may skip to it even if nothing matched.
            let seen = *st.src.head.borrow_and_update();
            let Some(from) = st.delivered.max(st.scanned).checked_add(1) else {
                // After the largest position nothing can come: wait, as any live subscription does,
                // until the store closes.
                while wait(&mut st.src).await {}
                return None;
            };
            match (st.src.fetch)(st.query.clone(), from, st.src.page_size).await {
                Err(e) if e.is_transient() && st.failed_reads < RETRIES => {
                    tokio::time::sleep(Duration::from_millis(100 << st.failed_reads)).await;
                    st.failed_reads += 1;
                    st.must_fetch = true;
                }
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Ok(page) => {
                    st.failed_reads = 0;
                    let full = page.len() as u64 >= st.src.page_size;
                    if !full {
                        st.scanned = st.scanned.max(seen);
                    }
                    st.must_fetch = full;
                    st.buf.extend(page);
                }
            }
        }
    }))
}

/// Waits for the head to change or the poll interval to pass; false when the store is closed.
async fn wait(src: &mut SubscriptionSource) -> bool {
    match src.poll_interval {
        None => src.head.changed().await.is_ok(),
        Some(every) => {
            let changed = Box::pin(src.head.changed());
            let tick = Box::pin(tokio::time::sleep(every));
            match futures::future::select(changed, tick).await {
                Either::Left((r, _)) => r.is_ok(),
                Either::Right(_) => true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures::StreamExt;

    use super::*;
    use crate::{Error, Event};

    /// A source whose reads fail with `error` the first `failures` times, then return one event.
    fn failing(failures: u32, error: fn() -> Error) -> (SubscriptionSource, watch::Sender<u64>) {
        let (tx, rx) = watch::channel(1);
        let calls = Arc::new(AtomicU32::new(0));
        let fetch: PageFetch = Arc::new(move |_, from, _| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n < failures {
                    return Err(error());
                }
                Ok(if from == 1 {
                    vec![SequencedEvent {
                        position: 1,
                        recorded_at: chrono::Utc::now(),
                        event: Event::new("A"),
                    }]
                } else {
                    Vec::new()
                })
            })
        });
        let src = SubscriptionSource {
            fetch,
            head: rx,
            poll_interval: None,
            page_size: 10,
        };
        (src, tx)
    }

    #[tokio::test]
    async fn a_subscription_rides_out_a_few_transient_read_errors_and_ends_on_more() {
        let unavailable = || Error::unavailable("the connection was killed");
        let (src, _head) = failing(RETRIES, unavailable);
        let first = subscription(src, Query::all(), 0).next().await.unwrap();
        assert_eq!(first.unwrap().position, 1);

        let (src, _head) = failing(RETRIES + 1, unavailable);
        let first = subscription(src, Query::all(), 0).next().await.unwrap();
        assert_eq!(first.unwrap_err().category(), "unavailable");
    }

    #[tokio::test]
    async fn a_permanent_read_error_ends_the_subscription_at_once() {
        let (src, _head) = failing(1, || Error::backend("a broken query", false));
        let mut sub = subscription(src, Query::all(), 0);
        assert!(sub.next().await.unwrap().is_err());
        assert!(sub.next().await.is_none());
    }
}
