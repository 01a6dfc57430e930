//! The trace file format (JSON Lines, documented in `docs/trace-format.md`).
//!
//! A file is a [`Header`] line followed by any number of [`Line::Event`],
//! [`Line::Loss`], [`Line::Finding`] and [`Line::Cgroup`] lines (the last
//! naming a cgroup id before the first event that uses it), and, when the recording ended
//! cleanly, a final [`Line::Summary`]. Every line is one complete JSON object
//! and is written with a single `write` of the whole line, so a recording that
//! is killed still leaves a readable file: at worst its last line is cut short,
//! which [`parse_line`] reports as [`LineError::Truncated`] and readers treat as
//! the end of the data.

use std::collections::BTreeMap;

use monitor_common::{
    Named,
    catalogue::{EventId, HookId, ProbeId, Rung},
    maps::Stat,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    event::{Event, ProbeRef},
    finding::Finding,
};

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
    /// A cgroup id resolved to its path (and the container and pod that
    /// names), written before the first event that carries the id.
    Cgroup(crate::workload::CgroupInfo),
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
    /// Hooks this build does not know (a newer monitor's) are left out on read.
    #[serde(deserialize_with = "known_hooks")]
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
    pub hook: HookId,
    /// The rung in use (`unavailable` if none attached).
    pub rung: Rung,
    /// The kernel symbol or tracepoint attached to (`None` if unavailable).
    pub target: Option<String>,
    /// BPF programs attached for this hook.
    pub programs: Vec<ProbeRef>,
    /// Better rungs that were tried and refused, with the reason, best first.
    pub refused: Vec<Refusal>,
}

impl HookStatus {
    pub fn is_attached(&self) -> bool {
        self.rung != Rung::Unavailable
    }
}

/// The rung `hook` is attached at in `hooks`; a hook missing from the plan is
/// unavailable.
pub fn rung_of(hooks: &[HookStatus], hook: HookId) -> Rung {
    hooks
        .iter()
        .find(|h| h.hook == hook)
        .map_or(Rung::Unavailable, |h| h.rung)
}

/// Why a candidate was refused, as a category metrics and tests can tell
/// apart (the sentence is in [`Refusal::reason`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// Better than `--max-rung`: not tried.
    NotTried,
    /// The kernel's BTF lacks a struct field the programs read.
    MissingField,
    /// No BTF `FUNC` record (inlined, renamed or dropped by pahole): no fentry.
    NoBtf,
    /// The function's prototype differs from what the programs read.
    Prototype,
    /// The symbol is not in kallsyms (inlined or renamed on this kernel).
    SymbolAbsent,
    /// Only compiler clones exist (`.isra`, `.constprop`): no fentry.
    OnlyClones,
    /// Not in `available_filter_functions` (notrace, noinstr, blacklisted).
    NotTraceable,
    /// The kernel has no kprobes (`CONFIG_KPROBES` off).
    NoKprobes,
    /// The tracepoint does not exist, or its prototype differs.
    Tracepoint,
    /// tracefs could not be made available (classic tracepoints need it).
    Tracefs,
    /// The verifier rejected the program.
    Verifier,
    /// The kernel refused to load it for another reason (e.g. EPERM).
    Load,
    /// Loaded, but attaching failed.
    Attach,
    /// A mistake in the monitor itself (a program missing from the object).
    Internal,
    /// Read from a trace file written before refusals had kinds.
    #[default]
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub rung: Rung,
    pub target: String,
    #[serde(default)]
    pub kind: RefusalKind,
    /// One human sentence.
    pub reason: String,
}

impl Serialize for ProbeRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for ProbeRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(ProbeRef::from_name(&name))
    }
}

/// `Header::hooks`, leaving out hooks (and refusals at rungs) this build does
/// not know.
fn known_hooks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HookStatus>, D::Error> {
    #[derive(Deserialize)]
    struct Raw {
        hook: String,
        rung: String,
        target: Option<String>,
        #[serde(default)]
        programs: Vec<ProbeRef>,
        #[serde(default)]
        refused: Vec<RawRefusal>,
    }
    #[derive(Deserialize)]
    struct RawRefusal {
        rung: String,
        target: String,
        #[serde(default)]
        kind: RefusalKind,
        reason: String,
    }
    let raw = Vec::<Raw>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|h| {
            Some(HookStatus {
                hook: HookId::from_name(&h.hook)?,
                rung: Rung::from_name(&h.rung).unwrap_or(Rung::Unavailable),
                target: h.target,
                programs: h.programs,
                refused: h
                    .refused
                    .into_iter()
                    .filter_map(|r| {
                        Some(Refusal {
                            rung: Rung::from_name(&r.rung)?,
                            target: r.target,
                            kind: r.kind,
                            reason: r.reason,
                        })
                    })
                    .collect(),
            })
        })
        .collect())
}

/// A map keyed by catalogue names; keys this build does not know are
/// counted in the second value instead of failing the line.
fn lenient_map<'de, D: Deserializer<'de>, K: Named + Ord>(
    d: D,
) -> Result<(BTreeMap<K, u64>, u64), D::Error> {
    let raw = BTreeMap::<String, u64>::deserialize(d)?;
    let mut known = BTreeMap::new();
    let mut unknown = 0u64;
    for (k, v) in raw {
        match K::from_name(&k) {
            Some(k) => {
                known.insert(k, v);
            }
            None => unknown = unknown.saturating_add(v),
        }
    }
    Ok((known, unknown))
}

fn known_keys<'de, D: Deserializer<'de>, K: Named + Ord>(
    d: D,
) -> Result<BTreeMap<K, u64>, D::Error> {
    lenient_map(d).map(|(m, _)| m)
}

/// Records were lost (ring buffer full) between the previous line and this one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// Kernel monotonic time when userspace noticed the loss.
    pub t: u64,
    /// Records lost since the previous loss line, by event kind.
    pub lost: BTreeMap<EventId, u64>,
    /// Records lost of kinds this build does not know (read from a newer
    /// monitor's trace); they matter to every rule.
    #[serde(skip)]
    pub unknown_kinds: u64,
}

impl<'de> Deserialize<'de> for Loss {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            t: u64,
            lost: BTreeMap<String, u64>,
        }
        let raw = Raw::deserialize(d)?;
        let mut loss = Loss {
            t: raw.t,
            ..Loss::default()
        };
        for (k, v) in raw.lost {
            match EventId::from_name(&k) {
                Some(id) => {
                    loss.lost.insert(id, v);
                }
                None => loss.unknown_kinds = loss.unknown_kinds.saturating_add(v),
            }
        }
        Ok(loss)
    }
}

impl Loss {
    /// Total records lost (saturating: a corrupt line cannot overflow it).
    pub fn total(&self) -> u64 {
        self.lost
            .values()
            .fold(self.unknown_kinds, |a, b| a.saturating_add(*b))
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
    /// Why the recording ended: `duration`, `signal`, `sink closed` or
    /// `error`.
    pub ended_by: String,
    pub duration_ms: u64,
    /// Produced / lost per event kind (kinds this build does not know are
    /// left out on read, as in every map below).
    #[serde(deserialize_with = "known_keys")]
    pub produced_by_event: BTreeMap<EventId, u64>,
    #[serde(deserialize_with = "known_keys")]
    pub lost_by_event: BTreeMap<EventId, u64>,
    /// Hit counts per BPF program.
    #[serde(deserialize_with = "known_keys")]
    pub hits: BTreeMap<ProbeId, u64>,
    /// In-kernel aggregate statistics (migration PTEs, faults examined, …).
    #[serde(deserialize_with = "known_keys")]
    pub stats: BTreeMap<Stat, u64>,
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
    if let Some(ev) = crate::json::parse_event_line(line) {
        return Ok(Line::Event(ev));
    }
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
    if let Line::Event(ev) = line {
        return crate::json::event_line(ev);
    }
    // Serializing these plain data types cannot fail (no maps with non-string
    // keys, no custom serializers that error).
    serde_json::to_string(line)
        .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":{:?}}}", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Data, MmState};
    use monitor_common::catalogue::{EventId, ProbeId};

    fn sample_event() -> Event {
        Event {
            t: 5,
            pid: 1,
            tgid: 1,
            comm: monitor_common::event::fixed_str("x"),
            mm: 0x1000,
            mm_gen: 3,
            seq: 2,
            probe: ProbeRef::known(ProbeId::TpExitMmap),
            data: Data::ExitMmapEnd(MmState { mm_flags: 0x200000 }),
            ..Event::zeroed(EventId::ExitMmapEnd)
        }
    }

    #[test]
    fn event_line_roundtrips() {
        let line = Line::Event(sample_event());
        let text = to_line(&line);
        assert!(text.starts_with(r#"{"type":"event","#), "{text}");
        assert!(text.contains(r#""ev":"exit_mmap_end""#), "{text}");
        assert_eq!(parse_line(&text), Ok(line.clone()));
        // The fast writer and the serde writer agree; so do the two readers.
        let via_serde = serde_json::to_string(&line).expect("serializes");
        assert_eq!(via_serde, text);
        let spaced = text.replace(',', ", ");
        assert_eq!(parse_line(&spaced), Ok(line));
    }

    #[test]
    fn loss_and_header_lines_of_newer_builds_stay_readable() {
        let l = parse_line(r#"{"type":"loss","t":9,"lost":{"fault":3,"future_kind":2}}"#);
        let Ok(Line::Loss(loss)) = l else {
            panic!("{l:?}")
        };
        assert_eq!(loss.lost.get(&EventId::Fault), Some(&3));
        assert_eq!((loss.unknown_kinds, loss.total()), (2, 5));
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
