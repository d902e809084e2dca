//! `tamma-runtime`: work in progress; see ARCHITECTURE.md.
