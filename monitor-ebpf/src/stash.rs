//! Entry state kept until a function returns, and cheap in-flight counters
//! that let hot hooks (`unmap_page_range`, `unmap_vmas`) bail out with one
//! array lookup when nothing interesting is running.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use monitor_common::maps::{Stash, StashKey, Stat, state};

use crate::{
    emit::{current_tid, stat},
    maps::{STASH, STATE},
};

/// Indices of `STATE` the programs maintain.
pub mod inflight {
    /// Threads inside `__oom_reap_task_mm`.
    pub const REAPS: u32 = 1;
    /// Threads inside `exit_mmap` of a tracked mm.
    pub const EXITS: u32 = 2;
    /// Threads inside a `migrate_pages()` batch.
    pub const MIGRATIONS: u32 = 3;
}

const BPF_ANY: u64 = 0;

#[inline(always)]
fn key(slot: u32) -> StashKey {
    StashKey {
        tid: current_tid(),
        slot,
    }
}

/// Saves `args` for the current thread in `slot`. Returns false if the map
/// was full (counted).
#[inline(always)]
pub fn put(slot: u32, args: [u64; 4]) -> bool {
    if STASH.insert(key(slot), Stash { args }, BPF_ANY).is_err() {
        stat(Stat::TaskMapFull);
        return false;
    }
    true
}

/// Saved arguments; `found` is false (and `args` zero) when the thread is not
/// inside the call. A plain struct, not an `Option`: see `kernel.rs` on why.
#[derive(Clone, Copy)]
pub struct Stashed {
    pub found: bool,
    pub args: [u64; 4],
}

/// The current thread's saved arguments in `slot`, if it is inside that call.
#[inline(always)]
pub fn get(slot: u32) -> Stashed {
    // SAFETY: plain value lookup; the value is copied out.
    match unsafe { STASH.get(key(slot)) } {
        Some(s) => Stashed {
            found: true,
            args: s.args,
        },
        None => Stashed {
            found: false,
            args: [0; 4],
        },
    }
}

/// Takes (reads and removes) the current thread's saved arguments.
#[inline(always)]
pub fn take(slot: u32) -> Stashed {
    let k = key(slot);
    let v = get(slot);
    if v.found {
        let _ = STASH.remove(k);
    }
    v
}

#[inline(always)]
fn add(index: u32, delta: u64) {
    if let Some(p) = STATE.get_ptr_mut(index) {
        // SAFETY: valid, aligned array value pointer; result unused (plain XADD).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, delta) };
    }
}

/// Marks one more thread inside `index`'s calls.
#[inline(always)]
pub fn enter(index: u32) {
    add(index, 1);
}

/// Marks one thread fewer (call only if the matching `enter` was counted).
#[inline(always)]
pub fn leave(index: u32) {
    add(index, u64::MAX);
}

/// Whether any thread is inside `index`'s calls.
#[inline(always)]
pub fn any(index: u32) -> bool {
    STATE.get(index).is_some_and(|v| *v as i64 > 0)
}

/// Runtime flags set by userspace.
#[inline(always)]
pub fn flag(bit: u64) -> bool {
    STATE.get(state::FLAGS).is_some_and(|v| *v & bit != 0)
}

/// Opens the fault gate (`state::FAULT_GATE`): an mm may have become
/// unstable (OOM victim marked, reaping started, `process_mrelease`).
#[inline(always)]
pub fn open_fault_gate() {
    if let Some(p) = STATE.get_ptr_mut(state::FAULT_GATE) {
        // SAFETY: valid, aligned array value pointer; a plain store.
        unsafe { core::ptr::write_volatile(p, 1) };
    }
    add(state::GATE_OPENS, 1);
}

/// Whether the fault programs should look at faults at all.
#[inline(always)]
pub fn fault_gate_open() -> bool {
    STATE.get(state::FAULT_GATE).is_some_and(|v| *v != 0)
}
