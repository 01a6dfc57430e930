//! The BPF maps. Names are the constants of `monitor_common::maps`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    catalogue::{MAX_EVENT_ID, MAX_PROBES},
    maps::{
        COUNTERS_ENTRIES, EVENTS_DEFAULT_BYTES, EXITING_MAX_ENTRIES, ExitState, MM_SEQ_MAX_ENTRIES, MmSeq, SANITY_ENTRIES,
        STASH_MAX_ENTRIES, STATE_ENTRIES, STATS_ENTRIES, Stash, StashKey, TASKS_MAX_ENTRIES,
        TaskScratch, UFFD_CTX_MAX_ENTRIES, UffdCtxState, VICTIMS_MAX_ENTRIES,
    },
};

/// `bpf_map_update_elem` flags (include/uapi/linux/bpf.h): create or
/// replace, and create only.
pub const BPF_ANY: u64 = 0;
pub const BPF_NOEXIST: u64 = 1;

/// Every record, in reservation order (a total order across CPUs).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_DEFAULT_BYTES, 0);

/// Per-mm sequence state. A plain hash (not LRU): evicting a live mm would
/// silently start a new generation; a full map is counted instead.
#[map]
pub static MM_SEQ: HashMap<u64, MmSeq> = HashMap::with_max_entries(MM_SEQ_MAX_ENTRIES, 0);

/// Victim pid → mm, from `oom:mark_victim`; removed when the victim is
/// freed and its mm has `MMF_OOM_SKIP` (`probes/task.rs`).
#[map]
pub static VICTIMS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(VICTIMS_MAX_ENTRIES, 0);

/// Per-task migration-batch counts; removed when the task is freed
/// (`probes/task.rs`).
#[map]
pub static TASKS: LruHashMap<u32, TaskScratch> =
    LruHashMap::with_max_entries(TASKS_MAX_ENTRIES, 0);

/// State kept from a function's entry to its return, one slot per (thread,
/// hook) (`stash.rs`); an entry's presence also marks the thread as inside
/// that function.
#[map]
pub static STASH: LruHashMap<StashKey, Stash> = LruHashMap::with_max_entries(STASH_MAX_ENTRIES, 0);

/// mm → its `exit_mmap` in progress (`probes/mm.rs`; LRU: a missed return
/// ages out).
#[map]
pub static EXITING: LruHashMap<u64, ExitState> =
    LruHashMap::with_max_entries(EXITING_MAX_ENTRIES, 0);

/// mm → ktime of its stack move's start, while exec moves its temporary stack.
#[map]
pub static STACK_MOVES: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1024, 0);

/// userfaultfd ctx → its change windows (`probes/uffd.rs`). A plain hash:
/// an entry exists only while a window is open or an observed window is
/// pending, and evicting one would hide a window.
#[map]
pub static UFFD_CTX: HashMap<u64, UffdCtxState> = HashMap::with_max_entries(UFFD_CTX_MAX_ENTRIES, 0);

/// Runtime state written by userspace after planning and in-flight counters
/// the programs keep (indices in `monitor_common::maps::state`).
#[map]
pub static STATE: Array<u64> = Array::with_max_entries(STATE_ENTRIES, 0);

/// What the attach-time sanity read found (`sanity.rs`).
#[map]
pub static SANITY: Array<u64> = Array::with_max_entries(SANITY_ENTRIES, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_ENTRIES, 0);

#[map]
pub static HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_PROBES, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_ENTRIES, 0);

const _: () = assert!(MAX_EVENT_ID.is_power_of_two());
