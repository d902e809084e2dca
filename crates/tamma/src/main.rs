//! The `tamma` binary.

fn main() {}
