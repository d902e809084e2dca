//! `tamma-events`: work in progress; see ARCHITECTURE.md.
