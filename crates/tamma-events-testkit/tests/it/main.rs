//! The conformance suite run against the in-memory reference store.

mod memory_store;
