//! OOM killer and reaper, tracepoint rung.
//!
//! ```text
//! mm/oom_kill.c (6.x):
//!   __oom_kill_process() -> mark_oom_victim(victim)
//!       tsk->signal->oom_mm = mm; ... trace_mark_victim(tsk, cred->uid.val)
//!   queue_oom_reaper() -> (2 s timer) wake_oom_reaper() -> oom_reaper kthread
//!   oom_reap_task_mm(): mmap_read_trylock(mm) [fail: trace_skip_task_reaping(pid)]
//!       MMF_OOM_SKIP set? -> trace_skip_task_reaping(pid)
//!       trace_start_task_reaping(tsk->pid); __oom_reap_task_mm(mm);
//!       trace_finish_task_reaping(tsk->pid)
//!
//! include/trace/events/oom.h:
//!   TP_PROTO(struct task_struct *task, uid_t uid)   mark_victim   (6.x; 5.x: int pid)
//!   TP_PROTO(int pid)   start_task_reaping / finish_task_reaping / skip_task_reaping
//! ```
//!
//! The reaping tracepoints only carry the victim's pid; `mark_victim` records
//! pid → `signal->oom_mm` in `VICTIMS` so they can be attributed to the mm.
//!
//! Function rung:
//!
//! ```text
//! bool __oom_reap_task_mm(struct mm_struct *mm)        (oom_reaper kthread, and
//!     set_bit(MMF_UNSTABLE); for each anon/private VMA:  process_mrelease(2) in
//!       unmap_page_range(&tlb, vma, start, end, NULL)    the caller's context;
//!                                                        on 4.17–5.19 also from
//!                                                        exit_mmap of a victim)
//! void unmap_page_range(struct mmu_gather *tlb, struct vm_area_struct *vma,
//!                       unsigned long addr, unsigned long end, struct zap_details *)
//! static void mark_oom_victim(struct task_struct *tsk)  (5.x: its tracepoint has only a pid)
//! ```
//!
//! `unmap_page_range` is hot (every munmap and exit): it is only reported
//! while the current thread is inside `__oom_reap_task_mm`, checked first with
//! one array lookup of the in-flight reap count.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use monitor_common::{
    event::{EventId, MarkVictim, Reap, VmaRange, reap_source},
    maps::slot,
    probes::ProbeId,
};

use crate::{
    emit::{Seq, emit, hit, is_tracked},
    kernel,
    maps::VICTIMS,
    stash::{self, inflight},
};

#[btf_tracepoint(function = "mark_victim")]
pub fn tp_mark_victim(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpMarkVictim);
    let task: u64 = ctx.arg(0);
    let uid: u32 = ctx.arg(1);
    mark_victim(ProbeId::TpMarkVictim, task, uid);
    0
}

/// Shared by the tracepoint and the `mark_oom_victim` function hooks.
#[inline(always)]
pub fn mark_victim(probe: ProbeId, task: u64, uid: u32) {
    stash::open_fault_gate();
    let mm = kernel::task_oom_mm(task);
    let pid = kernel::task_pid(task);
    if pid != 0 && mm != 0 {
        let _ = VICTIMS.insert(pid, mm, 0);
    }
    emit::<MarkVictim>(probe, EventId::MarkVictim, mm, Seq::Track, |p| {
        p.uid = uid;
        p.victim_pid = pid;
        p.victim_tgid = kernel::task_tgid(task);
        p.victim_comm = kernel::task_comm(task);
        p.mm_flags = kernel::mm_flags(mm);
        mm != 0 && pid != 0 && p.mm_flags != 0
    });
}

/// The sequencing policy for a reap event on `mm`: an mm whose generation
/// already ended (`exit_mmap` set `MMF_OOM_SKIP` and dropped it) is reported
/// without a sequence number rather than starting a new generation that
/// nothing would ever end.
#[inline(always)]
fn reap_policy(mm: u64, flags: u64) -> Seq {
    if flags & (1 << monitor_common::mmf::MMF_OOM_SKIP) != 0 && !is_tracked(mm) {
        Seq::None
    } else {
        Seq::Track
    }
}

#[inline(always)]
fn reaping(probe: ProbeId, id: EventId, pid: u32) {
    if id == EventId::ReapStart {
        stash::open_fault_gate();
    }
    // SAFETY: plain value lookup; the reference is a niche-optimised Option.
    let mm = match unsafe { VICTIMS.get(pid) } {
        Some(v) => *v,
        None => 0,
    };
    let flags = kernel::mm_flags(mm);
    emit::<Reap>(probe, id, mm, reap_policy(mm, flags), |p| {
        p.victim_pid = pid;
        p.source = reap_source::TRACEPOINT;
        p.ret = -1;
        p.mm_flags = flags;
        flags != 0
    });
}

#[btf_tracepoint(function = "start_task_reaping")]
pub fn tp_start_task_reaping(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpStartReaping);
    let pid: u32 = ctx.arg(0);
    reaping(ProbeId::TpStartReaping, EventId::ReapStart, pid);
    0
}

#[btf_tracepoint(function = "finish_task_reaping")]
pub fn tp_finish_task_reaping(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpFinishReaping);
    let pid: u32 = ctx.arg(0);
    reaping(ProbeId::TpFinishReaping, EventId::ReapEnd, pid);
    0
}

#[btf_tracepoint(function = "skip_task_reaping")]
pub fn tp_skip_task_reaping(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpSkipReaping);
    let pid: u32 = ctx.arg(0);
    reaping(ProbeId::TpSkipReaping, EventId::ReapSkip, pid);
    0
}

// __oom_reap_task_mm ---------------------------------------------------------

#[inline(always)]
fn reap_entry(probe: ProbeId, mm: u64) {
    stash::open_fault_gate();
    if stash::put(slot::OOM_REAP, [mm, 0, 0, 0]) {
        stash::enter(inflight::REAPS);
    }
    let flags = kernel::mm_flags(mm);
    emit::<Reap>(probe, EventId::ReapStart, mm, reap_policy(mm, flags), |p| {
        p.source = reap_source::FUNCTION;
        p.ret = -1;
        p.mm_flags = flags;
        flags != 0
    });
}

/// `mm` is 0 when the return program has no arguments (kretprobe).
#[inline(always)]
fn reap_exit(probe: ProbeId, mm: u64, ret: u64) {
    let saved = if stash::any(inflight::REAPS) {
        stash::take(slot::OOM_REAP)
    } else {
        stash::Stashed {
            found: false,
            args: [0; 4],
        }
    };
    if saved.found {
        stash::leave(inflight::REAPS);
    }
    let mm = if mm != 0 { mm } else { saved.args[0] };
    if mm == 0 {
        return;
    }
    let flags = kernel::mm_flags(mm);
    emit::<Reap>(probe, EventId::ReapEnd, mm, reap_policy(mm, flags), |p| {
        p.source = reap_source::FUNCTION;
        // `bool` in %al / the low byte of the saved return value.
        p.ret = i32::from(ret as u8 != 0);
        p.mm_flags = flags;
        flags != 0
    });
}

#[fentry]
pub fn fentry_oom_reap(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryOomReap);
    reap_entry(ProbeId::FentryOomReap, ctx.arg(0));
    0
}

#[fexit]
pub fn fexit_oom_reap(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitOomReap);
    reap_exit(ProbeId::FexitOomReap, ctx.arg(0), ctx.arg(1));
    0
}

#[kprobe]
pub fn kprobe_oom_reap(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeOomReap);
    reap_entry(ProbeId::KprobeOomReap, ctx.arg::<u64>(0).unwrap_or(0));
    0
}

#[kretprobe]
pub fn kretprobe_oom_reap(ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeOomReap);
    reap_exit(ProbeId::KretprobeOomReap, 0, ctx.ret::<u64>());
    0
}

// unmap_page_range, inside a reap --------------------------------------------

/// The mm being reaped if the current thread is inside `__oom_reap_task_mm`
/// (0 otherwise).
#[inline(always)]
fn reaping_mm() -> u64 {
    if !stash::any(inflight::REAPS) {
        return 0;
    }
    stash::get(slot::OOM_REAP).args[0]
}

#[inline(always)]
fn reaper_unmap(probe: ProbeId, id: EventId, vma: u64, addr: u64) -> bool {
    let mm = reaping_mm();
    if mm == 0 {
        return false;
    }
    emit::<VmaRange>(probe, id, mm, Seq::Track, |p| {
        // The zapped range starts at `addr`; the reaper zaps whole VMAs.
        p.address = addr;
        p.vm_start = kernel::vma_start(vma);
        p.vm_end = kernel::vma_end(vma);
        p.vm_flags = kernel::vma_flags(vma);
        p.vm_end != 0
    });
    true
}

#[fentry]
pub fn fentry_unmap_page_range(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryUnmapPageRange);
    reaper_unmap(
        ProbeId::FentryUnmapPageRange,
        EventId::ReaperUnmapStart,
        ctx.arg(1),
        ctx.arg(2),
    );
    0
}

#[fexit]
pub fn fexit_unmap_page_range(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitUnmapPageRange);
    reaper_unmap(
        ProbeId::FexitUnmapPageRange,
        EventId::ReaperUnmapEnd,
        ctx.arg(1),
        ctx.arg(2),
    );
    0
}

#[kprobe]
pub fn kprobe_unmap_page_range(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeUnmapPageRange);
    let (vma, addr) = (ctx.arg::<u64>(1).unwrap_or(0), ctx.arg::<u64>(2).unwrap_or(0));
    if reaper_unmap(ProbeId::KprobeUnmapPageRange, EventId::ReaperUnmapStart, vma, addr) {
        stash::put(slot::UNMAP_PAGE_RANGE, [vma, addr, 0, 0]);
    }
    0
}

#[kretprobe]
pub fn kretprobe_unmap_page_range(_ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeUnmapPageRange);
    if !stash::any(inflight::REAPS) {
        return 0;
    }
    let a = stash::take(slot::UNMAP_PAGE_RANGE);
    if a.found {
        reaper_unmap(ProbeId::KretprobeUnmapPageRange, EventId::ReaperUnmapEnd, a.args[0], a.args[1]);
    }
    0
}

// mark_oom_victim (kernels whose tracepoint lacks the task) -------------------

/// `uid` is not known on this rung.
const UID_UNKNOWN: u32 = u32::MAX;

#[fexit]
pub fn fexit_mark_oom_victim(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitMarkOomVictim);
    mark_victim(ProbeId::FexitMarkOomVictim, ctx.arg(0), UID_UNKNOWN);
    0
}

#[kprobe]
pub fn kprobe_mark_oom_victim(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeMarkOomVictim);
    stash::put(slot::MARK_VICTIM, [ctx.arg::<u64>(0).unwrap_or(0), 0, 0, 0]);
    0
}

#[kretprobe]
pub fn kretprobe_mark_oom_victim(_ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeMarkOomVictim);
    // `signal->oom_mm` is set inside the function: read it on return.
    let a = stash::take(slot::MARK_VICTIM);
    if a.found {
        mark_victim(ProbeId::KretprobeMarkOomVictim, a.args[0], UID_UNKNOWN);
    }
    0
}
