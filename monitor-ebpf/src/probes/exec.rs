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

use aya_ebpf::{helpers::bpf_probe_read_kernel_str_bytes, macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::{
    event::{EventId, Exec, ExecMmSwitch},
    probes::ProbeId,
};

use crate::{
    emit::{Seq, emit, hit},
    kernel,
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn tp_sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpSchedExec);
    let task: u64 = ctx.arg(0);
    let old_pid: u32 = ctx.arg(1);
    let bprm: u64 = ctx.arg(2);
    let mm = match kernel::task_mm(task) {
        Some(mm) if mm != 0 => mm,
        _ => kernel::bprm_mm(bprm).unwrap_or(0),
    };
    emit::<Exec>(ProbeId::TpSchedExec, EventId::Exec, mm, Seq::Track, |p| {
        p.old_pid = old_pid;
        kernel::bprm_filename(bprm, &mut p.filename).is_some() && mm != 0
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
    let mm = kernel::task_mm(task).unwrap_or(0);
    if mm == 0 {
        return 0;
    }
    emit::<ExecMmSwitch>(ProbeId::TpTaskRename, EventId::ExecMmSwitch, mm, Seq::Track, |p| {
        // SAFETY: the helper bounds the copy and validates the pointer.
        unsafe { bpf_probe_read_kernel_str_bytes(comm as *const u8, &mut p.new_comm) }.is_ok()
    });
    0
}
