//! Integration tests of tamma-config through its public API.

mod fixture;
mod layers;
mod reload;
mod validation;
