//! The one entry → exit mechanism: state kept from a function's entry to its
//! return in `STASH`, one slot per (thread, hook), each hook's slot holding
//! one typed struct ([`Saved`]). Also cheap in-flight counters that let hot
//! hooks (`unmap_page_range`, `unmap_vmas`) bail out with one array lookup
//! when nothing interesting is running.

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::MaybeUninit,
};

use monitor_common::{
    catalogue::HookId,
    maps::{Stash, StashKey, Stat, state},
};

use crate::{
    emit::{current_tid, stat},
    maps::{BPF_ANY, STASH, STATE},
};

/// A struct a hook keeps in its stash slot from a function's entry to its
/// return.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers (any bit pattern, and
/// all zeroes, are valid values) of at most 32 bytes.
pub unsafe trait Saved: Copy {
    /// Whose slot it is.
    const HOOK: HookId;
}

#[inline(always)]
fn key(hook: HookId) -> StashKey {
    StashKey {
        tid: current_tid(),
        hook: hook as u32,
    }
}

/// Saves `a` for the current thread in its hook's slot. Returns false if the
/// map was full (counted).
#[inline(always)]
pub fn put<A: Saved>(a: &A) -> bool {
    const { assert!(size_of::<A>() <= size_of::<Stash>()) };
    let mut v = Stash { args: [0; 4] };
    // SAFETY: `A` fits in `Stash` (checked above) and is plain integers.
    unsafe { core::ptr::write_unaligned((&raw mut v).cast::<A>(), *a) };
    if STASH.insert(key(A::HOOK), v, BPF_ANY).is_err() {
        stat(Stat::TaskMapFull);
        return false;
    }
    true
}

/// A slot's content; `found` is false (and `args` zero) when the thread is
/// not inside the call. A plain struct, not an `Option`: see `kernel.rs` on why.
#[derive(Clone, Copy)]
pub struct Stashed<A> {
    pub found: bool,
    pub args: A,
}

/// The current thread's `A`, if it is inside that call.
#[inline(always)]
pub fn get<A: Saved>() -> Stashed<A> {
    // SAFETY: plain value lookup; the value is copied out. `A` is plain
    // integers no larger than `Stash` (see `put`), so reading one from the
    // slot, or making an all-zero one, is sound.
    unsafe {
        match STASH.get(key(A::HOOK)) {
            Some(s) => Stashed {
                found: true,
                args: core::ptr::read_unaligned((s as *const Stash).cast::<A>()),
            },
            None => Stashed {
                found: false,
                args: MaybeUninit::<A>::zeroed().assume_init(),
            },
        }
    }
}

/// Takes (reads and removes) the current thread's `A`.
#[inline(always)]
pub fn take<A: Saved>() -> Stashed<A> {
    let v = get::<A>();
    if v.found {
        let _ = STASH.remove(key(A::HOOK));
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

/// Marks one more thread inside `index`'s calls (`state::REAPS`, …).
#[inline(always)]
pub fn enter(index: u32) {
    add(index, 1);
}

/// Marks one thread fewer (call only if the matching `enter` was counted).
#[inline(always)]
pub fn leave(index: u32) {
    add(index, u64::MAX);
}

/// Marks `n` fewer (each counted by an `enter`).
#[inline(always)]
pub fn leave_n(index: u32, n: u64) {
    add(index, n.wrapping_neg());
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

/// Sets a runtime flag bit from a program (one-way: userspace writes the
/// flags only before attaching).
#[inline(always)]
pub fn set_flag(bit: u64) {
    if let Some(p) = STATE.get_ptr_mut(state::FLAGS) {
        // SAFETY: valid, aligned array value pointer; a racing setter sets
        // the same bit.
        unsafe { core::ptr::write_volatile(p, *p | bit) };
    }
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
    if let Some(p) = STATE.get_ptr_mut(state::GATE_OPENED_AT) {
        // SAFETY: valid, aligned array value pointer; a plain store (racing
        // openers store nearly the same time).
        unsafe { core::ptr::write_volatile(p, crate::emit::now()) };
    }
}

/// Whether the fault programs should look at faults at all.
#[inline(always)]
pub fn fault_gate_open() -> bool {
    STATE.get(state::FAULT_GATE).is_some_and(|v| *v != 0)
}

/// Forgets the stash slots of a freed thread `tid` for the hooks in
/// `state::STASH_HOOKS` (those whose return program can miss a return), and
/// the in-flight count its missed return left raised. Userspace sets the
/// mask after planning; with no hook at the kprobe rung it is 0 and this
/// costs one array read.
#[inline(always)]
pub fn forget_task(tid: u32) {
    let mask = match STATE.get(state::STASH_HOOKS) {
        Some(v) => *v,
        None => 0,
    };
    if mask == 0 {
        return;
    }
    let mut hook = 0u32;
    while hook < 64 {
        if mask & (1u64 << hook) != 0 && STASH.remove(StashKey { tid, hook }).is_ok() {
            if hook == HookId::OomReap as u32 {
                leave(state::REAPS);
            } else if hook == HookId::ExitMmap as u32 {
                leave(state::EXITS);
            }
        }
        hook += 1;
    }
}
