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

use monitor_common::{
    catalogue::{EventId, MarkVictim, ProbeId, Reap, VmaRange},
    event::reap_source,
    maps::state,
};

use crate::{
    emit::{Seq, emit, is_tracked},
    kernel,
    maps::{BPF_ANY, VICTIMS},
    stamp::{function, karg, programs},
    stash::{self, Saved},
};

programs! {
    tp_btf tp_mark_victim(ctx) {
        let task: u64 = ctx.arg(0);
        let uid: u32 = ctx.arg(1);
        mark_victim(P, task, uid);
    }
    tp_btf tp_start_task_reaping(ctx) {
        reaping(P, EventId::ReapStart, ctx.arg(0));
    }
    tp_btf tp_finish_task_reaping(ctx) {
        reaping(P, EventId::ReapEnd, ctx.arg(0));
    }
    tp_btf tp_skip_task_reaping(ctx) {
        reaping(P, EventId::ReapSkip, ctx.arg(0));
    }
}

/// Shared by the tracepoint and the `mark_oom_victim` function hooks.
#[inline(always)]
pub fn mark_victim(probe: ProbeId, task: u64, uid: u32) {
    stash::open_fault_gate();
    let mm = kernel::task_oom_mm(task);
    let pid = kernel::task_pid(task);
    if pid != 0 && mm != 0 {
        let _ = VICTIMS.insert(pid, mm, BPF_ANY);
    }
    emit::<MarkVictim>(probe, EventId::MarkVictim, mm, Seq::Track, |p| {
        p.uid = uid;
        p.victim_pid = pid;
        p.victim_tgid = kernel::task_tgid(task);
        p.victim_comm = kernel::task_comm(task);
        p.mm_flags = kernel::mm_flags(mm);
        p.victim_cgroup_id = kernel::task_cgroup_id(task);
        p.victim_memcg_id = kernel::task_memcg_id(task);
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
    if id == EventId::ReapStart {
        super::mm::replay_exit(mm);
    }
    let flags = kernel::mm_flags(mm);
    emit::<Reap>(probe, id, mm, reap_policy(mm, flags), |p| {
        p.victim_pid = pid;
        p.source = reap_source::TRACEPOINT;
        p.ret = -1;
        p.mm_flags = flags;
        flags != 0
    });
}

// __oom_reap_task_mm ---------------------------------------------------------
// On both rungs the entry keeps the mm in the hook's slot: it marks the thread
// as inside the reap for `unmap_page_range` (and counts it in `REAPS`).

/// `bool __oom_reap_task_mm(struct mm_struct *mm)`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ReapArgs {
    mm: u64,
}

// SAFETY: one u64.
unsafe impl Saved for ReapArgs {
    const HOOK: monitor_common::catalogue::HookId = monitor_common::catalogue::HookId::OomReap;
}

#[inline(always)]
fn reap_entry(probe: ProbeId, mm: u64) {
    stash::open_fault_gate();
    if stash::put(&ReapArgs { mm }) {
        stash::enter(state::REAPS);
    }
    super::mm::replay_exit(mm);
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
    let saved = if stash::any(state::REAPS) {
        stash::take::<ReapArgs>()
    } else {
        stash::Stashed {
            found: false,
            args: ReapArgs { mm: 0 },
        }
    };
    if saved.found {
        stash::leave(state::REAPS);
    }
    let mm = if mm != 0 { mm } else { saved.args.mm };
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

programs! {
    fentry fentry_oom_reap(ctx) {
        reap_entry(P, ctx.arg(0));
    }
    fexit fexit_oom_reap(ctx) {
        reap_exit(P, ctx.arg(0), ctx.arg(1));
    }
    kprobe kprobe_oom_reap(ctx) {
        reap_entry(P, karg(&ctx, 0));
    }
    kretprobe kretprobe_oom_reap(ctx) {
        reap_exit(P, 0, ctx.ret::<u64>());
    }
}

// unmap_page_range, inside a reap --------------------------------------------

/// The mm being reaped if the current thread is inside `__oom_reap_task_mm`
/// (0 otherwise).
#[inline(always)]
fn reaping_mm() -> u64 {
    if !stash::any(state::REAPS) {
        return 0;
    }
    stash::get::<ReapArgs>().args.mm
}

/// Reports the zap if the thread is reaping; whether it did.
#[inline(always)]
fn reaper_unmap(probe: ProbeId, id: EventId, a: &UnmapArgs) -> bool {
    let mm = reaping_mm();
    if mm == 0 {
        return false;
    }
    let vma = a.vma;
    emit::<VmaRange>(probe, id, mm, Seq::Track, |p| {
        // The zapped range starts at `addr`; the reaper zaps whole VMAs.
        p.address = a.addr;
        p.vm_start = kernel::vma_start(vma);
        p.vm_end = kernel::vma_end(vma);
        p.vm_flags = kernel::vma_flags(vma);
        p.vm_end != 0
    });
    true
}

#[inline(always)]
fn unmap_start(probe: ProbeId, a: &mut UnmapArgs) -> bool {
    reaper_unmap(probe, EventId::ReaperUnmapStart, a)
}

#[inline(always)]
fn unmap_end(probe: ProbeId, a: &UnmapArgs, _ret: u64) {
    reaper_unmap(probe, EventId::ReaperUnmapEnd, a);
}

function! {
    /// `void unmap_page_range(struct mmu_gather *tlb, struct vm_area_struct *vma,
    /// unsigned long addr, unsigned long end, struct zap_details *details)`
    UnmapPageRange: UnmapArgs { vma: 1, addr: 2 };
    entry: fentry fentry_unmap_page_range, kprobe kprobe_unmap_page_range => unmap_start;
    exit when { stash::any(state::REAPS) }: fexit fexit_unmap_page_range,
        kretprobe kretprobe_unmap_page_range => unmap_end;
}

// mark_oom_victim (kernels whose tracepoint lacks the task) -------------------

/// `uid` is not known on this rung.
const UID_UNKNOWN: u32 = u32::MAX;

#[inline(always)]
fn keep_victim(_probe: ProbeId, _a: &mut VictimArgs) -> bool {
    true
}

/// `signal->oom_mm` is set inside the function: read it on return.
#[inline(always)]
fn victim_marked(probe: ProbeId, a: &VictimArgs, _ret: u64) {
    mark_victim(probe, a.task, UID_UNKNOWN);
}

function! {
    /// `static void mark_oom_victim(struct task_struct *tsk)`
    MarkVictim: VictimArgs { task: 0 };
    entry: kprobe kprobe_mark_oom_victim => keep_victim;
    exit: fexit fexit_mark_oom_victim, kretprobe kretprobe_mark_oom_victim => victim_marked;
}
