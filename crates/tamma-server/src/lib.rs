//! `tamma-server`: work in progress; see ARCHITECTURE.md.
