//! The trace file format (JSON Lines, documented in `docs/trace-format.md`).
//!
//! A file is a [`Header`] line followed by any number of [`Line::Event`],
//! [`Line::Loss`] and [`Line::Finding`] lines, and, when the recording ended
//! cleanly, a final [`Line::Summary`]. Every line is one complete JSON object
//! and is written with a single `write` of the whole line, so a recording that
//! is killed still leaves a readable file: at worst its last line is cut short,
//! which [`parse_line`] reports as [`LineError::Truncated`] and readers treat as
//! the end of the data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{event::Event, finding::Finding};

/// Value of [`Header::format`].
pub const FORMAT_NAME: &str = "mm-race-monitor-trace";
/// Version of this line format. Readers accept files with the same major version.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    Event(Event),
    Loss(Loss),
    Finding(Finding),
    Summary(Summary),
}

/// First line of every trace file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// `monitor_common::maps::WIRE_VERSION` of the BPF records.
    pub wire_version: u32,
    pub monitor_version: String,
    /// `uname -r` of the traced kernel.
    pub kernel_release: String,
    pub hostname: String,
    /// Which BPF object was loaded: `"atomic"` (5.12+) or `"compat"`.
    pub bpf_object: String,
    /// Kernel monotonic time at the start of the recording (same clock as `t`).
    pub start_ktime_ns: u64,
    /// Wall-clock time at the start, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// The hook plan: one entry per hook, what was attached and why not better.
    pub hooks: Vec<HookStatus>,
    /// Filters the recording was made with (`pid`, `comm`), for the reader's
    /// information: events were filtered before being written.
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
}

impl Header {
    /// Whether this build can read a file with this header.
    pub fn check_compatible(&self) -> Result<(), String> {
        if self.format != FORMAT_NAME {
            return Err(format!(
                "not a trace file: format is {:?}, expected {FORMAT_NAME:?}",
                self.format
            ));
        }
        if self.version != FORMAT_VERSION {
            return Err(format!(
                "trace format version {} is not supported (this build reads version {FORMAT_VERSION})",
                self.version
            ));
        }
        Ok(())
    }
}

/// How one hook is covered on this kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStatus {
    /// Hook name, e.g. `exit_mmap`, `mark_victim`, `page_fault`.
    pub hook: String,
    /// The rung in use: `fentry`, `kprobe`, `tracepoint` or `unavailable`.
    pub rung: String,
    /// The kernel symbol or tracepoint attached to (`None` if unavailable).
    pub target: Option<String>,
    /// BPF programs attached for this hook.
    pub programs: Vec<String>,
    /// Better rungs that were tried and refused, with the reason, best first.
    pub refused: Vec<Refusal>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub rung: String,
    pub target: String,
    pub reason: String,
}

/// Records were lost (ring buffer full) between the previous line and this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// Kernel monotonic time when userspace noticed the loss.
    pub t: u64,
    /// Records lost since the previous loss line, by event kind.
    pub lost: BTreeMap<String, u64>,
}

impl Loss {
    /// Total records lost (saturating: a corrupt line cannot overflow it).
    pub fn total(&self) -> u64 {
        self.lost.values().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Last line of a cleanly finished recording.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Records the BPF side decided to emit.
    pub produced: u64,
    /// Records userspace received.
    pub delivered: u64,
    /// Records lost because the ring buffer was full.
    pub lost: u64,
    /// Records emitted without a sequence number because the mm map was full.
    pub seq_map_full: u64,
    /// Records with at least one failed kernel read.
    pub read_errors: u64,
    /// Records userspace could not decode.
    pub decode_errors: u64,
    /// Records left out by `--pid`/`--comm` filters (delivered, not written).
    pub filtered_out: u64,
    /// Event lines written to this file (absent when 0, and in files of
    /// older builds).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub written: u64,
    /// Events the recorder could not write (disk full, write errors beyond
    /// what it could keep buffered); loss lines carry them by kind, so
    /// Σ loss lines = `lost` + `recorder_dropped`. Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recorder_dropped: u64,
    /// Why the recording ended: `duration`, `signal` or `error`.
    pub ended_by: String,
    pub duration_ms: u64,
    /// Produced / lost per event kind.
    pub produced_by_event: BTreeMap<String, u64>,
    pub lost_by_event: BTreeMap<String, u64>,
    /// Hit counts per BPF program.
    pub hits: BTreeMap<String, u64>,
    /// In-kernel aggregate statistics (migration PTEs, faults examined, …).
    pub stats: BTreeMap<String, u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Why a line could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// The line is not valid JSON or not a known record. `column` is 1-based.
    Malformed { column: usize, message: String },
    /// The line ends in the middle of a JSON value: the writer was interrupted
    /// while writing it (only acceptable as the last line of a file).
    Truncated,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // serde reports type errors inside a tagged line without a
            // position (column 0): then there is none to give.
            LineError::Malformed { column: 0, message } => f.write_str(message),
            LineError::Malformed { column, message } => write!(f, "column {column}: {message}"),
            LineError::Truncated => f.write_str("line is cut short (interrupted write)"),
        }
    }
}

/// Parses one line of a trace file.
pub fn parse_line(line: &str) -> Result<Line, LineError> {
    serde_json::from_str::<Line>(line).map_err(|e| {
        if e.is_eof() {
            LineError::Truncated
        } else {
            LineError::Malformed {
                column: e.column(),
                message: e.to_string(),
            }
        }
    })
}

/// Serializes one line, without the trailing newline.
pub fn to_line(line: &Line) -> String {
    // Serializing these plain data types cannot fail (no maps with non-string
    // keys, no custom serializers that error).
    serde_json::to_string(line)
        .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":{:?}}}", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Data, MmState};

    fn sample_event() -> Event {
        Event {
            t: 5,
            cpu: 0,
            pid: 1,
            tgid: 1,
            comm: "x".into(),
            task_flags: 0,
            mm: 0x1000,
            mm_gen: 3,
            seq: 2,
            hdr_flags: 0,
            probe: "tp_exit_mmap".into(),
            data: Data::ExitMmapEnd(MmState { mm_flags: 0x200000 }),
        }
    }

    #[test]
    fn event_line_roundtrips() {
        let line = Line::Event(sample_event());
        let text = to_line(&line);
        assert!(text.starts_with(r#"{"type":"event","#), "{text}");
        assert!(text.contains(r#""ev":"exit_mmap_end""#), "{text}");
        assert_eq!(parse_line(&text), Ok(line));
    }

    #[test]
    fn truncated_and_malformed_lines_are_told_apart() {
        let text = to_line(&Line::Event(sample_event()));
        assert_eq!(
            parse_line(&text[..text.len() / 2]),
            Err(LineError::Truncated)
        );
        assert!(matches!(
            parse_line(r#"{"type":"nope"}"#),
            Err(LineError::Malformed { .. })
        ));
        assert!(matches!(
            parse_line("garbage"),
            Err(LineError::Malformed { .. })
        ));
    }
}
