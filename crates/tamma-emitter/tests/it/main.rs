//! Integration tests of the emitter through its public API, over real stores (memory, SQLite files,
//! PostgreSQL at 127.0.0.1:5432), real sockets (axum receivers on 127.0.0.1:0), NATS JetStream at
//! 127.0.0.1:4222 and a real child process killed with SIGKILL.

mod cursors;
mod emit;
mod routes;
mod spool;
mod subscribe;
mod support;
