//! The head watcher: `LISTEN` for appends of every process, with polling as the fallback.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client};

use crate::schema::{CHANNEL, HEAD_SQL, to_u64};
use crate::store::{Shared, connect_client_with};

/// Publishes the committed head into `shared` until `shutdown` resolves (the store was dropped).
///
/// A `NOTIFY` from any process's append wakes it at once; every `poll` it also reads the head itself, so
/// a lost notification (the listening connection dropped and reconnects) delays an event by at most one
/// poll interval and never loses it: subscriptions read the store from their own cursors.
pub(crate) async fn run(
    pg: tokio_postgres::Config,
    pool: deadpool_postgres::Pool,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
    poll: Duration,
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener: Option<(Client, mpsc::UnboundedReceiver<String>)> = None;
    let mut failed_reopens: u32 = 0;
    loop {
        let next = async {
            match listener.as_mut() {
                Some((_, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            n = next => match n {
                Some(payload) => {
                    if let Ok(head) = payload.parse::<u64>() {
                        shared.publish(head);
                    }
                }
                None => {
                    tracing::warn!("the event store's LISTEN connection was lost; polling until it is back");
                    listener = None;
                }
            },
            _ = tick.tick() => {
                if listener.is_none() {
                    // Failures are said at growing intervals (attempts 1, 2, 4, 8…), so a long outage
                    // stays visible in the log without a line per poll.
                    match listen(&pg).await {
                        Ok(l) => {
                            if failed_reopens > 0 {
                                tracing::info!(attempts = failed_reopens + 1, "the event store's LISTEN connection is back");
                            }
                            failed_reopens = 0;
                            listener = Some(l);
                        }
                        Err(error) => {
                            failed_reopens = failed_reopens.saturating_add(1);
                            if failed_reopens.is_power_of_two() {
                                tracing::warn!(attempts = failed_reopens, %error, "cannot open the event store's LISTEN connection; live subscriptions still see new events by polling");
                            }
                        }
                    }
                }
                let head = match &listener {
                    Some((client, _)) => client.query_one(HEAD_SQL, &[]).await.ok().map(|r| r.get::<_, i64>(0)),
                    None => match pool.get().await {
                        Ok(client) => client.query_one(HEAD_SQL, &[]).await.ok().map(|r| r.get::<_, i64>(0)),
                        Err(_) => None,
                    },
                };
                if let Some(head) = head {
                    shared.publish(to_u64(head));
                }
            }
        }
    }
}

/// Opens the listening connection: notifications go into the returned channel, which closes when the
/// connection ends.
/// Opens the listening connection; `Err` says why it could not.
async fn listen(
    pg: &tokio_postgres::Config,
) -> Result<(Client, mpsc::UnboundedReceiver<String>), String> {
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
