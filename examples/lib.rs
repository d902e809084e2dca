//! Runnable examples for library users of the Tamma runtime; see the `[[example]]` entries in
//! `examples/Cargo.toml` and run one with `cargo run -p tamma-examples --example NAME`.
