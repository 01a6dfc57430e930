//! Exec, tracepoint rung: the window in which exec moves its temporary stack.
//!
//! ```text
//! fs/exec.c (6.x):
//!   begin_new_exec(bprm): exec_mmap(bprm->mm)   (task switches to the new mm)
//!       bprm->mm = NULL; ... __set_task_comm(me, kbasename(bprm->filename), true)
//!                                               -> trace_task_rename(tsk, buf)
//!   load_elf_binary -> setup_arg_pages -> shift_arg_pages / relocate_vma_down
//!   exec_binprm -> trace_sched_process_exec(current, old_pid, bprm)
//!
//! TP_PROTO(struct task_struct *task, const char *comm)                 task_rename
//! TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
//!                                                                      sched_process_exec
//! ```
//!
//! Without function hooks the stack move lies inside [task_rename, exec] of the
//! exec'ing task on its new mm (`kernel-notes.md` §2.3). `bprm->mm` is already
//! NULL at `sched_process_exec`, so the mm is read from the task.
//!
//! Function rung (the window itself, under `mmap_write_lock`):
//!
//! ```text
//! static int shift_arg_pages(struct vm_area_struct *vma, unsigned long shift)   (≤ 6.11, fs/exec.c)
//! int relocate_vma_down(struct vm_area_struct *vma, unsigned long shift)        (6.12+, mm/mmap.c)
//!   expand the VMA down, move_page_tables() WITHOUT the rmap locks, shrink it;
//!   the VMA keeps VM_STACK_INCOMPLETE_SETUP until setup_arg_pages clears it.
//! ```
//!
//! While a stack moves, its mm is in `STACK_MOVES` so the migration hooks can
//! report what touches it.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_str_bytes,
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use monitor_common::{
    event::{EventId, Exec, ExecMmSwitch, StackMove},
    maps::slot,
    probes::ProbeId,
};

use crate::{
    emit::{Seq, emit, hit, now},
    kernel,
    maps::STACK_MOVES,
    stash,
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn tp_sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpSchedExec);
    let task: u64 = ctx.arg(0);
    let old_pid: u32 = ctx.arg(1);
    let bprm: u64 = ctx.arg(2);
    let mm = match kernel::task_mm(task) {
        0 => kernel::bprm_mm(bprm),
        mm => mm,
    };
    emit::<Exec>(ProbeId::TpSchedExec, EventId::Exec, mm, Seq::Track, |p| {
        p.old_pid = old_pid;
        kernel::bprm_filename(bprm, &mut p.filename) && mm != 0
    });
    0
}

#[btf_tracepoint(function = "task_rename")]
pub fn tp_task_rename(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpTaskRename);
    let task: u64 = ctx.arg(0);
    let comm: u64 = ctx.arg(1);
    if task != kernel::current_task() {
        // Renames of other tasks (writes to /proc/PID/comm) are not exec.
        return 0;
    }
    let mm = kernel::task_mm(task);
    if mm == 0 {
        return 0;
    }
    emit::<ExecMmSwitch>(ProbeId::TpTaskRename, EventId::ExecMmSwitch, mm, Seq::Track, |p| {
        // SAFETY: the helper bounds the copy and validates the pointer.
        unsafe { bpf_probe_read_kernel_str_bytes(comm as *const u8, &mut p.new_comm) }.is_ok()
    });
    0
}

// shift_arg_pages / relocate_vma_down -------------------------------------------

#[inline(always)]
fn stack_move(probe: ProbeId, id: EventId, vma: u64, shift: u64, ret: i64) -> u64 {
    let mm = kernel::vma_mm(vma);
    emit::<StackMove>(probe, id, mm, Seq::Track, |p| {
        p.shift = shift;
        p.ret = ret;
        p.vm_start = kernel::vma_start(vma);
        p.vm_end = kernel::vma_end(vma);
        p.vm_flags = kernel::vma_flags(vma);
        mm != 0 && p.vm_end != 0
    });
    mm
}

#[inline(always)]
fn stack_move_start(probe: ProbeId, vma: u64, shift: u64) {
    let mm = stack_move(probe, EventId::StackMoveStart, vma, shift, 0);
    if mm != 0 {
        let _ = STACK_MOVES.insert(mm, now(), 0);
    }
}

#[inline(always)]
fn stack_move_end(probe: ProbeId, vma: u64, shift: u64, ret: i64) {
    let mm = stack_move(probe, EventId::StackMoveEnd, vma, shift, ret);
    if mm != 0 {
        let _ = STACK_MOVES.remove(mm);
    }
}

#[fentry]
pub fn fentry_stack_move(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryStackMove);
    stack_move_start(ProbeId::FentryStackMove, ctx.arg(0), ctx.arg(1));
    0
}

#[fexit]
pub fn fexit_stack_move(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitStackMove);
    let ret: u64 = ctx.arg(2);
    stack_move_end(ProbeId::FexitStackMove, ctx.arg(0), ctx.arg(1), i64::from(ret as i32));
    0
}

#[kprobe]
pub fn kprobe_stack_move(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeStackMove);
    let (vma, shift) = (ctx.arg::<u64>(0).unwrap_or(0), ctx.arg::<u64>(1).unwrap_or(0));
    stash::put(slot::STACK_MOVE, [vma, shift, 0, 0]);
    stack_move_start(ProbeId::KprobeStackMove, vma, shift);
    0
}

#[kretprobe]
pub fn kretprobe_stack_move(ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeStackMove);
    let a = stash::take(slot::STACK_MOVE);
    if a.found {
        let ret: u64 = ctx.ret();
        stack_move_end(ProbeId::KretprobeStackMove, a.args[0], a.args[1], i64::from(ret as i32));
    }
    0
}
