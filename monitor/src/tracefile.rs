//! Writing trace files (the format itself is `monitor_detector::tracefile`).
//!
//! A file never holds a partial line followed by more data, and its summary
//! says what it holds:
//!
//! - lines are buffered and written whole; after a failed or short `write`
//!   (ENOSPC, EIO) the file is truncated back to the end of its last
//!   complete line and the unwritten lines stay buffered, to be retried by
//!   the next [`TraceWriter::flush`];
//! - the buffer is bounded ([`TraceWriter::with_limit`]); lines that do not
//!   fit are dropped and counted, and before the next line that fits, a loss
//!   line tells readers which events are missing (so `monitor analyze`
//!   treats those windows as uncertain, never as clean);
//! - the summary carries `written` (event lines in the file) and
//!   `recorder_dropped` (events that could not be written) next to
//!   `delivered`.
//!
//! A file named `*.gz` or `*.zst` is compressed ([`crate::compress`]): each
//! flush writes one gzip member or zstd frame of whole lines, and a member
//! that could not be written whole is truncated off like a cut line.
//!
//! New files are created with [`crate::secfs`]: mode 0600, `O_EXCL`, never
//! through a symbolic link.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    fs::File,
    io::{self, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
};

use monitor_common::catalogue::EventId;
use monitor_detector::{
    tracefile::{Header, Line, Loss, Summary, to_line},
    workload::{CgroupInfo, Hierarchy},
};
use thiserror::Error;

use crate::{compress::Codec, sys};

#[derive(Debug, Error)]
#[error("cannot write trace file {path}: {err}")]
pub struct TraceFileError {
    pub path: PathBuf,
    pub err: io::Error,
}

/// Buffered lines beyond this are dropped (and counted) while writes fail.
pub const DEFAULT_BUFFER_LIMIT: usize = 8 << 20;
/// Above this many buffered bytes, a push writes them out.
const WRITE_AT: usize = 1 << 20;
/// A compressed file's flush writes a member once this much is buffered...
const MEMBER_BYTES: usize = 256 << 10;
/// ...or this long after the last one.
const MEMBER_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct TraceWriter {
    file: File,
    path: PathBuf,
    codec: Codec,
    /// Whole lines not yet written.
    buf: Vec<u8>,
    /// Per buffered line: its length and whether it is an event.
    pending: VecDeque<(usize, bool)>,
    limit: usize,
    /// Length of the file: the end of its last complete line.
    len: u64,
    lines: u64,
    events_written: u64,
    /// The last write failed: pushes stop writing until an explicit flush.
    failing: bool,
    /// When lines were last written out (compressed files gather members).
    last_write: std::time::Instant,
    /// Events dropped since the last loss line, by kind, and loss lines
    /// dropped (their counts are carried into the next loss line).
    dropped_events: BTreeMap<EventId, u64>,
    dropped_loss: BTreeMap<EventId, u64>,
    /// Loss of kinds this build does not know, from loss lines it was given.
    dropped_unknown: u64,
    /// Events dropped in total.
    dropped_total: u64,
    /// Non-event, non-loss lines dropped (findings).
    dropped_other: u64,
    /// The cgroups this file has a `cgroup` line for (and whether that line
    /// had the path).
    cgroups: HashSet<(Hierarchy, u64, bool)>,
}

fn is_nonempty(m: &BTreeMap<EventId, u64>) -> bool {
    m.values().any(|v| *v > 0)
}

impl TraceWriter {
    /// Creates the file (mode 0600, never over an existing file unless
    /// `replace`, never through a symbolic link). Fails early, before
    /// anything is loaded.
    pub fn create(path: &Path, replace: bool) -> Result<TraceWriter, TraceFileError> {
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
        let file = crate::secfs::create_file(path, replace).map_err(err)?;
        Ok(TraceWriter::new(file, path.to_owned()))
    }

    /// Writes into a file just created by the caller (empty).
    pub fn new(file: File, path: PathBuf) -> TraceWriter {
        TraceWriter {
            file,
            codec: Codec::for_path(&path),
            path,
            buf: Vec::with_capacity(64 * 1024),
            pending: VecDeque::new(),
            limit: DEFAULT_BUFFER_LIMIT,
            len: 0,
            lines: 0,
            events_written: 0,
            failing: false,
            last_write: std::time::Instant::now(),
            dropped_events: BTreeMap::new(),
            dropped_loss: BTreeMap::new(),
            dropped_unknown: 0,
            dropped_total: 0,
            dropped_other: 0,
            cgroups: HashSet::new(),
        }
    }

    /// Writes a `cgroup` line for `info` unless the file has one already
    /// (one that knew as much: a resolved line follows an unresolved one).
    /// Call before pushing the first event that carries its id.
    pub fn note_cgroup(&mut self, info: &CgroupInfo) {
        let resolved = info.path.is_some();
        let key = |r| (info.hierarchy, info.id, r);
        if self.cgroups.contains(&key(true)) || self.cgroups.contains(&key(resolved)) {
            return;
        }
        self.cgroups.insert(key(resolved));
        self.push(&Line::Cgroup(info.clone()));
    }

    /// Bounds the buffer kept while writes fail.
    pub fn with_limit(mut self, bytes: usize) -> TraceWriter {
        self.limit = bytes;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the file (complete lines, or complete compressed members).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Events that could not be written (dropped from the buffer), so far.
    pub fn dropped_events(&self) -> u64 {
        self.dropped_total
    }

    /// Finding lines that could not be written.
    pub fn dropped_other(&self) -> u64 {
        self.dropped_other
    }

    /// Writes the header line immediately (a file always starts with it).
    pub fn write_header(&mut self, header: Header) -> Result<(), TraceFileError> {
        self.push(&Line::Header(header));
        self.write_out()
    }

    fn append(&mut self, text: &str, event: bool) {
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(b'\n');
        self.pending.push_back((text.len() + 1, event));
    }

    /// Buffers a loss line for what was dropped, if anything was.
    fn append_drop_loss(&mut self) {
        if !is_nonempty(&self.dropped_events)
            && !is_nonempty(&self.dropped_loss)
            && self.dropped_unknown == 0
        {
            return;
        }
        let mut lost = std::mem::take(&mut self.dropped_loss);
        for (k, v) in std::mem::take(&mut self.dropped_events) {
            *lost.entry(k).or_default() += v;
        }
        let line = to_line(&Line::Loss(Loss {
            t: sys::ktime_ns(),
            lost,
            unknown_kinds: std::mem::take(&mut self.dropped_unknown),
        }));
        self.append(&line, false);
    }

    /// Buffers one line (the caller serialised it). `force` lines (header,
    /// summary) are never dropped.
    fn push_text(&mut self, line: &Line, text: &str, force: bool) {
        let fits = |w: &TraceWriter, extra: usize| w.buf.len() + text.len() + 1 + extra <= w.limit;
        // Room for the line and a loss line in front of it.
        if force || fits(self, 512) {
            self.append_drop_loss();
            self.append(text, matches!(line, Line::Event(_)));
        } else {
            match line {
                Line::Event(ev) => {
                    *self.dropped_events.entry(ev.id()).or_default() += 1;
                    self.dropped_total += 1;
                }
                Line::Loss(l) => {
                    for (k, v) in &l.lost {
                        *self.dropped_loss.entry(*k).or_default() += v;
                    }
                    self.dropped_unknown += l.unknown_kinds;
                }
                _ => self.dropped_other += 1,
            }
            return;
        }
        if self.buf.len() >= WRITE_AT && !self.failing {
            // Keep memory bounded under an event storm; an error here is
            // reported by the next explicit flush.
            let _ = self.write_out();
        }
    }

    pub fn push(&mut self, line: &Line) {
        self.push_text(line, &to_line(line), matches!(line, Line::Header(_)));
    }

    /// Buffers a line already serialised (`line` tells its kind).
    pub fn push_serialized(&mut self, line: &Line, text: &str) {
        self.push_text(line, text, false);
    }

    /// Writes what is buffered. On failure nothing partial stays in the file
    /// and the lines stay buffered for the next call. A compressed file
    /// gathers lines into members of [`MEMBER_BYTES`] or [`MEMBER_EVERY`]
    /// first (a member per drain would compress poorly).
    pub fn flush(&mut self) -> Result<(), TraceFileError> {
        if self.codec != Codec::Plain
            && self.buf.len() < MEMBER_BYTES
            && self.last_write.elapsed() < MEMBER_EVERY
        {
            return Ok(());
        }
        self.write_out()
    }

    fn write_out(&mut self) -> Result<(), TraceFileError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.last_write = std::time::Instant::now();
        let encoded;
        let out: &[u8] = if self.codec == Codec::Plain {
            &self.buf
        } else {
            encoded = self.codec.encode(&self.buf);
            &encoded
        };
        let mut written = 0usize;
        let mut error = None;
        while written < out.len() {
            match self.file.write(&out[written..]) {
                Ok(0) => {
                    error = Some(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing"));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let out_len = out.len();
        // A compressed member counts only whole: its lines, or none.
        let (file_bytes, line_bytes) = match (self.codec, written == out_len) {
            (Codec::Plain, _) => (None, written),
            (_, true) => (Some(out_len), self.buf.len()),
            (_, false) => (Some(0), 0),
        };
        // Whole lines among what was written are kept.
        let mut whole = 0usize;
        let mut events = 0u64;
        let mut lines = 0u64;
        while let Some(&(n, event)) = self.pending.front() {
            if whole + n > line_bytes {
                break;
            }
            whole += n;
            lines += 1;
            events += u64::from(event);
            self.pending.pop_front();
        }
        self.buf.drain(..whole);
        let kept = file_bytes.unwrap_or(whole);
        self.len += kept as u64;
        self.lines += lines;
        self.events_written += events;
        let Some(err) = error else {
            self.failing = false;
            return Ok(());
        };
        self.failing = true;
        if written > kept {
            // A line (or a compressed member) was cut: cut it off again.
            let undo = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.len)).map(drop));
            if let Err(e) = undo {
                return Err(TraceFileError {
                    path: self.path.clone(),
                    err: io::Error::new(
                        e.kind(),
                        format!("{err}; and truncating the cut line failed: {e}"),
                    ),
                });
            }
        }
        Err(TraceFileError {
            path: self.path.clone(),
            err,
        })
    }

    /// Events buffered but not written yet.
    pub fn buffered_events(&self) -> u64 {
        self.pending.iter().filter(|(_, e)| *e).count() as u64
    }

    /// Appends the summary (with `written` and `recorder_dropped` filled in),
    /// flushes and syncs. Returns the number of lines in the file. Call once.
    pub fn finish(&mut self, mut summary: Summary) -> Result<u64, TraceFileError> {
        // Everything buffered is written before the summary, or the summary
        // is not written either.
        summary.written = self.events_written + self.buffered_events();
        summary.recorder_dropped = self.dropped_total;
        self.append_drop_loss();
        let line = Line::Summary(summary);
        let text = to_line(&line);
        self.push_text(&line, &text, true);
        self.write_out()?;
        self.file.sync_all().map_err(|err| TraceFileError {
            path: self.path.clone(),
            err,
        })?;
        Ok(self.lines)
    }
}

/// The JSON line of a finding with its wall-clock `time` (RFC 3339, UTC,
/// microseconds): the kernel time of its deciding (last) evidence event,
/// converted with [`sys::wall_time`]. Other lines are serialised as they
/// are. Readers that do not know `time` ignore it.
pub fn finding_line(line: &Line) -> String {
    const PREFIX: &str = r#"{"type":"finding","#;
    let text = to_line(line);
    let Line::Finding(f) = line else {
        return text;
    };
    match text.strip_prefix(PREFIX) {
        Some(rest) => format!(
            "{PREFIX}\"time\":\"{}\",{rest}",
            humantime::format_rfc3339_micros(sys::wall_time(f.end_t))
        ),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use monitor_detector::{Finding, FindingKind, Severity, tracefile::parse_line};

    use super::*;

    /// Finding lines carry an RFC 3339 `time` of their last evidence event
    /// (converted from CLOCK_MONOTONIC), and still parse as finding lines.
    #[test]
    fn finding_lines_carry_the_wall_clock_time_of_their_deciding_event() {
        let now = sys::ktime_ns();
        let line = Line::Finding(Finding {
            kind: FindingKind::UffdCopyVsMmChange,
            severity: Severity::NearMiss,
            mm: 0x1000,
            mm_gen: 1,
            tasks: Vec::new(),
            start_t: now - 5_000_000_000,
            end_t: now - 2_000_000_000,
            explanation: "x".to_owned(),
            details: BTreeMap::new(),
            evidence: Vec::new(),
        });
        let text = finding_line(&line);
        assert!(text.starts_with(r#"{"type":"finding","time":""#), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let t = humantime::parse_rfc3339(v["time"].as_str().expect("time")).expect("rfc 3339");
        let ago = std::time::SystemTime::now()
            .duration_since(t)
            .expect("in the past");
        assert!(
            ago > std::time::Duration::from_millis(1900) && ago < std::time::Duration::from_secs(3),
            "{ago:?}"
        );
        assert_eq!(parse_line(&text), Ok(line));
        // Other lines are left alone.
        let loss = Line::Loss(Loss {
            t: 1,
            ..Loss::default()
        });
        assert_eq!(finding_line(&loss), to_line(&loss));
    }
}
