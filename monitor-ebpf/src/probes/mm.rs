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
//! `exit_mmap`. `unmap_vmas` is reported only inside `exit_mmap` of a tracked
//! mm, checked first with one array lookup of the in-flight count.

use monitor_common::{
    catalogue::{EventId, HookId, MmState, ProbeId, VmaRange},
    maps::state,
};

use crate::{
    emit::{Seq, emit, is_tracked},
    kernel,
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
// as inside `exit_mmap` for `unmap_vmas` (and counts it in `EXITS`).

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
    if !is_tracked(mm) {
        return;
    }
    if stash::put(&ExitArgs { mm }) {
        stash::enter(state::EXITS);
    }
    mm_state(probe, EventId::ExitMmapStart, mm, Seq::IfTracked);
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
    mm_state(probe, EventId::ExitMmapEnd, mm, exit_end_policy());
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
        mm_state(P, EventId::MmDrop, ctx.arg(0), Seq::EndIfTracked);
    }
    kprobe kprobe_mmdrop(ctx) {
        mm_state(P, EventId::MmDrop, karg(&ctx, 0), Seq::EndIfTracked);
    }
}
