//! Test helper for the crash test of `tamma-events-sqlite`: appends events from several tasks to the store
//! at the path given as the only argument, printing `position id` for each acknowledged append, until it
//! is killed. Not meant for anything else.

use std::io::Write;
use std::sync::Arc;

use tamma_events::{AppendCondition, Event, EventStore, Query, QueryItem};
use tamma_events_sqlite::{SqliteOptions, SqliteStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: sqlite-crash-writer DB_PATH")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default())?);
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for w in 0..4u32 {
            let store = store.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let e = Event::new("CRASH.TEST")
                        .tag(format!("writer:{w}"))
                        .data(serde_json::json!({"i": i}));
                    let id = e.id;
                    // Every fourth append is conditional on nothing matching a tag nobody writes.
                    let cond = (i % 4 == 0)
                        .then(|| AppendCondition::new(Query::item(QueryItem::tags(["never:x"]))));
                    let r = store.append(vec![e], cond).await?;
                    let mut o = out.lock().map_err(|_| "stdout lock poisoned")?;
                    writeln!(o, "{} {id}", r.last_position())?;
                    o.flush()?;
                }
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            }));
        }
        for t in tasks {
            t.await?.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
