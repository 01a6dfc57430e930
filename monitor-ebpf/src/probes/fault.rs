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
//! Filtered in the kernel: a record only when `current->mm` has `MMF_UNSTABLE`,
//! or when a kernel thread faults on an mm the monitor already tracks. Ordinary
//! faults produce nothing. This rung sees neither the fault's result nor remote
//! (GUP) accesses, which do not go through the exception path.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::{
    event::{EventId, Fault},
    maps::Stat,
    pf::PF_KTHREAD,
    probes::ProbeId,
};

use crate::{
    emit::{Seq, emit, hit, is_tracked, stat},
    kernel,
};

#[btf_tracepoint(function = "page_fault_kernel")]
pub fn tp_page_fault_kernel(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpPageFaultKernel);
    stat(Stat::FaultsExamined);
    let address: u64 = ctx.arg(0);
    let error_code: u64 = ctx.arg(2);
    let task = kernel::current_task();
    let Some(mm) = kernel::task_mm(task) else {
        return 0;
    };
    if mm == 0 {
        return 0;
    }
    let Some(flags) = kernel::mm_flags(mm) else {
        return 0;
    };
    let unstable = kernel::mm_is_unstable(flags);
    if !unstable {
        let kthread = kernel::task_flags(task).unwrap_or(0) & PF_KTHREAD != 0;
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
        true
    });
    0
}
