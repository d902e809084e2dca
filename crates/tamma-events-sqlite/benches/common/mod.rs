//! The benchmark event, shared by the SQLite benches: a UUIDv7 id, 2 tags, 3 metadata keys and about
//! 200 bytes of JSON data.

use tamma_events::{Event, EventData, EventMetadata, EventSource};

/// Event `i` with tags `tag_a` and `tag_b`.
pub(crate) fn event(tag_a: &str, tag_b: &str, i: u64) -> Event {
    let metadata = EventMetadata {
        event_source: Some(EventSource::System),
        correlation_id: Some(format!("corr-{}", i / 10)),
        request_id: Some(format!("req-{i}")),
        ..EventMetadata::default()
    };
    // The payload as a Rust producer writes one: its own type, serialized once into the event's
    // JSON text (`{"step":…,"status":"running",…}`, 197 bytes).
    let data = EventData::from_serialize(&Progress {
        step: i,
        status: "running",
        message: "processed another chunk of the input file without errors",
        progress: Done {
            done: i,
            total: 1_000_000,
        },
        worker: "worker-07.example.internal",
        attempt: 1,
    })
    .unwrap();
    Event::new("TASK.PROGRESSED")
        .tag(tag_a)
        .tag(tag_b)
        .metadata(metadata)
        .data(data)
}

#[derive(serde::Serialize)]
struct Progress {
    step: u64,
    status: &'static str,
    message: &'static str,
    progress: Done,
    worker: &'static str,
    attempt: u32,
}

#[derive(serde::Serialize)]
struct Done {
    done: u64,
    total: u64,
}
