//! `tamma-config`: work in progress; see ARCHITECTURE.md.
