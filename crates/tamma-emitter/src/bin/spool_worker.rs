//! Test helper for the kill -9 test: a worker that spools events durably and forwards them.
//!
//! `tamma-spool-worker SPOOL_PATH REMOTE_URL COUNT BATCH`: emits COUNT events (`WORK.DONE`, data = index)
//! through an emitter over the spool, printing each id once its emit returned (durable), while a
//! forwarder ships the spool to REMOTE_URL in batches of BATCH. Prints `forwarded` once the remote has
//! acknowledged everything spooled, then keeps running until killed.
#![allow(clippy::print_stdout)] // Its stdout is the protocol with the test.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tamma_core::DurationMs;
use tamma_emitter::{Emitter, EmitterConfig, Forwarder, Spool, SpoolConfig};
use tamma_events::{Event, Limits};
use tamma_resilience::{BreakerConfig, MonotonicClock, Resilience, ResilienceConfig, RetryConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 5,
        "usage: tamma-spool-worker SPOOL REMOTE COUNT BATCH"
    );
    let count: u64 = args[3].parse().expect("COUNT");
    let batch: u32 = args[4].parse().expect("BATCH");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let spool = Spool::open(&args[1], Limits::default()).expect("spool");
        let resilience = Resilience::new(
            ResilienceConfig {
                retry: RetryConfig {
                    max_attempts: 3,
                    initial_delay: DurationMs::from_millis(20),
                    max_delay: DurationMs::from_millis(100),
                    ..RetryConfig::default()
                },
                breaker: BreakerConfig {
                    wait_duration_in_open_state: DurationMs::from_millis(200),
                    minimum_number_of_calls: 5,
                    ..BreakerConfig::default()
                },
                ..ResilienceConfig::default()
            },
            MonotonicClock::shared(),
        )
        .expect("resilience");
        let forwarder = Forwarder::new(
            spool.store(),
            &args[2],
            &SpoolConfig {
                batch_size: batch,
                timeout: DurationMs::from_secs(2),
                ..SpoolConfig::default()
            },
            resilience.operation("forwarder.ship"),
        )
        .expect("forwarder")
        .spawn();
        let emitter = Emitter::builder(spool.store(), EmitterConfig::default())
            .resilience(&resilience)
            .build()
            .expect("emitter");
        let store = spool.store();
        let mut out = std::io::stdout();
        for i in 0..count {
            let e = Event::new("WORK.DONE").data(serde_json::json!(i));
            let id = e.id;
            emitter.emit(e).await.expect("emit");
            writeln!(out, "{id}").expect("stdout");
            out.flush().expect("stdout");
        }
        loop {
            let head = store.head().await.expect("head");
            if forwarder.status().acked >= head {
                writeln!(out, "forwarded").expect("stdout");
                out.flush().expect("stdout");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _keep = Arc::new(forwarder);
        std::future::pending::<()>().await;
    });
}
