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

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::{
    event::{EventId, MarkVictim, Reap, reap_source},
    probes::ProbeId,
};

use crate::{
    emit::{Seq, emit, hit},
    kernel,
    maps::VICTIMS,
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
    let mm = kernel::task_oom_mm(task).unwrap_or(0);
    let pid = kernel::task_pid(task);
    if let Some(pid) = pid
        && mm != 0
    {
        let _ = VICTIMS.insert(pid, mm, 0);
    }
    emit::<MarkVictim>(probe, EventId::MarkVictim, mm, Seq::Track, |p| {
        p.uid = uid;
        let mut ok = mm != 0;
        match (pid, kernel::task_tgid(task), kernel::task_comm(task)) {
            (Some(pid), Some(tgid), Some(comm)) => {
                p.victim_pid = pid;
                p.victim_tgid = tgid;
                p.victim_comm = comm;
            }
            _ => ok = false,
        }
        match kernel::mm_flags(mm) {
            Some(f) => p.mm_flags = f,
            None => ok = false,
        }
        ok
    });
}

#[inline(always)]
fn reaping(probe: ProbeId, id: EventId, pid: u32) {
    // SAFETY: plain value lookup.
    let mm = unsafe { VICTIMS.get(pid) }.copied().unwrap_or(0);
    emit::<Reap>(probe, id, mm, Seq::Track, |p| {
        p.victim_pid = pid;
        p.source = reap_source::TRACEPOINT;
        p.ret = -1;
        match kernel::mm_flags(mm) {
            Some(f) => {
                p.mm_flags = f;
                true
            }
            None => false,
        }
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
