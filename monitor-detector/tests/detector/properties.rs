//! Property tests.
//!
//! Traces are built from *scripts*: the per-mm event sequences of benign
//! activity (a process's life, an OOM victim reaped before it exits, a vhost
//! kthread on a healthy mm, userfaultfd copies with and without changes, page
//! migration that completes) and of injected races. A random scheduler
//! interleaves the scripts as several CPUs would, the recorder numbers each
//! mm's records in emission order, and random adjacent cross-CPU swaps model
//! records whose sequence number was taken before the other one's ring
//! reservation.

use monitor_common::event::{hdr::END_GENERATION, uffd_event};
use monitor_detector::{
    Detector, DetectorConfig, Finding,
    event::{Data, UffdEventKind},
    tracefile::Line,
};
use proptest::prelude::*;

use super::support::*;

/// One record a script will emit.
#[derive(Clone, Debug)]
struct Step {
    task: Task,
    mm: Mm,
    probe: &'static str,
    data: Data,
    flags: u32,
}

fn step(task: Task, mm: Mm, probe: &'static str, data: Data) -> Step {
    Step {
        task,
        mm,
        probe,
        data,
        flags: 0,
    }
}

fn end(task: Task, mm: Mm, flags: u64) -> Step {
    Step {
        task,
        mm,
        probe: "fentry_mmdrop",
        data: Data::MmDrop(mm_state(flags)),
        flags: END_GENERATION,
    }
}

const HEAP: (u64, u64) = (0x5583_2a40_0000, 0x5583_2e40_0000);
const RING: u64 = 0x7f3c_1b00_0000;
const AREA: u64 = 0x7f8a_4c60_0000;

fn heap() -> monitor_detector::event::VmaRange {
    vma(HEAP.0, HEAP.1, 0x0010_0073, HEAP.0)
}

/// Distinct tasks and mms per script instance.
fn ids(n: u32) -> (u32, u64) {
    (
        10_000 + n * 16,
        0xffff_8880_1000_0000 + u64::from(n) * 0x1_0000,
    )
}

fn exit_steps(task: Task, mm: Mm, flags: u64) -> Vec<Step> {
    vec![
        step(
            task,
            mm,
            "fentry_exit_mmap",
            Data::ExitMmapStart(mm_state(flags)),
        ),
        step(task, mm, "fentry_unmap_vmas", Data::UnmapVmasStart(heap())),
        step(task, mm, "fexit_unmap_vmas", Data::UnmapVmasEnd(heap())),
        step(
            task,
            mm,
            "fexit_exit_mmap",
            Data::ExitMmapEnd(mm_state(flags | (1 << 21))),
        ),
        end(task, mm, flags | (1 << 21)),
    ]
}

/// Benign scripts. `kind` selects one; `n` makes its ids unique; `era510`
/// adds the 5.10-only nested own reap.
fn benign(kind: u8, n: u32, era510: bool) -> Vec<Step> {
    let (pid, addr) = ids(n);
    let mm = Mm {
        addr,
        generation: 1_000 + u64::from(n),
    };
    let me = user(pid, pid, "worker");
    let t2 = user(pid + 1, pid, "worker");
    let mut s = Vec::new();
    match kind % 7 {
        // A process's life: exec with its stack move, then exit. Twice at the
        // same address (the mm is freed and reused).
        0 => {
            for round in 0..2u64 {
                let mm = Mm {
                    addr,
                    generation: mm.generation + round * 1_000_000,
                };
                s.push(step(
                    me,
                    mm,
                    "fentry_stack_move",
                    Data::StackMoveStart(stack_move(0x7fff_ffff_0000, 0x7fff_ffff_f000, 0x1000, 0)),
                ));
                s.push(step(
                    me,
                    mm,
                    "fexit_stack_move",
                    Data::StackMoveEnd(stack_move(0x7ffd_0000_0000, 0x7ffd_0002_0000, 0x1000, 0)),
                ));
                s.push(step(
                    me,
                    mm,
                    "tp_sched_process_exec",
                    exec("/bin/true", pid),
                ));
                s.extend(exit_steps(me, mm, MM_FLAGS));
            }
        }
        // An OOM victim reaped strictly before it exits; on 5.10 exit_mmap
        // also reaps it itself.
        1 => {
            s.push(step(me, mm, "tp_mark_victim", mark_victim(me, MM_FLAGS)));
            s.push(step(
                OOM_REAPER,
                mm,
                "fentry_oom_reap",
                reap_start_fn(MM_FLAGS),
            ));
            s.push(step(
                OOM_REAPER,
                mm,
                "fentry_unmap_page_range",
                Data::ReaperUnmapStart(heap()),
            ));
            s.push(step(
                OOM_REAPER,
                mm,
                "fexit_unmap_page_range",
                Data::ReaperUnmapEnd(heap()),
            ));
            s.push(step(
                OOM_REAPER,
                mm,
                "fexit_oom_reap",
                reap_end_fn(1, MM_FLAGS_UNSTABLE),
            ));
            // (A fault by its own thread after the reap is a near miss since
            // the owner's faults are judged: race 7.)
            s.push(step(
                t2,
                mm,
                "fentry_exit_mmap",
                Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
            ));
            if era510 {
                s.push(step(
                    t2,
                    mm,
                    "kprobe_oom_reap",
                    reap_start_fn(MM_FLAGS_UNSTABLE),
                ));
                s.push(step(
                    t2,
                    mm,
                    "kprobe_unmap_page_range",
                    Data::ReaperUnmapStart(heap()),
                ));
                s.push(step(
                    t2,
                    mm,
                    "kretprobe_unmap_page_range",
                    Data::ReaperUnmapEnd(heap()),
                ));
                s.push(step(
                    t2,
                    mm,
                    "kretprobe_oom_reap",
                    reap_end_fn(1, MM_FLAGS_UNSTABLE),
                ));
            }
            s.push(step(
                t2,
                mm,
                "fentry_unmap_vmas",
                Data::UnmapVmasStart(heap()),
            ));
            s.push(step(t2, mm, "fexit_unmap_vmas", Data::UnmapVmasEnd(heap())));
            s.push(step(
                t2,
                mm,
                "fexit_exit_mmap",
                Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
            ));
            s.push(end(t2, mm, MM_FLAGS_DEAD));
        }
        // A vhost kthread on a healthy mm.
        2 => {
            let vhost = kthread(pid + 5, "vhost-w");
            s.push(step(
                vhost,
                mm,
                "fentry_kthread_use_mm",
                Data::KthreadUseMm(mm_state(MM_FLAGS)),
            ));
            for i in 0..3u64 {
                s.push(step(
                    vhost,
                    mm,
                    "fexit_fault",
                    Data::Fault(fault(RING + i * 0x1000, MM_FLAGS, addr, 0x215, Some(0))),
                ));
            }
            s.push(step(
                vhost,
                mm,
                "fentry_kthread_unuse_mm",
                Data::KthreadUnuseMm(mm_state(MM_FLAGS)),
            ));
            s.extend(exit_steps(me, mm, MM_FLAGS));
        }
        // userfaultfd copies, and a change with no copy inside it.
        3 => {
            for i in 0..3u64 {
                s.push(step(
                    t2,
                    mm,
                    "fentry_mfill_ctx",
                    Data::MfillStart(uffd_copy(AREA + i * 0x1000, 0, 0)),
                ));
                s.push(step(
                    t2,
                    mm,
                    "fexit_mfill_ctx",
                    Data::MfillEnd(uffd_copy(AREA + i * 0x1000, 4096, 0)),
                ));
                s.push(step(
                    t2,
                    mm,
                    "fexit_uffd_ioctl",
                    Data::UffdCopy(uffd_copy(AREA + i * 0x1000, 0, 0)),
                ));
            }
            s.push(step(
                me,
                mm,
                "fexit_dup_uffd",
                Data::UffdChangeBegin(uffd_change(UffdEventKind::Fork, 1, AREA, AREA + 0x1000)),
            ));
            s.push(step(
                me,
                mm,
                "fexit_uffd_wait",
                Data::UffdChangeEnd(uffd_change(UffdEventKind::Fork, 1, 0, 0)),
            ));
            s.push(step(
                me,
                mm,
                "tp_sched_process_fork",
                fork(user(pid + 9, pid + 9, "worker"), addr + 0x800),
            ));
            s.push(step(
                t2,
                mm,
                "fexit_uffd_ioctl",
                Data::UffdCopy(uffd_copy(AREA, 0, 0)),
            ));
            s.extend(exit_steps(me, mm, MM_FLAGS));
        }
        // A migration batch that completes, with at most two waits of one
        // task inside it.
        4 => {
            let mover = kthread(pid + 7, "kcompactd0");
            s.push(step(
                mover,
                NO_MM,
                "tp_mm_migrate_pages_start",
                Data::MigrateStart(migrate(MR_COMPACTION)),
            ));
            s.push(step(
                me,
                mm,
                "fentry_migration_entry_wait",
                Data::MigrationEntryWait(vma(HEAP.0, HEAP.1, 0x73, HEAP.0 + 0x10)),
            ));
            s.push(step(
                me,
                mm,
                "fentry_migration_entry_wait",
                Data::MigrationEntryWait(vma(HEAP.0, HEAP.1, 0x73, HEAP.0 + 0x18)),
            ));
            s.push(step(
                mover,
                NO_MM,
                "tp_mm_migrate_pages_7",
                migrate_end(MR_COMPACTION, 10, 10, 10),
            ));
            s.extend(exit_steps(me, mm, MM_FLAGS));
        }
        // An OOM victim that exits before the reaper wakes (tracepoint rung
        // shape): the reaper skips the mm in a fresh generation.
        5 => {
            s.push(step(me, mm, "tp_mark_victim", mark_victim(me, MM_FLAGS)));
            s.push(Step {
                flags: END_GENERATION,
                ..step(
                    me,
                    mm,
                    "tp_exit_mmap",
                    Data::ExitMmapEnd(mm_state(MM_FLAGS | (1 << 21))),
                )
            });
            let zombie = Mm {
                addr,
                generation: mm.generation + 5_000_000,
            };
            s.push(step(
                OOM_REAPER,
                zombie,
                "tp_skip_task_reaping",
                reap_skip_tp(me.pid, MM_FLAGS | (1 << 21)),
            ));
        }
        // An exec window with no migration around it (tracepoint shape).
        _ => {
            s.push(step(me, mm, "tp_task_rename", exec_switch("cc1")));
            s.push(step(
                me,
                mm,
                "tp_sched_process_exec",
                exec("/usr/bin/cc1", pid),
            ));
            s.push(Step {
                flags: END_GENERATION,
                ..step(
                    me,
                    mm,
                    "tp_exit_mmap",
                    Data::ExitMmapEnd(mm_state(MM_FLAGS | (1 << 21))),
                )
            });
        }
    }
    s
}

/// `me` marked as OOM victim and its mm reaped (no per-VMA unmaps).
fn victim_reaped(me: Task, mm: Mm) -> [Step; 3] {
    [
        step(me, mm, "tp_mark_victim", mark_victim(me, MM_FLAGS)),
        step(OOM_REAPER, mm, "fentry_oom_reap", reap_start_fn(MM_FLAGS)),
        step(
            OOM_REAPER,
            mm,
            "fexit_oom_reap",
            reap_end_fn(1, MM_FLAGS_UNSTABLE),
        ),
    ]
}

/// An injected race and what it must be reported as.
fn race(kind: u8, n: u32) -> (Vec<Step>, &'static str, &'static str) {
    let (pid, addr) = ids(n);
    let mm = Mm {
        addr,
        generation: 1_000 + u64::from(n),
    };
    let me = user(pid, pid, "victim");
    let t2 = user(pid + 1, pid, "victim");
    let mut s = Vec::new();
    match kind % 8 {
        0 => {
            s.push(step(me, mm, "tp_mark_victim", mark_victim(me, MM_FLAGS)));
            s.push(step(
                OOM_REAPER,
                mm,
                "fentry_oom_reap",
                reap_start_fn(MM_FLAGS),
            ));
            s.push(step(
                t2,
                mm,
                "fentry_exit_mmap",
                Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
            ));
            s.push(step(
                t2,
                mm,
                "fentry_unmap_vmas",
                Data::UnmapVmasStart(heap()),
            ));
            s.push(step(t2, mm, "fexit_unmap_vmas", Data::UnmapVmasEnd(heap())));
            s.push(step(
                OOM_REAPER,
                mm,
                "fexit_oom_reap",
                reap_end_fn(1, MM_FLAGS_UNSTABLE),
            ));
            s.push(step(
                t2,
                mm,
                "fexit_exit_mmap",
                Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
            ));
            s.push(end(t2, mm, MM_FLAGS_DEAD));
            (s, "reaper_exit_overlap", "near_miss")
        }
        1 => {
            s.push(step(me, mm, "tp_mark_victim", mark_victim(me, MM_FLAGS)));
            s.push(step(
                OOM_REAPER,
                mm,
                "fentry_oom_reap",
                reap_start_fn(MM_FLAGS),
            ));
            s.push(step(
                t2,
                mm,
                "fentry_exit_mmap",
                Data::ExitMmapStart(mm_state(MM_FLAGS_UNSTABLE)),
            ));
            s.push(step(
                t2,
                mm,
                "fexit_exit_mmap",
                Data::ExitMmapEnd(mm_state(MM_FLAGS_DEAD)),
            ));
            s.push(step(
                OOM_REAPER,
                mm,
                "fexit_oom_reap",
                reap_end_fn(1, MM_FLAGS_DEAD),
            ));
            s.push(end(t2, mm, MM_FLAGS_DEAD));
            (s, "reaper_exit_overlap", "violation")
        }
        2 => {
            let vhost = kthread(pid + 5, "vhost-w");
            s.push(step(
                vhost,
                mm,
                "fentry_kthread_use_mm",
                Data::KthreadUseMm(mm_state(MM_FLAGS)),
            ));
            s.extend(victim_reaped(me, mm));
            s.push(step(
                vhost,
                mm,
                "fexit_fault",
                Data::Fault(fault(RING, MM_FLAGS_UNSTABLE, addr, 0x215, Some(2))),
            ));
            s.extend(exit_steps(t2, mm, MM_FLAGS_UNSTABLE));
            (s, "unstable_mm_fault", "near_miss")
        }
        3 => {
            let vhost = kthread(pid + 5, "vhost-w");
            s.extend(victim_reaped(me, mm));
            s.push(step(
                vhost,
                mm,
                "fexit_fault",
                Data::Fault(fault(RING, MM_FLAGS_UNSTABLE, addr, 0x214, Some(0))),
            ));
            s.extend(exit_steps(t2, mm, MM_FLAGS_UNSTABLE));
            (s, "unstable_mm_fault", "violation")
        }
        4 => {
            let mover = kthread(pid + 7, "kcompactd0");
            let temp = vma(
                0x7fff_ffff_0000,
                0x7fff_ffff_f000,
                TEMP_STACK_FLAGS,
                0x7fff_ffff_8000,
            );
            s.push(step(
                me,
                mm,
                "fentry_stack_move",
                Data::StackMoveStart(stack_move(0x7fff_ffff_0000, 0x7fff_ffff_f000, 0x1000, 0)),
            ));
            s.push(step(
                mover,
                mm,
                "fentry_try_to_migrate_one",
                Data::MigrationEntryInTempStack(temp),
            ));
            s.push(step(
                me,
                mm,
                "fexit_stack_move",
                Data::StackMoveEnd(stack_move(0x7ffd_0000_0000, 0x7ffd_0002_0000, 0x1000, 0)),
            ));
            s.push(step(me, mm, "tp_sched_process_exec", exec("/bin/sh", pid)));
            s.extend(exit_steps(me, mm, MM_FLAGS));
            (s, "leftover_migration_entry", "violation")
        }
        5 => {
            s.push(step(
                me,
                mm,
                "fexit_dup_uffd",
                Data::UffdChangeBegin(uffd_change(UffdEventKind::Fork, 1, AREA, AREA + 0x1000)),
            ));
            for _ in 0..3 {
                s.push(step(
                    t2,
                    mm,
                    "fexit_uffd_ioctl",
                    Data::UffdCopy(uffd_copy(AREA, -11, 1)),
                ));
            }
            s.push(step(
                me,
                mm,
                "fexit_uffd_wait",
                Data::UffdChangeEnd(uffd_change(UffdEventKind::Fork, 1, 0, 0)),
            ));
            s.extend(exit_steps(me, mm, MM_FLAGS));
            (s, "uffd_copy_vs_mm_change", "near_miss")
        }
        6 => {
            s.push(step(
                me,
                mm,
                "fexit_mremap_uffd_prep",
                Data::UffdChangeBegin(uffd_change(UffdEventKind::Remap, 1, AREA, AREA + 0x1000)),
            ));
            s.push(step(
                t2,
                mm,
                "fentry_mfill_ctx",
                Data::MfillStart(uffd_copy(AREA, 0, 1)),
            ));
            s.push(step(
                t2,
                mm,
                "fexit_mfill_ctx",
                Data::MfillEnd(uffd_copy(AREA, 4096, 1)),
            ));
            s.push(step(
                me,
                mm,
                "fexit_uffd_wait",
                Data::UffdChangeEnd(uffd_change(UffdEventKind::Remap, 1, 0, 0)),
            ));
            s.extend(exit_steps(me, mm, MM_FLAGS));
            (s, "uffd_copy_vs_mm_change", "violation")
        }
        // The owner's own thread in kernel mode (a write(2) copying from its
        // reaped buffer: no FAULT_FLAG_USER) refused after the reap.
        _ => {
            s.extend(victim_reaped(me, mm));
            s.push(step(
                t2,
                mm,
                "fexit_fault",
                Data::Fault(fault(HEAP.0, MM_FLAGS_UNSTABLE, addr, 0x215, Some(2))),
            ));
            s.extend(exit_steps(t2, mm, MM_FLAGS_UNSTABLE));
            (s, "unstable_mm_fault", "near_miss")
        }
    }
}

/// Interleaves scripts by `schedule` (each entry picks among the scripts
/// that still have steps), then applies cross-CPU swaps.
fn interleave(release: &str, scripts: &[Vec<Step>], schedule: &[usize], swaps: &[usize]) -> Trace {
    let mut tr = Trace::new(release, hooks_function(release), 50_000_000_000);
    let mut pos = vec![0usize; scripts.len()];
    let mut k = 0usize;
    loop {
        let live: Vec<usize> = (0..scripts.len())
            .filter(|i| pos[*i] < scripts[*i].len())
            .collect();
        if live.is_empty() {
            break;
        }
        let pick = live[schedule.get(k).copied().unwrap_or(k) % live.len()];
        k += 1;
        let s = &scripts[pick][pos[pick]];
        pos[pick] += 1;
        // Each task runs on its own CPU (spread by pid), so two tasks of one mm
        // (victim and reaper, app and uffd monitor) can be swapped.
        tr.on_cpu(s.task.pid % 7 % 4);
        tr.emit_flags(s.task, s.mm, s.probe, s.data, s.flags);
    }
    for &at in swaps {
        let n = tr.lines.len();
        if n < 2 {
            break;
        }
        let i = at % (n - 1);
        if let (Line::Event(a), Line::Event(b)) = (&tr.lines[i], &tr.lines[i + 1]) {
            // Only records from different CPUs can be swapped, and never
            // across a generation boundary at one address (a new generation
            // is created only after the old one's end record was reserved).
            let boundary = a.mm == b.mm && a.mm_gen != b.mm_gen;
            if a.cpu != b.cpu && !boundary {
                tr.lines.swap(i, i + 1);
            }
        }
    }
    tr
}

fn run(tr: &Trace) -> Vec<Finding> {
    let mut d = Detector::new(DetectorConfig::new(
        tr.header.kernel_release.clone(),
        tr.header.hooks.clone(),
    ));
    let mut out = Vec::new();
    for l in &tr.lines {
        out.extend(d.push(l));
    }
    out.extend(d.finish());
    out
}

fn summary(fs: &[Finding]) -> Vec<(String, String, u64, u64, Vec<u64>)> {
    let mut v: Vec<_> = fs
        .iter()
        .map(|f| {
            (
                f.kind.name().to_owned(),
                f.severity.name().to_owned(),
                f.mm,
                f.mm_gen,
                f.evidence.iter().map(|e| e.seq).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

fn release() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "6.1.0-50-cloud-amd64",
        "6.12.117+deb12-cloud-amd64",
        "6.18.44-fc-v669",
        "5.10.0-32-cloud-amd64",
    ])
}

fn background() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random interleavings of benign activity on many mms never fire.
    #[test]
    fn benign_interleavings_give_no_findings(
        release in release(),
        kinds in background(),
        schedule in prop::collection::vec(any::<usize>(), 0..400),
        swaps in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let era510 = release.starts_with("5.");
        let scripts: Vec<Vec<Step>> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| benign(*k, i as u32, era510))
            .collect();
        let tr = interleave(release, &scripts, &schedule, &swaps);
        let found = run(&tr);
        prop_assert!(found.is_empty(), "benign trace fired: {:#?}", summary(&found));
    }

    /// A race injected into random benign background is always found, once,
    /// with the right kind and severity.
    #[test]
    fn injected_races_are_always_found(
        race_kind in 0u8..8,
        kinds in background(),
        schedule in prop::collection::vec(any::<usize>(), 0..400),
        swaps in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let release = "6.12.117+deb12-cloud-amd64";
        let mut scripts: Vec<Vec<Step>> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| benign(*k, i as u32, false))
            .collect();
        let (steps, kind, severity) = race(race_kind, 500);
        scripts.push(steps);
        let tr = interleave(release, &scripts, &schedule, &swaps);
        let found = run(&tr);
        let got: Vec<(&str, &str)> = found.iter().map(|f| (f.kind.name(), f.severity.name())).collect();
        prop_assert_eq!(got, vec![(kind, severity)]);
        prop_assert_eq!(found[0].mm, ids(500).1);
    }

    /// Cross-CPU swaps within the reorder window change nothing: the same
    /// findings with the same evidence, in sequence order.
    #[test]
    fn reordering_within_the_window_changes_nothing(
        race_kind in 0u8..8,
        kinds in background(),
        schedule in prop::collection::vec(any::<usize>(), 0..400),
        swaps in prop::collection::vec(any::<usize>(), 1..60),
    ) {
        let release = "6.1.0-50-cloud-amd64";
        let mut scripts: Vec<Vec<Step>> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| benign(*k, i as u32, false))
            .collect();
        scripts.push(race(race_kind, 500).0);
        let ordered = interleave(release, &scripts, &schedule, &[]);
        let swapped = interleave(release, &scripts, &schedule, &swaps);
        prop_assert_eq!(summary(&run(&ordered)), summary(&run(&swapped)));
    }

    /// Losing a record never creates a violation: every violation reported
    /// on the trace with a lost record is also one on the complete trace. (A
    /// loss turns what depended on the lost record into `uncertain`, or hides
    /// it; a violation proved by records that were all seen may stand.)
    #[test]
    fn lost_records_never_create_a_violation(
        race_kind in 0u8..8,
        drop_at in any::<usize>(),
        kinds in background(),
        schedule in prop::collection::vec(any::<usize>(), 0..400),
    ) {
        let release = "6.12.117+deb12-cloud-amd64";
        let mut scripts: Vec<Vec<Step>> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| benign(*k, i as u32, false))
            .collect();
        let (steps, _, _) = race(race_kind, 500);
        scripts.push(steps.clone());
        let complete = interleave(release, &scripts, &schedule, &[]);
        let violations = |fs: &[Finding]| -> Vec<(String, u64)> {
            fs.iter()
                .filter(|f| f.severity == monitor_detector::Severity::Violation)
                .map(|f| (f.kind.name().to_owned(), f.mm))
                .collect()
        };
        let full = violations(&run(&complete));

        let dropped = drop_at % steps.len();
        let lost = steps[dropped].clone();
        let mut lossy_scripts = scripts.clone();
        if let Some(last) = lossy_scripts.last_mut() {
            last.remove(dropped);
        }
        let mut tr = interleave(release, &lossy_scripts, &schedule, &[]);
        // The lost record consumed its sequence number in the kernel.
        let mut seen = 0usize;
        for l in &mut tr.lines {
            if let Line::Event(e) = l
                && e.mm == lost.mm.addr
                && e.mm_gen == lost.mm.generation
            {
                if seen >= dropped {
                    e.seq += 1;
                    e.hdr_flags &= !monitor_common::event::hdr::NEW_GENERATION;
                }
                seen += 1;
            }
        }
        for v in violations(&run(&tr)) {
            prop_assert!(full.contains(&v), "violation {:?} only exists with a lost record", v);
        }
    }
}

/// The detector is deterministic: the same input gives byte-identical output.
#[test]
fn detector_is_deterministic() {
    let scripts: Vec<Vec<Step>> = (0..40u32)
        .map(|i| benign(i as u8, i, false))
        .chain([race(0, 900).0, race(6, 901).0])
        .collect();
    let schedule: Vec<usize> = (0..2000).map(|i| (i * 7919) % 101).collect();
    let tr = interleave(
        "6.12.117+deb12-cloud-amd64",
        &scripts,
        &schedule,
        &[3, 17, 40, 99],
    );
    let a = serde_json::to_string(&run(&tr)).expect("serializes");
    let b = serde_json::to_string(&run(&tr)).expect("serializes");
    assert_eq!(a, b);
    assert!(a.contains("reaper_exit_overlap") && a.contains("uffd_copy_vs_mm_change"));
}

/// Arbitrary, contradictory records: any order, any flags, any numbers.
fn odd_event() -> impl Strategy<Value = Line> {
    use monitor_detector::event::{Event, Fault, Migrate, MmState, Reap, UffdChange, UffdCopy};
    let data = prop_oneof![
        any::<u64>().prop_map(|f| Data::ExitMmapStart(MmState { mm_flags: f })),
        any::<u64>().prop_map(|f| Data::ExitMmapEnd(MmState { mm_flags: f })),
        any::<u64>().prop_map(|f| Data::MmDrop(MmState { mm_flags: f })),
        any::<u64>().prop_map(|f| Data::KthreadUseMm(MmState { mm_flags: f })),
        (any::<u32>(), any::<u64>()).prop_map(|(p, f)| Data::ReapStart(Reap {
            victim_pid: p % 4,
            source: monitor_common::event::reap_source::TRACEPOINT,
            ret: -1,
            mm_flags: f,
            _pad0: 0,
        })),
        (any::<u32>(), any::<u64>()).prop_map(|(p, f)| Data::ReapEnd(Reap {
            victim_pid: p % 4,
            source: monitor_common::event::reap_source::FUNCTION,
            ret: 1,
            mm_flags: f,
            _pad0: 0,
        })),
        Just(Data::ReaperUnmapStart(vma(0, 1, 0, 0))),
        Just(Data::ReaperUnmapEnd(vma(0, 1, 0, 0))),
        Just(Data::UnmapVmasStart(vma(0, 1, 0, 0))),
        Just(Data::UnmapVmasEnd(vma(0, 1, 0, 0))),
        (any::<u32>(), any::<u64>()).prop_map(|(p, f)| mark_victim(user(p % 4, p % 4, "v"), f)),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(f, cur, r)| Data::Fault(Fault {
                address: 0x1000,
                mm_flags: f,
                current_mm: cur % 3,
                vm_flags: 0,
                fault_flags: 0,
                ret: r.map_or(u64::MAX, u64::from),
                entry_flags: [1, 3, 0][(f % 3) as usize],
            })),
        any::<u64>().prop_map(|f| Data::KernelFault(Fault {
            address: 0,
            mm_flags: f,
            current_mm: 0,
            vm_flags: 0,
            fault_flags: 0,
            ret: u64::MAX,
            entry_flags: 0,
        })),
        (any::<i64>(), any::<i32>()).prop_map(|(r, c)| Data::UffdCopy(UffdCopy {
            dst: 0,
            len: 0,
            ret: r % 16 - 12,
            mmap_changing: c % 3,
            fd: 3
        })),
        (any::<i64>(), any::<i32>()).prop_map(|(r, c)| Data::MfillStart(UffdCopy {
            dst: 0,
            len: 0,
            ret: r,
            mmap_changing: c % 3,
            fd: 3
        })),
        (any::<i64>(), any::<i32>()).prop_map(|(r, c)| Data::MfillEnd(UffdCopy {
            dst: 0,
            len: 0,
            ret: r % 8192 - 12,
            mmap_changing: c % 3,
            fd: 3
        })),
        any::<u8>().prop_map(|k| Data::UffdChangeBegin(UffdChange {
            kind: [uffd_event::FORK, uffd_event::REMOVE, 0][k as usize % 3],
            mmap_changing: 1,
            start: 0,
            end: 0
        })),
        any::<u8>().prop_map(|k| Data::UffdChangeEnd(UffdChange {
            kind: [uffd_event::FORK, uffd_event::REMOVE, 0][k as usize % 3],
            mmap_changing: 1,
            start: 0,
            end: 0
        })),
        Just(Data::StackMoveStart(stack_move(0, 1, 1, 0))),
        Just(Data::StackMoveEnd(stack_move(0, 1, 1, 0))),
        Just(exec("/x", 1)),
        Just(exec_switch("x")),
        Just(Data::MigrationSkipTempStack(vma(0, 1, 0, 0))),
        Just(Data::MigrationEntryInTempStack(vma(0, 1, 0, 0))),
        Just(Data::MigrationPteRemoved(vma(0, 1, 0, 0))),
        any::<u64>().prop_map(|a| Data::MigrationEntryWait(vma(0, 1, 0, a % 3 * 0x1000))),
        Just(Data::MigrateStart(migrate(0))),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Data::MigrateEnd(Migrate {
            ptes_set: a % 3,
            ptes_removed: b % 3,
            ..migrate(0)
        })),
        Just(fork(user(1, 1, "c"), 0)),
    ];
    let ev = (
        data,
        0u32..4,
        prop::sample::select(vec![0u64, 0xffff_8880_0000_1000, 0xffff_8880_0000_2000]),
        prop::sample::select(vec![0u64, 1, 2, u64::MAX]),
        prop::sample::select(vec![0u64, 1, 2, 3, 4, 7, u64::MAX - 1, u64::MAX]),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(data, cpu, mm, generation, seq, hdr_flags, task_flags)| {
            Line::Event(Event {
                t: u64::from(cpu) * 1000,
                cpu,
                pid: cpu + 1,
                tgid: cpu + 1,
                comm: monitor_common::event::fixed_str("odd"),
                cgroup_id: 0,
                memcg_id: 0,
                task_flags,
                mm,
                mm_gen: generation,
                seq,
                hdr_flags: hdr_flags & 0x3f,
                probe: monitor_detector::ProbeRef::UNKNOWN,
                data,
            })
        });
    prop_oneof![
        20 => ev,
        1 => (prop::collection::btree_map(
                prop::sample::select(monitor_common::catalogue::EventId::ALL.to_vec()),
                any::<u64>(),
                0..3
            ), any::<u64>()).prop_map(|(lost, unknown)| Line::Loss(monitor_detector::tracefile::Loss {
                t: 0,
                lost,
                unknown_kinds: unknown % 3,
            })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Odd input is evidence, not a bug: the detector never panics, stays
    /// within its bounds and always explains what it reports.
    #[test]
    fn odd_input_never_panics(lines in prop::collection::vec(odd_event(), 0..300), window in 1u64..8) {
        for release in ["6.12.117+deb12-cloud-amd64", "5.10.0-32-cloud-amd64", "weird"] {
            let mut cfg = DetectorConfig::new(release, hooks_function("6.12"));
            cfg.limits.reorder_window = window;
            cfg.limits.max_mms = 4;
            let mut d = Detector::new(cfg);
            let mut found = Vec::new();
            for l in &lines {
                found.extend(d.push(l));
                prop_assert!(d.tracked_mms() <= 4);
            }
            found.extend(d.finish());
            for f in &found {
                prop_assert!(!f.explanation.is_empty());
                prop_assert!(!f.evidence.is_empty());
                if release == "weird" {
                    prop_assert!(f.severity != monitor_detector::Severity::Violation);
                }
            }
        }
    }

    /// The two trace-file readers agree: every event line the writer makes
    /// reads back to the same event through the scanner and through serde
    /// (a line spelled differently, with spaces, takes the serde path), and
    /// the writer agrees with serde's.
    #[test]
    fn the_fast_reader_agrees_with_serde(lines in prop::collection::vec(odd_event(), 1..40)) {
        use monitor_detector::{json, tracefile::{parse_line, to_line}};
        // Event lines: loss lines of unknown kinds keep only their count.
        for line in lines.iter().filter(|l| matches!(l, Line::Event(_))) {
            let text = to_line(line);
            prop_assert_eq!(&text, &serde_json::to_string(line).expect("serializes"));
            let via_serde: Line = serde_json::from_str(&text).expect("serde reads it");
            prop_assert_eq!(&via_serde, line);
            let read = parse_line(&text).expect("reads");
            prop_assert_eq!(&read, line);
            if let Line::Event(ev) = line {
                let fast = json::parse_event_line(&text);
                prop_assert_eq!(fast, Some(*ev));
                // The header in another order: the writer-order reader
                // stops at `seq` and the general loop reads the rest.
                let seq_at = text.find(",\"seq\":").expect("seq");
                let seq_len = text[seq_at + 1..].find(',').expect("field after seq") + 1;
                let seq = &text[seq_at..seq_at + seq_len];
                let moved = text.replacen(seq, "", 1).replacen(",\"memcg_id\":", &format!("{seq},\"memcg_id\":"), 1);
                prop_assert_ne!(&moved, &text);
                prop_assert_eq!(json::parse_event_line(&moved), Some(*ev));
                let spaced = text.replacen(',', ", ", 3);
                prop_assert_eq!(json::parse_event_line(&spaced), None);
                let slow = parse_line(&spaced).expect("serde path");
                prop_assert_eq!(&slow, line);
            }
        }
    }
}
