//! The attach-time sanity read: proof that the offsets userspace resolved
//! from the BTF it was given describe the running kernel.
//!
//! A raw tracepoint program that is never attached: userspace runs it once
//! with `BPF_PROG_TEST_RUN` (5.10+), which calls it in the caller's own
//! context, so `current` is the monitor's thread. It stores what it reads at
//! the offsets (`task_struct.pid`, `.tgid`, `.comm`, `.flags`, `.mm`,
//! `mm_struct.flags`, the cgroup chain) next to what helpers that need no
//! offsets say about the same task (`bpf_get_current_pid_tgid`,
//! `bpf_get_current_comm`, `bpf_get_current_cgroup_id`); userspace compares
//! them with each other and with what it knows of itself
//! (`monitor/src/sanity.rs`).

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_get_current_cgroup_id,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use monitor_common::maps::sanity;

use crate::{kernel, maps::SANITY};

#[inline(always)]
fn put(index: u32, v: u64) {
    if let Some(p) = SANITY.get_ptr_mut(index) {
        // SAFETY: valid, aligned array value pointer.
        unsafe { *p = v };
    }
}

#[inline(always)]
fn put_comm(index: u32, comm: [u8; 16]) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&comm[..8]);
    hi.copy_from_slice(&comm[8..]);
    put(index, u64::from_le_bytes(lo));
    put(index + 1, u64::from_le_bytes(hi));
}

#[raw_tracepoint]
pub fn sanity_read(_ctx: RawTracePointContext) -> i32 {
    let task = kernel::current_task();
    put(sanity::HELPER_PID_TGID, bpf_get_current_pid_tgid());
    put(
        sanity::PID_TGID,
        u64::from(kernel::task_tgid(task)) << 32 | u64::from(kernel::task_pid(task)),
    );
    put_comm(sanity::HELPER_COMM, bpf_get_current_comm().unwrap_or([0; 16]));
    put_comm(sanity::COMM, kernel::task_comm(task));
    put(sanity::TASK_FLAGS, u64::from(kernel::task_flags(task)));
    let mm = kernel::task_mm(task);
    put(sanity::MM, mm);
    put(sanity::MM_FLAGS, kernel::mm_flags(mm));
    // SAFETY: helper without preconditions.
    put(sanity::HELPER_CGROUP_ID, unsafe { bpf_get_current_cgroup_id() });
    put(sanity::CGROUP_ID, kernel::task_cgroup_id(task));
    put(sanity::MEMCG_ID, kernel::task_memcg_id(task));
    put(sanity::RAN, 1);
    0
}
