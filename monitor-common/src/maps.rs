//! Map names (as they appear in the BPF object), default sizes and the layout of
//! the counter maps.

/// Version of the wire layout ([`crate::event`]). Bumped on any change to a
/// record's layout; recorded in trace-file headers.
pub const WIRE_VERSION: u32 = 1;

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

/// Per-task scratch state (entry arguments for return probes, open brackets,
/// migration PTE counts): `u32` tid → [`TaskScratch`].
pub const TASKS: &str = "TASKS";
pub const TASKS_MAX_ENTRIES: u32 = 16_384;

/// Arguments saved at a function entry for the matching return program (the
/// kprobe rung has no arguments at return), and per-task brackets:
/// [`StashKey`] → [`Stash`] (LRU: a task that dies inside a call ages out).
pub const STASH: &str = "STASH";
pub const STASH_MAX_ENTRIES: u32 = 16_384;

/// Small global state written by userspace after planning and read by the
/// programs: index [`state::FLAGS`] holds [`state`] flag bits.
pub const STATE: &str = "STATE";
pub const STATE_ENTRIES: u32 = 8;

/// Indices and flags of [`STATE`].
pub mod state {
    /// Runtime flag bits (index 0).
    pub const FLAGS: u32 = 0;
    /// `__mmdrop` is hooked: it, not the end of `exit_mmap`, ends a generation.
    pub const END_AT_MMDROP: u64 = 1 << 0;
    /// Indices 1..=3 are in-flight counters the programs keep (reaps, exits,
    /// migration batches).
    pub const INFLIGHT_LAST: u32 = 3;
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
}

/// Key of [`STASH`]: one slot per (thread, hook).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StashKey {
    pub tid: u32,
    pub slot: u32,
}

/// Value of [`STASH`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stash {
    pub args: [u64; 4],
}

/// Stash slots (one per hook family that needs entry state at return).
pub mod slot {
    pub const OOM_REAP: u32 = 1;
    pub const EXIT_MMAP: u32 = 2;
    pub const UNMAP_PAGE_RANGE: u32 = 3;
    pub const UNMAP_VMAS: u32 = 4;
    pub const STACK_MOVE: u32 = 5;
    pub const MFILL: u32 = 6;
    pub const FAULT: u32 = 7;
    pub const DUP_UFFD: u32 = 8;
    pub const UFFD_IOCTL: u32 = 9;
    pub const UFFD_WAIT: u32 = 10;
    pub const UFFD_PREP: u32 = 11;
    pub const MARK_VICTIM: u32 = 12;
    pub const MIGRATE: u32 = 13;
}

/// Per-CPU `u64` counters, [`COUNTER_REASONS`] × [`crate::event::MAX_EVENT_ID`].
pub const COUNTERS: &str = "COUNTERS";
/// Per-CPU `u64` hit counts, indexed by [`crate::probes::ProbeId`].
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

/// Per-task scratch state (value of [`TASKS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskScratch {
    /// Migration PTEs installed / removed since the task's last `MigrateStart`.
    pub ptes_set: u64,
    pub ptes_removed: u64,
    /// 1 while the task is between `mm_migrate_pages_start` and `mm_migrate_pages`.
    pub in_migrate: u32,
    /// Bit set of [`bracket`] the task is inside (function entry seen, return not yet).
    pub brackets: u32,
    /// Arguments saved at a kprobe entry for the matching kretprobe.
    pub args: [u64; 4],
}

/// Bits of [`TaskScratch::brackets`].
pub mod bracket {
    pub const OOM_REAP: u32 = 1 << 0;
    pub const EXIT_MMAP: u32 = 1 << 1;
    pub const UNMAP_PAGE_RANGE: u32 = 1 << 2;
    pub const UNMAP_VMAS: u32 = 1 << 3;
    pub const STACK_MOVE: u32 = 1 << 4;
    pub const MFILL: u32 = 1 << 5;
    pub const HANDLE_MM_FAULT: u32 = 1 << 6;
    pub const DUP_UFFD: u32 = 1 << 7;
    pub const UFFD_IOCTL: u32 = 1 << 8;
    pub const INVALID_MIGRATION_VMA: u32 = 1 << 9;
    pub const UFFD_WAIT: u32 = 1 << 10;
    pub const UFFD_PREP: u32 = 1 << 11;
}

/// Why a counter in [`COUNTERS`] was incremented (row of the 2-D array).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CounterReason {
    /// The BPF side decided to emit a record (before reserving ring space).
    Produced = 0,
    /// `bpf_ringbuf_reserve` failed: the ring buffer was full; the record is lost.
    RingbufFull = 1,
    /// The per-mm sequence map was full: the record was emitted unsequenced.
    SeqMapFull = 2,
    /// A kernel read for the record failed; the record was emitted with zeroes.
    ReadError = 3,
}

pub const COUNTER_REASONS: u32 = 4;

impl CounterReason {
    pub const ALL: [CounterReason; 4] = [
        CounterReason::Produced,
        CounterReason::RingbufFull,
        CounterReason::SeqMapFull,
        CounterReason::ReadError,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            CounterReason::Produced => "produced",
            CounterReason::RingbufFull => "ringbuf_full",
            CounterReason::SeqMapFull => "seq_map_full",
            CounterReason::ReadError => "read_error",
        }
    }

    /// Index of (`self`, event id) in [`COUNTERS`].
    pub const fn index(self, event_id: u32) -> u32 {
        self as u32 * crate::event::MAX_EVENT_ID + event_id
    }
}

/// Total entries of [`COUNTERS`].
pub const COUNTERS_ENTRIES: u32 = COUNTER_REASONS * crate::event::MAX_EVENT_ID;

/// Aggregated in-kernel statistics (indices of [`STATS`]). Hot events that need
/// no per-event record are only counted here.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stat {
    /// `migrate:set_migration_pte` hits.
    MigrationPteSet = 0,
    /// `migrate:remove_migration_pte` hits.
    MigrationPteRemoved = 1,
    /// Migration PTE events outside a `migrate_pages()` batch of the same task
    /// (THP split, device migration): counted, not attributed to a batch.
    MigrationPteOutsideBatch = 2,
    /// Fault hook invocations examined by the in-kernel filter.
    FaultsExamined = 3,
    /// The task scratch map was full: a bracket or an entry argument was lost.
    TaskMapFull = 4,
    /// `handle_mm_fault` returns whose entry was not seen (filter state lost).
    FaultUnmatchedReturn = 5,
}

pub const STATS_ENTRIES: u32 = 16;

impl Stat {
    pub const ALL: [Stat; 6] = [
        Stat::MigrationPteSet,
        Stat::MigrationPteRemoved,
        Stat::MigrationPteOutsideBatch,
        Stat::FaultsExamined,
        Stat::TaskMapFull,
        Stat::FaultUnmatchedReturn,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stat::MigrationPteSet => "migration_pte_set",
            Stat::MigrationPteRemoved => "migration_pte_removed",
            Stat::MigrationPteOutsideBatch => "migration_pte_outside_batch",
            Stat::FaultsExamined => "faults_examined",
            Stat::TaskMapFull => "task_map_full",
            Stat::FaultUnmatchedReturn => "fault_unmatched_return",
        }
    }
}

const _: () = {
    assert!(size_of::<StashKey>() == 8);
    assert!(size_of::<Stash>() == 32);
    assert!(size_of::<MmSeq>() == 16);
    assert!(size_of::<TaskScratch>() == 56);
    assert!((Stat::ALL.len() as u32) <= STATS_ENTRIES);
};
