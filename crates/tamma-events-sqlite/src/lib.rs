//! `tamma-events-sqlite`: work in progress; see ARCHITECTURE.md.
