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

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use monitor_common::{
    event::{EventId, Fault, MmState, fault_entry},
    maps::{Stat, slot},
    pf::PF_KTHREAD,
    probes::ProbeId,
};

use crate::{
    emit::{Seq, emit, hit, is_tracked, stat},
    kernel, stash,
};

#[btf_tracepoint(function = "page_fault_kernel")]
pub fn tp_page_fault_kernel(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpPageFaultKernel);
    if !stash::fault_gate_open() {
        return 0;
    }
    stat(Stat::FaultsExamined);
    let address: u64 = ctx.arg(0);
    let error_code: u64 = ctx.arg(2);
    let task = kernel::current_task();
    let mm = kernel::task_mm(task);
    if mm == 0 {
        return 0;
    }
    let flags = kernel::mm_flags(mm);
    let unstable = kernel::mm_is_unstable(flags);
    if !unstable {
        let kthread = kernel::task_flags(task) & PF_KTHREAD != 0;
        if !(kthread && is_tracked(mm)) {
            return 0;
        }
    }
    emit::<Fault>(ProbeId::TpPageFaultKernel, EventId::KernelFault, mm, Seq::Track, |p| {
        p.address = address;
        p.mm_flags = flags;
        p.current_mm = mm;
        p.fault_flags = error_code as u32;
        p.has_ret = 0;
        // This tracepoint fires at the start of the fault.
        p.entry_flags = fault_entry::SEEN | if unstable { fault_entry::UNSTABLE } else { 0 };
        flags != 0
    });
    0
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

#[inline(always)]
fn report(probe: ProbeId, v: Verdict, vma: u64, address: u64, fflags: u64, ret: u64, entry: u32) {
    emit::<Fault>(probe, EventId::Fault, v.mm, Seq::Track, |p| {
        p.address = address;
        p.vm_flags = kernel::vma_flags(vma);
        p.mm_flags = v.flags;
        p.current_mm = v.current_mm;
        p.fault_flags = fflags as u32;
        p.ret = ret as u32;
        p.has_ret = 1;
        p.entry_flags = entry;
        true
    });
}

/// Entry: note only that the mm was already unstable (the common case stores nothing).
#[fentry]
pub fn fentry_fault(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryFault);
    if !stash::fault_gate_open() {
        return 0;
    }
    stat(Stat::FaultsExamined);
    let vma: u64 = ctx.arg(0);
    if kernel::mm_is_unstable(kernel::mm_flags(kernel::vma_mm(vma))) {
        stash::put(slot::FAULT, [vma, u64::from(fault_entry::UNSTABLE), 0, 0]);
    }
    0
}

#[fexit]
pub fn fexit_fault(ctx: FExitContext) -> u32 {
    hit(ProbeId::FexitFault);
    if !stash::fault_gate_open() {
        return 0;
    }
    let vma: u64 = ctx.arg(0);
    let v = interesting(vma);
    if !v.report {
        return 0;
    }
    let saved = stash::take(slot::FAULT);
    let entry = if saved.found && saved.args[0] == vma {
        fault_entry::SEEN | saved.args[1] as u32
    } else {
        fault_entry::SEEN
    };
    report(ProbeId::FexitFault, v, vma, ctx.arg(1), ctx.arg(2), ctx.arg(4), entry);
    0
}

/// kprobe rung: the return has no arguments, so the filter runs at entry and
/// only interesting faults are stashed.
#[kprobe]
pub fn kprobe_fault(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeFault);
    if !stash::fault_gate_open() {
        return 0;
    }
    stat(Stat::FaultsExamined);
    let vma = ctx.arg::<u64>(0).unwrap_or(0);
    let v = interesting(vma);
    if !v.report {
        return 0;
    }
    let entry = fault_entry::SEEN
        | if kernel::mm_is_unstable(v.flags) { fault_entry::UNSTABLE } else { 0 };
    let address = ctx.arg::<u64>(1).unwrap_or(0);
    let fflags = ctx.arg::<u64>(2).unwrap_or(0);
    stash::put(slot::FAULT, [vma, address, fflags, u64::from(entry)]);
    0
}

#[kretprobe]
pub fn kretprobe_fault(ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeFault);
    if !stash::fault_gate_open() {
        return 0;
    }
    let a = stash::take(slot::FAULT);
    if a.found {
        // Re-read the mm state at return (the reaper may have run meanwhile).
        let mut v = interesting(a.args[0]);
        v.report = true;
        report(
            ProbeId::KretprobeFault,
            v,
            a.args[0],
            a.args[1],
            a.args[2],
            ctx.ret(),
            a.args[3] as u32,
        );
    }
    0
}

// kthread_use_mm / kthread_unuse_mm -----------------------------------------

#[inline(always)]
fn use_mm(probe: ProbeId, id: EventId, mm: u64, policy: Seq) {
    emit::<MmState>(probe, id, mm, policy, |p| {
        p.mm_flags = kernel::mm_flags(mm);
        p.mm_flags != 0
    });
}

#[fentry]
pub fn fentry_kthread_use_mm(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryKthreadUseMm);
    use_mm(ProbeId::FentryKthreadUseMm, EventId::KthreadUseMm, ctx.arg(0), Seq::Track);
    0
}

#[kprobe]
pub fn kprobe_kthread_use_mm(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeKthreadUseMm);
    use_mm(
        ProbeId::KprobeKthreadUseMm,
        EventId::KthreadUseMm,
        ctx.arg::<u64>(0).unwrap_or(0),
        Seq::Track,
    );
    0
}

#[fentry]
pub fn fentry_kthread_unuse_mm(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryKthreadUnuseMm);
    use_mm(ProbeId::FentryKthreadUnuseMm, EventId::KthreadUnuseMm, ctx.arg(0), Seq::IfTracked);
    0
}

#[kprobe]
pub fn kprobe_kthread_unuse_mm(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeKthreadUnuseMm);
    use_mm(
        ProbeId::KprobeKthreadUnuseMm,
        EventId::KthreadUnuseMm,
        ctx.arg::<u64>(0).unwrap_or(0),
        Seq::IfTracked,
    );
    0
}
