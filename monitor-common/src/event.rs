//! Wire records: an [`EventHeader`] followed by the payload its [`EventId`] names.
//!
//! Ids are stable and never reused; they sit in ranges per hook family so a new
//! event finds its place without renumbering:
//!
//! | range | family |
//! |---|---|
//! | 1–99 | OOM killer and reaper |
//! | 100–199 | mm lifetime (exit, teardown, free) |
//! | 200–299 | exec stack relocation and page migration |
//! | 300–399 | faults and kernel threads borrowing an mm |
//! | 400–499 | userfaultfd |
//!
//! Every payload type is plain integers, so any bit pattern is a valid value and
//! userspace can decode records with an unaligned read after a length check.

/// Header flags ([`EventHeader::hdr_flags`]).
pub mod hdr {
    /// The event has no per-mm sequence number (`mm == 0`, or the sequence map was
    /// full). Its place is only known from the ring buffer order.
    pub const UNSEQUENCED: u32 = 1 << 0;
    /// This event created the per-mm sequence entry: the first event of a new
    /// generation of this `mm_struct` address as seen by the BPF side.
    pub const NEW_GENERATION: u32 = 1 << 1;
    /// The sequence number was taken without an atomic fetch-and-add (kernels
    /// before 5.12 have no BPF atomic fetch): two CPUs may share a number.
    pub const SEQ_NON_ATOMIC: u32 = 1 << 2;
    /// The per-mm sequence map was full; the mm is not tracked.
    pub const SEQ_MAP_FULL: u32 = 1 << 3;
    /// At least one kernel read for this record failed; fields it would have
    /// filled are zero.
    pub const READ_ERROR: u32 = 1 << 4;
    /// This event ended the generation: the BPF side dropped the per-mm entry
    /// after emitting it (`exit_mmap` end on the tracepoint rung, `__mmdrop`).
    pub const END_GENERATION: u32 = 1 << 5;
}

/// The first 80 bytes of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventId`] value.
    pub id: u32,
    /// The [`crate::probes::ProbeId`] of the program that produced the record.
    pub probe: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC, nanoseconds since boot).
    pub ktime_ns: u64,
    pub cpu: u32,
    /// [`hdr`] bits.
    pub hdr_flags: u32,
    /// The current task's thread id and thread-group id (the task running the hook).
    pub pid: u32,
    pub tgid: u32,
    /// `current->flags` ([`crate::pf`] bits, `PF_KTHREAD` marks kernel threads).
    pub task_flags: u32,
    pub _pad0: u32,
    /// The `struct mm_struct *` the event is about (0 = not about one mm).
    pub mm: u64,
    /// Opaque generation of `mm`: the `ktime_ns` at which the BPF side started
    /// sequencing this address. A reused `mm_struct` address gets a new one.
    pub mm_gen: u64,
    /// Per-(mm, generation) sequence number, starting at 1, without gaps unless
    /// records were lost.
    pub seq: u64,
    /// `current->comm`.
    pub comm: [u8; 16],
}

/// Stable event ids. The snake_case [`EventId::name`] is the value used in trace
/// files, JSON output and metric labels.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventId {
    // OOM killer and reaper.
    /// `oom:mark_victim`: the OOM killer chose a victim; `mm` is `signal->oom_mm`.
    MarkVictim = 1,
    /// The reaper starts unmapping `mm` (`oom:start_task_reaping`, or
    /// `__oom_reap_task_mm` entry, which also covers `process_mrelease(2)`).
    ReapStart = 2,
    /// The reaper finished (`oom:finish_task_reaping` or `__oom_reap_task_mm` return).
    ReapEnd = 3,
    /// `oom:skip_task_reaping`: trylock failed or `MMF_OOM_SKIP` was already set.
    ReapSkip = 4,
    /// `unmap_page_range` entry inside `__oom_reap_task_mm` (the reaper's zap).
    ReaperUnmapStart = 5,
    /// `unmap_page_range` return inside `__oom_reap_task_mm`.
    ReaperUnmapEnd = 6,
    /// `process_mrelease(2)` entry (syscall tracepoint; `mm` unknown).
    MreleaseEnter = 7,
    /// `process_mrelease(2)` return.
    MreleaseExit = 8,

    // mm lifetime.
    /// `exit_mmap` entry (function rung only).
    ExitMmapStart = 100,
    /// `exit_mmap` end: `mmap:exit_mmap` (fires before the maple tree is destroyed,
    /// still under the write lock) or `exit_mmap` return.
    ExitMmapEnd = 101,
    /// `unmap_vmas` entry inside `exit_mmap` (the read-locked zap phase).
    UnmapVmasStart = 102,
    /// `unmap_vmas` return inside `exit_mmap`.
    UnmapVmasEnd = 103,
    /// `__mmdrop`: the `mm_struct` is freed; its address may be reused.
    MmDrop = 104,

    // Exec stack relocation and migration.
    /// `sched:sched_process_exec`: exec succeeded; `mm` is `bprm->mm`.
    Exec = 200,
    /// `task:task_rename` during exec (after `exec_mmap` switched to the new mm,
    /// before `setup_arg_pages`): opens the tracepoint-rung stack-move window.
    ExecMmSwitch = 201,
    /// `shift_arg_pages`/`relocate_vma_down` entry: the temporary stack moves.
    StackMoveStart = 202,
    /// `shift_arg_pages`/`relocate_vma_down` return.
    StackMoveEnd = 203,
    /// `migrate:mm_migrate_pages_start`: a `migrate_pages()` batch starts.
    MigrateStart = 210,
    /// `migrate:mm_migrate_pages`: the batch ended; carries the per-task counts of
    /// migration PTEs installed and removed during it (aggregated in the kernel).
    MigrateEnd = 211,
    /// `invalid_migration_vma` returned true: the rmap walk skipped a temporary
    /// exec stack (the 2010 fix doing its job: a near miss).
    MigrationSkipTempStack = 212,
    /// `try_to_migrate_one` on a VMA that still carries `VM_STACK_INCOMPLETE_SETUP`:
    /// a migration entry installed into a temporary stack (must be impossible).
    MigrationEntryInTempStack = 213,
    /// `remove_migration_pte` on an mm whose temporary stack is being moved.
    MigrationPteRemoved = 214,
    /// `migration_entry_wait`: a fault found a migration entry.
    MigrationEntryWait = 215,

    // Faults and kernel threads.
    /// `handle_mm_fault` return on an `MMF_UNSTABLE` mm, or by a kernel thread or
    /// a foreign task (remote access); carries the `vm_fault_t` result.
    Fault = 300,
    /// `exceptions:page_fault_kernel` by a task whose mm has `MMF_UNSTABLE`
    /// (tracepoint rung; entry only, no result).
    KernelFault = 301,
    /// `kthread_use_mm`: a kernel thread adopts `mm`.
    KthreadUseMm = 302,
    /// `kthread_unuse_mm`.
    KthreadUnuseMm = 303,

    // userfaultfd.
    /// `UFFDIO_COPY` result (`userfaultfd_ioctl` return or `syscalls:sys_exit_ioctl`).
    UffdCopy = 400,
    /// `mcopy_atomic`/`mfill_atomic_copy` entry.
    MfillStart = 401,
    /// `mcopy_atomic`/`mfill_atomic_copy` return.
    MfillEnd = 402,
    /// A non-cooperative event raised `ctx->mmap_changing` (`dup_userfaultfd`,
    /// `mremap_userfaultfd_prep`, `userfaultfd_unmap_prep`, `userfaultfd_remove`).
    UffdChangeBegin = 403,
    /// `userfaultfd_event_wait_completion` returned: the monitor read the event and
    /// `mmap_changing` dropped.
    UffdChangeEnd = 404,
    /// `sched:sched_process_fork` of a tracked mm (after the uffd fork handshake).
    Fork = 405,
}

/// One past the largest id; counter arrays are indexed by id.
pub const MAX_EVENT_ID: u32 = 512;

impl EventId {
    pub const ALL: [EventId; 33] = [
        EventId::MarkVictim,
        EventId::ReapStart,
        EventId::ReapEnd,
        EventId::ReapSkip,
        EventId::ReaperUnmapStart,
        EventId::ReaperUnmapEnd,
        EventId::MreleaseEnter,
        EventId::MreleaseExit,
        EventId::ExitMmapStart,
        EventId::ExitMmapEnd,
        EventId::UnmapVmasStart,
        EventId::UnmapVmasEnd,
        EventId::MmDrop,
        EventId::Exec,
        EventId::ExecMmSwitch,
        EventId::StackMoveStart,
        EventId::StackMoveEnd,
        EventId::MigrateStart,
        EventId::MigrateEnd,
        EventId::MigrationSkipTempStack,
        EventId::MigrationEntryInTempStack,
        EventId::MigrationPteRemoved,
        EventId::MigrationEntryWait,
        EventId::Fault,
        EventId::KernelFault,
        EventId::KthreadUseMm,
        EventId::KthreadUnuseMm,
        EventId::UffdCopy,
        EventId::MfillStart,
        EventId::MfillEnd,
        EventId::UffdChangeBegin,
        EventId::UffdChangeEnd,
        EventId::Fork,
    ];

    pub const fn from_u32(v: u32) -> Option<EventId> {
        Some(match v {
            1 => EventId::MarkVictim,
            2 => EventId::ReapStart,
            3 => EventId::ReapEnd,
            4 => EventId::ReapSkip,
            5 => EventId::ReaperUnmapStart,
            6 => EventId::ReaperUnmapEnd,
            7 => EventId::MreleaseEnter,
            8 => EventId::MreleaseExit,
            100 => EventId::ExitMmapStart,
            101 => EventId::ExitMmapEnd,
            102 => EventId::UnmapVmasStart,
            103 => EventId::UnmapVmasEnd,
            104 => EventId::MmDrop,
            200 => EventId::Exec,
            201 => EventId::ExecMmSwitch,
            202 => EventId::StackMoveStart,
            203 => EventId::StackMoveEnd,
            210 => EventId::MigrateStart,
            211 => EventId::MigrateEnd,
            212 => EventId::MigrationSkipTempStack,
            213 => EventId::MigrationEntryInTempStack,
            214 => EventId::MigrationPteRemoved,
            215 => EventId::MigrationEntryWait,
            300 => EventId::Fault,
            301 => EventId::KernelFault,
            302 => EventId::KthreadUseMm,
            303 => EventId::KthreadUnuseMm,
            400 => EventId::UffdCopy,
            401 => EventId::MfillStart,
            402 => EventId::MfillEnd,
            403 => EventId::UffdChangeBegin,
            404 => EventId::UffdChangeEnd,
            405 => EventId::Fork,
            _ => return None,
        })
    }

    /// The stable snake_case name (trace files, JSON, metric labels).
    pub const fn name(self) -> &'static str {
        match self {
            EventId::MarkVictim => "mark_victim",
            EventId::ReapStart => "reap_start",
            EventId::ReapEnd => "reap_end",
            EventId::ReapSkip => "reap_skip",
            EventId::ReaperUnmapStart => "reaper_unmap_start",
            EventId::ReaperUnmapEnd => "reaper_unmap_end",
            EventId::MreleaseEnter => "mrelease_enter",
            EventId::MreleaseExit => "mrelease_exit",
            EventId::ExitMmapStart => "exit_mmap_start",
            EventId::ExitMmapEnd => "exit_mmap_end",
            EventId::UnmapVmasStart => "unmap_vmas_start",
            EventId::UnmapVmasEnd => "unmap_vmas_end",
            EventId::MmDrop => "mmdrop",
            EventId::Exec => "exec",
            EventId::ExecMmSwitch => "exec_mm_switch",
            EventId::StackMoveStart => "stack_move_start",
            EventId::StackMoveEnd => "stack_move_end",
            EventId::MigrateStart => "migrate_start",
            EventId::MigrateEnd => "migrate_end",
            EventId::MigrationSkipTempStack => "migration_skip_temp_stack",
            EventId::MigrationEntryInTempStack => "migration_entry_in_temp_stack",
            EventId::MigrationPteRemoved => "migration_pte_removed",
            EventId::MigrationEntryWait => "migration_entry_wait",
            EventId::Fault => "fault",
            EventId::KernelFault => "kernel_fault",
            EventId::KthreadUseMm => "kthread_use_mm",
            EventId::KthreadUnuseMm => "kthread_unuse_mm",
            EventId::UffdCopy => "uffd_copy",
            EventId::MfillStart => "mfill_start",
            EventId::MfillEnd => "mfill_end",
            EventId::UffdChangeBegin => "uffd_change_begin",
            EventId::UffdChangeEnd => "uffd_change_end",
            EventId::Fork => "fork",
        }
    }

    pub fn from_name(name: &str) -> Option<EventId> {
        EventId::ALL.iter().copied().find(|id| id.name() == name)
    }

    /// Size in bytes of the payload that follows the header.
    pub const fn payload_size(self) -> usize {
        match self {
            EventId::MarkVictim => size_of::<MarkVictim>(),
            EventId::ReapStart | EventId::ReapEnd | EventId::ReapSkip => size_of::<Reap>(),
            EventId::MreleaseEnter | EventId::MreleaseExit => size_of::<Mrelease>(),
            EventId::ExitMmapStart
            | EventId::ExitMmapEnd
            | EventId::MmDrop
            | EventId::KthreadUseMm
            | EventId::KthreadUnuseMm => size_of::<MmState>(),
            EventId::ReaperUnmapStart
            | EventId::ReaperUnmapEnd
            | EventId::UnmapVmasStart
            | EventId::UnmapVmasEnd
            | EventId::MigrationSkipTempStack
            | EventId::MigrationEntryInTempStack
            | EventId::MigrationPteRemoved
            | EventId::MigrationEntryWait => size_of::<VmaRange>(),
            EventId::Exec => size_of::<Exec>(),
            EventId::ExecMmSwitch => size_of::<ExecMmSwitch>(),
            EventId::StackMoveStart | EventId::StackMoveEnd => size_of::<StackMove>(),
            EventId::MigrateStart | EventId::MigrateEnd => size_of::<Migrate>(),
            EventId::Fault | EventId::KernelFault => size_of::<Fault>(),
            EventId::UffdCopy | EventId::MfillStart | EventId::MfillEnd => size_of::<UffdCopy>(),
            EventId::UffdChangeBegin | EventId::UffdChangeEnd => size_of::<UffdChange>(),
            EventId::Fork => size_of::<Fork>(),
        }
    }
}

/// Implemented by every payload struct: which ids carry it.
pub trait Payload: Copy + 'static {}

/// A whole record as the BPF side reserves it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Record<P: Payload> {
    pub header: EventHeader,
    pub payload: P,
}

/// [`EventId::MarkVictim`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkVictim {
    pub victim_pid: u32,
    pub victim_tgid: u32,
    pub uid: u32,
    pub _pad0: u32,
    /// `mm->flags` word 0 when the victim was marked.
    pub mm_flags: u64,
    pub victim_comm: [u8; 16],
}

/// How a reap event was observed ([`Reap::source`]).
pub mod reap_source {
    /// `oom:*_task_reaping` tracepoints (the `oom_reaper` kthread only).
    pub const TRACEPOINT: u32 = 1;
    /// `__oom_reap_task_mm` entry/return (reaper kthread and `process_mrelease`).
    pub const FUNCTION: u32 = 2;
}

/// [`EventId::ReapStart`], [`EventId::ReapEnd`], [`EventId::ReapSkip`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reap {
    /// The victim's pid as the `oom:*` tracepoints report it (0 from the function rung).
    pub victim_pid: u32,
    /// [`reap_source`].
    pub source: u32,
    /// `__oom_reap_task_mm`'s `bool` result on [`EventId::ReapEnd`] from the function
    /// rung (1 = all VMAs unmapped, 0 = retry later), -1 when unknown.
    pub ret: i32,
    pub _pad0: u32,
    /// `mm->flags` word 0 (`MMF_UNSTABLE` is set once reaping started).
    pub mm_flags: u64,
}

/// [`EventId::MreleaseEnter`], [`EventId::MreleaseExit`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mrelease {
    pub pidfd: i32,
    pub flags: u32,
    /// Return value on exit, 0 on enter.
    pub ret: i64,
}

/// Events that only carry the mm state: [`EventId::ExitMmapStart`],
/// [`EventId::ExitMmapEnd`], [`EventId::MmDrop`], [`EventId::KthreadUseMm`],
/// [`EventId::KthreadUnuseMm`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmState {
    /// `mm->flags` word 0.
    pub mm_flags: u64,
}

/// Events about one VMA or address range: reaper and exit zaps, migration
/// entries touching a temporary stack, migration-entry waits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmaRange {
    pub vm_start: u64,
    pub vm_end: u64,
    pub vm_flags: u64,
    /// The address (or range start) the operation was about; 0 if none.
    pub address: u64,
}

/// [`EventId::Exec`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exec {
    pub old_pid: u32,
    pub _pad0: u32,
    /// `bprm->filename`, NUL-terminated (truncated).
    pub filename: [u8; 64],
}

/// [`EventId::ExecMmSwitch`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecMmSwitch {
    /// The comm the task is renamed to.
    pub new_comm: [u8; 16],
}

/// [`EventId::StackMoveStart`], [`EventId::StackMoveEnd`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackMove {
    pub vm_start: u64,
    pub vm_end: u64,
    pub vm_flags: u64,
    pub shift: u64,
    /// Return value on [`EventId::StackMoveEnd`] (0 or -errno), 0 on start.
    pub ret: i64,
}

/// [`EventId::MigrateStart`], [`EventId::MigrateEnd`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrate {
    pub succeeded: u64,
    pub failed: u64,
    pub thp_succeeded: u64,
    pub thp_failed: u64,
    pub thp_split: u64,
    /// Only reported by 6.12+ kernels; 0 before.
    pub large_folio_split: u64,
    /// `enum migrate_mode`.
    pub mode: u32,
    /// `enum migrate_reason` (compaction, syscall_or_cpuset, numa_misplaced, …).
    pub reason: u32,
    /// Migration PTEs installed (`migrate:set_migration_pte`) by this task since
    /// the matching start (aggregated in the kernel).
    pub ptes_set: u64,
    /// Migration PTEs replaced by the new page (`migrate:remove_migration_pte`).
    pub ptes_removed: u64,
    /// 1 when the batch's start was seen (the counters cover the whole batch).
    pub start_seen: u32,
    pub _pad0: u32,
}

/// [`EventId::Fault`], [`EventId::KernelFault`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub address: u64,
    /// `mm->flags` word 0 of the faulting mm.
    pub mm_flags: u64,
    /// `current->mm`: differs from the header's mm for a remote (GUP) access;
    /// non-zero for a kernel thread only between `kthread_use_mm`/`unuse`.
    pub current_mm: u64,
    /// `vma->vm_flags` of the faulting VMA (function rung; 0 on the tracepoint
    /// rung). The reaper skips `VM_SHARED` file mappings, so a handled fault
    /// there is not data loss.
    pub vm_flags: u64,
    /// `FAULT_FLAG_*` (function rung) or the x86 page-fault error code (tracepoint rung).
    pub fault_flags: u32,
    /// `vm_fault_t` returned by `handle_mm_fault` (valid if `has_ret`).
    pub ret: u32,
    pub has_ret: u32,
    /// [`fault_entry`] bits: what the hook saw when the fault began.
    pub entry_flags: u32,
}

/// [`Fault::entry_flags`] bits.
pub mod fault_entry {
    /// The fault's entry was observed (the bits below are meaningful).
    pub const SEEN: u32 = 1 << 0;
    /// `MMF_UNSTABLE` was already set when the fault began.
    pub const UNSTABLE: u32 = 1 << 1;
}

/// [`EventId::UffdCopy`], [`EventId::MfillStart`], [`EventId::MfillEnd`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UffdCopy {
    pub dst: u64,
    pub len: u64,
    /// Bytes copied (>0) or -errno (`-EAGAIN` = refused because the mm is changing);
    /// 0 on [`EventId::MfillStart`].
    pub ret: i64,
    /// `ctx->mmap_changing` as read by the hook (-1 if unknown). For
    /// [`EventId::UffdCopy`] on the tracepoint and kprobe rungs, the larger of
    /// the values at the ioctl's entry and return; on fexit, at return only
    /// (the uffd monitor may lower it between a copy's `-EAGAIN` and then).
    pub mmap_changing: i32,
    pub fd: i32,
}

/// Non-cooperative userfaultfd event kinds ([`UffdChange::kind`]); the values are
/// the kernel's `UFFD_EVENT_*`.
pub mod uffd_event {
    pub const FORK: u32 = 0x13;
    pub const REMAP: u32 = 0x14;
    pub const REMOVE: u32 = 0x15;
    pub const UNMAP: u32 = 0x16;
}

/// [`EventId::UffdChangeBegin`], [`EventId::UffdChangeEnd`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UffdChange {
    /// [`uffd_event`] value, 0 if unknown.
    pub kind: u32,
    /// `ctx->mmap_changing` after the change (begin) or before the decrement (end).
    pub mmap_changing: i32,
    pub start: u64,
    pub end: u64,
}

/// [`EventId::Fork`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fork {
    pub child_pid: u32,
    pub child_tgid: u32,
    /// The child's mm (differs from the parent's unless `CLONE_VM`).
    pub child_mm: u64,
}

impl Payload for MarkVictim {}
impl Payload for Reap {}
impl Payload for Mrelease {}
impl Payload for MmState {}
impl Payload for VmaRange {}
impl Payload for Exec {}
impl Payload for ExecMmSwitch {}
impl Payload for StackMove {}
impl Payload for Migrate {}
impl Payload for Fault {}
impl Payload for UffdCopy {}
impl Payload for UffdChange {}
impl Payload for Fork {}

/// Compile-time layout checks: sizes are part of the contract, and a struct whose
/// size is a multiple of 8 with only 8/4-byte fields in this order has no hidden
/// padding. A change here is a format change: bump [`crate::maps::WIRE_VERSION`].
const _: () = {
    assert!(size_of::<EventHeader>() == 80);
    assert!(align_of::<EventHeader>() == 8);
    assert!(size_of::<MarkVictim>() == 40);
    assert!(size_of::<Reap>() == 24);
    assert!(size_of::<Mrelease>() == 16);
    assert!(size_of::<MmState>() == 8);
    assert!(size_of::<VmaRange>() == 32);
    assert!(size_of::<Exec>() == 72);
    assert!(size_of::<ExecMmSwitch>() == 16);
    assert!(size_of::<StackMove>() == 40);
    assert!(size_of::<Migrate>() == 80);
    assert!(size_of::<Fault>() == 48);
    assert!(size_of::<UffdCopy>() == 32);
    assert!(size_of::<UffdChange>() == 24);
    assert!(size_of::<Fork>() == 16);
    assert!(size_of::<Record<Migrate>>() == 160);
    // Field offsets of the header, as documented in docs/trace-format.md.
    assert!(core::mem::offset_of!(EventHeader, ktime_ns) == 8);
    assert!(core::mem::offset_of!(EventHeader, mm) == 40);
    assert!(core::mem::offset_of!(EventHeader, seq) == 56);
    assert!(core::mem::offset_of!(EventHeader, comm) == 64);
};

/// Reads a `T` from the start of `bytes` (userspace decoding).
///
/// Returns `None` if `bytes` is too short. Every type in this module is plain
/// integers, so any bit pattern is valid.
#[cfg(feature = "std")]
pub fn read<T: Copy + WireSafe>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked above; `T: WireSafe` is only implemented for
    // `#[repr(C)]` structs made of integers, for which every bit pattern is valid.
    Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Marker for types that may be decoded from arbitrary bytes by [`read`].
///
/// # Safety
/// Implement only for `#[repr(C)]` types made entirely of integers and integer arrays.
pub unsafe trait WireSafe {}

// SAFETY: all of these are #[repr(C)] structs of integers (checked above).
unsafe impl WireSafe for EventHeader {}
unsafe impl<P: Payload> WireSafe for P {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_roundtrip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for id in EventId::ALL {
            assert_eq!(EventId::from_u32(id as u32), Some(id));
            assert_eq!(EventId::from_name(id.name()), Some(id));
            assert!((id as u32) < MAX_EVENT_ID);
            seen.insert(id as u32);
        }
        assert_eq!(seen.len(), EventId::ALL.len());
        // from_u32 knows exactly the ids in ALL.
        let decodable = (0..MAX_EVENT_ID)
            .filter(|v| EventId::from_u32(*v).is_some())
            .count();
        assert_eq!(decodable, EventId::ALL.len());
    }
}
