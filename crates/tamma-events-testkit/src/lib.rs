//! `tamma-events-testkit`: work in progress; see ARCHITECTURE.md.
