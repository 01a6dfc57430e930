//! Faults on an mm the OOM reaper has started to unmap, tracepoint rung.
//!
//! ```text
//! arch/x86/mm/fault.c handle_page_fault():
//!   trace_page_fault_kernel(address, regs, error_code)   (fault taken in kernel mode:
//!       copy_from_user/get_user by a kthread_use_mm() kernel thread such as vhost,
//!       or by any task's syscall touching user memory)
//!   -> do_kern_addr_fault / do_user_addr_fault -> handle_mm_fault()
//! mm/memory.c: check_stable_address_space(mm): MMF_UNSTABLE -> VM_FAULT_SIGBUS
//!
//! TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code)
//! ```
//!
//! Gated: while no OOM victim, reap or `process_mrelease` has opened the fault
//! gate (`state::FAULT_GATE`), every fault program returns after one array
//! read. Userspace closes the gate once no victim mm is alive.
//!
//! Filtered in the kernel: a record only when `current->mm` has `MMF_UNSTABLE`,
//! or when a kernel thread faults on an mm the monitor already tracks. Ordinary
//! faults produce nothing. This rung sees neither the fault's result nor remote
//! (GUP) accesses, which do not go through the exception path.
//!
//! Function rung:
//!
//! ```text
//! vm_fault_t handle_mm_fault(struct vm_area_struct *vma, unsigned long address,
//!                            unsigned int flags, struct pt_regs *regs)
//!   every fault, including GUP (remote: /proc/PID/mem, process_vm_readv) and
//!   kernel threads between kthread_use_mm() and kthread_unuse_mm();
//!   check_stable_address_space(): MMF_UNSTABLE -> VM_FAULT_SIGBUS
//! void kthread_use_mm(struct mm_struct *mm) / kthread_unuse_mm(struct mm_struct *mm)
//! ```
//!
//! The entry program only reads the mm's flags and notes "already unstable";
//! the return program reports faults on an `MMF_UNSTABLE` mm, and faults by a
//! kernel thread or a foreign task on a tracked mm, with the `vm_fault_t`.

use monitor_common::{
    catalogue::{EventId, Fault, HookId, MmState, ProbeId},
    event::fault_entry,
    maps::Stat,
    pf::PF_KTHREAD,
};

use crate::{
    emit::{Seq, emit, is_tracked, stat},
    kernel,
    stamp::{karg, programs},
    stash::{self, Saved},
};

programs! {
    tp_btf tp_page_fault_kernel(ctx) {
        page_fault_kernel(P, ctx.arg(0), ctx.arg(2));
    }
}

#[inline(always)]
fn page_fault_kernel(probe: ProbeId, address: u64, error_code: u64) {
    if !stash::fault_gate_open() {
        return;
    }
    stat(Stat::FaultsExamined);
    let task = kernel::current_task();
    let mm = kernel::task_mm(task);
    if mm == 0 {
        return;
    }
    let flags = kernel::mm_flags(mm);
    let unstable = kernel::mm_is_unstable(flags);
    if !unstable {
        let kthread = kernel::task_flags(task) & PF_KTHREAD != 0;
        if !(kthread && is_tracked(mm)) {
            return;
        }
    }
    emit::<Fault>(probe, EventId::KernelFault, mm, Seq::Track, |p| {
        p.address = address;
        p.mm_flags = flags;
        p.current_mm = mm;
        p.fault_flags = error_code as u32;
        p.ret = u64::MAX;
        // This tracepoint fires at the start of the fault.
        p.entry_flags = fault_entry::SEEN | if unstable { fault_entry::UNSTABLE } else { 0 };
        flags != 0
    });
}

// handle_mm_fault -------------------------------------------------------------

/// What the filter decided about one fault (a plain struct; see `kernel.rs`).
#[derive(Clone, Copy)]
struct Verdict {
    report: bool,
    mm: u64,
    flags: u64,
    current_mm: u64,
}

/// Whether this fault is one the monitor reports: on an `MMF_UNSTABLE` mm, or
/// by a kernel thread or a foreign task on a tracked mm.
#[inline(always)]
fn interesting(vma: u64) -> Verdict {
    let mm = kernel::vma_mm(vma);
    let flags = kernel::mm_flags(mm);
    let task = kernel::current_task();
    let current_mm = kernel::task_mm(task);
    let mut v = Verdict {
        report: false,
        mm,
        flags,
        current_mm,
    };
    if mm == 0 || flags == 0 {
        return v;
    }
    if kernel::mm_is_unstable(flags) {
        v.report = true;
        return v;
    }
    let kthread = kernel::task_flags(task) & PF_KTHREAD != 0;
    v.report = (kthread || current_mm != mm) && is_tracked(mm);
    v
}

/// What the entry of a fault keeps for its return: on fentry only whether the
/// mm was already unstable (the common case stores nothing); on the kprobe
/// rung, whose return has no arguments, the arguments too.
#[repr(C)]
#[derive(Clone, Copy)]
struct FaultArgs {
    vma: u64,
    address: u64,
    flags: u64,
    entry: u64,
}

// SAFETY: four u64.
unsafe impl Saved for FaultArgs {
    const HOOK: HookId = HookId::HandleMmFault;
}

#[inline(always)]
fn report(probe: ProbeId, v: Verdict, a: &FaultArgs, ret: u64) {
    emit::<Fault>(probe, EventId::Fault, v.mm, Seq::Track, |p| {
        p.address = a.address;
        p.vm_flags = kernel::vma_flags(a.vma);
        p.mm_flags = v.flags;
        p.current_mm = v.current_mm;
        p.fault_flags = a.flags as u32;
        p.ret = u64::from(ret as u32);
        p.entry_flags = a.entry as u32;
        true
    });
}

programs! {
    /// `vm_fault_t handle_mm_fault(struct vm_area_struct *vma, unsigned long
    /// address, unsigned int flags, struct pt_regs *regs)`. Entry: note only
    /// that the mm was already unstable.
    fentry fentry_fault(ctx) {
        if stash::fault_gate_open() {
            stat(Stat::FaultsExamined);
            let vma: u64 = ctx.arg(0);
            if kernel::mm_is_unstable(kernel::mm_flags(kernel::vma_mm(vma))) {
                let entry = u64::from(fault_entry::UNSTABLE);
                stash::put(&FaultArgs { vma, address: 0, flags: 0, entry });
            }
        }
    }

    fexit fexit_fault(ctx) {
        if stash::fault_gate_open() {
            let vma: u64 = ctx.arg(0);
            let v = interesting(vma);
            if v.report {
                let saved = stash::take::<FaultArgs>();
                let entry = if saved.found && saved.args.vma == vma {
                    fault_entry::SEEN | saved.args.entry as u32
                } else {
                    fault_entry::SEEN
                };
                let a = FaultArgs {
                    vma,
                    address: ctx.arg(1),
                    flags: ctx.arg(2),
                    entry: u64::from(entry),
                };
                report(P, v, &a, ctx.arg(4));
            }
        }
    }

    /// kprobe rung: the return has no arguments, so the filter runs at entry
    /// and only interesting faults are kept.
    kprobe kprobe_fault(ctx) {
        if stash::fault_gate_open() {
            stat(Stat::FaultsExamined);
            let vma = karg(&ctx, 0);
            let v = interesting(vma);
            if v.report {
                let unstable = kernel::mm_is_unstable(v.flags);
                let entry = fault_entry::SEEN | if unstable { fault_entry::UNSTABLE } else { 0 };
                stash::put(&FaultArgs {
                    vma,
                    address: karg(&ctx, 1),
                    flags: karg(&ctx, 2),
                    entry: u64::from(entry),
                });
            }
        }
    }

    kretprobe kretprobe_fault(ctx) {
        if stash::fault_gate_open() {
            let s = stash::take::<FaultArgs>();
            if s.found {
                // Re-read the mm state at return (the reaper may have run meanwhile).
                let mut v = interesting(s.args.vma);
                v.report = true;
                report(P, v, &s.args, ctx.ret());
            }
        }
    }
}

// kthread_use_mm / kthread_unuse_mm -----------------------------------------

#[inline(always)]
fn use_mm(probe: ProbeId, id: EventId, mm: u64, policy: Seq) {
    emit::<MmState>(probe, id, mm, policy, |p| {
        p.mm_flags = kernel::mm_flags(mm);
        p.mm_flags != 0
    });
}

programs! {
    /// `void kthread_use_mm(struct mm_struct *mm)`: a kernel thread borrows a user mm.
    fentry fentry_kthread_use_mm(ctx) {
        use_mm(P, EventId::KthreadUseMm, ctx.arg(0), Seq::Track);
    }
    kprobe kprobe_kthread_use_mm(ctx) {
        use_mm(P, EventId::KthreadUseMm, karg(&ctx, 0), Seq::Track);
    }
    /// `void kthread_unuse_mm(struct mm_struct *mm)`.
    fentry fentry_kthread_unuse_mm(ctx) {
        use_mm(P, EventId::KthreadUnuseMm, ctx.arg(0), Seq::IfTracked);
    }
    kprobe kprobe_kthread_unuse_mm(ctx) {
        use_mm(P, EventId::KthreadUnuseMm, karg(&ctx, 0), Seq::IfTracked);
    }
}
