//! Task lifetime: forgetting the per-task map entries of a freed task.
//!
//! ```text
//! kernel/exit.c:
//!   release_task(p) -> put_task_struct_rcu_user(p)
//!       -> call_rcu(&p->rcu, delayed_put_task_struct)
//!   delayed_put_task_struct(rhp): trace_sched_process_free(tsk); put_task_struct(tsk)
//!
//! include/trace/events/sched.h: TP_PROTO(struct task_struct *p)   sched_process_free
//! ```
//!
//! Fires once per thread, in RCU callback context (not the task's own), an
//! RCU grace period after the task was reaped: it can never run again, so
//! nothing it does can re-create an entry after this. Its pid was freed at
//! `release_task`; a new thread would have to be given the same number
//! within the grace period (a full wrap of the pid space) for this to
//! remove that thread's entries instead.
//!
//! Removed here:
//! * `TASKS[tid]` (a migration batch in flight whose end was missed also
//!   leaves the `MIGRATIONS` in-flight count raised: it is lowered);
//! * the thread's `STASH` slots of hooks whose return can be missed
//!   (`stash::forget_task`);
//! * `VICTIMS[tid]`, once the reaper has no more to say about it: the entry
//!   is the victim's (its `signal->oom_mm` is that mm) and the mm has
//!   `MMF_OOM_SKIP` (set at the end of `exit_mmap` or by the reaper when it
//!   is done). The reaper holds a reference to the task, not the release
//!   ordering, so it can still report after this: only a final
//!   `skip_task_reaping` (it tests `MMF_OOM_SKIP` before anything else), which
//!   then comes without an mm. An mm still without `MMF_OOM_SKIP` (shared
//!   with a task that lives on) keeps its entry (an LRU map: it ages out).
//!
//! `MM_SEQ` is keyed by mm and ends with the mm (`probes/mm.rs`).

use monitor_common::{maps::state, mmf};

use crate::{
    emit::task_scratch_existing,
    kernel,
    maps::{TASKS, VICTIMS},
    stamp::programs,
    stash,
};

programs! {
    tp_btf tp_sched_process_free(ctx) {
        task_freed(ctx.arg(0));
    }
}

#[inline(always)]
fn task_freed(task: u64) {
    let tid = kernel::task_pid(task);
    if tid == 0 {
        return;
    }
    let s = task_scratch_existing(tid);
    if !s.is_null() {
        // SAFETY: valid map value pointer; the task is gone, nobody else writes it.
        if unsafe { (*s).in_migrate } != 0 {
            stash::leave(state::MIGRATIONS);
        }
        let _ = TASKS.remove(tid);
    }
    stash::forget_task(tid);
    // SAFETY: plain value lookup.
    let victim_mm = match unsafe { VICTIMS.get(tid) } {
        Some(mm) => *mm,
        None => 0,
    };
    if victim_mm != 0
        && kernel::task_oom_mm(task) == victim_mm
        && kernel::mm_flags(victim_mm) & (1 << mmf::MMF_OOM_SKIP) != 0
    {
        let _ = VICTIMS.remove(tid);
    }
}
