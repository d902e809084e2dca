//! Integration tests of tamma-runtime: the root schema, its defaults and layers, a node over real
//! sockets.

mod defaults;
mod node;
mod security;
