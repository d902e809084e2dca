//! `stdout` / `stderr`.

use std::io::Write;

use crate::output::{Control, Line, Sink, SinkError};

/// Which standard stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// Writes each batch to a standard stream and flushes it.
pub(crate) struct StdioSink(pub(crate) Stream);

impl StdioSink {
    fn write_all(w: &mut dyn Write, lines: &[Line]) -> std::io::Result<()> {
        for l in lines {
            w.write_all(&l.bytes)?;
        }
        w.flush()
    }
}

impl Sink for StdioSink {
    fn write(&mut self, lines: &[Line], _: &Control<'_>) -> Result<(), SinkError> {
        let r = match self.0 {
            Stream::Stdout => Self::write_all(&mut std::io::stdout().lock(), lines),
            Stream::Stderr => Self::write_all(&mut std::io::stderr().lock(), lines),
        };
        r.map_err(|e| SinkError::new(e.to_string(), lines.len()))
    }

    fn flush(&mut self, _: &Control<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}
