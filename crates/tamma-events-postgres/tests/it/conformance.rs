//! The conformance suite on PostgreSQL: one test per behaviour, each in a fresh database.

use crate::fresh;

tamma_events_testkit::conformance_tests!(postgres, fresh);
