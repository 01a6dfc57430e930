//! mm teardown, tracepoint rung.
//!
//! ```text
//! mm/mmap.c exit_mmap() (6.1+):
//!   mmap_read_lock; unmap_vmas(...); mmap_read_unlock;
//!   set_bit(MMF_OOM_SKIP); mmap_write_lock; free_pgtables; remove_vma loop;
//!   trace_exit_mmap(mm);            <- here: the END of exit_mmap
//!   __mt_destroy(&mm->mm_mt); mmap_write_unlock
//!
//! include/trace/events/mmap.h (6.1+): TP_PROTO(struct mm_struct *mm)
//! ```
//!
//! Only mms the monitor already tracks are reported. On this rung the record
//! also ends the mm's sequence generation (the address may be reused after
//! `__mmdrop`); with the `__mmdrop` function hook attached that hook ends it.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::{
    config::flags,
    event::{EventId, MmState},
    probes::ProbeId,
};

use crate::{
    emit::{Seq, emit, hit},
    kernel,
};

#[btf_tracepoint(function = "exit_mmap")]
pub fn tp_exit_mmap(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpExitMmap);
    let mm: u64 = ctx.arg(0);
    let policy = if kernel::config_flags() & flags::SEQ_END_AT_MMDROP != 0 {
        Seq::IfTracked
    } else {
        Seq::EndIfTracked
    };
    emit::<MmState>(ProbeId::TpExitMmap, EventId::ExitMmapEnd, mm, policy, |p| {
        match kernel::mm_flags(mm) {
            Some(f) => {
                p.mm_flags = f;
                true
            }
            None => false,
        }
    });
    0
}
