//! The conformance suite on SQLite: one test per behaviour, each on a fresh database file.

use crate::fresh;

tamma_events_testkit::conformance_tests!(sqlite, fresh);
