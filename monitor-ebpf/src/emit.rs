//! Emitting records: per-mm sequencing, ring buffer reservation, loss counting,
//! batched wakeups.
//!
//! Order of operations for one record:
//! 1. decide the per-mm sequence number (creating the mm's entry if the policy
//!    allows, or skipping the record if the mm is not tracked and the policy
//!    says so);
//! 2. count it as produced;
//! 3. reserve ring buffer space; on failure count it lost (the sequence number
//!    is consumed, so userspace also sees the gap in that mm's sequence);
//! 4. fill header and payload in place and submit, waking the reader only when
//!    enough data is pending (the reader also drains on a timer).

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid,
    generated::{bpf_get_current_cgroup_id, bpf_get_smp_processor_id, bpf_ktime_get_ns},
};
use monitor_common::{
    catalogue::{EventId, ProbeId},
    event::{EventHeader, Payload, Record, hdr},
    maps::{CounterReason, MmSeq, Stat, TaskScratch},
};

use crate::{
    kernel,
    maps::{BPF_NOEXIST, COUNTERS, EVENTS, HITS, MM_SEQ, STATS, TASKS},
};

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// How a record relates to the per-mm sequence.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Seq {
    /// Not about one mm: no sequence number (ring order only).
    None,
    /// Sequence it, creating the mm's entry (a new generation) if needed.
    Track,
    /// Only emit if the mm is already tracked.
    IfTracked,
    /// Only emit if tracked, then drop the entry: this record ends the generation.
    EndIfTracked,
}

/// Adds one to a counter. The result is unused, so this compiles to a plain
/// `BPF_ATOMIC | BPF_ADD` without fetch, which every kernel accepts; being
/// atomic keeps per-CPU counts exact even if a program on this CPU is preempted
/// by another one mid-update.
#[inline(always)]
pub fn bump(p: *mut u64) {
    // SAFETY: `p` is a valid, aligned map value pointer returned by a lookup.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, 1) };
}

/// Adds `delta` (two's complement for a decrement) to the `u64` at `p`, atomically.
#[inline(always)]
pub fn add_to(p: *mut u64, delta: u64) {
    // SAFETY: `p` is a valid, aligned map value pointer returned by a lookup.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, delta) };
}

#[inline(always)]
pub fn count(reason: CounterReason, id: EventId) {
    if let Some(p) = COUNTERS.get_ptr_mut(reason.index(id as u32)) {
        bump(p);
    }
}

#[inline(always)]
pub fn stat(s: Stat) {
    if let Some(p) = STATS.get_ptr_mut(s as u32) {
        bump(p);
    }
}

/// Counts one invocation of `probe`; every program calls this first.
#[inline(always)]
pub fn hit(probe: ProbeId) {
    if let Some(p) = HITS.get_ptr_mut(probe as u32) {
        bump(p);
    }
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Whether `mm` currently has a sequence entry (the monitor cares about it).
#[inline(always)]
pub fn is_tracked(mm: u64) -> bool {
    mm != 0 && MM_SEQ.get_ptr(mm).is_some()
}

/// Result of sequencing. `emit` is false for an untracked mm under an
/// `IfTracked` policy. A plain struct, not an `Option` (see `kernel.rs`).
struct Sequenced {
    emit: bool,
    seq: u64,
    generation: u64,
    flags: u32,
}

const SKIP: Sequenced = Sequenced {
    emit: false,
    seq: 0,
    generation: 0,
    flags: 0,
};

/// Atomically adds one to `*p` and returns the new value, as a single
/// `BPF_ATOMIC | BPF_DW | BPF_ADD | BPF_FETCH` instruction (kernels 5.12+).
///
/// Written in assembly because LLVM only selects fetch atomics for `-mcpu=v3`
/// and bpf-linker is driven with rustc's `generic` cpu; the assembler accepts
/// the instruction regardless. Only the main object contains it.
#[inline(always)]
fn fetch_inc(p: *mut u64) -> u64 {
    let mut v: u64 = 1;
    // SAFETY: `p` is a valid, aligned map value pointer; the instruction
    // atomically adds `v` to `*p` and leaves the previous value in `v`.
    unsafe {
        core::arch::asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            p = in(reg) p,
            v = inout(reg) v,
            options(nostack),
        );
    }
    v + 1
}

#[inline(always)]
fn next_seq(entry: *mut MmSeq) -> u64 {
    if crate::ATOMIC_SEQ {
        // SAFETY: `entry` is a valid map value pointer.
        fetch_inc(unsafe { &raw mut (*entry).last })
    } else {
        // SAFETY: valid map value pointer. Not atomic: see `hdr::SEQ_NON_ATOMIC`.
        unsafe {
            let s = (*entry).last + 1;
            (*entry).last = s;
            s
        }
    }
}

#[inline(always)]
fn unsequenced(flags: u32) -> Sequenced {
    Sequenced {
        emit: true,
        seq: 0,
        generation: 0,
        flags: hdr::UNSEQUENCED | flags,
    }
}

#[inline(always)]
fn sequence(mm: u64, policy: Seq, ts: u64, id: EventId) -> Sequenced {
    let base = if crate::ATOMIC_SEQ { 0 } else { hdr::SEQ_NON_ATOMIC };
    if mm == 0 || policy == Seq::None {
        return unsequenced(0);
    }
    let mut flags = base;
    // A null pointer, not an Option, past this point (see `kernel.rs`).
    let mut entry = MM_SEQ.get_ptr_mut(mm).unwrap_or_default();
    if entry.is_null() {
        if policy != Seq::Track {
            return SKIP;
        }
        let fresh = MmSeq { last: 0, gen_ns: ts };
        // NOEXIST: if another CPU created the entry in between, we use theirs.
        if MM_SEQ.insert(mm, fresh, BPF_NOEXIST).is_ok() {
            flags |= hdr::NEW_GENERATION;
        }
        entry = MM_SEQ.get_ptr_mut(mm).unwrap_or_default();
        if entry.is_null() {
            count(CounterReason::SeqMapFull, id);
            return unsequenced(hdr::SEQ_MAP_FULL);
        }
    }
    let seq = next_seq(entry);
    // SAFETY: valid, non-null map value pointer.
    let generation = unsafe { (*entry).gen_ns };
    Sequenced {
        emit: true,
        seq,
        generation,
        flags,
    }
}

/// Emits one record about `mm`. `fill` writes the payload (pre-zeroed).
/// Returns whether the record reached the ring buffer.
#[inline(always)]
pub fn emit<P: Payload>(
    probe: ProbeId,
    id: EventId,
    mm: u64,
    policy: Seq,
    fill: impl FnOnce(&mut P) -> bool,
) -> bool {
    emit_from(probe as u32, id, mm, policy, &Origin::CURRENT, fill)
}

/// Who and when a record is about: the current task now, or (a replayed
/// record, `task != 0`) an earlier event of another task.
pub struct Origin {
    pub ts: u64,
    pub task: u64,
    pub pid_tgid: u64,
    pub cgroup_id: u64,
}

impl Origin {
    pub const CURRENT: Origin = Origin {
        ts: 0,
        task: 0,
        pid_tgid: 0,
        cgroup_id: 0,
    };
}

/// [`emit`] for a record whose header describes `origin` (`probe` is a
/// `ProbeId` value kept in a map).
#[inline(always)]
pub fn emit_from<P: Payload>(
    probe: u32,
    id: EventId,
    mm: u64,
    policy: Seq,
    origin: &Origin,
    fill: impl FnOnce(&mut P) -> bool,
) -> bool {
    let replay = origin.task != 0;
    let ts = if replay { origin.ts } else { now() };
    let Sequenced {
        emit,
        seq,
        generation: mm_gen,
        mut flags,
    } = sequence(mm, policy, ts, id);
    if !emit {
        return false;
    }
    count(CounterReason::Produced, id);
    let Some(mut entry) = EVENTS.reserve::<Record<P>>(0) else {
        count(CounterReason::RingbufFull, id);
        if policy == Seq::EndIfTracked {
            let _ = MM_SEQ.remove(mm);
        }
        return false;
    };
    let rec = entry.as_mut_ptr();
    let (pid_tgid, task, comm, cgroup_id) = if replay {
        flags |= hdr::REPLAYED;
        let task = origin.task;
        (
            origin.pid_tgid,
            task,
            kernel::task_comm(task),
            origin.cgroup_id,
        )
    } else {
        (
            bpf_get_current_pid_tgid(),
            kernel::current_task(),
            bpf_get_current_comm().unwrap_or([0; 16]),
            current_cgroup(),
        )
    };
    let task_flags = kernel::task_flags(task);
    let memcg_id = kernel::task_memcg_id(task);
    // SAFETY: `rec` points to reserved ring buffer memory sized for Record<P>.
    // The payload is zeroed before `fill` so no stale ring data leaks out.
    unsafe {
        core::ptr::write_bytes(&raw mut (*rec).payload, 0, 1);
        if !fill(&mut (*rec).payload) {
            flags |= hdr::READ_ERROR;
            count(CounterReason::ReadError, id);
        }
        if policy == Seq::EndIfTracked {
            flags |= hdr::END_GENERATION;
        }
        (*rec).header = EventHeader {
            id: id as u32,
            probe,
            ktime_ns: ts,
            cpu: bpf_get_smp_processor_id(),
            hdr_flags: flags,
            pid: pid_tgid as u32,
            tgid: (pid_tgid >> 32) as u32,
            task_flags,
            _pad0: 0,
            mm,
            mm_gen,
            seq,
            comm,
            cgroup_id,
            memcg_id,
        };
    }
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA);
    let wake = if pending >= kernel::wakeup_bytes() || id.opens_fault_gate() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(wake);
    if policy == Seq::EndIfTracked {
        let _ = MM_SEQ.remove(mm);
    }
    true
}

/// The current task's cgroup id (0 without cgroup support).
#[inline(always)]
pub fn current_cgroup() -> u64 {
    // SAFETY: helper without preconditions (tracing programs, 4.18+).
    unsafe { bpf_get_current_cgroup_id() }
}

/// The current task's scratch entry, created on demand (null if the map is full).
#[inline(always)]
pub fn task_scratch(tid: u32) -> *mut TaskScratch {
    let p = task_scratch_existing(tid);
    if !p.is_null() {
        return p;
    }
    let zero = TaskScratch::default();
    // Either this creates it, another program just did (fine), or the map is full.
    let _ = TASKS.insert(tid, zero, BPF_NOEXIST);
    let p = task_scratch_existing(tid);
    if p.is_null() {
        stat(Stat::TaskMapFull);
    }
    p
}

/// The current task's scratch entry if it exists, else null.
#[inline(always)]
pub fn task_scratch_existing(tid: u32) -> *mut TaskScratch {
    TASKS.get_ptr_mut(tid).unwrap_or_default()
}

#[inline(always)]
pub fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}
