//! `tamma-resilience`: work in progress; see ARCHITECTURE.md.
