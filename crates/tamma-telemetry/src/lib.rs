//! `tamma-telemetry`: work in progress; see ARCHITECTURE.md.
