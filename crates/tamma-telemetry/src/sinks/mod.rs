//! Where outputs write: standard streams, rotating files, HTTP batches, syslog.

mod file;
mod http;
mod stdio;
mod syslog;

pub(crate) use file::{FileSink, Rotation};
pub(crate) use http::HttpSink;
pub(crate) use stdio::{StdioSink, Stream};
pub(crate) use syslog::SyslogSink;
