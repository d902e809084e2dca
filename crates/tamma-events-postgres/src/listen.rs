//! The head watcher: `LISTEN` for appends of every process while subscriptions are live, with polling
//! as the fallback.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client};

use crate::schema::{CHANNEL, HEAD_SQL, to_u64};
use crate::store::{Shared, connect_client_with};
use crate::tls::Target;

/// The `application_name` of the listening connection, so operators can tell it apart in
/// `pg_stat_activity` (the store's other connections are `tamma-events`).
pub(crate) const LISTEN_APPLICATION_NAME: &str = "tamma-events-listen";

/// The listening connection and the notifications it receives.
type Listener = (Client, mpsc::UnboundedReceiver<String>);

/// Publishes the committed head into `shared` until `shutdown` resolves (the store was dropped).
///
/// Only while a subscription is live ([`Shared::subscribers`]): a process that only appends (a worker)
/// holds no listening connection, is not woken by the appends of every other process sharing the
/// database, and does not poll. A subscription starting wakes the watcher at once
/// ([`Shared::wake`]); it opens the listening connection, then reads the head, so an append committed
/// before `LISTEN` took effect is seen by that read and every later one is notified. When the last
/// subscription ends, the connection is closed.
///
/// While subscriptions are live, a `NOTIFY` from any process's append wakes the watcher at once; every
/// `poll` it also reads the head itself, so a lost notification (the listening connection dropped and
/// reconnects) delays an event by at most one poll interval and never loses it: subscriptions read the
/// store from their own cursors.
pub(crate) async fn run(
    pg: Target,
    pool: deadpool_postgres::Pool,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
    poll: Duration,
) {
    let mut pg = pg;
    pg.pg.application_name(LISTEN_APPLICATION_NAME);
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = Watch {
        pg,
        pool,
        shared,
        listener: None,
        failed_reopens: 0,
    };
    loop {
        let next = async {
            match watch.listener.as_mut() {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            n = next => match n {
                Some(payload) => {
                    if let Ok(head) = payload.parse::<u64>() {
                        watch.shared.publish(head);
                    }
                }
                None => {
                    tracing::warn!("the event store's LISTEN connection was lost; polling until it is back");
                    watch.listener = None;
                }
            },
            () = watch.shared.wake.notified() => watch.refresh(false).await,
            _ = tick.tick() => watch.refresh(true).await,
        }
    }
}

/// The watcher's state between wake-ups.
struct Watch {
    /// The listening connection's settings.
    pg: Target,
    pool: deadpool_postgres::Pool,
    shared: Arc<Shared>,
    listener: Option<Listener>,
    /// Attempts to reopen the listening connection that failed in a row.
    failed_reopens: u32,
}

impl Watch {
    /// With live subscriptions: opens the listening connection when it is not open, then reads the
    /// head (always on a `tick`; on a wake only when the connection was just opened). Without: closes
    /// the connection.
    async fn refresh(&mut self, tick: bool) {
        if self.shared.subscribers.load(Ordering::Acquire) == 0 {
            if self.listener.take().is_some() {
                tracing::debug!(
                    "no live subscription: the event store's LISTEN connection is closed"
                );
            }
            return;
        }
        let opened = self.listener.is_none() && self.open().await;
        if !(tick || opened) {
            return;
        }
        let head = match &self.listener {
            Some((client, _)) => client
                .query_one(HEAD_SQL, &[])
                .await
                .ok()
                .map(|r| r.get::<_, i64>(0)),
            None => match self.pool.get().await {
                Ok(client) => client
                    .query_one(HEAD_SQL, &[])
                    .await
                    .ok()
                    .map(|r| r.get::<_, i64>(0)),
                Err(_) => None,
            },
        };
        if let Some(head) = head {
            self.shared.publish(to_u64(head));
        }
    }

    /// Opens the listening connection; `false` when it could not (said in the log at growing intervals:
    /// attempts 1, 2, 4, 8…, so a long outage stays visible without a line per poll).
    async fn open(&mut self) -> bool {
        match listen(&self.pg).await {
            Ok(l) => {
                if self.failed_reopens > 0 {
                    tracing::info!(
                        attempts = self.failed_reopens + 1,
                        "the event store's LISTEN connection is back"
                    );
                }
                self.failed_reopens = 0;
                self.listener = Some(l);
                true
            }
            Err(error) => {
                self.failed_reopens = self.failed_reopens.saturating_add(1);
                if self.failed_reopens.is_power_of_two() {
                    tracing::warn!(
                        attempts = self.failed_reopens,
                        %error,
                        "cannot open the event store's LISTEN connection; live subscriptions still see new events by polling"
                    );
                }
                false
            }
        }
    }
}

/// Opens the listening connection: notifications go into the returned channel, which closes when the
/// connection ends. `Err` says why it could not.
async fn listen(pg: &Target) -> Result<Listener, String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = connect_client_with(pg, move |mut connection| async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection ended");
                    return;
                }
            }
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| format!("LISTEN failed: {}", crate::error::describe(&e)))?;
    Ok((client, rx))
}
