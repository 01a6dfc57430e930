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
//! fd: `current->files` → the `struct file` whose `f_op->unlocked_ioctl` is
//! `userfaultfd_ioctl` → `ctx->mm`.
//!
//! Function rung:
//!
//! ```text
//! static long userfaultfd_ioctl(struct file *file, unsigned cmd, unsigned long arg)
//! ssize_t mcopy_atomic(struct mm_struct *dst_mm, dst, src, len,
//!                      atomic_t|bool *mmap_changing, __u64 mode)          (≤ 6.3)
//! ssize_t mfill_atomic_copy(struct mm_struct *dst_mm, …, atomic_t *, flags) (6.4–6.8)
//! ssize_t mfill_atomic_copy(struct userfaultfd_ctx *ctx, dst, src, len, flags) (6.9+)
//! int dup_userfaultfd(struct vm_area_struct *vma, struct list_head *fcs)
//!     first call per parent ctx: atomic_inc(&octx->mmap_changing)   (window opens)
//! void mremap_userfaultfd_prep(vma, struct vm_userfaultfd_ctx *vm_ctx)   (EVENT_REMAP)
//! int userfaultfd_unmap_prep(mm|vma, start, end, struct list_head *unmaps) (EVENT_UNMAP)
//! bool userfaultfd_remove(vma, start, end)           (EVENT_REMOVE: raises, then waits)
//! static void userfaultfd_event_wait_completion(ctx, ewq)
//!     the monitor read the event; atomic_dec(&ctx->mmap_changing)   (window closes)
//! ```
//!
//! The hot ones (`dup_userfaultfd` per VMA per fork, `userfaultfd_unmap_prep`
//! per munmap) return after one pointer read when no userfaultfd is involved.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext,
        TracePointContext,
    },
};
use monitor_common::{
    UFFDIO_COPY,
    event::{EventId, Fork, Mrelease, UffdChange, UffdCopy, uffd_event},
    maps::{bracket, slot},
    probes::ProbeId,
};

use crate::{
    emit::{Seq, current_tid, emit, hit, task_scratch, task_scratch_existing},
    kernel, stash,
};

/// `UFFD_FEATURE_EVENT_REMOVE`.
const FEATURE_EVENT_REMOVE: u32 = 1 << 3;

const SYSCALL_ARG0: u64 = 16;
const SYSCALL_ARG1: u64 = 24;
const SYSCALL_ARG2: u64 = 32;
const SYSCALL_RET: u64 = 16;

/// An 8-byte field of a classic syscall tracepoint record (stable format:
/// `__syscall_nr` at 8, then 8-byte argument slots from 16; `ret` at 16);
/// 0 if unreadable.
#[inline(always)]
fn field(ctx: &TracePointContext, offset: u64) -> u64 {
    use aya_ebpf::EbpfContext as _;
    kernel::probe_kernel::<u64>(ctx.as_ptr() as u64 + offset).0
}

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn tp_sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    hit(ProbeId::TpSysEnterIoctl);
    if field(&ctx, SYSCALL_ARG1) as u32 != UFFDIO_COPY {
        return 0;
    }
    let fd = field(&ctx, SYSCALL_ARG0);
    let arg = field(&ctx, SYSCALL_ARG2);
    // `mmap_changing` at entry: the early check reads it right after this,
    // and by the syscall's exit the uffd monitor may already have lowered it.
    let uctx = kernel::file_uffd_ctx(kernel::task_file(kernel::current_task(), fd as u32));
    let changing = kernel::uffd_ctx_mmap_changing(uctx);
    let s = task_scratch(current_tid());
    if !s.is_null() {
        // SAFETY: valid map value pointer.
        unsafe {
            (*s).brackets |= bracket::UFFD_IOCTL;
            (*s).args[0] = fd;
            (*s).args[1] = arg;
            (*s).args[2] = changing as u32 as u64;
            // The ioctl holds the file: the context found here is the one
            // the exit reports on, without walking the fd table again.
            (*s).args[3] = uctx;
        }
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ioctl")]
pub fn tp_sys_exit_ioctl(ctx: TracePointContext) -> u32 {
    hit(ProbeId::TpSysExitIoctl);
    let s = task_scratch_existing(current_tid());
    if s.is_null() {
        return 0;
    }
    // SAFETY: valid map value pointer.
    let (fd, arg, at_entry, uctx) = unsafe {
        if (*s).brackets & bracket::UFFD_IOCTL == 0 {
            return 0;
        }
        (*s).brackets &= !bracket::UFFD_IOCTL;
        ((*s).args[0], (*s).args[1], (*s).args[2] as u32 as i32, (*s).args[3])
    };
    let ret = field(&ctx, SYSCALL_RET) as i64;
    copy_result(ProbeId::TpSysExitIoctl, uctx, fd as i32, arg, ret, at_entry);
    0
}

/// Emits an [`EventId::UffdCopy`] for a UFFDIO_COPY on `uctx` (0 if unknown).
/// `at_entry` is `mmap_changing` read when the ioctl began (-1 if not read);
/// the record carries the larger of it and the value now.
#[inline(always)]
fn copy_result(probe: ProbeId, uctx: u64, fd: i32, arg: u64, ret: i64, at_entry: i32) {
    let mm = kernel::uffd_ctx_mm(uctx);
    let now = kernel::uffd_ctx_mmap_changing(uctx);
    let changing = if at_entry > now { at_entry } else { now };
    emit::<UffdCopy>(probe, EventId::UffdCopy, mm, Seq::Track, |p| {
        p.fd = fd;
        p.mmap_changing = changing;
        // struct uffdio_copy { u64 dst; u64 src; u64 len; u64 mode; s64 copy; } (uapi).
        p.dst = kernel::probe_user::<u64>(arg).0;
        p.len = kernel::probe_user::<u64>(arg + 16).0;
        // The ioctl returns 0 on success and reports the bytes in
        // `uffdio_copy.copy`; errors are the ioctl's return value (the copy
        // field is not written by the early -EAGAIN check before 6.12).
        let (copied, ok) = kernel::probe_user::<i64>(arg + 32);
        p.ret = if ret == 0 && ok { copied } else { ret };
        mm != 0 && changing >= 0
    });
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn tp_sched_process_fork(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpSchedFork);
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let mm = kernel::task_mm(parent);
    let child_mm = kernel::task_mm(child);
    if child_mm == mm {
        // A new thread (CLONE_VM) shares the mm: not a fork of it.
        return 0;
    }
    emit::<Fork>(ProbeId::TpSchedFork, EventId::Fork, mm, Seq::IfTracked, |p| {
        p.child_mm = child_mm;
        p.child_pid = kernel::task_pid(child);
        p.child_tgid = kernel::task_tgid(child);
        p.child_pid != 0
    });
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_mrelease")]
pub fn tp_sys_enter_process_mrelease(ctx: TracePointContext) -> u32 {
    hit(ProbeId::TpSysEnterMrelease);
    // It reaps synchronously: the target's mm becomes unstable.
    stash::open_fault_gate();
    let pidfd = field(&ctx, SYSCALL_ARG0);
    let flags = field(&ctx, SYSCALL_ARG1);
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
    let ret = field(&ctx, SYSCALL_RET) as i64;
    emit::<Mrelease>(ProbeId::TpSysExitMrelease, EventId::MreleaseExit, 0, Seq::None, |p| {
        p.ret = ret;
        true
    });
    0
}

// userfaultfd_ioctl -----------------------------------------------------------

#[fexit]
pub fn fexit_uffd_ioctl(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitUffdIoctl);
    let cmd: u64 = ctx.arg(1);
    if cmd as u32 != UFFDIO_COPY {
        return 0;
    }
    let file: u64 = ctx.arg(0);
    let ret: u64 = ctx.arg(3);
    let uctx = kernel::read_u64(file, monitor_common::config::Field::FilePrivateData);
    copy_result(ProbeId::FexitUffdIoctl, uctx, -1, ctx.arg(2), ret as i64, -1);
    0
}

#[kprobe]
pub fn kprobe_uffd_ioctl(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeUffdIoctl);
    if ctx.arg::<u64>(1).unwrap_or(0) as u32 != UFFDIO_COPY {
        return 0;
    }
    let file = ctx.arg::<u64>(0).unwrap_or(0);
    let arg = ctx.arg::<u64>(2).unwrap_or(0);
    let uctx = kernel::read_u64(file, monitor_common::config::Field::FilePrivateData);
    let changing = kernel::uffd_ctx_mmap_changing(uctx);
    stash::put(slot::UFFD_IOCTL, [file, arg, changing as u32 as u64, 0]);
    0
}

#[kretprobe]
pub fn kretprobe_uffd_ioctl(ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeUffdIoctl);
    let a = stash::take(slot::UFFD_IOCTL);
    if a.found {
        let uctx = kernel::read_u64(a.args[0], monitor_common::config::Field::FilePrivateData);
        let ret = ctx.ret::<u64>() as i64;
        let at_entry = a.args[2] as u32 as i32;
        copy_result(ProbeId::KretprobeUffdIoctl, uctx, -1, a.args[1], ret, at_entry);
    }
    0
}

// mcopy_atomic / mfill_atomic_copy ----------------------------------------------

#[inline(always)]
fn mfill(probe: ProbeId, id: EventId, mm: u64, dst: u64, len: u64, changing: i32, ret: i64) {
    emit::<UffdCopy>(probe, id, mm, Seq::Track, |p| {
        p.dst = dst;
        p.len = len;
        p.ret = ret;
        p.fd = -1;
        p.mmap_changing = changing;
        changing >= 0
    });
}

/// `dst_mm` first: `mmap_changing` is the pointer in the 5th argument.
#[fentry]
pub fn fentry_mfill_mm(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryMfillMm);
    let changing = kernel::changing_at(ctx.arg(4));
    mfill(ProbeId::FentryMfillMm, EventId::MfillStart, ctx.arg(0), ctx.arg(1), ctx.arg(3), changing, 0);
    0
}

#[fexit]
pub fn fexit_mfill_mm(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitMfillMm);
    let changing = kernel::changing_at(ctx.arg(4));
    let ret: u64 = ctx.arg(6);
    mfill(
        ProbeId::FexitMfillMm,
        EventId::MfillEnd,
        ctx.arg(0),
        ctx.arg(1),
        ctx.arg(3),
        changing,
        ret as i64,
    );
    0
}

#[kprobe]
pub fn kprobe_mfill_mm(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeMfillMm);
    let (mm, dst, len, ptr) = (
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
        ctx.arg::<u64>(3).unwrap_or(0),
        ctx.arg::<u64>(4).unwrap_or(0),
    );
    stash::put(slot::MFILL, [mm, dst, len, ptr]);
    mfill(ProbeId::KprobeMfillMm, EventId::MfillStart, mm, dst, len, kernel::changing_at(ptr), 0);
    0
}

#[kretprobe]
pub fn kretprobe_mfill_mm(ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeMfillMm);
    let a = stash::take(slot::MFILL);
    if a.found {
        let changing = kernel::changing_at(a.args[3]);
        let ret = ctx.ret::<u64>() as i64;
        mfill(ProbeId::KretprobeMfillMm, EventId::MfillEnd, a.args[0], a.args[1], a.args[2], changing, ret);
    }
    0
}

/// `ctx` first (6.9+): mm and `mmap_changing` are read from the context.
#[fentry]
pub fn fentry_mfill_ctx(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryMfillCtx);
    let uctx: u64 = ctx.arg(0);
    let mm = kernel::uffd_ctx_mm(uctx);
    let changing = kernel::uffd_ctx_mmap_changing(uctx);
    mfill(ProbeId::FentryMfillCtx, EventId::MfillStart, mm, ctx.arg(1), ctx.arg(3), changing, 0);
    0
}

#[fexit]
pub fn fexit_mfill_ctx(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitMfillCtx);
    let uctx: u64 = ctx.arg(0);
    let mm = kernel::uffd_ctx_mm(uctx);
    let changing = kernel::uffd_ctx_mmap_changing(uctx);
    let ret: u64 = ctx.arg(5);
    mfill(
        ProbeId::FexitMfillCtx,
        EventId::MfillEnd,
        mm,
        ctx.arg(1),
        ctx.arg(3),
        changing,
        ret as i64,
    );
    0
}

#[kprobe]
pub fn kprobe_mfill_ctx(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeMfillCtx);
    let (uctx, dst, len) = (
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
        ctx.arg::<u64>(3).unwrap_or(0),
    );
    stash::put(slot::MFILL, [uctx, dst, len, 0]);
    let mm = kernel::uffd_ctx_mm(uctx);
    let changing = kernel::uffd_ctx_mmap_changing(uctx);
    mfill(ProbeId::KprobeMfillCtx, EventId::MfillStart, mm, dst, len, changing, 0);
    0
}

#[kretprobe]
pub fn kretprobe_mfill_ctx(ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeMfillCtx);
    let a = stash::take(slot::MFILL);
    if a.found {
        let mm = kernel::uffd_ctx_mm(a.args[0]);
        let changing = kernel::uffd_ctx_mmap_changing(a.args[0]);
        let ret = ctx.ret::<u64>() as i64;
        mfill(ProbeId::KretprobeMfillCtx, EventId::MfillEnd, mm, a.args[1], a.args[2], changing, ret);
    }
    0
}

// The non-cooperative window ----------------------------------------------------

#[inline(always)]
fn change(probe: ProbeId, id: EventId, uctx: u64, kind: u32, start: u64, end: u64) {
    let mm = kernel::uffd_ctx_mm(uctx);
    if mm == 0 {
        return;
    }
    let changing = kernel::uffd_ctx_mmap_changing(uctx);
    emit::<UffdChange>(probe, id, mm, Seq::Track, |p| {
        p.kind = kind;
        p.start = start;
        p.end = end;
        p.mmap_changing = changing;
        changing >= 0
    });
}

/// fork: the parent's ctx (`vma->vm_userfaultfd_ctx.ctx` before the call).
#[inline(always)]
fn dup_entry(vma: u64) {
    let octx = kernel::vma_uffd_ctx(vma);
    if octx == 0 {
        return;
    }
    let before = kernel::uffd_ctx_mmap_changing(octx);
    stash::put(slot::DUP_UFFD, [octx, before as u64, vma, 0]);
}

/// Reported when this call raised `mmap_changing` (the first VMA of that ctx).
#[inline(always)]
fn dup_return(probe: ProbeId) {
    let a = stash::take(slot::DUP_UFFD);
    if !a.found {
        return;
    }
    let octx = a.args[0];
    let after = kernel::uffd_ctx_mmap_changing(octx);
    if after > a.args[1] as i32 {
        let (s, e) = (kernel::vma_start(a.args[2]), kernel::vma_end(a.args[2]));
        change(probe, EventId::UffdChangeBegin, octx, uffd_event::FORK, s, e);
    }
}

#[fentry]
pub fn fentry_dup_uffd(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryDupUffd);
    dup_entry(ctx.arg(0));
    0
}

#[fexit]
pub fn fexit_dup_uffd(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitDupUffd);
    // The child's VMA has no ctx unless the parent's has EVENT_FORK: nothing stashed.
    let vma: u64 = ctx.arg(0);
    if kernel::vma_uffd_ctx(vma) == 0 {
        return 0;
    }
    dup_return(ProbeId::FexitDupUffd);
    0
}

#[kprobe]
pub fn kprobe_dup_uffd(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeDupUffd);
    dup_entry(ctx.arg::<u64>(0).unwrap_or(0));
    0
}

#[kretprobe]
pub fn kretprobe_dup_uffd(_ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeDupUffd);
    dup_return(ProbeId::KretprobeDupUffd);
    0
}

/// The end of every window: the monitor read the event.
#[inline(always)]
fn wait_done(probe: ProbeId, uctx: u64, ewq: u64) {
    change(probe, EventId::UffdChangeEnd, uctx, kernel::uffd_wq_event(ewq), 0, 0);
}

#[fexit]
pub fn fexit_uffd_wait(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitUffdWait);
    wait_done(ProbeId::FexitUffdWait, ctx.arg(0), ctx.arg(1));
    0
}

#[kprobe]
pub fn kprobe_uffd_wait(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeUffdWait);
    stash::put(
        slot::UFFD_WAIT,
        [ctx.arg::<u64>(0).unwrap_or(0), ctx.arg::<u64>(1).unwrap_or(0), 0, 0],
    );
    0
}

#[kretprobe]
pub fn kretprobe_uffd_wait(_ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeUffdWait);
    let a = stash::take(slot::UFFD_WAIT);
    if a.found {
        wait_done(ProbeId::KretprobeUffdWait, a.args[0], a.args[1]);
    }
    0
}

/// mremap: after the prep, `vm_ctx->ctx` is set iff the ctx has EVENT_REMAP
/// (and its `mmap_changing` was raised).
#[inline(always)]
fn remap_prep(probe: ProbeId, vma: u64, vm_ctx: u64) {
    let uctx = kernel::vm_uffd_ctx(vm_ctx);
    if uctx != 0 {
        let (s, e) = (kernel::vma_start(vma), kernel::vma_end(vma));
        change(probe, EventId::UffdChangeBegin, uctx, uffd_event::REMAP, s, e);
    }
}

#[fexit]
pub fn fexit_mremap_uffd_prep(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitMremapUffdPrep);
    remap_prep(ProbeId::FexitMremapUffdPrep, ctx.arg(0), ctx.arg(1));
    0
}

#[kprobe]
pub fn kprobe_mremap_uffd_prep(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeMremapUffdPrep);
    let vma = ctx.arg::<u64>(0).unwrap_or(0);
    // Only VMAs registered with a userfaultfd can raise the window.
    if kernel::vma_uffd_ctx(vma) != 0 {
        stash::put(slot::UFFD_PREP, [vma, ctx.arg::<u64>(1).unwrap_or(0), 0, 0]);
    }
    0
}

#[kretprobe]
pub fn kretprobe_mremap_uffd_prep(_ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeMremapUffdPrep);
    let a = stash::take(slot::UFFD_PREP);
    if a.found {
        remap_prep(ProbeId::KretprobeMremapUffdPrep, a.args[0], a.args[1]);
    }
    0
}

/// munmap: the prep appends a `userfaultfd_unmap_ctx` for each ctx with
/// EVENT_UNMAP; the last list entry with this call's range is ours.
#[inline(always)]
fn unmap_prep(probe: ProbeId, start: u64, end: u64, unmaps: u64) {
    if unmaps == 0 {
        return;
    }
    let next = kernel::list_next(unmaps);
    if next == 0 || next == unmaps {
        return;
    }
    let (uctx, s, e) = kernel::unmap_ctx_at(kernel::list_prev(unmaps));
    if uctx != 0 && s == start && e == end {
        change(probe, EventId::UffdChangeBegin, uctx, uffd_event::UNMAP, s, e);
    }
}

#[fexit]
pub fn fexit_unmap_uffd_prep(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitUnmapUffdPrep);
    unmap_prep(ProbeId::FexitUnmapUffdPrep, ctx.arg(1), ctx.arg(2), ctx.arg(3));
    0
}

#[kprobe]
pub fn kprobe_unmap_uffd_prep(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeUnmapUffdPrep);
    stash::put(
        slot::UFFD_PREP,
        [
            ctx.arg::<u64>(1).unwrap_or(0),
            ctx.arg::<u64>(2).unwrap_or(0),
            ctx.arg::<u64>(3).unwrap_or(0),
            0,
        ],
    );
    0
}

#[kretprobe]
pub fn kretprobe_unmap_uffd_prep(_ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeUnmapUffdPrep);
    let a = stash::take(slot::UFFD_PREP);
    if a.found {
        unmap_prep(ProbeId::KretprobeUnmapUffdPrep, a.args[0], a.args[1], a.args[2]);
    }
    0
}

/// MADV_DONTNEED/REMOVE: `userfaultfd_remove` raises `mmap_changing` (if the
/// ctx has EVENT_REMOVE) and then waits for the monitor itself.
#[inline(always)]
fn remove(probe: ProbeId, vma: u64, start: u64, end: u64) {
    let uctx = kernel::vma_uffd_ctx(vma);
    if uctx == 0 || kernel::uffd_ctx_features(uctx) & FEATURE_EVENT_REMOVE == 0 {
        return;
    }
    change(probe, EventId::UffdChangeBegin, uctx, uffd_event::REMOVE, start, end);
}

#[fentry]
pub fn fentry_uffd_remove(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryUffdRemove);
    remove(ProbeId::FentryUffdRemove, ctx.arg(0), ctx.arg(1), ctx.arg(2));
    0
}

#[kprobe]
pub fn kprobe_uffd_remove(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeUffdRemove);
    remove(
        ProbeId::KprobeUffdRemove,
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
        ctx.arg::<u64>(2).unwrap_or(0),
    );
    0
}
