//! The decoded, owned form of a wire record: what the detector consumes, what
//! `monitor trace --format json` prints and what trace files store.
//!
//! [`Event::decode`] turns the bytes of one ring-buffer record into an [`Event`];
//! it never panics and reports malformed input as a [`DecodeError`].

use std::fmt;

use monitor_common::{
    event::{self as wire, EventHeader, EventId, hdr},
    pf,
    probes::ProbeId,
};
use serde::{Deserialize, Serialize};

/// One observed kernel event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Kernel monotonic time (`bpf_ktime_get_ns`), nanoseconds since boot.
    pub t: u64,
    pub cpu: u32,
    /// Thread id and thread-group id of the task that ran the hook.
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    /// `current->flags`.
    pub task_flags: u32,
    /// The `mm_struct` address (0 = not about one mm).
    #[serde(with = "hex_u64")]
    pub mm: u64,
    /// Generation id of `mm` (see [`EventHeader::mm_gen`]); 0 if unsequenced.
    pub mm_gen: u64,
    /// Per-(mm, generation) sequence number; 0 if unsequenced.
    pub seq: u64,
    /// [`hdr`] bits.
    pub hdr_flags: u32,
    /// Name of the BPF program that produced it (its hook and rung).
    pub probe: String,
    #[serde(flatten)]
    pub data: Data,
}

/// The event kind and its payload. The `ev` tag values are
/// [`EventId::name`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Data {
    MarkVictim(MarkVictim),
    ReapStart(Reap),
    ReapEnd(Reap),
    ReapSkip(Reap),
    ReaperUnmapStart(VmaRange),
    ReaperUnmapEnd(VmaRange),
    MreleaseEnter(Mrelease),
    MreleaseExit(Mrelease),
    ExitMmapStart(MmState),
    ExitMmapEnd(MmState),
    UnmapVmasStart(VmaRange),
    UnmapVmasEnd(VmaRange),
    Mmdrop(MmState),
    Exec(Exec),
    ExecMmSwitch(ExecMmSwitch),
    StackMoveStart(StackMove),
    StackMoveEnd(StackMove),
    MigrateStart(Migrate),
    MigrateEnd(Migrate),
    MigrationSkipTempStack(VmaRange),
    MigrationEntryInTempStack(VmaRange),
    MigrationPteRemoved(VmaRange),
    MigrationEntryWait(VmaRange),
    Fault(Fault),
    KernelFault(Fault),
    KthreadUseMm(MmState),
    KthreadUnuseMm(MmState),
    UffdCopy(UffdCopy),
    MfillStart(UffdCopy),
    MfillEnd(UffdCopy),
    UffdChangeBegin(UffdChange),
    UffdChangeEnd(UffdChange),
    Fork(Fork),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkVictim {
    pub victim_pid: u32,
    pub victim_tgid: u32,
    pub victim_comm: String,
    pub uid: u32,
    #[serde(with = "hex_u64")]
    pub mm_flags: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reap {
    pub victim_pid: u32,
    /// `"tracepoint"` or `"function"` ([`wire::reap_source`]).
    pub source: ReapSource,
    /// `__oom_reap_task_mm`'s result (1/0), -1 if unknown.
    pub ret: i32,
    #[serde(with = "hex_u64")]
    pub mm_flags: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReapSource {
    Tracepoint,
    Function,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mrelease {
    pub pidfd: i32,
    pub flags: u32,
    pub ret: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmState {
    #[serde(with = "hex_u64")]
    pub mm_flags: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmaRange {
    #[serde(with = "hex_u64")]
    pub vm_start: u64,
    #[serde(with = "hex_u64")]
    pub vm_end: u64,
    #[serde(with = "hex_u64")]
    pub vm_flags: u64,
    #[serde(with = "hex_u64")]
    pub address: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exec {
    pub old_pid: u32,
    pub filename: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecMmSwitch {
    pub new_comm: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackMove {
    #[serde(with = "hex_u64")]
    pub vm_start: u64,
    #[serde(with = "hex_u64")]
    pub vm_end: u64,
    #[serde(with = "hex_u64")]
    pub vm_flags: u64,
    pub shift: u64,
    pub ret: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migrate {
    pub succeeded: u64,
    pub failed: u64,
    pub thp_succeeded: u64,
    pub thp_failed: u64,
    pub thp_split: u64,
    pub large_folio_split: u64,
    pub mode: u32,
    pub reason: u32,
    pub ptes_set: u64,
    pub ptes_removed: u64,
    pub start_seen: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(with = "hex_u64")]
    pub address: u64,
    #[serde(with = "hex_u64")]
    pub mm_flags: u64,
    #[serde(with = "hex_u64")]
    pub current_mm: u64,
    /// `vma->vm_flags` of the faulting VMA; 0 when the hook cannot see it
    /// (tracepoint rung, older recordings).
    #[serde(default, with = "hex_u64")]
    pub vm_flags: u64,
    pub fault_flags: u32,
    /// `vm_fault_t` result, `None` when the hook cannot see it (tracepoint rung).
    pub ret: Option<u32>,
    /// Whether `MMF_UNSTABLE` was already set when the fault began (function
    /// rung, from the entry probe); `None` when the entry was not observed.
    /// Absent from the JSON when `None`, so older files read unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unstable_at_entry: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UffdCopy {
    #[serde(with = "hex_u64")]
    pub dst: u64,
    pub len: u64,
    pub ret: i64,
    pub mmap_changing: i32,
    pub fd: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UffdChange {
    /// `fork`, `remap`, `remove`, `unmap` or `unknown`.
    pub kind: UffdEventKind,
    pub mmap_changing: i32,
    #[serde(with = "hex_u64")]
    pub start: u64,
    #[serde(with = "hex_u64")]
    pub end: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UffdEventKind {
    Fork,
    Remap,
    Remove,
    Unmap,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    pub child_pid: u32,
    pub child_tgid: u32,
    #[serde(with = "hex_u64")]
    pub child_mm: u64,
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

/// A NUL-terminated kernel string as UTF-8 (lossy).
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn uffd_kind(kind: u32) -> UffdEventKind {
    match kind {
        wire::uffd_event::FORK => UffdEventKind::Fork,
        wire::uffd_event::REMAP => UffdEventKind::Remap,
        wire::uffd_event::REMOVE => UffdEventKind::Remove,
        wire::uffd_event::UNMAP => UffdEventKind::Unmap,
        _ => UffdEventKind::Unknown,
    }
}

impl From<wire::VmaRange> for VmaRange {
    fn from(p: wire::VmaRange) -> Self {
        VmaRange {
            vm_start: p.vm_start,
            vm_end: p.vm_end,
            vm_flags: p.vm_flags,
            address: p.address,
        }
    }
}

impl From<wire::MmState> for MmState {
    fn from(p: wire::MmState) -> Self {
        MmState {
            mm_flags: p.mm_flags,
        }
    }
}

impl From<wire::Reap> for Reap {
    fn from(p: wire::Reap) -> Self {
        Reap {
            victim_pid: p.victim_pid,
            source: match p.source {
                wire::reap_source::TRACEPOINT => ReapSource::Tracepoint,
                wire::reap_source::FUNCTION => ReapSource::Function,
                _ => ReapSource::Unknown,
            },
            ret: p.ret,
            mm_flags: p.mm_flags,
        }
    }
}

impl From<wire::Migrate> for Migrate {
    fn from(p: wire::Migrate) -> Self {
        Migrate {
            succeeded: p.succeeded,
            failed: p.failed,
            thp_succeeded: p.thp_succeeded,
            thp_failed: p.thp_failed,
            thp_split: p.thp_split,
            large_folio_split: p.large_folio_split,
            mode: p.mode,
            reason: p.reason,
            ptes_set: p.ptes_set,
            ptes_removed: p.ptes_removed,
            start_seen: p.start_seen != 0,
        }
    }
}

impl From<wire::Fault> for Fault {
    fn from(p: wire::Fault) -> Self {
        Fault {
            address: p.address,
            mm_flags: p.mm_flags,
            current_mm: p.current_mm,
            vm_flags: p.vm_flags,
            fault_flags: p.fault_flags,
            ret: (p.has_ret != 0).then_some(p.ret),
            unstable_at_entry: (p.entry_flags & wire::fault_entry::SEEN != 0)
                .then_some(p.entry_flags & wire::fault_entry::UNSTABLE != 0),
        }
    }
}

impl From<wire::UffdCopy> for UffdCopy {
    fn from(p: wire::UffdCopy) -> Self {
        UffdCopy {
            dst: p.dst,
            len: p.len,
            ret: p.ret,
            mmap_changing: p.mmap_changing,
            fd: p.fd,
        }
    }
}

impl From<wire::StackMove> for StackMove {
    fn from(p: wire::StackMove) -> Self {
        StackMove {
            vm_start: p.vm_start,
            vm_end: p.vm_end,
            vm_flags: p.vm_flags,
            shift: p.shift,
            ret: p.ret,
        }
    }
}

impl From<wire::Mrelease> for Mrelease {
    fn from(p: wire::Mrelease) -> Self {
        Mrelease {
            pidfd: p.pidfd,
            flags: p.flags,
            ret: p.ret,
        }
    }
}

impl From<wire::UffdChange> for UffdChange {
    fn from(p: wire::UffdChange) -> Self {
        UffdChange {
            kind: uffd_kind(p.kind),
            mmap_changing: p.mmap_changing,
            start: p.start,
            end: p.end,
        }
    }
}

impl Event {
    /// Decodes one ring-buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let header: EventHeader =
            wire::read(bytes).ok_or(DecodeError::Truncated { len: bytes.len() })?;
        let id = EventId::from_u32(header.id).ok_or(DecodeError::UnknownId { id: header.id })?;
        let need = size_of::<EventHeader>() + id.payload_size();
        if bytes.len() < need {
            return Err(DecodeError::ShortPayload {
                id: header.id,
                len: bytes.len(),
                need,
            });
        }
        let body = &bytes[size_of::<EventHeader>()..];
        // The length check above covers every payload read below.
        macro_rules! payload {
            ($t:ty) => {
                wire::read::<$t>(body).ok_or(DecodeError::ShortPayload {
                    id: header.id,
                    len: bytes.len(),
                    need,
                })?
            };
        }
        let data = match id {
            EventId::MarkVictim => {
                let p = payload!(wire::MarkVictim);
                Data::MarkVictim(MarkVictim {
                    victim_pid: p.victim_pid,
                    victim_tgid: p.victim_tgid,
                    victim_comm: c_string(&p.victim_comm),
                    uid: p.uid,
                    mm_flags: p.mm_flags,
                })
            }
            EventId::ReapStart => Data::ReapStart(payload!(wire::Reap).into()),
            EventId::ReapEnd => Data::ReapEnd(payload!(wire::Reap).into()),
            EventId::ReapSkip => Data::ReapSkip(payload!(wire::Reap).into()),
            EventId::ReaperUnmapStart => Data::ReaperUnmapStart(payload!(wire::VmaRange).into()),
            EventId::ReaperUnmapEnd => Data::ReaperUnmapEnd(payload!(wire::VmaRange).into()),
            EventId::MreleaseEnter => Data::MreleaseEnter(payload!(wire::Mrelease).into()),
            EventId::MreleaseExit => Data::MreleaseExit(payload!(wire::Mrelease).into()),
            EventId::ExitMmapStart => Data::ExitMmapStart(payload!(wire::MmState).into()),
            EventId::ExitMmapEnd => Data::ExitMmapEnd(payload!(wire::MmState).into()),
            EventId::UnmapVmasStart => Data::UnmapVmasStart(payload!(wire::VmaRange).into()),
            EventId::UnmapVmasEnd => Data::UnmapVmasEnd(payload!(wire::VmaRange).into()),
            EventId::MmDrop => Data::Mmdrop(payload!(wire::MmState).into()),
            EventId::Exec => {
                let p = payload!(wire::Exec);
                Data::Exec(Exec {
                    old_pid: p.old_pid,
                    filename: c_string(&p.filename),
                })
            }
            EventId::ExecMmSwitch => {
                let p = payload!(wire::ExecMmSwitch);
                Data::ExecMmSwitch(ExecMmSwitch {
                    new_comm: c_string(&p.new_comm),
                })
            }
            EventId::StackMoveStart => Data::StackMoveStart(payload!(wire::StackMove).into()),
            EventId::StackMoveEnd => Data::StackMoveEnd(payload!(wire::StackMove).into()),
            EventId::MigrateStart => Data::MigrateStart(payload!(wire::Migrate).into()),
            EventId::MigrateEnd => Data::MigrateEnd(payload!(wire::Migrate).into()),
            EventId::MigrationSkipTempStack => {
                Data::MigrationSkipTempStack(payload!(wire::VmaRange).into())
            }
            EventId::MigrationEntryInTempStack => {
                Data::MigrationEntryInTempStack(payload!(wire::VmaRange).into())
            }
            EventId::MigrationPteRemoved => {
                Data::MigrationPteRemoved(payload!(wire::VmaRange).into())
            }
            EventId::MigrationEntryWait => {
                Data::MigrationEntryWait(payload!(wire::VmaRange).into())
            }
            EventId::Fault => Data::Fault(payload!(wire::Fault).into()),
            EventId::KernelFault => Data::KernelFault(payload!(wire::Fault).into()),
            EventId::KthreadUseMm => Data::KthreadUseMm(payload!(wire::MmState).into()),
            EventId::KthreadUnuseMm => Data::KthreadUnuseMm(payload!(wire::MmState).into()),
            EventId::UffdCopy => Data::UffdCopy(payload!(wire::UffdCopy).into()),
            EventId::MfillStart => Data::MfillStart(payload!(wire::UffdCopy).into()),
            EventId::MfillEnd => Data::MfillEnd(payload!(wire::UffdCopy).into()),
            EventId::UffdChangeBegin => Data::UffdChangeBegin(payload!(wire::UffdChange).into()),
            EventId::UffdChangeEnd => Data::UffdChangeEnd(payload!(wire::UffdChange).into()),
            EventId::Fork => {
                let p = payload!(wire::Fork);
                Data::Fork(Fork {
                    child_pid: p.child_pid,
                    child_tgid: p.child_tgid,
                    child_mm: p.child_mm,
                })
            }
        };
        Ok(Event {
            t: header.ktime_ns,
            cpu: header.cpu,
            pid: header.pid,
            tgid: header.tgid,
            comm: c_string(&header.comm),
            task_flags: header.task_flags,
            mm: header.mm,
            mm_gen: header.mm_gen,
            seq: header.seq,
            hdr_flags: header.hdr_flags,
            probe: ProbeId::from_u32(header.probe).map_or_else(
                || format!("probe_{}", header.probe),
                |p| p.program().to_owned(),
            ),
            data,
        })
    }

    /// The event's id (its kind).
    pub fn id(&self) -> EventId {
        match &self.data {
            Data::MarkVictim(_) => EventId::MarkVictim,
            Data::ReapStart(_) => EventId::ReapStart,
            Data::ReapEnd(_) => EventId::ReapEnd,
            Data::ReapSkip(_) => EventId::ReapSkip,
            Data::ReaperUnmapStart(_) => EventId::ReaperUnmapStart,
            Data::ReaperUnmapEnd(_) => EventId::ReaperUnmapEnd,
            Data::MreleaseEnter(_) => EventId::MreleaseEnter,
            Data::MreleaseExit(_) => EventId::MreleaseExit,
            Data::ExitMmapStart(_) => EventId::ExitMmapStart,
            Data::ExitMmapEnd(_) => EventId::ExitMmapEnd,
            Data::UnmapVmasStart(_) => EventId::UnmapVmasStart,
            Data::UnmapVmasEnd(_) => EventId::UnmapVmasEnd,
            Data::Mmdrop(_) => EventId::MmDrop,
            Data::Exec(_) => EventId::Exec,
            Data::ExecMmSwitch(_) => EventId::ExecMmSwitch,
            Data::StackMoveStart(_) => EventId::StackMoveStart,
            Data::StackMoveEnd(_) => EventId::StackMoveEnd,
            Data::MigrateStart(_) => EventId::MigrateStart,
            Data::MigrateEnd(_) => EventId::MigrateEnd,
            Data::MigrationSkipTempStack(_) => EventId::MigrationSkipTempStack,
            Data::MigrationEntryInTempStack(_) => EventId::MigrationEntryInTempStack,
            Data::MigrationPteRemoved(_) => EventId::MigrationPteRemoved,
            Data::MigrationEntryWait(_) => EventId::MigrationEntryWait,
            Data::Fault(_) => EventId::Fault,
            Data::KernelFault(_) => EventId::KernelFault,
            Data::KthreadUseMm(_) => EventId::KthreadUseMm,
            Data::KthreadUnuseMm(_) => EventId::KthreadUnuseMm,
            Data::UffdCopy(_) => EventId::UffdCopy,
            Data::MfillStart(_) => EventId::MfillStart,
            Data::MfillEnd(_) => EventId::MfillEnd,
            Data::UffdChangeBegin(_) => EventId::UffdChangeBegin,
            Data::UffdChangeEnd(_) => EventId::UffdChangeEnd,
            Data::Fork(_) => EventId::Fork,
        }
    }

    /// The stable snake_case kind name.
    pub fn kind(&self) -> &'static str {
        self.id().name()
    }

    /// Whether the task that ran the hook is a kernel thread.
    pub fn is_kthread(&self) -> bool {
        self.task_flags & pf::PF_KTHREAD != 0
    }

    /// Whether the record carries a per-mm sequence number.
    pub fn is_sequenced(&self) -> bool {
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
        enum Repr {
            Num(u64),
            Str(String),
        }
        match Repr::deserialize(d)? {
            Repr::Num(n) => Ok(n),
            Repr::Str(s) => {
                let digits = s.strip_prefix("0x").unwrap_or(&s);
                u64::from_str_radix(digits, 16)
                    .map_err(|e| D::Error::custom(format!("bad hex value {s:?}: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::event::{MarkVictim as WireMarkVictim, Record};

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
        }
    }

    #[test]
    fn decodes_and_roundtrips_through_json() {
        let mut victim_comm = [0u8; 16];
        victim_comm[..3].copy_from_slice(b"hog");
        let rec = Record {
            header: header(EventId::MarkVictim),
            payload: WireMarkVictim {
                victim_pid: 7,
                victim_tgid: 7,
                uid: 0,
                _pad0: 0,
                mm_flags: 0x20200cd,
                victim_comm,
            },
        };
        let ev = Event::decode(&bytes_of(&rec)).expect("decodes");
        assert_eq!(ev.kind(), "mark_victim");
        assert!(ev.is_kthread());
        assert!(ev.is_sequenced());
        assert_eq!(ev.subject_pid(), Some(7));
        let json = serde_json::to_string(&ev).expect("serializes");
        assert!(json.contains(r#""ev":"mark_victim""#), "{json}");
        assert!(json.contains(r#""mm":"0xffff888012345000""#), "{json}");
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
            let mut bytes = bytes_of(&header(id));
            bytes.resize(size_of::<EventHeader>() + id.payload_size(), 0);
            let ev = Event::decode(&bytes).expect("decodes");
            assert_eq!(ev.id(), id);
            let json = serde_json::to_string(&ev).expect("serializes");
            let back: Event = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, ev, "{json}");
        }
    }
}
