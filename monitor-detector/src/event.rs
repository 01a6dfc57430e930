//! The decoded form of a wire record: what the detector consumes, what
//! `monitor trace --format json` prints and what trace files store.
//!
//! An [`Event`] is the record's header fields plus its payload, exactly as
//! the BPF side wrote them ([`Data`] holds the wire payload structs of
//! `monitor_common::catalogue`): plain integers and inline strings, `Copy`,
//! never a heap allocation. [`Event::decode`] turns the bytes of one
//! ring-buffer record into an [`Event`]; it never panics and reports malformed
//! input as a [`DecodeError`].
//!
//! The trace-file spelling of every field comes from the catalogue's field
//! kinds ([`monitor_common::event::Fields`]); [`crate::json`] reads and
//! writes it.

use std::{borrow::Cow, fmt};

pub use monitor_common::catalogue::{
    Data, EventId, Exec, ExecMmSwitch, Fault, Fork, MarkVictim, Migrate, MmState, Mrelease,
    ProbeId, Reap, StackMove, UffdChange, UffdCopy, UffdCopyDone, VmaRange,
};
use monitor_common::{
    event::{self as wire, EventHeader, hdr, reap_source, uffd_event},
    pf,
};

/// One observed kernel event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Kernel monotonic time (`bpf_ktime_get_ns`), nanoseconds since boot.
    pub t: u64,
    pub cpu: u32,
    /// Thread id and thread-group id of the task that ran the hook.
    pub pid: u32,
    pub tgid: u32,
    /// `current->flags`.
    pub task_flags: u32,
    /// The `mm_struct` address (0 = not about one mm).
    pub mm: u64,
    /// Generation id of `mm` (see [`EventHeader::mm_gen`]); 0 if unsequenced.
    pub mm_gen: u64,
    /// Per-(mm, generation) sequence number; 0 if unsequenced.
    pub seq: u64,
    /// The cgroup v2 id of the task (see [`EventHeader::cgroup_id`]); 0 in
    /// traces recorded before it existed.
    pub cgroup_id: u64,
    /// The task's memory cgroup id (see [`EventHeader::memcg_id`]); 0 in
    /// traces recorded before it existed.
    pub memcg_id: u64,
    /// [`hdr`] bits.
    pub hdr_flags: u32,
    /// The BPF program that produced it (its hook and rung).
    pub probe: ProbeRef,
    /// `current->comm`, NUL-terminated.
    pub comm: [u8; 16],
    pub data: Data,
}

/// The program that produced a record: a catalogue [`ProbeId`], or a number
/// or name this build does not know (a newer BPF object, an old test trace).
/// Written as the program's name, or `probe_N` for an unknown number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeRef(u32);

impl ProbeRef {
    /// A name this build does not know.
    pub const UNKNOWN: ProbeRef = ProbeRef(u32::MAX);

    pub const fn known(p: ProbeId) -> ProbeRef {
        ProbeRef(p as u32)
    }

    /// The id as the record carried it.
    pub const fn from_raw(id: u32) -> ProbeRef {
        ProbeRef(id)
    }

    pub const fn get(self) -> Option<ProbeId> {
        ProbeId::from_u32(self.0)
    }

    /// From a trace file: a program name, or `probe_N`.
    pub fn from_name(name: &str) -> ProbeRef {
        if let Some(p) = ProbeId::from_name(name) {
            return ProbeRef::known(p);
        }
        name.strip_prefix("probe_")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n != u32::MAX)
            .map_or(ProbeRef::UNKNOWN, ProbeRef)
    }

    pub fn name(self) -> Cow<'static, str> {
        match self.get() {
            Some(p) => Cow::Borrowed(p.name()),
            None if self == ProbeRef::UNKNOWN => Cow::Borrowed("unknown"),
            None => Cow::Owned(format!("probe_{}", self.0)),
        }
    }
}

impl From<ProbeId> for ProbeRef {
    fn from(p: ProbeId) -> Self {
        ProbeRef::known(p)
    }
}

impl fmt::Debug for ProbeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Display for ProbeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// How a reap event was observed ([`Reap::source`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReapSource {
    Tracepoint,
    Function,
    Unknown,
}

impl ReapSource {
    pub const fn of(r: &Reap) -> ReapSource {
        match r.source {
            reap_source::TRACEPOINT => ReapSource::Tracepoint,
            reap_source::FUNCTION => ReapSource::Function,
            _ => ReapSource::Unknown,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            ReapSource::Tracepoint => "tracepoint",
            ReapSource::Function => "function",
            ReapSource::Unknown => "unknown",
        }
    }
}

/// Non-cooperative userfaultfd event kinds ([`UffdChange::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UffdEventKind {
    Fork,
    Remap,
    Remove,
    Unmap,
    Unknown,
}

impl UffdEventKind {
    pub const fn of(c: &UffdChange) -> UffdEventKind {
        match c.kind {
            uffd_event::FORK => UffdEventKind::Fork,
            uffd_event::REMAP => UffdEventKind::Remap,
            uffd_event::REMOVE => UffdEventKind::Remove,
            uffd_event::UNMAP => UffdEventKind::Unmap,
            _ => UffdEventKind::Unknown,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            UffdEventKind::Fork => "fork",
            UffdEventKind::Remap => "remap",
            UffdEventKind::Remove => "remove",
            UffdEventKind::Unmap => "unmap",
            UffdEventKind::Unknown => "unknown",
        }
    }
}

/// The interpreted views of [`Fault`]'s encoded fields.
pub trait FaultExt {
    /// `vm_fault_t` result, `None` when the hook cannot see it (tracepoint rung).
    fn result(&self) -> Option<u32>;
    /// Whether `MMF_UNSTABLE` was already set when the fault began (function
    /// rung, from the entry probe); `None` when the entry was not observed.
    fn unstable_at_entry(&self) -> Option<bool>;
}

impl FaultExt for Fault {
    fn result(&self) -> Option<u32> {
        (self.ret != u64::MAX).then_some(self.ret as u32)
    }

    fn unstable_at_entry(&self) -> Option<bool> {
        (self.entry_flags & wire::fault_entry::SEEN != 0)
            .then_some(self.entry_flags & wire::fault_entry::UNSTABLE != 0)
    }
}

/// Why a record could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header.
    Truncated { len: usize },
    /// The header names an id this build does not know (a newer BPF object?).
    UnknownId { id: u32 },
    /// The record is shorter than the header plus the payload its id needs.
    ShortPayload { id: u32, len: usize, need: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { len } => {
                write!(f, "record of {len} bytes is shorter than the event header")
            }
            DecodeError::UnknownId { id } => write!(f, "unknown event id {id}"),
            DecodeError::ShortPayload { id, len, need } => {
                write!(f, "event id {id}: record has {len} bytes, needs {need}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A NUL-terminated kernel string as UTF-8 (lossy, borrowed when valid).
pub fn c_str(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(wire::c_bytes(bytes))
}

impl Event {
    /// Decodes one ring-buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let header: EventHeader =
            wire::read(bytes).ok_or(DecodeError::Truncated { len: bytes.len() })?;
        let id = EventId::from_u32(header.id).ok_or(DecodeError::UnknownId { id: header.id })?;
        let need = size_of::<EventHeader>() + id.payload_size();
        let short = DecodeError::ShortPayload {
            id: header.id,
            len: bytes.len(),
            need,
        };
        if bytes.len() < need {
            return Err(short);
        }
        let mut data = Data::read(id, &bytes[size_of::<EventHeader>()..]).ok_or(short)?;
        // What the trace file cannot express is dropped here, not on the way
        // to disk, so the live detector and `analyze` of the recording see
        // the same event (the `wire_record` fuzz target checks this).
        data.fields_mut().canonicalize();
        let mut comm = header.comm;
        wire::canon_cstr(&mut comm);
        Ok(Event {
            t: header.ktime_ns,
            cpu: header.cpu,
            pid: header.pid,
            tgid: header.tgid,
            task_flags: header.task_flags,
            mm: header.mm,
            mm_gen: header.mm_gen,
            seq: header.seq,
            cgroup_id: header.cgroup_id,
            memcg_id: header.memcg_id,
            hdr_flags: header.hdr_flags,
            probe: ProbeRef::from_raw(header.probe),
            comm,
            data,
        })
    }

    /// An event of kind `id` with every field zero (for readers that fill it).
    pub fn zeroed(id: EventId) -> Event {
        Event {
            t: 0,
            cpu: 0,
            pid: 0,
            tgid: 0,
            task_flags: 0,
            mm: 0,
            mm_gen: 0,
            seq: 0,
            cgroup_id: 0,
            memcg_id: 0,
            hdr_flags: 0,
            probe: ProbeRef::UNKNOWN,
            comm: [0; 16],
            data: Data::zeroed(id),
        }
    }

    /// The event's id (its kind).
    pub const fn id(&self) -> EventId {
        self.data.id()
    }

    /// The stable snake_case kind name.
    pub const fn kind(&self) -> &'static str {
        self.id().name()
    }

    /// `current->comm` as text.
    pub fn comm(&self) -> Cow<'_, str> {
        c_str(&self.comm)
    }

    /// Whether the task that ran the hook is a kernel thread.
    pub const fn is_kthread(&self) -> bool {
        self.task_flags & pf::PF_KTHREAD != 0
    }

    /// Whether the record carries a per-mm sequence number.
    pub const fn is_sequenced(&self) -> bool {
        self.hdr_flags & hdr::UNSEQUENCED == 0 && self.mm != 0 && self.seq != 0
    }

    /// The pid this event is about beyond its own task (the OOM victim, a child).
    pub fn subject_pid(&self) -> Option<u32> {
        match &self.data {
            Data::MarkVictim(p) => Some(p.victim_tgid),
            Data::ReapStart(p) | Data::ReapEnd(p) | Data::ReapSkip(p) if p.victim_pid != 0 => {
                Some(p.victim_pid)
            }
            Data::Fork(p) => Some(p.child_tgid),
            _ => None,
        }
    }
}

/// Serializes a `u64` as a `"0x…"` hex string (kernel addresses and flag words).
pub mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr<'a> {
            Num(u64),
            Str(&'a str),
            Owned(String),
        }
        let s = match Repr::deserialize(d)? {
            Repr::Num(n) => return Ok(n),
            Repr::Str(s) => s.to_owned(),
            Repr::Owned(s) => s,
        };
        let digits = s.strip_prefix("0x").unwrap_or(&s);
        u64::from_str_radix(digits, 16)
            .map_err(|e| D::Error::custom(format!("bad hex value {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{catalogue::MarkVictim as WireMarkVictim, event::Record};

    use super::*;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a repr(C) integer struct as bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn header(id: EventId) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        EventHeader {
            id: id as u32,
            probe: ProbeId::TpMarkVictim as u32,
            ktime_ns: 1_000,
            cpu: 1,
            hdr_flags: hdr::NEW_GENERATION,
            pid: 42,
            tgid: 40,
            task_flags: pf::PF_KTHREAD,
            _pad0: 0,
            mm: 0xffff_8880_1234_5000,
            mm_gen: 999,
            seq: 1,
            comm,
            cgroup_id: 4242,
            memcg_id: 4343,
        }
    }

    #[test]
    fn decodes_and_roundtrips_through_json() {
        let rec = Record {
            header: header(EventId::MarkVictim),
            payload: WireMarkVictim {
                victim_pid: 7,
                victim_tgid: 7,
                uid: 0,
                _pad0: 0,
                mm_flags: 0x20200cd,
                victim_comm: wire::fixed_str("hog"),
                victim_cgroup_id: 5,
                victim_memcg_id: 6,
            },
        };
        let ev = Event::decode(&bytes_of(&rec)).expect("decodes");
        assert_eq!(ev.kind(), "mark_victim");
        assert!(ev.is_kthread());
        assert!(ev.is_sequenced());
        assert_eq!(ev.subject_pid(), Some(7));
        assert_eq!(ev.probe.get(), Some(ProbeId::TpMarkVictim));
        let json = serde_json::to_string(&ev).expect("serializes");
        assert!(json.contains(r#""ev":"mark_victim""#), "{json}");
        assert!(json.contains(r#""mm":"0xffff888012345000""#), "{json}");
        assert!(json.contains(r#""cgroup_id":4242"#), "{json}");
        assert!(json.ends_with(r#","memcg_id":4343}"#), "{json}");
        assert!(json.contains(r#""victim_comm":"hog""#), "{json}");
        let back: Event = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, ev);
    }

    #[test]
    fn rejects_malformed_records() {
        assert_eq!(
            Event::decode(&[0; 10]),
            Err(DecodeError::Truncated { len: 10 })
        );
        let mut h = header(EventId::MarkVictim);
        h.id = 77;
        assert_eq!(
            Event::decode(&bytes_of(&h)),
            Err(DecodeError::UnknownId { id: 77 })
        );
        let h = header(EventId::MarkVictim);
        assert!(matches!(
            Event::decode(&bytes_of(&h)),
            Err(DecodeError::ShortPayload { id: 1, .. })
        ));
    }

    #[test]
    fn every_id_decodes_from_a_zeroed_record() {
        for id in EventId::ALL {
            let mut bytes = bytes_of(&header(*id));
            bytes.resize(size_of::<EventHeader>() + id.payload_size(), 0);
            let ev = Event::decode(&bytes).expect("decodes");
            assert_eq!(ev.id(), *id);
            let json = serde_json::to_string(&ev).expect("serializes");
            let back: Event = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, ev, "{json}");
        }
    }

    #[test]
    fn decoded_records_equal_their_trace_line_read_back() {
        use crate::tracefile::{Line, parse_line, to_line};
        // What the line cannot carry: junk bits in a tri-state, a flag that
        // is neither 0 nor 1, padding, an unknown code, bytes after a NUL
        // and invalid UTF-8 in a string.
        for (id, fill, comm) in EventId::ALL.iter().flat_map(|id| {
            [
                (*id, 0x5a, *b"a\xffb\0zzzzzzzzzzzz"),
                (*id, 0xff, *b"0123456789abcdef"),
            ]
        }) {
            let mut h = header(id);
            h.comm = comm;
            let mut bytes = bytes_of(&h);
            bytes.resize(size_of::<EventHeader>() + id.payload_size(), fill);
            let line = Line::Event(Event::decode(&bytes).expect("decodes"));
            let text = to_line(&line);
            assert_eq!(parse_line(&text), Ok(line), "{text}");
        }
    }

    #[test]
    fn probe_names_of_other_builds_are_kept_as_unknown() {
        assert_eq!(
            ProbeRef::from_name("fentry_oom_reap").get(),
            Some(ProbeId::FentryOomReap)
        );
        assert_eq!(ProbeRef::from_name("probe_150").name(), "probe_150");
        assert_eq!(ProbeRef::from_name("fentry___mmdrop"), ProbeRef::UNKNOWN);
        assert_eq!(ProbeRef::UNKNOWN.name(), "unknown");
    }
}
