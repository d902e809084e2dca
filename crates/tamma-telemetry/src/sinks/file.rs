//! A file with size-based rotation and gzip of rotated files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::output::{Control, Line, Sink, SinkError};

/// When and how a file rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// Rotate before a write would make the file larger than this; `None` = never.
    pub(crate) max_size: Option<u64>,
    /// Rotated files kept (`app.log.1` … `app.log.N`).
    pub(crate) max_files: u32,
    /// Gzip rotated files.
    pub(crate) compress: bool,
}

/// Appends lines to a file; rotates it by size. Write errors (a full disk) lose the batch, are
/// reported, and the file is reopened on the next batch.
pub(crate) struct FileSink {
    path: PathBuf,
    rotation: Rotation,
    file: Option<BufWriter<File>>,
    size: u64,
}

impl FileSink {
    /// Opens (creating parent directories) the file for appending.
    pub(crate) fn open(path: PathBuf, rotation: Rotation) -> io::Result<Self> {
        let mut s = Self {
            path,
            rotation,
            file: None,
            size: 0,
        };
        s.reopen()?;
        Ok(s)
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(BufWriter::with_capacity(64 * 1024, f));
        Ok(())
    }

    fn rotated(&self, i: u32, gz: bool) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{i}"));
        if gz {
            s.push(".gz");
        }
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        let n = self.rotation.max_files;
        if n == 0 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            for gz in [false, true] {
                fs::remove_file(self.rotated(n, gz)).or_else(ignore_missing)?;
            }
            for i in (1..n).rev() {
                for gz in [false, true] {
                    let from = self.rotated(i, gz);
                    if from.exists() {
                        fs::rename(&from, self.rotated(i + 1, gz))?;
                    }
                }
            }
            let first = self.rotated(1, false);
            fs::rename(&self.path, &first)?;
            if self.rotation.compress {
                gzip(&first, &self.rotated(1, true))?;
            }
        }
        self.reopen()
    }

    fn write_lines(&mut self, lines: &[Line]) -> Result<(), (io::Error, usize)> {
        if self.file.is_none() {
            self.reopen().map_err(|e| (e, lines.len()))?;
        }
        for (i, l) in lines.iter().enumerate() {
            let len = l.bytes.len() as u64;
            if let Some(max) = self.rotation.max_size
                && self.size > 0
                && self.size + len > max
            {
                self.rotate().map_err(|e| (e, lines.len() - i))?;
            }
            // Checked above or by `reopen`: the file is open here.
            let Some(f) = self.file.as_mut() else {
                return Err((io::Error::other("log file is not open"), lines.len() - i));
            };
            f.write_all(&l.bytes).map_err(|e| (e, lines.len() - i))?;
            self.size += len;
        }
        if let Some(f) = self.file.as_mut() {
            // The buffer holds (at least the end of) this batch: count the whole batch as lost.
            f.flush().map_err(|e| (e, lines.len()))?;
        }
        Ok(())
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Compresses `from` into `to` (through a temporary file), then removes `from`.
fn gzip(from: &Path, to: &Path) -> io::Result<()> {
    let mut tmp = to.to_path_buf().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut input = File::open(from)?;
    let out = File::create(&tmp)?;
    let mut enc =
        flate2::write::GzEncoder::new(BufWriter::new(out), flate2::Compression::default());
    io::copy(&mut input, &mut enc)?;
    enc.finish()?
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    fs::rename(&tmp, to)?;
    fs::remove_file(from)
}

impl Sink for FileSink {
    fn write(&mut self, lines: &[Line], _: &Control<'_>) -> Result<(), SinkError> {
        self.write_lines(lines).map_err(|(e, lost)| {
            // Drop the handle: the next batch reopens (the disk may have room again).
            self.file = None;
            SinkError::new(format!("{}: {e}", self.path.display()), lost)
        })
    }

    fn flush(&mut self, _: &Control<'_>) -> Result<(), SinkError> {
        match self.file.as_mut().map(Write::flush) {
            Some(Err(e)) => {
                self.file = None;
                Err(SinkError::new(format!("{}: {e}", self.path.display()), 0))
            }
            _ => Ok(()),
        }
    }
}
