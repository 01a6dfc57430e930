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
//! is exact (`docs/kernel.md`, "userfaultfd"). The uffd's target mm is found through the
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

use aya_ebpf::programs::TracePointContext;
use monitor_common::{
    EAGAIN, UFFDIO_COPY,
    catalogue::{EventId, Fork, HookId, Mrelease, ProbeId, UffdChange, UffdCopyDone},
    config::Field,
    event::{copy_window, uffd_event},
    maps::{Stat, UffdCtxState, state},
};

use crate::{
    emit::{Seq, add_to, emit, now, stat},
    kernel,
    maps::{BPF_NOEXIST, UFFD_CTX},
    stamp::{function, karg, programs},
    stash::{self, Saved},
};

/// `UFFD_FEATURE_EVENT_FORK`.
const FEATURE_EVENT_FORK: u32 = 1 << 1;
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

/// What a UFFDIO_COPY ioctl keeps from its entry to its return (both rungs
/// that have an entry: the syscall tracepoints and the kprobe). The ioctl
/// holds the file, so the context found at entry is the one the return
/// reports on, without walking the fd table again.
#[repr(C)]
#[derive(Clone, Copy)]
struct IoctlState {
    uctx: u64,
    arg: u64,
    /// `mmap_changing` at entry: the early check reads it right after this,
    /// and by the return the uffd monitor may already have lowered it.
    changing: i32,
    fd: i32,
}

// SAFETY: integers only, 24 bytes.
unsafe impl Saved for IoctlState {
    const HOOK: HookId = HookId::UffdIoctl;
}

programs! {
    /// Classic tracepoint `syscalls/sys_enter_ioctl` (fires for ioctl only).
    tracepoint tp_sys_enter_ioctl(ctx) {
        if field(&ctx, SYSCALL_ARG1) as u32 == UFFDIO_COPY {
            let fd = field(&ctx, SYSCALL_ARG0);
            let uctx = kernel::file_uffd_ctx(kernel::task_file(kernel::current_task(), fd as u32));
            stash::put(&IoctlState {
                uctx,
                arg: field(&ctx, SYSCALL_ARG2),
                changing: kernel::uffd_ctx_mmap_changing(uctx),
                fd: fd as i32,
            });
        }
    }

    tracepoint tp_sys_exit_ioctl(ctx) {
        let s = stash::take::<IoctlState>();
        if s.found {
            let ret = field(&ctx, SYSCALL_RET) as i64;
            let a = s.args;
            copy_done(P, Copy { uctx: a.uctx, fd: a.fd, arg: a.arg, ret, at_entry: a.changing, ioctl: true, dst: 0, len: 0 });
        }
    }

    /// `static long userfaultfd_ioctl(struct file *file, unsigned cmd, unsigned long arg)`.
    fexit fexit_uffd_ioctl(ctx) {
        let cmd: u64 = ctx.arg(1);
        if cmd as u32 == UFFDIO_COPY {
            let ret: u64 = ctx.arg(3);
            if copy_is_plain(ret as i64) {
                count_copy(ret as i64);
            } else {
                let file: u64 = ctx.arg(0);
                let uctx = kernel::read_u64(file, Field::FilePrivateData);
                copy_done(P, Copy { uctx, fd: -1, arg: ctx.arg(2), ret: ret as i64, at_entry: -1, ioctl: true, dst: 0, len: 0 });
            }
        }
    }

    kprobe kprobe_uffd_ioctl(ctx) {
        if karg(&ctx, 1) as u32 == UFFDIO_COPY {
            let uctx = kernel::read_u64(karg(&ctx, 0), Field::FilePrivateData);
            stash::put(&IoctlState {
                uctx,
                arg: karg(&ctx, 2),
                changing: kernel::uffd_ctx_mmap_changing(uctx),
                fd: -1,
            });
        }
    }

    kretprobe kretprobe_uffd_ioctl(ctx) {
        let s = stash::take::<IoctlState>();
        if s.found {
            let a = s.args;
            let ret = ctx.ret::<u64>() as i64;
            copy_done(P, Copy { uctx: a.uctx, fd: a.fd, arg: a.arg, ret, at_entry: a.changing, ioctl: true, dst: 0, len: 0 });
        }
    }

    tp_btf tp_sched_process_fork(ctx) {
        let parent: u64 = ctx.arg(0);
        let child: u64 = ctx.arg(1);
        fork(P, parent, child);
    }

    tracepoint tp_sys_enter_process_mrelease(ctx) {
        // It reaps synchronously: the target's mm becomes unstable.
        stash::open_fault_gate();
        let pidfd = field(&ctx, SYSCALL_ARG0);
        let flags = field(&ctx, SYSCALL_ARG1);
        emit::<Mrelease>(P, EventId::MreleaseEnter, 0, Seq::None, |p| {
            p.pidfd = pidfd as i32;
            p.flags = flags as u32;
            true
        });
    }

    tracepoint tp_sys_exit_process_mrelease(ctx) {
        let ret = field(&ctx, SYSCALL_RET) as i64;
        emit::<Mrelease>(P, EventId::MreleaseExit, 0, Seq::None, |p| {
            p.ret = ret;
            true
        });
    }
}

#[inline(always)]
fn fork(probe: ProbeId, parent: u64, child: u64) {
    let mm = kernel::task_mm(parent);
    let child_mm = kernel::task_mm(child);
    if child_mm == mm {
        // A new thread (CLONE_VM) shares the mm: not a fork of it.
        return;
    }
    emit::<Fork>(probe, EventId::Fork, mm, Seq::IfTracked, |p| {
        p.child_mm = child_mm;
        p.child_pid = kernel::task_pid(child);
        p.child_tgid = kernel::task_tgid(child);
        p.child_pid != 0
    });
}

// The copy filter ---------------------------------------------------------------
//
// A UFFDIO_COPY matters to the detector only when it fails with -EAGAIN (a
// near miss's proof), when a change window is open on its context at its
// start or its end, or when it closes an observed window (the first success
// after an -EAGAIN outside any window). UFFD_CTX holds, per context, what the
// change hooks below saw (open begins, when the window opened, a pending
// observed window); STATE[UFFD_ACTIVE] counts all of it, so that while no
// window exists anywhere a copy costs one array read and one per-CPU count.
// A copy that needs a record gets exactly one, at the ioctl's return, with
// the mfill bracket (kept only when a window was open at the mfill entry)
// folded in.

const EEXIST: i64 = -17;

/// Counts one copy by result (every copy the hook reports, recorded or not:
/// `mmrace_uffd_copies_total{result}`).
#[inline(always)]
fn count_copy(ret: i64) {
    stat(match ret {
        r if r >= 0 => Stat::UffdCopyOk,
        EEXIST => Stat::UffdCopyExists,
        EAGAIN => Stat::UffdCopyAgain,
        _ => Stat::UffdCopyOther,
    });
}

/// Whether a copy with this result certainly needs no record: nothing is
/// going on with userfaultfd contexts anywhere and it did not fail with
/// `-EAGAIN` (one array read).
#[inline(always)]
fn copy_is_plain(ret: i64) -> bool {
    ret != EAGAIN && !stash::any(state::UFFD_ACTIVE)
}

/// The context's window state, or null.
#[inline(always)]
fn ctx_state(uctx: u64) -> *mut UffdCtxState {
    if uctx == 0 {
        return core::ptr::null_mut();
    }
    UFFD_CTX.get_ptr_mut(uctx).unwrap_or_default()
}

/// The context's state, created if needed; null (and every copy recorded
/// from now on) when the map is full.
#[inline(always)]
fn ctx_state_create(uctx: u64) -> *mut UffdCtxState {
    let p = ctx_state(uctx);
    if !p.is_null() || uctx == 0 {
        return p;
    }
    let _ = UFFD_CTX.insert(uctx, UffdCtxState::default(), BPF_NOEXIST);
    let p = ctx_state(uctx);
    if p.is_null() && !stash::flag(state::UFFD_RECORD_ALL) {
        // Erring means recording every copy, never missing a window.
        stash::set_flag(state::UFFD_RECORD_ALL);
        stash::enter(state::UFFD_ACTIVE);
        stat(Stat::UffdCtxMapFull);
    }
    p
}

/// Drops an entry that holds nothing any more.
#[inline(always)]
fn ctx_state_release(uctx: u64, p: *mut UffdCtxState) {
    // SAFETY: valid map value pointer.
    if unsafe { (*p).open == 0 && (*p).observed == 0 } {
        let _ = UFFD_CTX.remove(uctx);
    }
}

/// A change raised the context's `mmap_changing` (and is being recorded).
#[inline(always)]
fn window_begin(uctx: u64) {
    let p = ctx_state_create(uctx);
    if p.is_null() {
        return;
    }
    // SAFETY: valid map value pointer.
    unsafe {
        if (*p).open == 0 {
            (*p).opened_ns = now();
        }
        add_to(&raw mut (*p).open, 1);
    }
    stash::enter(state::UFFD_ACTIVE);
}

/// The monitor read a change event; the context's `mmap_changing` dropped.
#[inline(always)]
fn window_end(uctx: u64) {
    let p = ctx_state(uctx);
    // SAFETY: valid map value pointer when non-null.
    if p.is_null() || unsafe { (*p).open } == 0 {
        return;
    }
    // SAFETY: as above.
    unsafe { add_to(&raw mut (*p).open, u64::MAX) };
    stash::leave(state::UFFD_ACTIVE);
    ctx_state_release(uctx, p);
}

/// What the mfill entry keeps for the ioctl's return when a window is open
/// on the context (or, with no ioctl hook on the kprobe rung, always).
#[repr(C)]
#[derive(Clone, Copy)]
struct MfillBracket {
    uctx: u64,
    /// 0: no window was open at the entry (kept only for the kprobe rung's return).
    start_ns: u64,
    opened_ns: u64,
    changing: i32,
    _pad: u32,
}

// SAFETY: integers only, 32 bytes.
unsafe impl Saved for MfillBracket {
    const HOOK: HookId = HookId::MfillCopy;
}

/// One UFFDIO_COPY at its return.
#[derive(Clone, Copy)]
struct Copy {
    uctx: u64,
    fd: i32,
    /// `struct uffdio_copy *` in user memory (the ioctl), else 0.
    arg: u64,
    /// The ioctl's return (0 or -errno), or mfill's (bytes or -errno).
    ret: i64,
    /// `mmap_changing` at the ioctl's entry (-1 if not read).
    at_entry: i32,
    /// Reported by the ioctl hook (else by mfill's return, which knows `dst`/`len`).
    ioctl: bool,
    dst: u64,
    len: u64,
}

/// Counts the copy by result and records it if it needs a record.
#[inline(always)]
fn copy_done(probe: ProbeId, c: Copy) {
    count_copy(c.ret);
    if copy_is_plain(c.ret) {
        return;
    }
    copy_judged(probe, c, stash::take::<MfillBracket>());
}

/// [`copy_done`] past the fast path, with the copy's bracket taken.
#[inline(always)]
fn copy_judged(probe: ProbeId, c: Copy, bracket: stash::Stashed<MfillBracket>) {
    let started_in_window = bracket.found && bracket.args.start_ns != 0;
    if started_in_window {
        stash::leave(state::UFFD_ACTIVE);
    }
    let p = ctx_state(c.uctx);
    // SAFETY: valid map value pointer when non-null.
    let (open_now, opened_now, observed) = if p.is_null() {
        (false, 0, false)
    } else {
        unsafe { ((*p).open > 0, (*p).opened_ns, (*p).observed != 0) }
    };
    let success = c.ret >= 0;
    let needed = c.ret == EAGAIN
        || (success && (open_now || started_in_window || observed))
        || stash::flag(state::UFFD_RECORD_ALL);
    if !needed {
        return;
    }
    if c.ret == EAGAIN && !open_now && !observed {
        // The detector opens an observed window; its next success closes it.
        let p = ctx_state_create(c.uctx);
        if !p.is_null() {
            // SAFETY: valid map value pointer.
            unsafe { (*p).observed = 1 };
            stash::enter(state::UFFD_ACTIVE);
        }
    } else if success && observed {
        // SAFETY: `observed` implies a valid `p`.
        unsafe { (*p).observed = 0 };
        stash::leave(state::UFFD_ACTIVE);
        ctx_state_release(c.uctx, p);
    }
    let mut window = 0u32;
    if stash::flag(state::UFFD_MFILL_HOOKED) {
        window |= copy_window::MFILL_HOOKED;
    }
    if started_in_window {
        window |= copy_window::OPEN_AT_START;
        if open_now && opened_now == bracket.args.opened_ns {
            window |= copy_window::SAME_WINDOW;
        }
    }
    if open_now {
        window |= copy_window::OPEN_AT_END;
    }
    let mm = kernel::uffd_ctx_mm(c.uctx);
    let now = kernel::uffd_ctx_mmap_changing(c.uctx);
    let changing = if c.at_entry > now { c.at_entry } else { now };
    let (start_ns, mfill_changing) = if started_in_window {
        (bracket.args.start_ns, bracket.args.changing)
    } else {
        (0, -1)
    };
    emit::<UffdCopyDone>(probe, EventId::UffdCopyDone, mm, Seq::Track, |p| {
        p.fd = c.fd;
        p.mmap_changing = changing;
        p.mfill_changing = mfill_changing;
        p.mfill_start_ns = start_ns;
        p.window = window;
        if c.ioctl {
            // struct uffdio_copy { u64 dst; u64 src; u64 len; u64 mode; s64 copy; } (uapi).
            p.dst = kernel::probe_user::<u64>(c.arg).0;
            p.len = kernel::probe_user::<u64>(c.arg + 16).0;
            // The ioctl returns 0 on success and reports the bytes in
            // `uffdio_copy.copy`; errors are the ioctl's return value (the
            // copy field is not written by the early -EAGAIN check before 6.12).
            let (copied, ok) = kernel::probe_user::<i64>(c.arg + 32);
            p.ret = if c.ret == 0 && ok { copied } else { c.ret };
        } else {
            p.dst = c.dst;
            p.len = c.len;
            p.ret = c.ret;
        }
        mm != 0 && changing >= 0
    });
}

// mcopy_atomic / mfill_atomic_copy ----------------------------------------------

/// The mfill entry: keeps the bracket when a window is open on the context.
#[inline(always)]
fn mfill_entry(uctx: u64, kprobe: bool) {
    let fold = stash::flag(state::UFFD_FOLD_AT_IOCTL);
    if fold && !stash::any(state::UFFD_ACTIVE) {
        return;
    }
    let p = ctx_state(uctx);
    // SAFETY: valid map value pointer when non-null.
    let open = !p.is_null() && unsafe { (*p).open } > 0;
    if open {
        // SAFETY: as above.
        let opened_ns = unsafe { (*p).opened_ns };
        let b = MfillBracket {
            uctx,
            start_ns: now(),
            opened_ns,
            changing: kernel::uffd_ctx_mmap_changing(uctx),
            _pad: 0,
        };
        if stash::put(&b) {
            stash::enter(state::UFFD_ACTIVE);
        }
    } else if kprobe && !fold {
        // The kretprobe has no arguments and reports the copy itself.
        stash::put(&MfillBracket {
            uctx,
            start_ns: 0,
            opened_ns: 0,
            changing: -1,
            _pad: 0,
        });
    }
}

/// The mfill return: reports the copy only when no ioctl hook does.
#[inline(always)]
fn mfill_exit(probe: ProbeId, uctx: u64, dst: u64, len: u64, ret: i64) {
    if stash::flag(state::UFFD_FOLD_AT_IOCTL) {
        return;
    }
    copy_done(
        probe,
        Copy {
            uctx,
            fd: -1,
            arg: 0,
            ret,
            at_entry: -1,
            ioctl: false,
            dst,
            len,
        },
    );
}

/// The context of the `mm`-first signature: `mmap_changing` points into it.
#[inline(always)]
fn ctx_of_changing(changing: u64) -> u64 {
    let off = kernel::offset(Field::UffdCtxMmapChanging);
    if changing == 0 || off == u64::MAX || changing < off {
        0
    } else {
        changing - off
    }
}

programs! {
    /// `ssize_t mcopy_atomic(struct mm_struct *dst_mm, dst, src, len,
    /// atomic_t|bool *mmap_changing, __u64 mode)` (≤ 6.3; also
    /// `mfill_atomic_copy` with that signature in 6.4–6.8).
    fentry fentry_mfill_mm(ctx) {
        mfill_entry(ctx_of_changing(ctx.arg(4)), false);
    }
    fexit fexit_mfill_mm(ctx) {
        let ret: u64 = ctx.arg(6);
        mfill_exit(P, ctx_of_changing(ctx.arg(4)), ctx.arg(1), ctx.arg(3), ret as i64);
    }
    kprobe kprobe_mfill_mm(ctx) {
        mfill_entry(ctx_of_changing(karg(&ctx, 4)), true);
    }
    kretprobe kretprobe_mfill_mm(ctx) {
        mfill_return(P, ctx.ret::<u64>() as i64);
    }

    /// `ssize_t mfill_atomic_copy(struct userfaultfd_ctx *ctx, dst, src, len,
    /// uffd_flags_t flags)` (6.9+).
    fentry fentry_mfill_ctx(ctx) {
        mfill_entry(ctx.arg(0), false);
    }
    fexit fexit_mfill_ctx(ctx) {
        let ret: u64 = ctx.arg(5);
        mfill_exit(P, ctx.arg(0), ctx.arg(1), ctx.arg(3), ret as i64);
    }
    kprobe kprobe_mfill_ctx(ctx) {
        mfill_entry(karg(&ctx, 0), true);
    }
    kretprobe kretprobe_mfill_ctx(ctx) {
        mfill_return(P, ctx.ret::<u64>() as i64);
    }
}

/// The kretprobe of mfill without an ioctl hook: the context comes from the
/// bracket the entry kept (put back for `copy_done` to take).
#[inline(always)]
fn mfill_return(probe: ProbeId, ret: i64) {
    if stash::flag(state::UFFD_FOLD_AT_IOCTL) {
        return;
    }
    let b = stash::take::<MfillBracket>();
    if !b.found {
        return;
    }
    count_copy(ret);
    if b.args.start_ns == 0 && copy_is_plain(ret) {
        return;
    }
    let c = Copy {
        uctx: b.args.uctx,
        fd: -1,
        arg: 0,
        ret,
        at_entry: -1,
        ioctl: false,
        dst: 0,
        len: 0,
    };
    copy_judged(probe, c, b);
}

// The non-cooperative window ----------------------------------------------------

#[inline(always)]
fn change(probe: ProbeId, id: EventId, uctx: u64, kind: u32, start: u64, end: u64) {
    let mm = kernel::uffd_ctx_mm(uctx);
    if mm == 0 {
        return;
    }
    if id == EventId::UffdChangeBegin {
        window_begin(uctx);
    } else {
        window_end(uctx);
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

/// What `dup_userfaultfd` keeps from entry to return on both rungs: the
/// parent's ctx and its `mmap_changing` before the call.
#[repr(C)]
#[derive(Clone, Copy)]
struct DupState {
    octx: u64,
    before: u64,
    vma: u64,
}

// SAFETY: three u64.
unsafe impl Saved for DupState {
    const HOOK: HookId = HookId::UffdFork;
}

/// fork: the parent's ctx (`vma->vm_userfaultfd_ctx.ctx` before the call),
/// stashed only if it has `EVENT_FORK`. Without it `dup_userfaultfd()`
/// drops the ctx from the child's VMA and raises nothing, and the fexit,
/// which sees only the child's VMA, would never take the slot (the one-hour
/// soak found such slots left behind, one per forking thread).
#[inline(always)]
fn dup_entry(vma: u64) {
    let octx = kernel::vma_uffd_ctx(vma);
    if octx == 0 || kernel::uffd_ctx_features(octx) & FEATURE_EVENT_FORK == 0 {
        return;
    }
    let before = kernel::uffd_ctx_mmap_changing(octx);
    stash::put(&DupState {
        octx,
        before: before as u64,
        vma,
    });
}

/// Reported when this call raised `mmap_changing` (the first VMA of that ctx).
#[inline(always)]
fn dup_return(probe: ProbeId) {
    let a = stash::take::<DupState>();
    if !a.found {
        return;
    }
    let octx = a.args.octx;
    let after = kernel::uffd_ctx_mmap_changing(octx);
    if after > a.args.before as i32 {
        let (s, e) = (kernel::vma_start(a.args.vma), kernel::vma_end(a.args.vma));
        change(probe, EventId::UffdChangeBegin, octx, uffd_event::FORK, s, e);
    }
}

programs! {
    /// `int dup_userfaultfd(struct vm_area_struct *vma, struct list_head *fcs)`:
    /// the first call per parent ctx raises its `mmap_changing`.
    fentry fentry_dup_uffd(ctx) {
        dup_entry(ctx.arg(0));
    }
    fexit fexit_dup_uffd(ctx) {
        // The child's VMA keeps a ctx (the child's, or the parent's when the
        // copy failed with -ENOMEM) exactly when the parent's has EVENT_FORK,
        // the only case the entry stashes; else the slot is empty.
        let vma: u64 = ctx.arg(0);
        if kernel::vma_uffd_ctx(vma) != 0 {
            dup_return(P);
        }
    }
    kprobe kprobe_dup_uffd(ctx) {
        dup_entry(karg(&ctx, 0));
    }
    kretprobe kretprobe_dup_uffd(_ctx) {
        dup_return(P);
    }
}

#[inline(always)]
fn keep<A>(_probe: ProbeId, _a: &mut A) -> bool {
    true
}

/// The window's event kind, read at entry: `userfaultfd_event_complete()`
/// zeroes `ewq->msg.event` to wake the waiter, so at return it reads 0.
/// Stashed here on both rungs (the fentry arm ignores the return value).
#[inline(always)]
fn wait_entry(_probe: ProbeId, a: &mut WaitArgs) -> bool {
    a.event = u64::from(kernel::uffd_wq_event(a.ewq));
    stash::put(a);
    false
}

/// The end of every window: the monitor read the event. The kind comes from
/// the entry's stash (fexit: `a` is re-read from the arguments, its event
/// is 0; kretprobe: the macro already took the stash into `a`).
#[inline(always)]
fn wait_done(probe: ProbeId, a: &WaitArgs, _ret: u64) {
    let saved = stash::take::<WaitArgs>();
    let kind = if saved.found && saved.args.ewq == a.ewq {
        saved.args.event
    } else {
        a.event
    };
    change(probe, EventId::UffdChangeEnd, a.ctx, kind as u32, 0, 0);
}

function! {
    /// `static void userfaultfd_event_wait_completion(struct userfaultfd_ctx *ctx,
    /// struct userfaultfd_wait_queue *ewq)`: the window closes.
    UffdEventWait: WaitArgs { ctx: 0, ewq: 1; event = 0 };
    entry: fentry fentry_uffd_wait, kprobe kprobe_uffd_wait => wait_entry;
    exit: fexit fexit_uffd_wait, kretprobe kretprobe_uffd_wait => wait_done;
}

/// Only VMAs registered with a userfaultfd can raise the window.
#[inline(always)]
fn remap_registered(_probe: ProbeId, a: &mut RemapArgs) -> bool {
    kernel::vma_uffd_ctx(a.vma) != 0
}

/// mremap: after the prep, `vm_ctx->ctx` is set iff the ctx has EVENT_REMAP
/// (and its `mmap_changing` was raised).
#[inline(always)]
fn remap_prep(probe: ProbeId, a: &RemapArgs, _ret: u64) {
    let uctx = kernel::vm_uffd_ctx(a.vm_ctx);
    if uctx != 0 {
        let (s, e) = (kernel::vma_start(a.vma), kernel::vma_end(a.vma));
        change(probe, EventId::UffdChangeBegin, uctx, uffd_event::REMAP, s, e);
    }
}

function! {
    /// `void mremap_userfaultfd_prep(struct vm_area_struct *vma,
    /// struct vm_userfaultfd_ctx *vm_ctx)`.
    UffdRemap: RemapArgs { vma: 0, vm_ctx: 1 };
    entry: kprobe kprobe_mremap_uffd_prep => remap_registered;
    exit: fexit fexit_mremap_uffd_prep, kretprobe kretprobe_mremap_uffd_prep => remap_prep;
}

/// munmap: the prep appends a `userfaultfd_unmap_ctx` for each ctx with
/// EVENT_UNMAP; the last list entry with this call's range is ours.
#[inline(always)]
fn unmap_prep(probe: ProbeId, a: &UnmapPrepArgs, _ret: u64) {
    let (start, end, unmaps) = (a.start, a.end, a.unmaps);
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

function! {
    /// `int userfaultfd_unmap_prep(struct mm_struct *mm | struct vm_area_struct *vma,
    /// unsigned long start, unsigned long end, struct list_head *unmaps)`.
    UffdUnmap: UnmapPrepArgs { start: 1, end: 2, unmaps: 3 };
    entry: kprobe kprobe_unmap_uffd_prep => keep;
    exit: fexit fexit_unmap_uffd_prep, kretprobe kretprobe_unmap_uffd_prep => unmap_prep;
}

/// MADV_DONTNEED/REMOVE: `userfaultfd_remove` raises `mmap_changing` (if the
/// ctx has EVENT_REMOVE) and then waits for the monitor itself.
#[inline(always)]
fn remove(probe: ProbeId, a: &mut RemoveArgs) -> bool {
    let uctx = kernel::vma_uffd_ctx(a.vma);
    if uctx != 0 && kernel::uffd_ctx_features(uctx) & FEATURE_EVENT_REMOVE != 0 {
        change(probe, EventId::UffdChangeBegin, uctx, uffd_event::REMOVE, a.start, a.end);
    }
    false
}

function! {
    /// `bool userfaultfd_remove(struct vm_area_struct *vma, unsigned long start,
    /// unsigned long end)`.
    UffdRemove: RemoveArgs { vma: 0, start: 1, end: 2 };
    entry: fentry fentry_uffd_remove, kprobe kprobe_uffd_remove => remove;
}

/// The context's file is closed (its last reference: no UFFDIO_COPY can
/// come on it any more). Whatever window state `UFFD_CTX` holds for it is
/// dropped, and `STATE[UFFD_ACTIVE]` with it: an `-EAGAIN` recorded outside
/// any window waits for a success that will never come, and a change whose
/// end the monitor would see only after the release (the kernel wakes the
/// waiters after this entry) is no window on any live context. Without this
/// the entry would stay, and with it every later copy's map lookup.
#[inline(always)]
fn release(_probe: ProbeId, a: &mut ReleaseArgs) -> bool {
    if !stash::any(state::UFFD_ACTIVE) {
        return false;
    }
    let uctx = kernel::file_uffd_ctx(a.file);
    let p = ctx_state(uctx);
    if p.is_null() {
        return false;
    }
    // SAFETY: valid map value pointer.
    let held = unsafe { (*p).open + (*p).observed };
    if held > 0 {
        stash::leave_n(state::UFFD_ACTIVE, held);
        stat(Stat::UffdCtxReleased);
    }
    let _ = UFFD_CTX.remove(uctx);
    false
}

function! {
    /// `static int userfaultfd_release(struct inode *inode, struct file *file)`.
    UffdRelease: ReleaseArgs { file: 1 };
    entry: fentry fentry_uffd_release, kprobe kprobe_uffd_release => release;
}
