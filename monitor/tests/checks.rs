//! Assertions shared by the host and VM tests: each runs a scenario under
//! `monitor trace` and checks what the monitor recorded, including that the
//! hooks the check relies on actually fired.

use std::collections::BTreeMap;

use monitor_common::event::hdr;
use monitor_detector::{Data, Event};

use crate::util::{Recording, TraceRun, scenario};

pub fn hook_rung(rec: &Recording, hook: &str) -> &'static str {
    rec.header
        .hooks
        .iter()
        .find(|h| h.hook.name() == hook)
        .map_or("missing", |h| h.rung.name())
}

/// Hit count of the program named `p` in a summary.
pub fn hits_of(summary: &monitor_detector::tracefile::Summary, p: &str) -> u64 {
    let id = monitor_common::catalogue::ProbeId::from_name(p)
        .unwrap_or_else(|| panic!("{p} is not a program of the catalogue"));
    summary.hits.get(&id).copied().unwrap_or(0)
}

pub fn assert_attached(rec: &Recording, hooks: &[&str]) {
    for hook in hooks {
        assert_ne!(
            hook_rung(rec, hook),
            "unavailable",
            "hook {hook} must be attached: {:#?}",
            rec.header.hooks
        );
        assert_ne!(
            hook_rung(rec, hook),
            "missing",
            "hook {hook} is not in the plan"
        );
    }
}

/// The programs named fired at least once (a hook can attach and never fire,
/// e.g. an inlined function).
pub fn assert_fired(rec: &Recording, programs: &[&str]) {
    let summary = rec.summary.as_ref().expect("summary line");
    for p in programs {
        assert!(
            hits_of(summary, p) > 0,
            "program {p} never fired; hits: {:?}",
            summary.hits
        );
    }
}

/// Every (mm, generation) has sequence numbers 1..=n without gaps or
/// repeats, unless the recording reports loss (or the compat object, where
/// two CPUs may share a number). Returns the number of generations.
pub fn assert_gap_free(rec: &Recording) -> usize {
    let mut gens: BTreeMap<(u64, u64), Vec<&Event>> = BTreeMap::new();
    for e in rec.events.iter().filter(|e| e.is_sequenced()) {
        gens.entry((e.mm, e.mm_gen)).or_default().push(e);
    }
    let lossy = !rec.losses.is_empty();
    let compat = rec.header.bpf_object == "compat";
    for ((mm, mm_gen), evs) in &gens {
        let mut seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
        seqs.sort_unstable();
        if compat {
            seqs.dedup();
        }
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        if !lossy {
            assert_eq!(
                seqs, expected,
                "mm {mm:#x} gen {mm_gen}: sequence has gaps or repeats"
            );
        }
        if let Some(first) = evs.iter().find(|e| e.seq == 1) {
            assert_ne!(
                first.hdr_flags & hdr::NEW_GENERATION,
                0,
                "seq 1 must start a generation"
            );
        }
    }
    gens.len()
}

/// A memcg OOM whose victim is really reaped: for the victim's mm, in
/// sequence order, mark_victim, reap start, reap end, then exit_mmap.
pub fn oom_reap(extra_args: &[&str]) -> Recording {
    let run = TraceRun::start("oom", extra_args);
    let report = scenario(&["oom-reap", "--release-ms", "4000"]);
    let (rec, stderr) = run.stop();
    let victim = report["victim_pid"].as_u64().expect("victim pid") as u32;
    assert_attached(&rec, &["mark_victim", "oom_reap", "exit_mmap"]);
    let mark = rec
        .events
        .iter()
        .find(|e| matches!(&e.data, Data::MarkVictim(v) if v.victim_tgid == victim))
        .unwrap_or_else(|| panic!("no mark_victim for victim {victim}; monitor said:\n{stderr}"));
    assert_ne!(
        mark.mm, 0,
        "mark_victim must carry the victim's mm (signal->oom_mm)"
    );
    let gen_events = rec.generation(mark.mm, mark.mm_gen);
    let kinds: Vec<&str> = gen_events.iter().map(|e| e.kind()).collect();
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k} for the victim's mm; its events: {kinds:?}"))
    };
    let (m, s, f, x) = (
        pos("mark_victim"),
        pos("reap_start"),
        pos("reap_end"),
        pos("exit_mmap_end"),
    );
    assert!(m < s && s < f && f < x, "wrong order: {kinds:?}");
    let reaper = gen_events[s];
    assert!(
        reaper.is_kthread(),
        "reap_start must come from the oom_reaper kernel thread"
    );
    assert_eq!(reaper.comm(), "oom_reaper");
    if let Data::ReapEnd(r) = &gen_events[f].data {
        assert_ne!(
            r.mm_flags & (1 << monitor_common::mmf::MMF_UNSTABLE),
            0,
            "reaper sets MMF_UNSTABLE"
        );
    }
    if rec.header.bpf_object == "atomic" {
        let seqs: Vec<u64> = gen_events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "victim mm sequence has gaps"
        );
    }
    assert_gap_free(&rec);
    rec
}

/// UFFDIO_COPY while the mm changes: every -EAGAIN is recorded, with the
/// uffd's target mm resolved; successful copies outside any window are
/// counted in the kernel, not recorded.
pub fn uffd_race(event: &str, extra_args: &[&str]) -> (Recording, serde_json::Value) {
    let run = TraceRun::start("uffd", extra_args);
    let report = scenario(&["uffd-race", "--event", event, "--delay-ms", "500"]);
    let (rec, _) = run.stop();
    assert_attached(&rec, &["uffd_ioctl"]);
    let pid = report["pid"].as_u64().expect("pid") as u32;
    let copies: Vec<_> = rec
        .events
        .iter()
        .filter(|e| e.tgid == pid)
        .filter_map(|e| match &e.data {
            Data::UffdCopyDone(c) => Some((e, c)),
            _ => None,
        })
        .collect();
    let eagain = copies.iter().filter(|(_, c)| c.ret == -11).count() as u64;
    let ok = copies.iter().filter(|(_, c)| c.ret == 4096).count() as u64;
    assert_eq!(
        eagain,
        report["copies_eagain"].as_u64().expect("eagain"),
        "EAGAIN count ({event})"
    );
    // The kernel counts every copy by result; only those near a window are
    // recorded.
    let counted = |stat| {
        rec.summary
            .as_ref()
            .and_then(|s| s.stats.get(&stat).copied())
            .unwrap_or(0)
    };
    let want_ok = report["copies_ok"].as_u64().expect("ok");
    let counted_ok = counted(monitor_common::maps::Stat::UffdCopyOk);
    assert!(
        counted_ok >= want_ok && counted(monitor_common::maps::Stat::UffdCopyAgain) >= eagain,
        "copies counted in the kernel ({event}): {counted_ok} ok, the scenario made {want_ok}"
    );
    assert!(
        ok < want_ok,
        "every successful copy was recorded ({event}): the in-kernel filter did nothing"
    );
    assert!(
        copies.iter().all(|(e, _)| e.mm != 0),
        "uffd_copy without an mm"
    );
    // An -EAGAIN copy saw mmap_changing raised. The tracepoint and kprobe
    // rungs read it at the ioctl's entry too; fexit only at return, by which
    // time the uffd monitor may have lowered it: at most the one copy in
    // flight on each window's close can read 0 there.
    let stale = copies
        .iter()
        .filter(|(_, c)| c.ret == -11 && c.mmap_changing <= 0)
        .count();
    // (The header names the rung `fentry`; on it this hook is its fexit program.)
    let allowed = if hook_rung(&rec, "uffd_ioctl") == "fentry" {
        rec.events
            .iter()
            .filter(|e| e.kind() == "uffd_change_end" && copies.iter().any(|(c, _)| c.mm == e.mm))
            .count()
    } else {
        0
    };
    assert!(
        stale <= allowed,
        "{stale} -EAGAIN copies saw mmap_changing == 0 ({allowed} allowed on the {} rung)",
        hook_rung(&rec, "uffd_ioctl")
    );
    if event == "fork" {
        assert!(
            rec.events
                .iter()
                .any(|e| e.tgid == pid && e.kind() == "fork"),
            "fork not recorded"
        );
    }
    (rec, report)
}

/// The exec hooks saw at least `n` execs (their programs ran), whether or
/// not they recorded anything.
pub fn exec_programs_fired(rec: &Recording, n: u64) {
    assert_attached(rec, &["exec", "stack_move"]);
    let summary = rec.summary.as_ref().expect("summary line");
    let get = |p: &str| hits_of(summary, p);
    assert!(
        get("tp_sched_process_exec") >= n,
        "sched_process_exec ran {} times for {n} execs",
        get("tp_sched_process_exec")
    );
    let moves = get("tp_task_rename") + get("fentry_stack_move") + get("kprobe_stack_move");
    assert!(
        moves >= n,
        "the stack_move hook ran {moves} times for {n} execs"
    );
}

/// Recorded execs of `exe`. An exec window is recorded only if a migration
/// could touch it (a batch in flight, or the mm already tracked): then the
/// exec has its whole window on its new mm, before the exec event: the
/// function itself (stack_move_start → stack_move_end) on a function rung,
/// the bracket's start (exec_mm_switch) on the tracepoint rung. Returns how
/// many execs of `exe` were recorded.
pub fn exec_windows(rec: &Recording, exe: &str) -> usize {
    assert_attached(rec, &["exec", "stack_move"]);
    let function_rung = hook_rung(rec, "stack_move") != "tracepoint";
    let execs: Vec<&Event> = rec
        .events
        .iter()
        .filter(|e| matches!(&e.data, Data::Exec(x) if monitor_detector::event::c_str(&x.filename) == exe))
        .collect();
    for e in &execs {
        let gen_events = rec.generation(e.mm, e.mm_gen);
        let kinds: Vec<&str> = gen_events.iter().map(|x| x.kind()).collect();
        let pos = |k: &str| kinds.iter().position(|x| *x == k);
        let exec = gen_events.iter().position(|x| std::ptr::eq(*x, *e));
        if function_rung {
            let (s, t) = (pos("stack_move_start"), pos("stack_move_end"));
            assert!(
                s.is_some() && s < t && t < exec,
                "stack move must precede exec: {kinds:?}"
            );
        } else {
            let switch = pos("exec_mm_switch");
            assert!(
                switch.is_some() && switch < exec,
                "exec_mm_switch must precede exec: {kinds:?}"
            );
        }
    }
    execs.len()
}

/// No exec of `exe` was recorded, nor anything on its mms: with no
/// migration near, an exec costs lookups, not records.
pub fn no_exec_records(rec: &Recording, exe: &str) {
    let comm = exe.rsplit('/').next().unwrap_or(exe);
    let recorded: Vec<&str> = rec
        .events
        .iter()
        .filter(|e| {
            matches!(
                &e.data,
                Data::Exec(_)
                    | Data::ExecMmSwitch(_)
                    | Data::StackMoveStart(_)
                    | Data::StackMoveEnd(_)
            ) || (e.comm() == comm && e.mm != 0)
        })
        .map(|e| e.kind())
        .collect();
    assert!(
        recorded.is_empty(),
        "execs with no migration near must not be recorded: {recorded:?}"
    );
}

/// Migration batches with the given `reason` moved pages and their PTE counts
/// were aggregated in the kernel.
pub fn migration_batches(rec: &Recording, reason: u32) {
    assert_attached(rec, &["migrate_pages"]);
    let ends: Vec<_> = rec
        .events
        .iter()
        .filter_map(|e| match &e.data {
            Data::MigrateEnd(m) if m.reason == reason => Some(m),
            _ => None,
        })
        .collect();
    assert!(!ends.is_empty(), "no migration batch with reason {reason}");
    if hook_rung(rec, "migrate_pages") == "kprobe" {
        // The kprobe bracket (5.10) has no success counts (migrate_pages()
        // returns only what failed); pages that moved had their migration
        // PTEs removed, counted per batch by the remove_migration_pte hook.
        assert_attached(rec, &["remove_migration_pte"]);
        assert!(
            ends.iter().map(|m| m.ptes_removed).sum::<u64>() > 0,
            "reason {reason}: no migration PTE removed in any batch"
        );
    } else {
        assert!(
            ends.iter().map(|m| m.succeeded).sum::<u64>() > 0,
            "reason {reason}: nothing migrated"
        );
    }
    assert!(
        ends.iter().all(|m| m.start_seen != 0),
        "batch counters must cover whole batches"
    );
    let summary = rec.summary.as_ref().expect("summary");
    let ptes: u64 = ends.iter().map(|m| m.ptes_set).sum();
    let set = monitor_common::maps::Stat::MigrationPteSet;
    assert!(summary.stats.get(&set).copied().unwrap_or(0) >= ptes);
}
