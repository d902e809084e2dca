//! `tamma-health`: work in progress; see ARCHITECTURE.md.
