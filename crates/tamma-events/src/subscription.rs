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
}

/// A subscription stream over a backend that keeps positions gapless and in commit order: it reads pages
/// after its cursor, and when it has read up to the head it waits for the head to move.
///
/// Each subscriber pulls at its own pace from its own cursor, so a slow subscriber holds at most one page
/// in memory and never slows the writer or other subscribers (backpressure, no loss). A read error is
/// yielded once and ends the stream; the subscriber resumes after the last position it received.
pub fn subscription(src: SubscriptionSource, query: Query, after: u64) -> EventStream {
    let state = State {
        src,
        query,
        delivered: after,
        scanned: after,
        buf: VecDeque::new(),
        must_fetch: true,
        done: false,
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
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Ok(page) => {
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
