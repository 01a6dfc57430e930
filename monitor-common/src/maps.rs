//! Map names (as they appear in the BPF object), default sizes and the layout of
//! the counter maps.

use crate::named::named;

/// Version of the wire layout ([`crate::event`], [`crate::catalogue`]).
/// Bumped on any change to a record's layout; recorded in trace-file headers.
/// 2: the header gained `cgroup_id`; `Fault` carries its result as one
/// `u64` (`u64::MAX` = not seen) instead of `ret` + `has_ret`.
/// 3: the header gained `memcg_id` (96 bytes); `MarkVictim` carries the
/// victim's cgroup and memory cgroup ids.
pub const WIRE_VERSION: u32 = 3;

/// The single ring buffer carrying every record, in reservation order.
pub const EVENTS: &str = "EVENTS";
/// Default ring buffer size in bytes (a power of two, multiple of the page size).
pub const EVENTS_DEFAULT_BYTES: u32 = 4 * 1024 * 1024;

/// Per-mm sequence state: `u64` mm pointer → [`MmSeq`].
pub const MM_SEQ: &str = "MM_SEQ";
pub const MM_SEQ_MAX_ENTRIES: u32 = 65_536;

/// `oom:mark_victim` pid → victim mm, so the pid-only reaping tracepoints can be
/// attributed to an mm (LRU: stale victims age out).
pub const VICTIMS: &str = "VICTIMS";
pub const VICTIMS_MAX_ENTRIES: u32 = 4096;

/// Per-task migration-batch state (PTE counts between a batch's start and
/// end): `u32` tid → [`TaskScratch`].
pub const TASKS: &str = "TASKS";
pub const TASKS_MAX_ENTRIES: u32 = 16_384;

/// State kept from a function's entry to its return (the kprobe rung has no
/// arguments at return; some hooks also mark "this thread is inside the
/// call"), one slot per (thread, hook): [`StashKey`] → [`Stash`] (LRU: a
/// task that dies inside a call ages out). Each hook keeps one typed struct
/// in its slot (`monitor-ebpf/src/stash.rs`).
pub const STASH: &str = "STASH";
pub const STASH_MAX_ENTRIES: u32 = 16_384;

/// Every mm inside `exit_mmap` (function rungs), tracked or not: `u64` mm →
/// [`ExitState`], inserted at `exit_mmap`'s entry and removed at its return
/// (LRU: an entry whose return was missed ages out). No record is emitted
/// for an untracked mm's exit; when a reaper bracket starts on an mm found
/// here, the exit bracket's start (and `unmap_vmas`' progress) is replayed
/// first, with its own times ([`crate::event::hdr::REPLAYED`]).
pub const EXITING: &str = "EXITING";
pub const EXITING_MAX_ENTRIES: u32 = 4096;

/// Small global state written by userspace after planning and read by the
/// programs: index [`state::FLAGS`] holds [`state`] flag bits.
pub const STATE: &str = "STATE";
pub const STATE_ENTRIES: u32 = 16;

/// Per-userfaultfd-context change windows as the change hooks saw them:
/// `u64` ctx pointer → [`UffdCtxState`]. An entry exists only while a window
/// is open or an observed window waits for its closing copy, so the map stays
/// small; a full map makes every copy a record (`state::UFFD_RECORD_ALL`).
pub const UFFD_CTX: &str = "UFFD_CTX";
pub const UFFD_CTX_MAX_ENTRIES: u32 = 4096;

/// Indices and flags of [`STATE`].
pub mod state {
    /// Runtime flag bits (index 0).
    pub const FLAGS: u32 = 0;
    /// `__mmdrop` is hooked: it, not the end of `exit_mmap`, ends a generation.
    pub const END_AT_MMDROP: u64 = 1 << 0;
    /// In-flight counters the programs keep, so that hot hooks bail out with
    /// one array read when nothing interesting runs: threads inside
    /// `__oom_reap_task_mm` (index 1), inside `exit_mmap` of a tracked mm (2),
    /// inside a `migrate_pages()` batch (3).
    pub const REAPS: u32 = 1;
    pub const EXITS: u32 = 2;
    pub const MIGRATIONS: u32 = 3;
    /// The fault gate (index 4): non-zero while an mm may be unstable. The
    /// page-fault programs return at once while it is 0, so ordinary faults
    /// cost one array read. Programs open it (store 1) when they see an OOM
    /// victim marked, a reap start or a `process_mrelease`; userspace closes
    /// it once no victim mm is alive and nothing opened it for a while
    /// (`monitor/src/gate.rs`).
    pub const FAULT_GATE: u32 = 4;
    /// Times a program opened the fault gate (index 5): userspace re-reads it
    /// after closing the gate and reopens the gate if it moved meanwhile.
    pub const GATE_OPENS: u32 = 5;
    /// Kernel time (`bpf_ktime_get_ns`) of the last opening of the fault
    /// gate (index 7): userspace measures from it how long the fault
    /// programs, attached only while the gate is open, took to attach
    /// (`monitor/src/session.rs`).
    pub const GATE_OPENED_AT: u32 = 7;
    /// Hooks whose stash slots may outlive their call (index 6): bit
    /// `HookId as u32` is set for hooks attached at the kprobe rung, whose
    /// kretprobe can miss a return (`maxactive`). When a task is freed its
    /// slots of these hooks are removed (`sched_process_free`).
    pub const STASH_HOOKS: u32 = 6;
    /// userfaultfd activity anywhere (index 8): change windows open, contexts
    /// with an observed (`-EAGAIN`) window pending, copies in flight whose
    /// start saw a window. While it is 0 a UFFDIO_COPY costs one array read
    /// and one per-CPU count; only otherwise is [`super::UFFD_CTX`] consulted.
    pub const UFFD_ACTIVE: u32 = 8;
    /// Exec stack moves in flight (index 9): `shift_arg_pages` /
    /// `relocate_vma_down` calls whose mm is in `STACK_MOVES`, counted up
    /// before the entry is inserted and down after it is removed (so it is
    /// never below the number of entries). While it is 0 the per-VMA
    /// migration callback `remove_migration_pte` returns after this one
    /// array read instead of reading the VMA's mm and looking it up.
    pub const STACK_MOVES_IN_FLIGHT: u32 = 9;
    /// `uffd_ioctl` is attached (flag): the ioctl's return writes the one
    /// record per copy and the `mfill` programs only keep its bracket.
    pub const UFFD_FOLD_AT_IOCTL: u64 = 1 << 1;
    /// `mfill_copy` is attached at a function rung (flag): a copy with no
    /// bracket began outside any window on its context.
    pub const UFFD_MFILL_HOOKED: u64 = 1 << 2;
    /// [`super::UFFD_CTX`] was full once (flag): every copy becomes a record,
    /// as before the filter, rather than missing a window.
    pub const UFFD_RECORD_ALL: u64 = 1 << 3;
}

/// Value of [`UFFD_CTX`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UffdCtxState {
    /// Change begins not yet ended on this context.
    pub open: u64,
    /// Kernel time the current window opened (identifies it).
    pub opened_ns: u64,
    /// 1 while an `-EAGAIN` recorded outside any window waits for the next
    /// successful copy (the detector's observed window).
    pub observed: u64,
}

/// The attach-time sanity read (`monitor/src/sanity.rs`): a raw tracepoint
/// program, never attached, that userspace runs once with
/// `BPF_PROG_TEST_RUN` in its own context. It reads fields of `current` at
/// the offsets resolved from the BTF it was given and the same facts
/// through helpers that need no offsets, into [`SANITY`].
pub const SANITY_PROGRAM: &str = "sanity_read";
/// `u64` array written by [`SANITY_PROGRAM`], indexed by [`sanity`].
pub const SANITY: &str = "SANITY";
pub const SANITY_ENTRIES: u32 = 16;

/// Indices of [`SANITY`].
pub mod sanity {
    /// 1 once the program ran.
    pub const RAN: u32 = 0;
    /// `bpf_get_current_pid_tgid()` (tgid << 32 | pid): no offsets.
    pub const HELPER_PID_TGID: u32 = 1;
    /// `task_struct.tgid << 32 | task_struct.pid`, read at the offsets.
    pub const PID_TGID: u32 = 2;
    /// `bpf_get_current_comm()`, two words.
    pub const HELPER_COMM: u32 = 3;
    /// `task_struct.comm` at its offset, two words.
    pub const COMM: u32 = 5;
    /// `task_struct.flags`.
    pub const TASK_FLAGS: u32 = 7;
    /// `task_struct.mm` and word 0 of its `mm_struct.flags`.
    pub const MM: u32 = 8;
    pub const MM_FLAGS: u32 = 9;
    /// `bpf_get_current_cgroup_id()`: no offsets.
    pub const HELPER_CGROUP_ID: u32 = 10;
    /// `task->cgroups->dfl_cgrp->kn->id` at the offsets.
    pub const CGROUP_ID: u32 = 11;
    /// `task->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id`.
    pub const MEMCG_ID: u32 = 12;
}

/// Key of [`STASH`]: one slot per (thread, hook).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StashKey {
    pub tid: u32,
    /// A [`crate::catalogue::HookId`].
    pub hook: u32,
}

/// Value of [`STASH`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stash {
    pub args: [u64; 4],
}

/// Per-CPU `u64` counters, [`COUNTER_REASONS`] × [`crate::catalogue::MAX_EVENT_ID`].
pub const COUNTERS: &str = "COUNTERS";
/// Per-CPU `u64` hit counts, indexed by [`crate::catalogue::ProbeId`].
pub const HITS: &str = "HITS";
/// Per-CPU `u64` aggregate statistics, indexed by [`Stat`].
pub const STATS: &str = "STATS";

/// Per-mm sequence state (value of [`MM_SEQ`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmSeq {
    /// The last sequence number handed out (the next event gets `last + 1`).
    pub last: u64,
    /// Generation id: `ktime_ns` when this entry was created.
    pub gen_ns: u64,
}

/// An mm inside `exit_mmap` (value of [`EXITING`]). Times are
/// `bpf_ktime_get_ns()`; 0 = not (yet) happened.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitState {
    /// `exit_mmap` entry.
    pub start_ns: u64,
    /// `unmap_vmas` entry and return inside this `exit_mmap`.
    pub unmap_start_ns: u64,
    pub unmap_end_ns: u64,
    /// The exiting task (`current` at entry), its pid/tgid word and cgroup.
    pub task: u64,
    pub pid_tgid: u64,
    pub cgroup_id: u64,
    /// `mm->flags` word 0 at entry.
    pub mm_flags: u64,
    /// The programs that saw the entry and `unmap_vmas`' entry and return
    /// ([`crate::catalogue::ProbeId`] values).
    pub probe: u32,
    pub unmap_start_probe: u32,
    pub unmap_end_probe: u32,
    /// 1 once the exit's start is in the trace (emitted at entry for a
    /// tracked mm, or replayed).
    pub reported: u32,
}

/// Per-task scratch state (value of [`TASKS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskScratch {
    /// Migration PTEs installed / removed since the task's last `MigrateStart`.
    pub ptes_set: u64,
    pub ptes_removed: u64,
    /// 1 while the task is between `mm_migrate_pages_start` and `mm_migrate_pages`.
    pub in_migrate: u32,
    pub _pad0: u32,
}

named! {
    /// Why a counter in [`COUNTERS`] was incremented (row of the 2-D array).
    pub enum CounterReason: "counter reason" {
        /// The BPF side decided to emit a record (before reserving ring space).
        Produced = 0 => "produced",
        /// `bpf_ringbuf_reserve` failed: the ring buffer was full; the record is lost.
        RingbufFull = 1 => "ringbuf_full",
        /// The per-mm sequence map was full: the record was emitted unsequenced.
        SeqMapFull = 2 => "seq_map_full",
        /// A kernel read for the record failed; the record was emitted with zeroes.
        ReadError = 3 => "read_error",
    }
}

pub const COUNTER_REASONS: u32 = CounterReason::ALL.len() as u32;

impl CounterReason {
    /// Index of (`self`, event id) in [`COUNTERS`].
    pub const fn index(self, event_id: u32) -> u32 {
        self as u32 * crate::catalogue::MAX_EVENT_ID + event_id
    }
}

/// Total entries of [`COUNTERS`].
pub const COUNTERS_ENTRIES: u32 = COUNTER_REASONS * crate::catalogue::MAX_EVENT_ID;

named! {
    /// Aggregated in-kernel statistics (indices of [`STATS`]). Hot events that need
    /// no per-event record are only counted here.
    pub enum Stat: "statistic" {
        /// `migrate:set_migration_pte` hits.
        MigrationPteSet = 0 => "migration_pte_set",
        /// `migrate:remove_migration_pte` hits.
        MigrationPteRemoved = 1 => "migration_pte_removed",
        /// Migration PTE events outside a `migrate_pages()` batch of the same task
        /// (THP split, device migration): counted, not attributed to a batch.
        MigrationPteOutsideBatch = 2 => "migration_pte_outside_batch",
        /// Fault hook invocations examined by the in-kernel filter.
        FaultsExamined = 3 => "faults_examined",
        /// The task, stash or exiting map was full: a batch's counts or an entry's
        /// state was lost.
        TaskMapFull = 4 => "task_map_full",
        /// `handle_mm_fault` returns whose entry was not seen (filter state lost).
        FaultUnmatchedReturn = 5 => "fault_unmatched_return",
        /// Faults that waited on a migration entry (PTE, PMD or hugetlb level)
        /// while a `migrate_pages()` batch was in flight: expected (the batch
        /// removes its entries), counted, not recorded.
        MigrationWaitInBatch = 6 => "migration_wait_in_batch",
        /// A userfaultfd context was closed while the monitor kept window
        /// state for it (a change window not yet ended, or an `-EAGAIN`
        /// waiting for a success that can no longer come): the state was
        /// dropped with the context.
        UffdCtxReleased = 7 => "uffd_ctx_released",
        /// Every UFFDIO_COPY the hooks reported, recorded or not, by result:
        /// succeeded, `-EEXIST`, `-EAGAIN`, other errors.
        UffdCopyOk = 10 => "uffd_copy_ok",
        UffdCopyExists = 11 => "uffd_copy_eexist",
        UffdCopyAgain = 12 => "uffd_copy_eagain",
        UffdCopyOther = 13 => "uffd_copy_other",
        /// `UFFD_CTX` was full once: from then on every UFFDIO_COPY is
        /// recorded (`state::UFFD_RECORD_ALL`), as before the filter.
        UffdCtxMapFull = 14 => "uffd_ctx_map_full",
    }
}

pub const STATS_ENTRIES: u32 = 16;

impl Stat {
    /// For the counts of UFFDIO_COPY calls: the result they are counted
    /// under (`ok`, `eexist`, `eagain`, `other`).
    pub const fn uffd_copy_result(self) -> Option<&'static str> {
        match self {
            Stat::UffdCopyOk => Some("ok"),
            Stat::UffdCopyExists => Some("eexist"),
            Stat::UffdCopyAgain => Some("eagain"),
            Stat::UffdCopyOther => Some("other"),
            _ => None,
        }
    }
}

const _: () = {
    assert!(size_of::<StashKey>() == 8);
    assert!(size_of::<Stash>() == 32);
    assert!(size_of::<MmSeq>() == 16);
    assert!(size_of::<TaskScratch>() == 24);
    assert!(size_of::<UffdCtxState>() == 24);
    assert!(size_of::<ExitState>() == 72);
    assert!((Stat::ALL.len() as u32) <= STATS_ENTRIES);
    let mut i = 0;
    while i < Stat::ALL.len() {
        assert!((Stat::ALL[i] as u32) < STATS_ENTRIES);
        i += 1;
    }
};
