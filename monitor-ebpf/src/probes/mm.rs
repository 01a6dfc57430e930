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

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use monitor_common::{
    event::{EventId, MmState, VmaRange},
    maps::{slot, state},
    probes::ProbeId,
};

use crate::{
    emit::{Seq, emit, hit, is_tracked},
    kernel,
    stash::{self, inflight},
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

#[btf_tracepoint(function = "exit_mmap")]
pub fn tp_exit_mmap(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpExitMmap);
    let mm: u64 = ctx.arg(0);
    mm_state(ProbeId::TpExitMmap, EventId::ExitMmapEnd, mm, exit_end_policy());
    0
}

// exit_mmap -----------------------------------------------------------------

#[inline(always)]
fn exit_entry(probe: ProbeId, mm: u64) {
    if !is_tracked(mm) {
        return;
    }
    if stash::put(slot::EXIT_MMAP, [mm, 0, 0, 0]) {
        stash::enter(inflight::EXITS);
    }
    mm_state(probe, EventId::ExitMmapStart, mm, Seq::IfTracked);
}

/// `mm` is 0 when the return program has no arguments (kretprobe).
#[inline(always)]
fn exit_return(probe: ProbeId, mm: u64) {
    if !stash::any(inflight::EXITS) {
        return;
    }
    let saved = stash::take(slot::EXIT_MMAP);
    if !saved.found {
        return;
    }
    stash::leave(inflight::EXITS);
    let mm = if mm != 0 { mm } else { saved.args[0] };
    mm_state(probe, EventId::ExitMmapEnd, mm, exit_end_policy());
}

#[fentry]
pub fn fentry_exit_mmap(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryExitMmap);
    exit_entry(ProbeId::FentryExitMmap, ctx.arg(0));
    0
}

#[fexit]
pub fn fexit_exit_mmap(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitExitMmap);
    exit_return(ProbeId::FexitExitMmap, ctx.arg(0));
    0
}

#[kprobe]
pub fn kprobe_exit_mmap(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeExitMmap);
    exit_entry(ProbeId::KprobeExitMmap, ctx.arg::<u64>(0).unwrap_or(0));
    0
}

#[kretprobe]
pub fn kretprobe_exit_mmap(_ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeExitMmap);
    exit_return(ProbeId::KretprobeExitMmap, 0);
    0
}

// unmap_vmas inside exit_mmap -------------------------------------------------

/// `tlb` is 0 when the return program has no arguments (kretprobe).
#[inline(always)]
fn unmap_vmas(probe: ProbeId, id: EventId, tlb: u64) {
    if !stash::any(inflight::EXITS) {
        return;
    }
    let saved = stash::get(slot::EXIT_MMAP);
    if !saved.found {
        return;
    }
    let mm = saved.args[0];
    if tlb != 0 && kernel::tlb_mm(tlb) != mm {
        return;
    }
    emit::<VmaRange>(probe, id, mm, Seq::IfTracked, |_| true);
}

#[fentry]
pub fn fentry_unmap_vmas(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryUnmapVmas);
    unmap_vmas(ProbeId::FentryUnmapVmas, EventId::UnmapVmasStart, ctx.arg(0));
    0
}

#[fexit]
pub fn fexit_unmap_vmas(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitUnmapVmas);
    unmap_vmas(ProbeId::FexitUnmapVmas, EventId::UnmapVmasEnd, ctx.arg(0));
    0
}

#[kprobe]
pub fn kprobe_unmap_vmas(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeUnmapVmas);
    unmap_vmas(ProbeId::KprobeUnmapVmas, EventId::UnmapVmasStart, ctx.arg::<u64>(0).unwrap_or(0));
    0
}

#[kretprobe]
pub fn kretprobe_unmap_vmas(_ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeUnmapVmas);
    unmap_vmas(ProbeId::KretprobeUnmapVmas, EventId::UnmapVmasEnd, 0);
    0
}

// __mmdrop --------------------------------------------------------------------

#[fentry]
pub fn fentry_mmdrop(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryMmdrop);
    mm_state(ProbeId::FentryMmdrop, EventId::MmDrop, ctx.arg(0), Seq::EndIfTracked);
    0
}

#[kprobe]
pub fn kprobe_mmdrop(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeMmdrop);
    mm_state(ProbeId::KprobeMmdrop, EventId::MmDrop, ctx.arg::<u64>(0).unwrap_or(0), Seq::EndIfTracked);
    0
}
