//! mm teardown.
//!
//! ```text
//! mm/mmap.c exit_mmap() (6.1+):
//!   mmap_read_lock; unmap_vmas(...); mmap_read_unlock;
//!   set_bit(MMF_OOM_SKIP); mmap_write_lock; free_pgtables; remove_vma loop;
//!   trace_exit_mmap(mm);            <- the tracepoint: the END of exit_mmap
//!   __mt_destroy(&mm->mm_mt); mmap_write_unlock
//! (4.17–5.19: an OOM victim's exit_mmap first calls __oom_reap_task_mm itself)
//!
//! include/trace/events/mmap.h (6.1+): TP_PROTO(struct mm_struct *mm)
//! void exit_mmap(struct mm_struct *mm)
//! void unmap_vmas(struct mmu_gather *tlb, ...)    (mm = tlb->mm; the read-locked zap)
//! void __mmdrop(struct mm_struct *mm)             (frees the mm_struct)
//! ```
//!
//! Only mms the monitor already tracks are reported. The record that ends a
//! generation drops the mm's sequence entry: `__mmdrop` when that hook is
//! attached (userspace sets `state::END_AT_MMDROP`), else the end of
//! `exit_mmap`. `unmap_vmas` is reported only inside `exit_mmap`, checked
//! first with one array lookup of the in-flight count.
//!
//! On the function rungs every `exit_mmap` keeps an `EXITING` entry (mm →
//! start time, task, `unmap_vmas` progress) from entry to return, tracked or
//! not, and emits nothing for an untracked mm. A reaper bracket starting on
//! an mm found there ([`replay_exit`], called by the reap programs before
//! their own record) first replays the exit's start and `unmap_vmas`
//! progress with their own times and task (`hdr::REPLAYED`), so the overlap
//! is judged whichever started first.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use monitor_common::{
    catalogue::{EventId, HookId, MmState, ProbeId, VmaRange},
    maps::{ExitState, Stat, state},
};

use crate::{
    emit::{Origin, Seq, current_cgroup, emit, emit_from, is_tracked, now, stat},
    kernel,
    maps::{BPF_ANY, EXITING},
    stamp::{karg, programs},
    stash::{self, Saved},
};

#[inline(always)]
fn mm_state(probe: ProbeId, id: EventId, mm: u64, policy: Seq) {
    emit::<MmState>(probe, id, mm, policy, |p| {
        p.mm_flags = kernel::mm_flags(mm);
        p.mm_flags != 0
    });
}

/// The policy of the record that marks the end of `exit_mmap`.
#[inline(always)]
fn exit_end_policy() -> Seq {
    if stash::flag(state::END_AT_MMDROP) {
        Seq::IfTracked
    } else {
        Seq::EndIfTracked
    }
}

// exit_mmap -----------------------------------------------------------------
// On both rungs the entry keeps the mm in the hook's slot: it marks the thread
// as inside `exit_mmap` for `unmap_vmas` (and counts it in `EXITS`), and the
// mm's `EXITING` entry holds what a replay needs.

/// `void exit_mmap(struct mm_struct *mm)`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ExitArgs {
    mm: u64,
}

// SAFETY: one u64.
unsafe impl Saved for ExitArgs {
    const HOOK: HookId = HookId::ExitMmap;
}

#[inline(always)]
fn exit_entry(probe: ProbeId, mm: u64) {
    if mm == 0 {
        return;
    }
    let tracked = is_tracked(mm);
    let task = kernel::current_task();
    let entry = ExitState {
        start_ns: now(),
        task,
        pid_tgid: bpf_get_current_pid_tgid(),
        cgroup_id: current_cgroup(),
        mm_flags: kernel::mm_flags(mm),
        probe: probe as u32,
        reported: u32::from(tracked),
        ..ExitState::default()
    };
    let kept = EXITING.insert(mm, entry, BPF_ANY).is_ok();
    if !kept {
        stat(Stat::TaskMapFull);
    }
    if stash::put(&ExitArgs { mm }) {
        stash::enter(state::EXITS);
    }
    if tracked {
        mm_state(probe, EventId::ExitMmapStart, mm, Seq::IfTracked);
    } else if kept && is_tracked(mm) {
        // A reaper started on the mm between the two checks, before the
        // entry existed: replay the start now.
        replay_exit(mm);
    }
}

/// `mm` is 0 when the return program has no arguments (kretprobe).
#[inline(always)]
fn exit_return(probe: ProbeId, mm: u64) {
    if !stash::any(state::EXITS) {
        return;
    }
    let saved = stash::take::<ExitArgs>();
    if !saved.found {
        return;
    }
    stash::leave(state::EXITS);
    let mm = if mm != 0 { mm } else { saved.args.mm };
    let _ = EXITING.remove(mm);
    mm_state(probe, EventId::ExitMmapEnd, mm, exit_end_policy());
}

/// Called by a reaper bracket's start on `mm` before its own record: if `mm`
/// is inside `exit_mmap` and that exit is not in the trace yet, records its
/// start (and `unmap_vmas`' entry and return so far) with their own times
/// and task, starting the mm's tracking.
#[inline(always)]
pub fn replay_exit(mm: u64) {
    let p = EXITING.get_ptr_mut(mm).unwrap_or_default();
    if p.is_null() {
        return;
    }
    // SAFETY: valid, non-null map value pointer; copied out, then one store.
    let e = unsafe {
        let e = *p;
        (*p).reported = 1;
        e
    };
    if e.reported != 0 {
        return;
    }
    let mut at = Origin {
        ts: e.start_ns,
        task: e.task,
        pid_tgid: e.pid_tgid,
        cgroup_id: e.cgroup_id,
    };
    let flags = e.mm_flags;
    emit_from::<MmState>(e.probe, EventId::ExitMmapStart, mm, Seq::Track, &at, |p| {
        p.mm_flags = flags;
        flags != 0
    });
    for (ts, probe, id) in [
        (e.unmap_start_ns, e.unmap_start_probe, EventId::UnmapVmasStart),
        (e.unmap_end_ns, e.unmap_end_probe, EventId::UnmapVmasEnd),
    ] {
        if ts != 0 {
            at.ts = ts;
            emit_from::<VmaRange>(probe, id, mm, Seq::Track, &at, |_| true);
        }
    }
}

/// The mm is freed: its `EXITING` entry cannot outlive it (an `exit_mmap`
/// return that was missed, e.g. a kretprobe miss), so a later mm at the same
/// address never replays a stale exit.
#[inline(always)]
fn mmdrop(probe: ProbeId, mm: u64) {
    let _ = EXITING.remove(mm);
    mm_state(probe, EventId::MmDrop, mm, Seq::EndIfTracked);
}

// unmap_vmas inside exit_mmap -------------------------------------------------

/// `tlb` is 0 when the return program has no arguments (kretprobe).
#[inline(always)]
fn unmap_vmas(probe: ProbeId, id: EventId, tlb: u64) {
    if !stash::any(state::EXITS) {
        return;
    }
    let saved = stash::get::<ExitArgs>();
    if !saved.found {
        return;
    }
    let mm = saved.args.mm;
    if tlb != 0 && kernel::tlb_mm(tlb) != mm {
        return;
    }
    let p = EXITING.get_ptr_mut(mm).unwrap_or_default();
    if !p.is_null() {
        // SAFETY: valid, non-null map value pointer; plain stores.
        unsafe {
            if id == EventId::UnmapVmasStart {
                (*p).unmap_start_ns = now();
                (*p).unmap_start_probe = probe as u32;
            } else {
                (*p).unmap_end_ns = now();
                (*p).unmap_end_probe = probe as u32;
            }
        }
    }
    emit::<VmaRange>(probe, id, mm, Seq::IfTracked, |_| true);
}

programs! {
    tp_btf tp_exit_mmap(ctx) {
        let mm: u64 = ctx.arg(0);
        mm_state(P, EventId::ExitMmapEnd, mm, exit_end_policy());
    }

    fentry fentry_exit_mmap(ctx) {
        exit_entry(P, ctx.arg(0));
    }
    fexit fexit_exit_mmap(ctx) {
        exit_return(P, ctx.arg(0));
    }
    kprobe kprobe_exit_mmap(ctx) {
        exit_entry(P, karg(&ctx, 0));
    }
    kretprobe kretprobe_exit_mmap(_ctx) {
        exit_return(P, 0);
    }

    /// `void unmap_vmas(struct mmu_gather *tlb, …)`: the exit's read-locked zap.
    fentry fentry_unmap_vmas(ctx) {
        unmap_vmas(P, EventId::UnmapVmasStart, ctx.arg(0));
    }
    fexit fexit_unmap_vmas(ctx) {
        unmap_vmas(P, EventId::UnmapVmasEnd, ctx.arg(0));
    }
    kprobe kprobe_unmap_vmas(ctx) {
        unmap_vmas(P, EventId::UnmapVmasStart, karg(&ctx, 0));
    }
    kretprobe kretprobe_unmap_vmas(_ctx) {
        unmap_vmas(P, EventId::UnmapVmasEnd, 0);
    }

    /// `void __mmdrop(struct mm_struct *mm)`: the mm_struct is freed.
    fentry fentry_mmdrop(ctx) {
        mmdrop(P, ctx.arg(0));
    }
    kprobe kprobe_mmdrop(ctx) {
        mmdrop(P, karg(&ctx, 0));
    }
}
