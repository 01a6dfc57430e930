//! Real-kernel tests on the host (6.18 here: tracepoint rung only). Each test
//! asserts on what the monitor recorded, and that the hooks it relies on fired.

use std::collections::BTreeMap;

use monitor_common::event::hdr;
use monitor_detector::{Data, Event};

use crate::util::{Recording, TraceRun, require_root, scenario, serial};

fn hook_rung<'a>(rec: &'a Recording, hook: &str) -> &'a str {
    rec.header
        .hooks
        .iter()
        .find(|h| h.hook == hook)
        .map_or("missing", |h| h.rung.as_str())
}

/// Every (mm, generation) has sequence numbers 1..=n without gaps or
/// duplicates, unless the recording reports loss.
fn assert_gap_free(rec: &Recording) -> usize {
    let mut gens: BTreeMap<(u64, u64), Vec<&Event>> = BTreeMap::new();
    for e in rec.events.iter().filter(|e| e.is_sequenced()) {
        gens.entry((e.mm, e.mm_gen)).or_default().push(e);
    }
    let lossy = !rec.losses.is_empty();
    for ((mm, mm_gen), evs) in &gens {
        let mut seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
        seqs.sort_unstable();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        if !lossy {
            assert_eq!(
                seqs, expected,
                "mm {mm:#x} gen {mm_gen}: sequence has gaps or repeats"
            );
        }
        let first = evs.iter().find(|e| e.seq == 1);
        if let Some(first) = first {
            assert_ne!(
                first.hdr_flags & hdr::NEW_GENERATION,
                0,
                "seq 1 must start a generation"
            );
        }
    }
    gens.len()
}

#[test]
fn oom_reaper_reaps_victim_and_order_is_recorded() {
    require_root();
    let _g = serial();
    let run = TraceRun::start("oom", &[]);
    let report = scenario(&["oom-reap", "--release-ms", "4000"]);
    let (rec, stderr) = run.stop();
    let victim = report["victim_pid"].as_u64().expect("victim pid") as u32;

    for hook in ["mark_victim", "oom_reap", "exit_mmap"] {
        assert_ne!(
            hook_rung(&rec, hook),
            "unavailable",
            "{hook} must be attached"
        );
    }
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

    // The per-mm order the kernel guarantees for a reaped victim whose exit is
    // held back past the reaper delay.
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
    assert_eq!(
        *kinds.last().expect("events"),
        "exit_mmap_end",
        "exit_mmap ends the generation"
    );

    let reaper = gen_events[s];
    assert!(
        reaper.is_kthread(),
        "reap_start must come from the oom_reaper kernel thread"
    );
    assert_eq!(reaper.comm, "oom_reaper");
    if let Data::ReapEnd(r) = &gen_events[f].data {
        assert_ne!(
            r.mm_flags & (1 << monitor_common::mmf::MMF_UNSTABLE),
            0,
            "reaper sets MMF_UNSTABLE"
        );
    }
    let seqs: Vec<u64> = gen_events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "victim mm sequence has gaps"
    );
    assert_gap_free(&rec);
}

#[test]
fn exec_events_are_recorded_in_window_order() {
    require_root();
    let _g = serial();
    let run = TraceRun::start("exec", &[]);
    scenario(&["exec-storm", "--count", "25", "--exe", "/bin/true"]);
    let (rec, _) = run.stop();
    assert_ne!(hook_rung(&rec, "exec"), "unavailable");
    let execs: Vec<&Event> = rec
        .events
        .iter()
        .filter(|e| matches!(&e.data, Data::Exec(x) if x.filename == "/bin/true"))
        .collect();
    assert!(
        execs.len() >= 25,
        "expected 25 execs of /bin/true, saw {}",
        execs.len()
    );
    for e in &execs {
        // On the tracepoint rung the stack-move window opens at task_rename on
        // the new mm and closes at exec.
        let gen_events = rec.generation(e.mm, e.mm_gen);
        let switch = gen_events.iter().position(|x| x.kind() == "exec_mm_switch");
        let exec = gen_events.iter().position(|x| std::ptr::eq(*x, *e));
        assert!(
            switch.is_some() && switch < exec,
            "exec_mm_switch must precede exec: {gen_events:?}"
        );
    }
    let summary = rec.summary.as_ref().expect("summary line");
    assert!(
        summary
            .hits
            .get("tp_sched_process_exec")
            .copied()
            .unwrap_or(0)
            >= 25
    );
    assert!(assert_gap_free(&rec) >= 25);
}

#[test]
fn compaction_migration_batches_are_recorded() {
    require_root();
    let _g = serial();
    let run = TraceRun::start("compact", &[]);
    let report = scenario(&["compact", "--mb", "128"]);
    let (rec, _) = run.stop();
    assert_ne!(hook_rung(&rec, "migrate_pages"), "unavailable");
    let ends: Vec<_> = rec
        .events
        .iter()
        .filter_map(|e| match &e.data {
            Data::MigrateEnd(m) => Some(m),
            _ => None,
        })
        .collect();
    let starts = rec
        .events
        .iter()
        .filter(|e| e.kind() == "migrate_start")
        .count();
    assert!(
        !ends.is_empty(),
        "no migration batch recorded; scenario: {report}"
    );
    assert!(starts >= ends.len(), "every batch end has a start");
    assert!(
        ends.iter().any(|m| m.reason == 0),
        "no batch with reason=compaction"
    );
    let succeeded: u64 = ends.iter().map(|m| m.succeeded).sum();
    let ptes_set: u64 = ends.iter().map(|m| m.ptes_set).sum();
    assert!(succeeded > 0, "compaction migrated nothing: {report}");
    // Per-PTE tracepoints are aggregated in the kernel into the batch records.
    assert!(ptes_set > 0, "no migration PTEs counted in the batches");
    assert!(
        ends.iter().all(|m| m.start_seen),
        "batch counters must cover whole batches"
    );
    let summary = rec.summary.as_ref().expect("summary");
    assert!(summary.stats.get("migration_pte_set").copied().unwrap_or(0) >= ptes_set);
}

#[test]
fn tiny_ring_reports_loss_and_accounts_for_every_record() {
    require_root();
    let _g = serial();
    let run = TraceRun::start("loss", &["--ring-size", "4K"]);
    scenario(&["exec-storm", "--count", "1500", "--exe", "/bin/true"]);
    let (rec, stderr) = run.stop();
    let s = rec.summary.as_ref().expect("summary line");
    assert!(
        s.lost > 0,
        "a 4 KiB ring under an exec storm must lose records: {s:?}"
    );
    assert_eq!(
        s.delivered + s.lost,
        s.produced,
        "delivered + lost must equal what the BPF side produced: {s:?}"
    );
    assert_eq!(
        s.delivered,
        rec.events.len() as u64 + s.decode_errors + s.filtered_out
    );
    assert!(
        !rec.losses.is_empty(),
        "loss must be recorded in the trace file"
    );
    let lost_in_file: u64 = rec.losses.iter().map(|l| l.total()).sum();
    assert_eq!(lost_in_file, s.lost, "loss lines add up to the summary");
    assert!(
        stderr.contains(&format!("lost {}", s.lost)),
        "summary on stderr reports loss:\n{stderr}"
    );
}

#[test]
fn every_uffdio_copy_eagain_is_recorded() {
    require_root();
    let _g = serial();
    let run = TraceRun::start("uffd", &[]);
    let report = scenario(&["uffd-race", "--event", "fork", "--delay-ms", "500"]);
    let (rec, _) = run.stop();
    assert_ne!(hook_rung(&rec, "uffd_ioctl"), "unavailable");
    let pid = report["pid"].as_u64().expect("pid") as u32;
    let copies: Vec<_> = rec
        .events
        .iter()
        .filter(|e| e.tgid == pid)
        .filter_map(|e| match &e.data {
            Data::UffdCopy(c) => Some((e, c)),
            _ => None,
        })
        .collect();
    let eagain = copies.iter().filter(|(_, c)| c.ret == -11).count() as u64;
    let ok = copies.iter().filter(|(_, c)| c.ret == 4096).count() as u64;
    // The tracepoint rung sees the result of every UFFDIO_COPY ioctl: the
    // counts match what the workload itself observed, exactly.
    assert_eq!(
        eagain,
        report["copies_eagain"].as_u64().expect("eagain"),
        "EAGAIN count"
    );
    assert_eq!(
        ok,
        report["copies_ok"].as_u64().expect("ok"),
        "successful copies"
    );
    // The uffd's target mm was resolved through the file descriptor, and every
    // refused copy saw mmap_changing raised.
    assert!(
        copies.iter().all(|(e, _)| e.mm != 0),
        "uffd_copy without an mm"
    );
    assert!(
        copies
            .iter()
            .filter(|(_, c)| c.ret == -11)
            .all(|(_, c)| c.mmap_changing > 0),
        "an -EAGAIN copy must see mmap_changing > 0"
    );
    // The fork of a tracked mm is recorded after the handshake.
    assert!(
        rec.events
            .iter()
            .any(|e| e.tgid == pid && e.kind() == "fork"),
        "fork not recorded"
    );
}
