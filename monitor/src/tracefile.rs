//! Writing trace files (the format itself is `monitor_detector::tracefile`).
//!
//! Lines are buffered and written whole, one `write` per batch, so a recording
//! that is interrupted leaves every line but possibly the last intact.

use std::{
    fs::File,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use monitor_detector::tracefile::{Header, Line, Summary, to_line};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot write trace file {path}: {err}")]
pub struct TraceFileError {
    pub path: PathBuf,
    pub err: io::Error,
}

pub struct TraceWriter {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    lines: u64,
}

impl TraceWriter {
    /// Creates (truncates) the file. Fails early, before anything is loaded.
    pub fn create(path: &Path) -> Result<TraceWriter, TraceFileError> {
        let err = |err| TraceFileError {
            path: path.to_owned(),
            err,
        };
        if path.is_dir() {
            return Err(err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        let file = File::create(path).map_err(err)?;
        Ok(TraceWriter {
            file,
            path: path.to_owned(),
            buf: Vec::with_capacity(64 * 1024),
            lines: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the header line immediately (a file always starts with it).
    pub fn write_header(&mut self, header: Header) -> Result<(), TraceFileError> {
        self.push(&Line::Header(header));
        self.flush()
    }

    pub fn push(&mut self, line: &Line) {
        self.buf.extend_from_slice(to_line(line).as_bytes());
        self.buf.push(b'\n');
        self.lines += 1;
        if self.buf.len() >= 1 << 20 {
            // Keep memory bounded under an event storm; an error here is
            // reported by the next explicit flush.
            let _ = self.flush();
        }
    }

    pub fn flush(&mut self) -> Result<(), TraceFileError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = self.file.write_all(&self.buf);
        self.buf.clear();
        res.map_err(|err| TraceFileError {
            path: self.path.clone(),
            err,
        })
    }

    /// Appends the summary, flushes and syncs.
    pub fn finish(mut self, summary: Summary) -> Result<u64, TraceFileError> {
        self.push(&Line::Summary(summary));
        self.flush()?;
        self.file.sync_all().map_err(|err| TraceFileError {
            path: self.path.clone(),
            err,
        })?;
        Ok(self.lines)
    }
}
