//! Integration tests of `tamma-server` against the real router on ephemeral ports.

mod events;
mod health;
