//! The event emitter over the embedded SQLite store: durable and fire-and-forget emits with redaction,
//! a subscriber by type pattern, and a clean shutdown.
//!
//! Run with `cargo run -p tamma-examples --example emitter`.
#![allow(clippy::print_stdout)] // An example prints what it does.

use std::sync::Arc;
use std::time::Duration;

use tamma_emitter::{Emitter, EmitterConfig, RedactionPattern, system_event};
use tamma_events::{Event, EventStore, EventsConfig, SequencedEvent, Tags};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("tamma-emitter-example-{}", std::process::id()));
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(
        dir.join("events.db"),
        SqliteOptions::default(),
    )?);

    // Passwords and card numbers never reach the store or the logs.
    let mut config = EmitterConfig::default();
    config.redaction.fields = vec!["data.password".into()];
    config.redaction.patterns = vec![RedactionPattern {
        field: "data".into(),
        regex: r"\b(\d{4})\d{8}(\d{4})\b".into(),
        replacement: "$1********$2".into(),
    }];
    let events = EventsConfig {
        batch_size: 50,
        ..EventsConfig::default()
    };
    let emitter = Emitter::builder(Arc::clone(&store), config)
        .events(&events)
        .build()?;

    // A subscriber on its own task and cursor: it sees only stored events, in order.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    emitter
        .subscribe("ORDER.*", Tags::new(), move |e: SequencedEvent| {
            let tx = tx.clone();
            async move { tx.send(e).map_err(|_| "the example stopped listening") }
        })
        .await?;

    // Durable: returns once the event is stored.
    let position = emitter
        .emit(
            Event::new("ORDER.PLACED")
                .tag("customer:c-42")
                .data(serde_json::json!({"card": "4111111111111111", "password": "hunter2"})),
        )
        .await?;
    println!("ORDER.PLACED stored at position {position}");

    // Fire-and-forget: gathered and stored in the background.
    for i in 0..3 {
        emitter.emit_nowait(Event::new("ORDER.LINE_ADDED").data(serde_json::json!({"line": i})))?;
    }
    emitter
        .emit(system_event("NODE.STARTED", "example"))
        .await?;
    emitter.flush().await;

    for _ in 0..4 {
        let e = rx.recv().await.expect("subscriber");
        println!(
            "subscriber got #{} {} {}",
            e.position, e.event.event_type, e.event.data
        );
    }

    let report = emitter.dispose(Duration::from_secs(5)).await;
    println!(
        "disposed: {} fire-and-forget events stored, {} unflushed",
        report.stored,
        report.unflushed.len()
    );
    drop(store);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
