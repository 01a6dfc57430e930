//! The scenarios behind `tests/data/*.jsonl`. Each one is a small recording of
//! what the BPF side emits on the named kernel and hook rung while the
//! scenario of `docs/kernel.md` runs, with unrelated background activity.
//! `UPDATE_EXPECT=1 cargo test -p monitor-detector` rewrites the files from
//! here; the detector is then run on the files, never on these builders.

use monitor_common::event::hdr::{END_GENERATION, READ_ERROR};
use monitor_detector::event::{Data, Fault, UffdEventKind};

use super::support::*;

pub const R510: &str = "5.10.0-32-cloud-amd64";
pub const R61: &str = "6.1.0-50-cloud-amd64";
pub const R612: &str = "6.12.117+deb12-cloud-amd64";
pub const R618: &str = "6.18.44-fc-v669";

// mm_struct addresses (slab objects in the direct map).
const MM_VICTIM: u64 = 0xffff_8880_0541_a380;
const MM_OTHER: u64 = 0xffff_8880_04e2_c700;
const MM_SHELL: u64 = 0xffff_8880_062f_5c00;
const MM_EXEC: u64 = 0xffff_8880_03b1_e380;
const MM_UFFD: u64 = 0xffff_8880_0710_4e00;
const MM_GDB: u64 = 0xffff_8880_0552_9a80;

// User address ranges.
const HEAP: (u64, u64) = (0x5583_2a40_0000, 0x5583_2e40_0000);
const LIBC: (u64, u64) = (0x7f3c_1a20_0000, 0x7f3c_1a3c_0000);
const RING: u64 = 0x7f3c_1b00_0000;
const UFFD_AREA: u64 = 0x7f8a_4c60_0000;
const TEMP_STACK: (u64, u64) = (0x7fff_ffff_0000, 0x7fff_ffff_f000);
const FINAL_STACK: (u64, u64) = (0x7ffd_e953_0000, 0x7ffd_e955_3000);

const ANON_FLAGS: u64 = 0x0010_0073;

pub type Builder = fn() -> Trace;

/// Every scenario, by fixture name.
pub fn all() -> Vec<(&'static str, Builder)> {
    vec![
        ("reaper_6x_legal_overlap", reaper_6x_legal_overlap),
        (
            "reaper_6x_exit_end_inside_reap",
            reaper_6x_exit_end_inside_reap,
        ),
        ("reaper_6x_mmdrop_inside_reap", reaper_6x_mmdrop_inside_reap),
        (
            "reaper_tp_exit_end_inside_reap",
            reaper_tp_exit_end_inside_reap,
        ),
        (
            "reaper_tp_reap_after_exit_end",
            reaper_tp_reap_after_exit_end,
        ),
        ("reaper_510_nested_own_reap", reaper_510_nested_own_reap),
        (
            "reaper_510_overlap_before_barrier",
            reaper_510_overlap_before_barrier,
        ),
        (
            "reaper_510_overlap_unmap_vmas",
            reaper_510_overlap_unmap_vmas,
        ),
        ("reaper_loss_line_in_window", reaper_loss_line_in_window),
        ("reaper_seq_gap_in_window", reaper_seq_gap_in_window),
        ("reaper_cross_cpu_swapped", reaper_cross_cpu_swapped),
        ("reaper_unknown_kernel", reaper_unknown_kernel),
        ("benign_function_rung", benign_function_rung),
        ("benign_tracepoint_host", benign_tracepoint_host),
        ("mm_reuse_function_rung", mm_reuse_function_rung),
        ("mm_reuse_tracepoint_rung", mm_reuse_tracepoint_rung),
        ("unstable_kthread_sigbus", unstable_kthread_sigbus),
        ("unstable_kthread_handled", unstable_kthread_handled),
        (
            "unstable_kthread_handled_shared",
            unstable_kthread_handled_shared,
        ),
        ("unstable_remote_gup", unstable_remote_gup),
        ("unstable_tracepoint_unknown", unstable_tracepoint_unknown),
        (
            "unstable_owner_and_stable_faults",
            unstable_owner_and_stable_faults,
        ),
        ("unstable_handled_across_loss", unstable_handled_across_loss),
        (
            "unstable_flag_set_during_fault",
            unstable_flag_set_during_fault,
        ),
        ("migration_skip_temp_stack", migration_skip_temp_stack),
        (
            "migration_entry_in_temp_stack",
            migration_entry_in_temp_stack,
        ),
        ("migration_completes", migration_completes),
        ("migration_repeated_wait", migration_repeated_wait),
        ("migration_tracepoint_host", migration_tracepoint_host),
        ("uffd_fork_eagain_tracepoint", uffd_fork_eagain_tracepoint),
        ("uffd_fork_eagain_function", uffd_fork_eagain_function),
        (
            "uffd_copy_inside_remap_window",
            uffd_copy_inside_remap_window,
        ),
        ("uffd_remove_overlap_legal", uffd_remove_overlap_legal),
        ("uffd_copy_no_change", uffd_copy_no_change),
        ("uffd_violation_across_gap", uffd_violation_across_gap),
    ]
}

/// Traces that are deliberately broken, derived from a scenario's text.
pub fn broken() -> Vec<(&'static str, String)> {
    let good = reaper_6x_legal_overlap().to_jsonl();
    let lines: Vec<&str> = good.lines().collect();
    // The recorder was killed while writing its last line.
    let mut truncated = lines[..lines.len() - 1].join("\n");
    truncated.push('\n');
    let last = lines[lines.len() - 1];
    truncated.push_str(&last[..last.len() / 2]);
    // A line in the middle was damaged.
    let malformed: Vec<String> = lines
        .iter()
        .map(|l| {
            l.replace(
                "\"ev\":\"reaper_unmap_start\"",
                "\"ev\":\"reaper_unmap_strat\"",
            )
        })
        .collect();
    // The header is missing (a file cut at the front).
    let headless = lines[1..].join("\n") + "\n";
    vec![
        ("warn_truncated_last_line", truncated),
        ("error_malformed_line", malformed.join("\n") + "\n"),
        ("error_missing_header", headless),
    ]
}

// ---------------------------------------------------------------------------
// Shared pieces.

/// An ordinary process that execs and exits cleanly (function rung).
fn normal_life_fn(tr: &mut Trace, addr: u64, task: Task, file: &str) {
    tr.on_cpu(1);
    let mm = tr.mm(addr);
    tr.emit(
        task,
        mm,
        "fentry_shift_arg_pages",
        Data::StackMoveStart(stack_move(TEMP_STACK.0, TEMP_STACK.1, 0x2_acd0_0000, 0)),
    );
    tr.wait_us(480);
    tr.emit(
        task,
        mm,
        "fexit_shift_arg_pages",
        Data::StackMoveEnd(stack_move(FINAL_STACK.0, FINAL_STACK.1, 0x2_acd0_0000, 0)),
    );
    tr.emit(task, mm, "tp_sched_process_exec", exec(file, task.pid));
    tr.wait_us(35_000);
    tr.emit(
        task,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS)),
    );
    tr.emit(
        task,
        mm,
        "fentry_unmap_vmas",
        Data::UnmapVmasStart(vma(LIBC.0, LIBC.1, 0x75, 0)),
    );
    tr.wait_us(140);
    tr.emit(
        task,
        mm,
        "fexit_unmap_vmas",
        Data::UnmapVmasEnd(vma(LIBC.0, LIBC.1, 0x75, 0)),
    );
    tr.emit(
        task,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS | (1 << 21))),
    );
    tr.emit_flags(
        task,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS | (1 << 21))),
        END_GENERATION,
    );
}

fn heap() -> monitor_detector::event::VmaRange {
    vma(HEAP.0, HEAP.1, ANON_FLAGS, HEAP.0)
}

// ---------------------------------------------------------------------------
// reaper_exit_overlap.

/// 6.12, pinned victim and helper on CPU0, reaper on CPU1: the measured
/// overlap of `docs/kernel.md` (legal on 6.0+: near miss).
fn reaper_6x_legal_overlap() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 33_402_118_000);
    let victim = user(1234, 1234, "t_oom_hold");
    let t2 = user(1236, 1234, "t_oom_hold");
    normal_life_fn(&mut tr, MM_SHELL, user(980, 980, "sh"), "/bin/true");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.wait_us(2_008_000);
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry_unmap_page_range",
        Data::ReaperUnmapStart(heap()),
    );
    tr.wait_us(22_000);
    tr.on_cpu(0);
    tr.emit(
        t2,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(t2, mm, "fentry_unmap_vmas", Data::UnmapVmasStart(heap()));
    tr.wait_us(22_500);
    tr.emit(t2, mm, "fexit_unmap_vmas", Data::UnmapVmasEnd(heap()));
    tr.on_cpu(1);
    tr.wait_us(22_900);
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit_unmap_page_range",
        Data::ReaperUnmapEnd(heap()),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.wait_us(14_600);
    tr.emit(
        t2,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        t2,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 6.1: `exit_mmap` returns while the reaper is still inside
/// `__oom_reap_task_mm` — impossible (write lock vs read lock).
fn reaper_6x_exit_end_inside_reap() -> Trace {
    let mut tr = Trace::new(R61, hooks_function(R61), 19_120_004_000);
    let victim = user(2210, 2210, "memhog");
    tr.on_cpu(1);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.wait_us(2_011_000);
    tr.on_cpu(0);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry_unmap_page_range",
        Data::ReaperUnmapStart(heap()),
    );
    tr.on_cpu(1);
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "fentry_unmap_vmas",
        Data::UnmapVmasStart(heap()),
    );
    tr.emit(victim, mm, "fexit_unmap_vmas", Data::UnmapVmasEnd(heap()));
    tr.wait_us(3_000);
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.on_cpu(0);
    tr.wait_us(9_000);
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit_unmap_page_range",
        Data::ReaperUnmapEnd(heap()),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_DEAD),
    );
    tr.emit_flags(
        OOM_REAPER,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 6.12: the last reference is dropped while the reaper still works on the mm.
fn reaper_6x_mmdrop_inside_reap() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 51_000_000_000);
    let lmkd = user(612, 612, "lmkd");
    let victim = user(4410, 4410, "camera.app");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    // process_mrelease(2) reaps in the caller's context.
    tr.emit(
        lmkd,
        NO_MM,
        "tp_sys_enter_process_mrelease",
        Data::MreleaseEnter(monitor_detector::event::Mrelease {
            pidfd: 7,
            flags: 0,
            ret: 0,
        }),
    );
    tr.emit(
        lmkd,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS),
    );
    tr.emit(
        lmkd,
        mm,
        "fentry_unmap_page_range",
        Data::ReaperUnmapStart(heap()),
    );
    tr.on_cpu(1);
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 6.18 host, tracepoints only: `mmap:exit_mmap` fires inside the
/// `start/finish_task_reaping` bracket.
fn reaper_tp_exit_end_inside_reap() -> Trace {
    let mut tr = Trace::new(R618, hooks_tracepoint(), 812_440_000_000);
    let victim = user(30511, 30511, "chrome");
    tr.on_cpu(3);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.wait_us(2_002_000);
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "tp_start_task_reaping",
        reap_start_tp(victim.pid, MM_FLAGS | (1 << 25)),
    );
    tr.on_cpu(3);
    tr.wait_us(4_000);
    tr.emit_flags(
        victim,
        mm,
        "tp_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.on_cpu(1);
    // The entry was dropped at exit_mmap: the finish opens a new generation.
    let zombie = tr.mm(MM_VICTIM);
    tr.emit(
        OOM_REAPER,
        zombie,
        "tp_finish_task_reaping",
        reap_end_tp(victim.pid, MM_FLAGS_DEAD),
    );
    tr.summary(0);
    tr
}

/// 6.18 host: the reaper starts after `mmap:exit_mmap` of its victim's mm.
fn reaper_tp_reap_after_exit_end() -> Trace {
    let mut tr = Trace::new(R618, hooks_tracepoint(), 912_000_000_000);
    let victim = user(30777, 30777, "java");
    tr.on_cpu(2);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.wait_us(1_200_000);
    tr.emit_flags(
        victim,
        mm,
        "tp_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS | (1 << 21))),
        END_GENERATION,
    );
    tr.wait_us(800_000);
    tr.on_cpu(0);
    let zombie = tr.mm(MM_VICTIM);
    tr.emit(
        OOM_REAPER,
        zombie,
        "tp_start_task_reaping",
        reap_start_tp(victim.pid, MM_FLAGS | (1 << 21)),
    );
    tr.emit(
        OOM_REAPER,
        zombie,
        "tp_finish_task_reaping",
        reap_end_tp(victim.pid, MM_FLAGS_DEAD),
    );
    tr.summary(0);
    tr
}

/// 5.10: `exit_mmap` of an OOM victim calls `__oom_reap_task_mm` itself
/// (4.17+): the kernel's own path, not a race.
fn reaper_510_nested_own_reap() -> Trace {
    let mut tr = Trace::new(R510, hooks_function(R510), 7_300_000_000);
    let victim = user(801, 801, "stress-ng-vm");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.wait_us(12_000);
    tr.emit(
        victim,
        mm,
        "kprobe_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS)),
    );
    tr.emit(
        victim,
        mm,
        "kprobe___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS),
    );
    tr.emit(
        victim,
        mm,
        "kprobe_unmap_page_range",
        Data::ReaperUnmapStart(heap()),
    );
    tr.wait_us(8_000);
    tr.emit(
        victim,
        mm,
        "kretprobe_unmap_page_range",
        Data::ReaperUnmapEnd(heap()),
    );
    tr.emit(
        victim,
        mm,
        "kretprobe___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.emit(
        victim,
        mm,
        "kprobe_unmap_vmas",
        Data::UnmapVmasStart(heap()),
    );
    tr.emit(
        victim,
        mm,
        "kretprobe_unmap_vmas",
        Data::UnmapVmasEnd(heap()),
    );
    tr.emit(
        victim,
        mm,
        "kretprobe_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.wait_us(2_000_000);
    // The reaper's timer finds MMF_OOM_SKIP: no reaping.
    tr.on_cpu(1);
    tr.emit_flags(
        OOM_REAPER,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 5.10: an external reaper overlapping the start of `exit_mmap` (its own
/// nested reap), done before the write-lock barrier and `unmap_vmas`.
fn reaper_510_overlap_before_barrier() -> Trace {
    let mut tr = Trace::new(R510, hooks_function(R510), 8_100_000_000);
    let victim = user(802, 802, "stress-ng-vm");
    let t2 = user(803, 802, "stress-ng-vm");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "kprobe___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "kprobe_unmap_page_range",
        Data::ReaperUnmapStart(heap()),
    );
    tr.on_cpu(0);
    tr.emit(
        t2,
        mm,
        "kprobe_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        t2,
        mm,
        "kprobe___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "kretprobe_unmap_page_range",
        Data::ReaperUnmapEnd(heap()),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "kretprobe___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        t2,
        mm,
        "kretprobe___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.emit(t2, mm, "kprobe_unmap_vmas", Data::UnmapVmasStart(heap()));
    tr.emit(t2, mm, "kretprobe_unmap_vmas", Data::UnmapVmasEnd(heap()));
    tr.emit(
        t2,
        mm,
        "kretprobe_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        t2,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 5.10: the external reaper is still unmapping while `exit_mmap` runs
/// `unmap_vmas` — the double unmap fixed by 27ae357fa82b, impossible after the barrier.
fn reaper_510_overlap_unmap_vmas() -> Trace {
    let mut tr = Trace::new(R510, hooks_function(R510), 9_000_000_000);
    let victim = user(804, 804, "stress-ng-vm");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "kprobe___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "kprobe_unmap_page_range",
        Data::ReaperUnmapStart(heap()),
    );
    tr.on_cpu(0);
    tr.emit(
        victim,
        mm,
        "kprobe_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "kprobe_unmap_vmas",
        Data::UnmapVmasStart(heap()),
    );
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "kretprobe_unmap_page_range",
        Data::ReaperUnmapEnd(heap()),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "kretprobe___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        victim,
        mm,
        "kretprobe_unmap_vmas",
        Data::UnmapVmasEnd(heap()),
    );
    tr.emit(
        victim,
        mm,
        "kretprobe_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 6.12: the reaper's return record is lost in the ring buffer, so
/// `exit_mmap` ending "inside" the bracket proves nothing: uncertain.
fn reaper_loss_line_in_window() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 40_000_000_000);
    let victim = user(5120, 5120, "postgres");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.lose_record(mm); // fexit___oom_reap_task_mm
    tr.loss(&[("reap_end", 1), ("fault", 5_310)]);
    tr.on_cpu(0);
    tr.wait_us(10_000);
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(5_311);
    tr
}

/// 6.12: no loss line, but a hole in the mm's sequence inside the window.
fn reaper_seq_gap_in_window() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 41_000_000_000);
    let victim = user(5121, 5121, "postgres");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.on_cpu(0);
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.lose_record(mm);
    tr.lose_record(mm);
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    // Background traffic long enough for the reorder window to give up.
    for i in 0..300u32 {
        normal_exit_tp_like(&mut tr, MM_OTHER + u64::from(i) * 0x400, i);
    }
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_DEAD),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(2);
    tr
}

/// A short-lived process's exit on the function rung (background traffic).
fn normal_exit_tp_like(tr: &mut Trace, addr: u64, i: u32) {
    let task = user(20_000 + i, 20_000 + i, "cron");
    let mm = tr.mm(addr);
    tr.emit(
        task,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS)),
    );
    tr.emit(
        task,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS | (1 << 21))),
    );
    tr.emit_flags(
        task,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS | (1 << 21))),
        END_GENERATION,
    );
}

/// 6.12: the legal overlap again, but records of the same mm from two CPUs
/// arrive swapped in the ring buffer (sequence taken before reservation).
fn reaper_cross_cpu_swapped() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 60_000_000_000);
    let victim = user(7001, 7001, "redis-server");
    let t2 = user(7003, 7001, "redis-server");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.on_cpu(0);
    tr.emit(
        t2,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.swap_last_two();
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry_unmap_page_range",
        Data::ReaperUnmapStart(heap()),
    );
    tr.on_cpu(0);
    tr.emit(t2, mm, "fentry_unmap_vmas", Data::UnmapVmasStart(heap()));
    tr.swap_last_two();
    tr.emit(t2, mm, "fexit_unmap_vmas", Data::UnmapVmasEnd(heap()));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit_unmap_page_range",
        Data::ReaperUnmapEnd(heap()),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        t2,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.swap_last_two();
    tr.emit_flags(
        t2,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// A kernel whose release string is not recognised: at most a near miss.
fn reaper_unknown_kernel() -> Trace {
    let mut tr = Trace::new("custom-rt-kernel", hooks_function(R612), 10_000_000_000);
    let victim = user(990, 990, "memhog");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS),
    );
    tr.on_cpu(0);
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_DEAD),
    );
    tr.emit_flags(
        OOM_REAPER,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

// ---------------------------------------------------------------------------
// Benign look-alikes.

/// Function rung, 6.12: normal exits, an OOM victim reaped strictly before its
/// exit (no overlap), a vhost kthread faulting on a healthy mm, munmap with a
/// userfaultfd that raises `mmap_changing` with no copy around it, a
/// migration batch that completes.
fn benign_function_rung() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 100_000_000_000);
    normal_life_fn(&mut tr, MM_SHELL, user(1500, 1500, "bash"), "/usr/bin/ls");
    normal_life_fn(&mut tr, MM_EXEC, user(1501, 1501, "bash"), "/usr/bin/grep");
    // OOM: reaped, then exit (release_ms >> 2000 in t_oom_hold).
    let victim = user(1600, 1600, "t_oom_hold");
    let t2 = user(1602, 1600, "t_oom_hold");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.wait_us(2_010_000);
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry_unmap_page_range",
        Data::ReaperUnmapStart(heap()),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit_unmap_page_range",
        Data::ReaperUnmapEnd(heap()),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.wait_us(3_000_000);
    tr.on_cpu(0);
    // The victim's own thread copies from user memory before noticing SIGKILL.
    tr.emit(
        t2,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(RING, MM_FLAGS_DEAD, MM_VICTIM, 0x215, Some(2))),
    );
    tr.emit(
        t2,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit(t2, mm, "fentry_unmap_vmas", Data::UnmapVmasStart(heap()));
    tr.emit(t2, mm, "fexit_unmap_vmas", Data::UnmapVmasEnd(heap()));
    tr.emit(
        t2,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        t2,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    // vhost worker on a healthy VM process.
    let qemu = user(2000, 2000, "qemu-system-x86");
    let vhost = kthread(2010, "vhost-2000");
    let vm = tr.mm(MM_OTHER);
    tr.emit(
        vhost,
        vm,
        "fentry_kthread_use_mm",
        Data::KthreadUseMm(mm_state(MM_FLAGS)),
    );
    for i in 0..4u64 {
        tr.emit(
            vhost,
            vm,
            "fexit_handle_mm_fault",
            Data::Fault(fault(RING + i * 0x1000, MM_FLAGS, MM_OTHER, 0x214, Some(0))),
        );
    }
    // munmap of a userfaultfd-registered range: mmap_changing up and down.
    let um = tr.mm(MM_UFFD);
    tr.emit(
        qemu,
        um,
        "fentry_userfaultfd_unmap_prep",
        Data::UffdChangeBegin(uffd_change(
            UffdEventKind::Unmap,
            1,
            UFFD_AREA,
            UFFD_AREA + 0x20_0000,
        )),
    );
    tr.wait_us(1_500);
    tr.emit(
        qemu,
        um,
        "fexit_userfaultfd_event_wait_completion",
        Data::UffdChangeEnd(uffd_change(UffdEventKind::Unmap, 1, 0, 0)),
    );
    tr.emit(
        qemu,
        um,
        "fexit_userfaultfd_ioctl",
        Data::UffdCopy(uffd_copy(UFFD_AREA + 0x40_0000, 0, 0)),
    );
    // A compaction batch that completes.
    tr.emit(
        KCOMPACTD,
        NO_MM,
        "tp_mm_migrate_pages_start",
        Data::MigrateStart(migrate(MR_COMPACTION)),
    );
    tr.emit(
        KCOMPACTD,
        NO_MM,
        "tp_mm_migrate_pages_7",
        migrate_end(MR_COMPACTION, 73, 73, 73),
    );
    tr.summary(0);
    tr
}

/// The 6.18 host (tracepoints only): exec windows, tracked exits, an OOM victim
/// that exited before the reaper woke (the reaper skips it), compaction while
/// execs run (not attributable), UFFDIO_COPY that succeed, forks.
fn benign_tracepoint_host() -> Trace {
    let mut tr = Trace::new(R618, hooks_tracepoint(), 1_200_000_000_000);
    let sh = user(3100, 3100, "sh");
    tr.on_cpu(2);
    let m1 = tr.mm(MM_SHELL);
    tr.emit(sh, m1, "tp_task_rename", exec_switch("make"));
    tr.emit(
        KCOMPACTD,
        NO_MM,
        "tp_mm_migrate_pages_start",
        Data::MigrateStart(migrate(MR_COMPACTION)),
    );
    tr.emit(sh, m1, "tp_sched_process_exec", exec("/usr/bin/make", 3100));
    tr.emit(
        KCOMPACTD,
        NO_MM,
        "tp_mm_migrate_pages_8",
        migrate_end(MR_COMPACTION, 412, 415, 410),
    );
    tr.wait_us(90_000);
    tr.emit_flags(
        sh,
        m1,
        "tp_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS | (1 << 21))),
        END_GENERATION,
    );
    // OOM victim exits by itself; 2 s later the reaper finds MMF_OOM_SKIP.
    let victim = user(3200, 3200, "cc1plus");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.wait_us(9_000);
    tr.emit_flags(
        victim,
        mm,
        "tp_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS | (1 << 21))),
        END_GENERATION,
    );
    tr.wait_us(2_000_000);
    tr.on_cpu(1);
    let zombie = tr.mm(MM_VICTIM);
    tr.emit(
        OOM_REAPER,
        zombie,
        "tp_skip_task_reaping",
        reap_skip_tp(victim.pid, MM_FLAGS | (1 << 21)),
    );
    // A uffd monitor copying with nothing changing; the process forks later.
    let crit = user(3300, 3300, "criu");
    let um = tr.mm(MM_UFFD);
    for i in 0..5u64 {
        tr.emit(
            crit,
            um,
            "tp_sys_exit_ioctl",
            Data::UffdCopy(uffd_copy(UFFD_AREA + i * 0x1000, 0, 0)),
        );
    }
    tr.emit(
        crit,
        um,
        "tp_sched_process_fork",
        fork(user(3301, 3301, "criu"), MM_GDB),
    );
    tr.summary(0);
    tr
}

/// Function rung: a reaped and freed mm, then a new process whose mm lands
/// at the same address. The new generation must not inherit the old reap.
fn mm_reuse_function_rung() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 200_000_000_000);
    let victim = user(4000, 4000, "memhog");
    tr.on_cpu(0);
    let old = tr.mm(MM_VICTIM);
    tr.emit(victim, old, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        old,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        old,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        victim,
        old,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit(
        victim,
        old,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        old,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.wait_us(50_000);
    // qemu execs; its new mm reuses the address; its vhost worker faults.
    let qemu = user(4100, 4100, "qemu-system-x86");
    let vhost = kthread(4110, "vhost-4100");
    let new = tr.mm(MM_VICTIM);
    tr.emit(
        qemu,
        new,
        "fentry_relocate_vma_down",
        Data::StackMoveStart(stack_move(TEMP_STACK.0, TEMP_STACK.1, 0x2_0000_0000, 0)),
    );
    tr.emit(
        qemu,
        new,
        "fexit_relocate_vma_down",
        Data::StackMoveEnd(stack_move(FINAL_STACK.0, FINAL_STACK.1, 0x2_0000_0000, 0)),
    );
    tr.emit(
        qemu,
        new,
        "tp_sched_process_exec",
        exec("/usr/bin/qemu-system-x86_64", 4100),
    );
    tr.emit(
        vhost,
        new,
        "fentry_kthread_use_mm",
        Data::KthreadUseMm(mm_state(MM_FLAGS)),
    );
    tr.emit(
        vhost,
        new,
        "fexit_handle_mm_fault",
        Data::Fault(fault(RING, MM_FLAGS, MM_VICTIM, 0x215, Some(0))),
    );
    // A fault whose flags could not be read: the old generation's reap must
    // not make it "after MMF_UNSTABLE".
    tr.emit_flags(
        vhost,
        new,
        "fexit_handle_mm_fault",
        Data::Fault(fault(RING + 0x1000, 0, MM_VICTIM, 0x214, Some(0))),
        READ_ERROR,
    );
    tr.emit(
        qemu,
        new,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS)),
    );
    tr.emit(
        qemu,
        new,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS | (1 << 21))),
    );
    tr.emit_flags(
        qemu,
        new,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS | (1 << 21))),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// Tracepoint rung: the victim's generation ends at `mmap:exit_mmap`; the
/// address is reused by a new process that is itself OOM-killed and reaped
/// before it exits. The reaping of the second victim is not "after the first
/// one's exit_mmap".
fn mm_reuse_tracepoint_rung() -> Trace {
    let mut tr = Trace::new(R618, hooks_tracepoint(), 300_000_000_000);
    let a = user(5000, 5000, "node");
    let b = user(5100, 5100, "node");
    tr.on_cpu(0);
    let g1 = tr.mm(MM_VICTIM);
    tr.emit(a, g1, "tp_mark_victim", mark_victim(a, MM_FLAGS));
    tr.emit(
        OOM_REAPER,
        g1,
        "tp_start_task_reaping",
        reap_start_tp(a.pid, MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        g1,
        "tp_finish_task_reaping",
        reap_end_tp(a.pid, MM_FLAGS_UNSTABLE),
    );
    tr.emit_flags(
        a,
        g1,
        "tp_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.wait_us(400_000);
    let g2 = tr.mm(MM_VICTIM);
    tr.emit(b, g2, "tp_task_rename", exec_switch("node"));
    tr.emit(b, g2, "tp_sched_process_exec", exec("/usr/bin/node", 5100));
    tr.wait_us(3_000_000);
    tr.emit(b, g2, "tp_mark_victim", mark_victim(b, MM_FLAGS));
    tr.wait_us(2_000_000);
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        g2,
        "tp_start_task_reaping",
        reap_start_tp(b.pid, MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        g2,
        "tp_finish_task_reaping",
        reap_end_tp(b.pid, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit_flags(
        b,
        g2,
        "tp_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

// ---------------------------------------------------------------------------
// unstable_mm_fault.

/// 6.1, vhost kthread (measured, `docs/kernel.md`): after the reap the
/// worker's `__get_user`/`__put_user` on the ring fault with SIGBUS.
fn unstable_kthread_sigbus() -> Trace {
    let mut tr = Trace::new(R61, hooks_function(R61), 22_700_000_000);
    let victim = user(1911, 1911, "t_vhost_oom");
    let t2 = user(1913, 1911, "t_vhost_oom");
    let vhost = kthread(1920, "vhost-1911");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(
        vhost,
        mm,
        "fentry_kthread_use_mm",
        Data::KthreadUseMm(mm_state(MM_FLAGS)),
    );
    tr.wait_us(116_000);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.wait_us(2_028_700);
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.wait_us(78_000);
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.wait_us(897_000);
    tr.on_cpu(0);
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            RING + 0x2000,
            MM_FLAGS_DEAD,
            MM_VICTIM,
            0x215,
            Some(0x2),
        )),
    );
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            RING + 0x1002,
            MM_FLAGS_DEAD,
            MM_VICTIM,
            0x214,
            Some(0x2),
        )),
    );
    // The owner's own stuck thread is not a finding.
    tr.emit(
        t2,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            HEAP.0 + 0x5000,
            MM_FLAGS_DEAD,
            MM_VICTIM,
            0x255,
            Some(0x2),
        )),
    );
    tr.emit(
        vhost,
        mm,
        "fentry_kthread_unuse_mm",
        Data::KthreadUnuseMm(mm_state(MM_FLAGS_DEAD)),
    );
    tr.wait_us(3_000);
    tr.emit(
        t2,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit(
        t2,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        t2,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 6.12 kthread mode: a fault on the reaped mm returns 0 — the SIGBUS
/// protection did not apply (zero page instead of data).
/// 6.12: the vhost kernel thread's fault after the reap is handled, but on a
/// `VM_SHARED` mapping, which `__oom_reap_task_mm` does not unmap: legal.
fn unstable_kthread_handled_shared() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 36_000_000_000);
    let victim = user(2311, 2311, "t_vhost_oom");
    let vhost = kthread(2320, "vhost-2311");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(
        vhost,
        mm,
        "fentry_kthread_use_mm",
        Data::KthreadUseMm(mm_state(MM_FLAGS)),
    );
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    // VM_READ|VM_WRITE|VM_MAYREAD|VM_MAYWRITE|VM_SHARED|VM_MAYSHARE.
    let shared = Fault {
        vm_flags: 0xfb,
        ..fault(
            RING + 0x1000,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0x214,
            Some(0x0),
        )
    };
    tr.emit(vhost, mm, "fexit_handle_mm_fault", Data::Fault(shared));
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

fn unstable_kthread_handled() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 35_000_000_000);
    let victim = user(2211, 2211, "t_vhost_oom");
    let vhost = kthread(2220, "vhost-2211");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(
        vhost,
        mm,
        "fentry_kthread_use_mm",
        Data::KthreadUseMm(mm_state(MM_FLAGS)),
    );
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            RING + 0x2000,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0x215,
            Some(0x2),
        )),
    );
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            RING + 0x1002,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0x214,
            Some(0x0),
        )),
    );
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            RING + 0x3000,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0x214,
            Some(0x400),
        )),
    );
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 6.12: a debugger reads the dying process through `/proc/PID/mem` (a remote
/// GUP fault: `current->mm` differs) after the reap: SIGBUS, near miss.
fn unstable_remote_gup() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 36_000_000_000);
    let victim = user(2311, 2311, "leaky");
    let gdb = user(2400, 2400, "gdb");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        gdb,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            HEAP.0 + 0x8000,
            MM_FLAGS_DEAD,
            MM_GDB,
            0x80,
            Some(0x2),
        )),
    );
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 6.18 host: `exceptions:page_fault_kernel` by a kthread on an unstable mm.
/// The result is invisible: uncertain.
fn unstable_tracepoint_unknown() -> Trace {
    let mut tr = Trace::new(R618, hooks_tracepoint(), 700_000_000_000);
    let victim = user(8811, 8811, "vm-guest");
    let worker = kthread(8820, "vhost-8811");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "tp_start_task_reaping",
        reap_start_tp(victim.pid, MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "tp_finish_task_reaping",
        reap_end_tp(victim.pid, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        worker,
        mm,
        "tp_page_fault_kernel",
        Data::KernelFault(fault(RING + 0x2000, MM_FLAGS_DEAD, MM_VICTIM, 0x2, None)),
    );
    tr.emit(
        worker,
        mm,
        "tp_page_fault_kernel",
        Data::KernelFault(fault(RING + 0x1002, MM_FLAGS_DEAD, MM_VICTIM, 0x0, None)),
    );
    tr.emit_flags(
        victim,
        mm,
        "tp_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// Benign: the victim's own threads fault after the reap; a kthread faults on
/// the mm before the reaper ran; a retried kthread fault after it.
fn unstable_owner_and_stable_faults() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 37_000_000_000);
    let victim = user(2511, 2511, "t_oom_hold");
    let t2 = user(2512, 2511, "t_oom_hold");
    let worker = user(2513, 2511, "vhost-2511");
    let vhost = kthread(2520, "vhost-2511");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(
        vhost,
        mm,
        "fentry_kthread_use_mm",
        Data::KthreadUseMm(mm_state(MM_FLAGS)),
    );
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(RING, MM_FLAGS, MM_VICTIM, 0x215, Some(0))),
    );
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(RING + 0x1000, MM_FLAGS, MM_VICTIM, 0x214, Some(0))),
    );
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        t2,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            HEAP.0 + 0x3000,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0x255,
            Some(0x2),
        )),
    );
    tr.emit(
        t2,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            HEAP.0 + 0x4000,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0x255,
            Some(0),
        )),
    );
    // A vhost_task worker (6.4+, PF_USER_WORKER): a thread of the owner.
    let mut w = worker;
    w.flags |= monitor_common::pf::PF_USER_WORKER;
    tr.emit(
        w,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(RING, MM_FLAGS_UNSTABLE, MM_VICTIM, 0x215, Some(0x2))),
    );
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(
            RING + 0x2000,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0x214,
            Some(0x400),
        )),
    );
    tr.emit(
        t2,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        t2,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        t2,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

/// 6.12: the handled kthread fault of `unstable_kthread_handled`, but fault
/// records were lost in the ring buffer while the window was open.
fn unstable_handled_across_loss() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 38_000_000_000);
    let victim = user(2611, 2611, "t_vhost_oom");
    let vhost = kthread(2620, "vhost-2611");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault(RING, MM_FLAGS_UNSTABLE, MM_VICTIM, 0x215, Some(0))),
    );
    tr.loss(&[("fault", 120)]);
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(120);
    tr
}

/// 6.12: a vhost fault that began just before `__oom_reap_task_mm` set
/// `MMF_UNSTABLE` and returned 0 just after: its stability check passed before
/// the reaper started. Legal (near miss), unlike a fault that began after.
fn unstable_flag_set_during_fault() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 39_000_000_000);
    let victim = user(2711, 2711, "t_vhost_oom");
    let vhost = kthread(2720, "vhost-2711");
    tr.on_cpu(0);
    let mm = tr.mm(MM_VICTIM);
    tr.emit(
        vhost,
        mm,
        "fentry_kthread_use_mm",
        Data::KthreadUseMm(mm_state(MM_FLAGS)),
    );
    tr.emit(victim, mm, "tp_mark_victim", mark_victim(victim, MM_FLAGS));
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fentry___oom_reap_task_mm",
        reap_start_fn(MM_FLAGS | (1 << 25)),
    );
    tr.on_cpu(0);
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault_seen_at_entry(
            RING,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0,
            false,
        )),
    );
    tr.on_cpu(1);
    tr.emit(
        OOM_REAPER,
        mm,
        "fexit___oom_reap_task_mm",
        reap_end_fn(1, MM_FLAGS_UNSTABLE),
    );
    tr.on_cpu(0);
    tr.emit(
        vhost,
        mm,
        "fexit_handle_mm_fault",
        Data::Fault(fault_seen_at_entry(
            RING + 0x1000,
            MM_FLAGS_UNSTABLE,
            MM_VICTIM,
            0x400,
            true,
        )),
    );
    tr.emit(
        victim,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
    );
    tr.emit(
        victim,
        mm,
        "fexit_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
    );
    tr.emit_flags(
        victim,
        mm,
        "fentry___mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS_DEAD)),
        END_GENERATION,
    );
    tr.summary(0);
    tr
}

// ---------------------------------------------------------------------------
// leftover_migration_entry.

/// 6.1 (measured near miss, `docs/kernel.md`): compaction's rmap walk
/// hits the temporary stack of an exec'ing task and skips it, during and just
/// before `shift_arg_pages`.
fn migration_skip_temp_stack() -> Trace {
    let mut tr = Trace::new(R61, hooks_function(R61), 7_180_000_000);
    let task = user(6200, 6200, "t_exec_loop");
    tr.on_cpu(1);
    tr.emit(
        KCOMPACTD,
        NO_MM,
        "tp_mm_migrate_pages_start",
        Data::MigrateStart(migrate(MR_COMPACTION)),
    );
    tr.on_cpu(0);
    let mm = tr.mm(MM_EXEC);
    let temp = vma(
        TEMP_STACK.0,
        TEMP_STACK.1,
        0x0811_8173,
        TEMP_STACK.0 + 0x8000,
    );
    tr.on_cpu(1);
    tr.emit(
        KCOMPACTD,
        mm,
        "kretprobe_invalid_migration_vma",
        Data::MigrationSkipTempStack(temp.clone()),
    );
    tr.emit(
        KCOMPACTD,
        mm,
        "fentry_remove_migration_pte",
        Data::MigrationPteRemoved(temp.clone()),
    );
    tr.on_cpu(0);
    tr.emit(
        task,
        mm,
        "fentry_shift_arg_pages",
        Data::StackMoveStart(stack_move(TEMP_STACK.0, TEMP_STACK.1, 0x2_16ab_c000, 0)),
    );
    tr.on_cpu(1);
    for i in 0..3u64 {
        let v = vma(
            FINAL_STACK.0,
            TEMP_STACK.1,
            0x0011_8173,
            TEMP_STACK.0 + 0x9000 + i * 0x1000,
        );
        tr.emit(
            KCOMPACTD,
            mm,
            "kretprobe_invalid_migration_vma",
            Data::MigrationSkipTempStack(v.clone()),
        );
        tr.emit(
            KCOMPACTD,
            mm,
            "fentry_remove_migration_pte",
            Data::MigrationPteRemoved(v),
        );
    }
    tr.on_cpu(0);
    tr.emit(
        task,
        mm,
        "fexit_shift_arg_pages",
        Data::StackMoveEnd(stack_move(FINAL_STACK.0, FINAL_STACK.1, 0x2_16ab_c000, 0)),
    );
    tr.emit(
        task,
        mm,
        "tp_sched_process_exec",
        exec("/proc/self/exe", 6200),
    );
    tr.on_cpu(1);
    tr.emit(
        KCOMPACTD,
        NO_MM,
        "tp_mm_migrate_pages_7",
        migrate_end(MR_COMPACTION, 73, 73, 73),
    );
    tr.summary(0);
    tr
}

/// 6.12: a migration entry installed into the temporary stack.
fn migration_entry_in_temp_stack() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 8_000_000_000);
    let task = user(6300, 6300, "t_exec_loop");
    let numa = user(6400, 6400, "numad");
    tr.on_cpu(0);
    let mm = tr.mm(MM_EXEC);
    tr.emit(
        task,
        mm,
        "fentry_relocate_vma_down",
        Data::StackMoveStart(stack_move(TEMP_STACK.0, TEMP_STACK.1, 0x2_16ab_c000, 0)),
    );
    tr.on_cpu(1);
    tr.emit(
        numa,
        NO_MM,
        "tp_mm_migrate_pages_start",
        Data::MigrateStart(migrate(5)),
    );
    tr.emit(
        numa,
        mm,
        "fentry_try_to_migrate_one",
        Data::MigrationEntryInTempStack(vma(
            TEMP_STACK.0,
            TEMP_STACK.1,
            0x0011_8173,
            TEMP_STACK.1 - 0x1000,
        )),
    );
    tr.on_cpu(0);
    tr.emit(
        task,
        mm,
        "fexit_relocate_vma_down",
        Data::StackMoveEnd(stack_move(FINAL_STACK.0, FINAL_STACK.1, 0x2_16ab_c000, 0)),
    );
    tr.emit(
        task,
        mm,
        "tp_sched_process_exec",
        exec("/usr/bin/python3", 6300),
    );
    tr.on_cpu(1);
    tr.emit(
        numa,
        NO_MM,
        "tp_mm_migrate_pages_8",
        migrate_end(5, 1, 1, 0),
    );
    tr.summary(0);
    tr
}

/// Benign, 6.1: execs while compaction runs; every batch completes; a fault
/// waits on a migration entry while its batch is in flight.
fn migration_completes() -> Trace {
    let mut tr = Trace::new(R61, hooks_function(R61), 9_000_000_000);
    let app = user(6500, 6500, "mysqld");
    tr.on_cpu(1);
    let db = tr.mm(MM_OTHER);
    for round in 0..3u64 {
        tr.emit(
            KCOMPACTD,
            NO_MM,
            "tp_mm_migrate_pages_start",
            Data::MigrateStart(migrate(MR_COMPACTION)),
        );
        tr.on_cpu(0);
        tr.emit(
            app,
            db,
            "fentry_migration_entry_wait",
            Data::MigrationEntryWait(vma(
                HEAP.0,
                HEAP.1,
                ANON_FLAGS,
                HEAP.0 + round * 0x1000 + 0x10,
            )),
        );
        tr.emit(
            app,
            db,
            "fentry_migration_entry_wait",
            Data::MigrationEntryWait(vma(
                HEAP.0,
                HEAP.1,
                ANON_FLAGS,
                HEAP.0 + round * 0x1000 + 0x18,
            )),
        );
        tr.on_cpu(1);
        tr.emit(
            KCOMPACTD,
            NO_MM,
            "tp_mm_migrate_pages_7",
            migrate_end(MR_COMPACTION, 120, 120, 120),
        );
        normal_life_fn(
            &mut tr,
            MM_EXEC + round * 0x800,
            user(6600 + round as u32, 6600 + round as u32, "sh"),
            "/bin/sleep",
        );
    }
    // One wait after the batches: the fault retries and finds the new PTE.
    tr.on_cpu(0);
    tr.emit(
        app,
        db,
        "fentry_migration_entry_wait",
        Data::MigrationEntryWait(vma(HEAP.0, HEAP.1, ANON_FLAGS, HEAP.0 + 0x2010)),
    );
    tr.summary(0);
    tr
}

/// 6.12: the same task keeps waiting on one migration entry long after every
/// batch ended: a left-behind entry is likely, but not provable.
fn migration_repeated_wait() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 10_000_000_000);
    let app = user(6700, 6700, "java");
    tr.on_cpu(1);
    let mm = tr.mm(MM_OTHER);
    tr.emit(
        KCOMPACTD,
        NO_MM,
        "tp_mm_migrate_pages_start",
        Data::MigrateStart(migrate(MR_COMPACTION)),
    );
    tr.emit(
        KCOMPACTD,
        NO_MM,
        "tp_mm_migrate_pages_8",
        migrate_end(MR_COMPACTION, 64, 65, 64),
    );
    tr.on_cpu(0);
    for _ in 0..4 {
        tr.wait_us(10_000);
        tr.emit(
            app,
            mm,
            "fentry_migration_entry_wait",
            Data::MigrationEntryWait(vma(HEAP.0, HEAP.1, ANON_FLAGS, HEAP.0 + 0x7_3010)),
        );
    }
    tr.summary(0);
    tr
}

/// The 6.18 host: exec windows overlapping compaction batches whose PTE counts
/// do not balance. Nothing can be attributed to an mm: the rule is disabled.
fn migration_tracepoint_host() -> Trace {
    let mut tr = Trace::new(R618, hooks_tracepoint(), 1_300_000_000_000);
    for i in 0..3u32 {
        let task = user(9100 + i, 9100 + i, "sh");
        tr.on_cpu(0);
        let mm = tr.mm(MM_EXEC + u64::from(i) * 0x800);
        tr.emit(task, mm, "tp_task_rename", exec_switch("cc1"));
        tr.on_cpu(1);
        tr.emit(
            KCOMPACTD,
            NO_MM,
            "tp_mm_migrate_pages_start",
            Data::MigrateStart(migrate(MR_COMPACTION)),
        );
        tr.emit(
            KCOMPACTD,
            NO_MM,
            "tp_mm_migrate_pages_8",
            migrate_end(MR_COMPACTION, 300, 305, 300 - u64::from(i)),
        );
        tr.on_cpu(0);
        tr.emit(
            task,
            mm,
            "tp_sched_process_exec",
            exec("/usr/lib/gcc/x86_64-linux-gnu/12/cc1", 9100 + i),
        );
    }
    tr.summary(0);
    tr
}

// ---------------------------------------------------------------------------
// uffd_copy_vs_mm_change.

/// The 6.18 host, `t_uffd_fork` (`docs/kernel.md`): copies are
/// refused with -EAGAIN while the FORK event is unread; `sched_process_fork`
/// fires once the handshake is done.
fn uffd_fork_eagain_tracepoint() -> Trace {
    let mut tr = Trace::new(R618, hooks_tracepoint(), 1_400_000_000_000);
    let a = user(9300, 9300, "t_uffd_fork");
    tr.on_cpu(0);
    let mm = tr.mm(MM_UFFD);
    for i in 0..3u64 {
        tr.emit(
            a,
            mm,
            "tp_sys_exit_ioctl",
            Data::UffdCopy(uffd_copy(UFFD_AREA + i * 0x1000, 0, 0)),
        );
    }
    for _ in 0..5 {
        tr.wait_us(100_000);
        tr.emit(
            a,
            mm,
            "tp_sys_exit_ioctl",
            Data::UffdCopy(uffd_copy(UFFD_AREA, -11, 1)),
        );
    }
    tr.on_cpu(1);
    tr.emit(
        user(9302, 9300, "t_uffd_fork"),
        mm,
        "tp_sched_process_fork",
        fork(user(9310, 9310, "t_uffd_fork"), MM_GDB),
    );
    tr.on_cpu(0);
    tr.emit(
        a,
        mm,
        "tp_sys_exit_ioctl",
        Data::UffdCopy(uffd_copy(UFFD_AREA, 0, 0)),
    );
    tr.summary(0);
    tr
}

/// 6.1, function rung: `dup_userfaultfd` raises the counter, copies get
/// -EAGAIN, `userfaultfd_event_wait_completion` returns.
fn uffd_fork_eagain_function() -> Trace {
    let mut tr = Trace::new(R61, hooks_function(R61), 6_880_000_000);
    let a = user(9400, 9400, "t_uffd_fork");
    let b = user(9402, 9400, "t_uffd_fork");
    tr.on_cpu(1);
    let mm = tr.mm(MM_UFFD);
    tr.emit(
        b,
        mm,
        "fentry_dup_userfaultfd",
        Data::UffdChangeBegin(uffd_change(
            UffdEventKind::Fork,
            1,
            UFFD_AREA,
            UFFD_AREA + 0x1000,
        )),
    );
    tr.on_cpu(0);
    for _ in 0..4 {
        tr.wait_us(150_000);
        tr.emit(
            a,
            mm,
            "fexit_userfaultfd_ioctl",
            Data::UffdCopy(uffd_copy(UFFD_AREA, -11, 1)),
        );
    }
    tr.on_cpu(1);
    tr.emit(
        b,
        mm,
        "fexit_userfaultfd_event_wait_completion",
        Data::UffdChangeEnd(uffd_change(UffdEventKind::Fork, 1, 0, 0)),
    );
    tr.emit(
        b,
        mm,
        "tp_sched_process_fork",
        fork(user(9410, 9410, "t_uffd_fork"), MM_GDB),
    );
    tr.on_cpu(0);
    tr.emit(
        a,
        mm,
        "fentry_mcopy_atomic",
        Data::MfillStart(uffd_copy(UFFD_AREA, 0, 0)),
    );
    tr.emit(
        a,
        mm,
        "fexit_mcopy_atomic",
        Data::MfillEnd(uffd_copy(UFFD_AREA, 4096, 0)),
    );
    tr.emit(
        a,
        mm,
        "fexit_userfaultfd_ioctl",
        Data::UffdCopy(uffd_copy(UFFD_AREA, 0, 0)),
    );
    tr.summary(0);
    tr
}

/// 6.12: a copy that starts after mremap raised `mmap_changing` and still
/// succeeds before the REMAP event is read.
fn uffd_copy_inside_remap_window() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 12_000_000_000);
    let app = user(9500, 9500, "postcopy-dst");
    let mon = user(9501, 9500, "uffd-monitor");
    tr.on_cpu(0);
    let mm = tr.mm(MM_UFFD);
    tr.emit(
        app,
        mm,
        "fentry_mremap_userfaultfd_prep",
        Data::UffdChangeBegin(uffd_change(
            UffdEventKind::Remap,
            1,
            UFFD_AREA,
            UFFD_AREA + 0x20_0000,
        )),
    );
    tr.on_cpu(1);
    tr.emit(
        mon,
        mm,
        "fentry_mfill_atomic_copy",
        Data::MfillStart(uffd_copy(UFFD_AREA + 0x3000, 0, 1)),
    );
    tr.emit(
        mon,
        mm,
        "fexit_mfill_atomic_copy",
        Data::MfillEnd(uffd_copy(UFFD_AREA + 0x3000, 4096, 1)),
    );
    tr.emit(
        mon,
        mm,
        "fexit_userfaultfd_ioctl",
        Data::UffdCopy(uffd_copy(UFFD_AREA + 0x3000, 0, 1)),
    );
    tr.on_cpu(0);
    tr.emit(
        app,
        mm,
        "fexit_userfaultfd_event_wait_completion",
        Data::UffdChangeEnd(uffd_change(UffdEventKind::Remap, 1, 0, 0)),
    );
    tr.summary(0);
    tr
}

/// 6.1: `MADV_DONTNEED` (`userfaultfd_remove`) raises the counter while a copy
/// that already passed its check is finishing: legal before 6.9, near miss.
fn uffd_remove_overlap_legal() -> Trace {
    let mut tr = Trace::new(R61, hooks_function(R61), 13_000_000_000);
    let app = user(9600, 9600, "t_uffd_madv");
    let mon = user(9601, 9600, "uffd-monitor");
    tr.on_cpu(1);
    let mm = tr.mm(MM_UFFD);
    tr.emit(
        mon,
        mm,
        "fentry_mcopy_atomic",
        Data::MfillStart(uffd_copy(UFFD_AREA, 0, 0)),
    );
    tr.on_cpu(0);
    tr.emit(
        app,
        mm,
        "fentry_userfaultfd_remove",
        Data::UffdChangeBegin(uffd_change(
            UffdEventKind::Remove,
            1,
            UFFD_AREA,
            UFFD_AREA + 0x1000,
        )),
    );
    tr.on_cpu(1);
    tr.emit(
        mon,
        mm,
        "fexit_mcopy_atomic",
        Data::MfillEnd(uffd_copy(UFFD_AREA, 4096, 1)),
    );
    tr.emit(
        mon,
        mm,
        "fexit_userfaultfd_ioctl",
        Data::UffdCopy(uffd_copy(UFFD_AREA, 0, 1)),
    );
    tr.on_cpu(0);
    tr.emit(
        app,
        mm,
        "fexit_userfaultfd_event_wait_completion",
        Data::UffdChangeEnd(uffd_change(UffdEventKind::Remove, 1, 0, 0)),
    );
    tr.summary(0);
    tr
}

/// Benign, 6.12: a monitor resolving faults with UFFDIO_COPY, nothing
/// changing the layout; a fork before the copies, fully handshaken.
fn uffd_copy_no_change() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 14_000_000_000);
    let app = user(9700, 9700, "postcopy-dst");
    let mon = user(9701, 9700, "uffd-monitor");
    tr.on_cpu(0);
    let mm = tr.mm(MM_UFFD);
    tr.emit(
        app,
        mm,
        "fentry_dup_userfaultfd",
        Data::UffdChangeBegin(uffd_change(
            UffdEventKind::Fork,
            1,
            UFFD_AREA,
            UFFD_AREA + 0x20_0000,
        )),
    );
    tr.emit(
        app,
        mm,
        "fexit_userfaultfd_event_wait_completion",
        Data::UffdChangeEnd(uffd_change(UffdEventKind::Fork, 1, 0, 0)),
    );
    tr.emit(
        app,
        mm,
        "tp_sched_process_fork",
        fork(user(9710, 9710, "postcopy-dst"), MM_GDB),
    );
    tr.on_cpu(1);
    for i in 0..20u64 {
        let dst = UFFD_AREA + i * 0x1000;
        tr.emit(
            mon,
            mm,
            "fentry_mfill_atomic_copy",
            Data::MfillStart(uffd_copy(dst, 0, 0)),
        );
        tr.emit(
            mon,
            mm,
            "fexit_mfill_atomic_copy",
            Data::MfillEnd(uffd_copy(dst, 4096, 0)),
        );
        tr.emit(
            mon,
            mm,
            "fexit_userfaultfd_ioctl",
            Data::UffdCopy(uffd_copy(dst, 0, 0)),
        );
    }
    tr.summary(0);
    tr
}

/// 6.12: the copy-inside-window pattern, but records of the mm are missing
/// in the middle of the window (sequence gap): uncertain, not a violation.
fn uffd_violation_across_gap() -> Trace {
    let mut tr = Trace::new(R612, hooks_function(R612), 15_000_000_000);
    let app = user(9800, 9800, "postcopy-dst");
    let mon = user(9801, 9800, "uffd-monitor");
    tr.on_cpu(0);
    let mm = tr.mm(MM_UFFD);
    tr.emit(
        app,
        mm,
        "fentry_mremap_userfaultfd_prep",
        Data::UffdChangeBegin(uffd_change(
            UffdEventKind::Remap,
            1,
            UFFD_AREA,
            UFFD_AREA + 0x20_0000,
        )),
    );
    // Perhaps the change's end and a new change's begin: gone.
    tr.lose_record(mm);
    tr.lose_record(mm);
    tr.on_cpu(1);
    tr.emit(
        mon,
        mm,
        "fentry_mfill_atomic_copy",
        Data::MfillStart(uffd_copy(UFFD_AREA + 0x3000, 0, 1)),
    );
    tr.emit(
        mon,
        mm,
        "fexit_mfill_atomic_copy",
        Data::MfillEnd(uffd_copy(UFFD_AREA + 0x3000, 4096, 1)),
    );
    tr.on_cpu(0);
    tr.emit(
        app,
        mm,
        "fexit_userfaultfd_event_wait_completion",
        Data::UffdChangeEnd(uffd_change(UffdEventKind::Remap, 1, 0, 0)),
    );
    tr.summary(2);
    tr
}
