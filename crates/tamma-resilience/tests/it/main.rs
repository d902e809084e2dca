//! Integration tests of `tamma-resilience`: one binary, a module per area.

mod breaker;
mod common;
mod escalation;
mod handler;
mod model;
mod retry;
