//! `tamma-server`: work in progress; see ARCHITECTURE.md.

mod health;

pub use health::{REFRESH_HEADER, health_routes};
