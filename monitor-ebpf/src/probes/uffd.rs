//! userfaultfd, tracepoint rung: UFFDIO_COPY results and forks of tracked mms
//! (a new thread sharing the mm is not a fork of it and is not reported).
//!
//! ```text
//! fs/userfaultfd.c userfaultfd_ioctl(file, cmd = UFFDIO_COPY, arg)
//!   -> userfaultfd_copy(): if (atomic_read(&ctx->mmap_changing)) return -EAGAIN;
//!      -> mcopy_atomic / mfill_atomic_copy (checks mmap_changing again under the lock)
//! kernel/fork.c: dup_mmap -> dup_userfaultfd (raises parent ctx->mmap_changing) ...
//!   dup_userfaultfd_complete -> userfaultfd_event_wait_completion (waits for the
//!   monitor to read UFFD_EVENT_FORK, then lowers mmap_changing)
//!   ... trace_sched_process_fork(parent, child)   (after that handshake)
//!
//! syscalls/sys_enter_ioctl format: fd@16 cmd@24 arg@32 (8-byte slots)
//! syscalls/sys_exit_ioctl  format: ret@16
//! struct uffdio_copy { u64 dst; u64 src; u64 len; u64 mode; s64 copy; }
//! TP_PROTO(struct task_struct *parent, struct task_struct *child)  sched_process_fork
//! ```
//!
//! Every `-EAGAIN` comes from the `mmap_changing` checks, so counting them here
//! is exact (`kernel-notes.md` §4.4). The uffd's target mm is found through the
//! fd: `current->files` → `struct file` whose `f_op` is `userfaultfd_fops` →
//! `ctx->mm`.

use aya_ebpf::{
    helpers::bpf_probe_read_user,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use monitor_common::{
    UFFDIO_COPY,
    event::{EventId, Fork, Mrelease, UffdCopy},
    maps::bracket,
    probes::ProbeId,
};

use crate::{
    emit::{Seq, current_tid, emit, hit, task_scratch, task_scratch_existing},
    kernel,
};

const SYSCALL_ARG0: usize = 16;
const SYSCALL_ARG1: usize = 24;
const SYSCALL_ARG2: usize = 32;
const SYSCALL_RET: usize = 16;

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn tp_sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    hit(ProbeId::TpSysEnterIoctl);
    // SAFETY: offsets of the stable syscall tracepoint format (checked at load).
    let cmd = unsafe { ctx.read_at::<u64>(SYSCALL_ARG1) }.unwrap_or(0) as u32;
    if cmd != UFFDIO_COPY {
        return 0;
    }
    let fd = unsafe { ctx.read_at::<u64>(SYSCALL_ARG0) }.unwrap_or(u64::MAX);
    let arg = unsafe { ctx.read_at::<u64>(SYSCALL_ARG2) }.unwrap_or(0);
    if let Some(s) = task_scratch(current_tid()) {
        // SAFETY: valid map value pointer.
        unsafe {
            (*s).brackets |= bracket::UFFD_IOCTL;
            (*s).args[0] = fd;
            (*s).args[1] = arg;
        }
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ioctl")]
pub fn tp_sys_exit_ioctl(ctx: TracePointContext) -> u32 {
    hit(ProbeId::TpSysExitIoctl);
    let Some(s) = task_scratch_existing(current_tid()) else {
        return 0;
    };
    // SAFETY: valid map value pointer.
    let (fd, arg) = unsafe {
        if (*s).brackets & bracket::UFFD_IOCTL == 0 {
            return 0;
        }
        (*s).brackets &= !bracket::UFFD_IOCTL;
        ((*s).args[0], (*s).args[1])
    };
    let ret = unsafe { ctx.read_at::<i64>(SYSCALL_RET) }.unwrap_or(0);
    uffd_copy_result(ProbeId::TpSysExitIoctl, fd as u32, arg, ret);
    0
}

/// Emits an [`EventId::UffdCopy`] for the UFFDIO_COPY on `fd` that returned `ret`.
#[inline(always)]
pub fn uffd_copy_result(probe: ProbeId, fd: u32, arg: u64, ret: i64) {
    let ctx = kernel::task_file(kernel::current_task(), fd).and_then(kernel::file_uffd_ctx);
    let mm = ctx.and_then(kernel::uffd_ctx_mm).unwrap_or(0);
    let changing = ctx.and_then(kernel::uffd_ctx_mmap_changing);
    emit::<UffdCopy>(probe, EventId::UffdCopy, mm, Seq::Track, |p| {
        p.fd = fd as i32;
        p.mmap_changing = changing.unwrap_or(-1);
        // SAFETY: user pointers are validated by the helper.
        let dst = unsafe { bpf_probe_read_user(arg as *const u64) };
        let len = unsafe { bpf_probe_read_user((arg + 16) as *const u64) };
        let copied = unsafe { bpf_probe_read_user((arg + 32) as *const i64) };
        if let (Ok(dst), Ok(len)) = (dst, len) {
            p.dst = dst;
            p.len = len;
        }
        // The ioctl returns 0 on success and reports the bytes in
        // `uffdio_copy.copy`; errors are the ioctl's return value (the copy
        // field is not written by the early -EAGAIN check before 6.12).
        p.ret = match (ret, copied) {
            (0, Ok(c)) => c,
            _ => ret,
        };
        mm != 0 && changing.is_some()
    });
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn tp_sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpSchedFork);
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let mm = kernel::task_mm(parent).unwrap_or(0);
    let child_mm = kernel::task_mm(child).unwrap_or(0);
    if child_mm == mm {
        // A new thread (CLONE_VM) shares the mm: not a fork of it.
        return 0;
    }
    emit::<Fork>(ProbeId::TpSchedFork, EventId::Fork, mm, Seq::IfTracked, |p| {
        p.child_mm = child_mm;
        match (kernel::task_pid(child), kernel::task_tgid(child)) {
            (Some(pid), Some(tgid)) => {
                p.child_pid = pid;
                p.child_tgid = tgid;
                true
            }
            _ => false,
        }
    });
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_mrelease")]
pub fn tp_sys_enter_process_mrelease(ctx: TracePointContext) -> u32 {
    hit(ProbeId::TpSysEnterMrelease);
    // SAFETY: offsets of the stable syscall tracepoint format.
    let pidfd = unsafe { ctx.read_at::<u64>(SYSCALL_ARG0) }.unwrap_or(0);
    let flags = unsafe { ctx.read_at::<u64>(SYSCALL_ARG1) }.unwrap_or(0);
    emit::<Mrelease>(ProbeId::TpSysEnterMrelease, EventId::MreleaseEnter, 0, Seq::None, |p| {
        p.pidfd = pidfd as i32;
        p.flags = flags as u32;
        true
    });
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_process_mrelease")]
pub fn tp_sys_exit_process_mrelease(ctx: TracePointContext) -> u32 {
    hit(ProbeId::TpSysExitMrelease);
    // SAFETY: offset of the stable syscall tracepoint format.
    let ret = unsafe { ctx.read_at::<i64>(SYSCALL_RET) }.unwrap_or(0);
    emit::<Mrelease>(ProbeId::TpSysExitMrelease, EventId::MreleaseExit, 0, Seq::None, |p| {
        p.ret = ret;
        true
    });
    0
}
