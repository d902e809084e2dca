//! The in-memory store is the executable specification: it must pass every case.

use std::sync::Arc;

use tamma_events::{Limits, MemoryStore, StoreHooks};
use tamma_events_testkit::{Fresh, conformance_tests};

async fn open(hooks: StoreHooks) -> Fresh {
    Fresh::new(Arc::new(MemoryStore::with_options(
        Limits::default(),
        hooks,
    )))
}

conformance_tests!(memory, open);
