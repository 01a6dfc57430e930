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
//! exec'ing task on its new mm (`docs/kernel.md`, "Exec"). `bprm->mm` is
//! already NULL at `sched_process_exec`, so the mm is read from the task.
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
//! report what touches it, and `STATE[STACK_MOVES_IN_FLIGHT]` counts the
//! moves, so the per-VMA migration callback looks only while one is running.
//!
//! Filtered in the kernel: an exec window is recorded only if a migration can
//! touch it. Its opening record (`exec_mm_switch`, `stack_move_start`) is
//! emitted when a migration batch is in flight or the mm is already tracked;
//! otherwise the window is only noted in `STACK_MOVES`, and a migration hook
//! that finds the mm there emits the opening record late, just before its own
//! (`open_window_late`). Closing records follow the mm: emitted only if it is
//! tracked by then. An exec that no migration comes near costs a few map
//! lookups and produces nothing.

use aya_ebpf::helpers::bpf_probe_read_kernel_str_bytes;
use monitor_common::{
    catalogue::{EventId, Exec, ExecMmSwitch, ProbeId, StackMove},
    maps::state,
};

use crate::{
    emit::{Seq, emit, is_tracked, now},
    kernel,
    maps::{BPF_ANY, STACK_MOVES},
    stamp::{function, programs},
    stash,
};

/// Bit of a `STACK_MOVES` value (a start time otherwise): the window's
/// opening record was emitted.
const START_EMITTED: u64 = 1 << 63;

/// The policy for a record that opens an exec window on `mm`.
#[inline(always)]
fn opening_policy(mm: u64) -> Seq {
    if stash::any(state::MIGRATIONS) || is_tracked(mm) {
        Seq::Track
    } else {
        Seq::IfTracked
    }
}

programs! {
    tp_btf tp_sched_process_exec(ctx) {
        let task: u64 = ctx.arg(0);
        let old_pid: u32 = ctx.arg(1);
        let bprm: u64 = ctx.arg(2);
        let mm = match kernel::task_mm(task) {
            0 => kernel::bprm_mm(bprm),
            mm => mm,
        };
        // Closes the window: recorded only if the window was.
        emit::<Exec>(P, EventId::Exec, mm, Seq::IfTracked, |p| {
            p.old_pid = old_pid;
            kernel::bprm_filename(bprm, &mut p.filename) && mm != 0
        });
    }

    tp_btf tp_task_rename(ctx) {
        let task: u64 = ctx.arg(0);
        let comm: u64 = ctx.arg(1);
        task_rename(P, task, comm);
    }
}

#[inline(always)]
fn task_rename(probe: ProbeId, task: u64, comm: u64) {
    if task != kernel::current_task() {
        // Renames of other tasks (writes to /proc/PID/comm) are not exec.
        return;
    }
    let mm = kernel::task_mm(task);
    if mm == 0 {
        return;
    }
    let policy = opening_policy(mm);
    emit::<ExecMmSwitch>(probe, EventId::ExecMmSwitch, mm, policy, |p| {
        // SAFETY: the helper bounds the copy and validates the pointer.
        unsafe { bpf_probe_read_kernel_str_bytes(comm as *const u8, &mut p.new_comm) }.is_ok()
    });
}

// shift_arg_pages / relocate_vma_down -------------------------------------------

#[inline(always)]
fn stack_move(probe: ProbeId, id: EventId, mm: u64, vma: u64, shift: u64, ret: i64, policy: Seq) {
    emit::<StackMove>(probe, id, mm, policy, |p| {
        p.shift = shift;
        p.ret = ret;
        p.vm_start = kernel::vma_start(vma);
        p.vm_end = kernel::vma_end(vma);
        p.vm_flags = kernel::vma_flags(vma);
        mm != 0 && p.vm_end != 0
    });
}

#[inline(always)]
fn stack_move_start(probe: ProbeId, a: &mut StackMoveArgs) -> bool {
    let (vma, shift) = (a.vma, a.shift);
    let mm = kernel::vma_mm(vma);
    if mm == 0 {
        return true;
    }
    let mut started = now();
    if opening_policy(mm) == Seq::Track {
        stack_move(probe, EventId::StackMoveStart, mm, vma, shift, 0, Seq::Track);
        started |= START_EMITTED;
    }
    // Counted before the entry exists, so a migration callback that reads 0
    // cannot miss an entry (`state::STACK_MOVES_IN_FLIGHT`).
    stash::enter(state::STACK_MOVES_IN_FLIGHT);
    if STACK_MOVES.insert(mm, started, BPF_ANY).is_err() {
        stash::leave(state::STACK_MOVES_IN_FLIGHT);
    }
    true
}

#[inline(always)]
fn stack_move_end(probe: ProbeId, a: &StackMoveArgs, ret: u64) {
    let mm = kernel::vma_mm(a.vma);
    if mm == 0 {
        return;
    }
    let ret = i64::from(ret as i32);
    stack_move(probe, EventId::StackMoveEnd, mm, a.vma, a.shift, ret, Seq::IfTracked);
    // Only an entry this start inserted is counted (an end whose start ran
    // before attach, or an entry the LRU evicted, leaves the count alone: a
    // count too high costs lookups, never a missed stack move).
    if STACK_MOVES.remove(mm).is_ok() {
        stash::leave(state::STACK_MOVES_IN_FLIGHT);
    }
}

function! {
    /// `int shift_arg_pages(struct vm_area_struct *vma, unsigned long shift)`
    /// (≤ 6.11) / `int relocate_vma_down(…)` (6.12+): the temporary stack moves.
    StackMove: StackMoveArgs { vma: 0, shift: 1 } -> 2;
    entry: fentry fentry_stack_move, kprobe kprobe_stack_move => stack_move_start;
    exit: fexit fexit_stack_move, kretprobe kretprobe_stack_move => stack_move_end;
}

/// A migration hook is about to report something on `mm` (through `vma`):
/// if exec is moving `mm`'s stack and the window's opening record was not
/// emitted, emit it now (shift unknown: 0), before the migration's record.
#[inline(always)]
pub fn open_window_late(probe: ProbeId, mm: u64, vma: u64) {
    let Some(p) = STACK_MOVES.get_ptr_mut(mm) else {
        return;
    };
    // SAFETY: valid map value pointer.
    let started = unsafe { *p };
    if started & START_EMITTED != 0 {
        return;
    }
    stack_move(probe, EventId::StackMoveStart, mm, vma, 0, 0, Seq::Track);
    // SAFETY: as above.
    unsafe { *p = started | START_EMITTED };
}
