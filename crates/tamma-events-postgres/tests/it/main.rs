//! Integration tests against the real PostgreSQL at `postgres://postgres@127.0.0.1:5432/test`; every
//! test works in its own fresh database (`tamma_test_<uuid>`), dropped at the end.

mod classify;
mod conformance;
mod processes;
mod schema;
mod support;
mod tls;

pub(crate) use support::{TestDb, fresh};
