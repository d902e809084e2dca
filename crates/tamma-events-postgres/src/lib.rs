//! `tamma-events-postgres`: work in progress; see ARCHITECTURE.md.
