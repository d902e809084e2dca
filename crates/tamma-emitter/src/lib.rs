//! `tamma-emitter`: work in progress; see ARCHITECTURE.md.
