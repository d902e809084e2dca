//! The event store: open the embedded SQLite store, append with a condition, read by query, subscribe,
//! and back the store up while it is open.
//!
//! Run with `cargo run -p tamma-examples --example events`.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use tamma_events::{
    AppendCondition, Error, Event, EventData, EventStore, Query, QueryItem, ReadOptions,
};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

/// What a claim says, as this service writes and reads it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claim {
    by: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("tamma-example-events-{}", std::process::id()));
    let store = SqliteStore::open(dir.join("events.db"), SqliteOptions::default())?;

    // A live subscription to everything about workflow wf-1, from the start of the log.
    let wf = Query::item(QueryItem::tags(["workflow:wf-1"]));
    let mut live = store.subscribe(wf.clone(), 0);

    store
        .append(
            vec![Event::new("WORKFLOW.STARTED").tag("workflow:wf-1")],
            None,
        )
        .await?;

    // Decide on what we read: claim task t-1 only if nobody claimed it since.
    let claims = Query::item(QueryItem::types(["TASK.CLAIMED"]).with_tag("task:t-1"));
    let seen = store
        .read(claims.clone(), ReadOptions::backwards().limit(1))
        .try_collect::<Vec<_>>()
        .await?;
    let after = seen.first().map_or(0, |e| e.position);
    // The payload from our own type, serialized once; the store keeps it as JSON text.
    let claim = Event::new("TASK.CLAIMED")
        .tag("task:t-1")
        .tag("workflow:wf-1")
        .data(EventData::from_serialize(&Claim { by: "w-1".into() })?);
    let r = store
        .append(
            vec![claim.clone()],
            Some(AppendCondition::new(claims.clone()).after(after)),
        )
        .await?;
    println!("claimed at position {}", r.last_position());

    // A second claimer that read the same state loses…
    let rival = Event::new("TASK.CLAIMED")
        .tag("task:t-1")
        .tag("workflow:wf-1");
    match store
        .append(vec![rival], Some(AppendCondition::new(claims).after(after)))
        .await
    {
        Err(Error::AppendConditionFailed { position }) => {
            println!("rival lost: position {position} matched");
        }
        other => println!("unexpected: {other:?}"),
    }
    // …while a retry of the first claim (same id) is answered with its original position.
    let retry = store.append(vec![claim], None).await?;
    println!(
        "retry: positions {:?}, duplicate {}",
        retry.positions, retry.duplicate
    );

    for e in store
        .read(wf, ReadOptions::forwards())
        .try_collect::<Vec<_>>()
        .await?
    {
        // Payloads are parsed only when asked: into our type, here.
        match e.event.data.parse::<Claim>() {
            Ok(c) => println!("read {} {} by {}", e.position, e.event.event_type, c.by),
            Err(_) => println!("read {} {}", e.position, e.event.event_type),
        }
    }
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await?
            .ok_or("subscription ended")??;
        println!("live {} {}", e.position, e.event.event_type);
    }
    drop(live);

    // A consistent copy of the store file while it is open (appends could go on meanwhile).
    let report = tamma_events_sqlite::backup(&dir.join("events.db"), &dir.join("backup.db"))?;
    println!("backed up {} events (head {})", report.events, report.head);

    // Moving the history to another store (here an in-memory one; `tamma events copy` does this between
    // SQLite and PostgreSQL): the same positions, ids and commit times, page by page.
    let moved = tamma_events::MemoryStore::new();
    let mut from = 1;
    loop {
        let page: Vec<_> = store
            .read(Query::all(), ReadOptions::forwards().from(from).limit(1000))
            .try_collect()
            .await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        moved.import(page).await?;
        from = last + 1;
    }
    println!("moved the events up to position {}", moved.head().await?);
    drop(store);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
