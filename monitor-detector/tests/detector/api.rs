//! The analysis API (`monitor analyze`) and the streaming detector's
//! contract, beyond what the fixtures show.

use monitor_common::event::hdr::{END_GENERATION, SEQ_MAP_FULL, UNSEQUENCED};
use monitor_detector::{
    CoverageState, Detector, DetectorConfig, ExitStatus, FileAnalyzer, FileReport, Limits, Report,
    Severity, analyze_texts,
    event::{Data, UffdEventKind},
    tracefile::{Line, parse_line},
};

use super::{
    fixtures::{analyze_file, fixture},
    support::*,
};

const MM: u64 = 0xffff_8880_0541_a380;

fn uffd_violation(tr: &mut Trace) {
    let app = user(100, 100, "app");
    let mon = user(101, 100, "monitor");
    let mm = tr.mm(MM);
    tr.emit(
        app,
        mm,
        "fexit_mremap_uffd_prep",
        Data::UffdChangeBegin(uffd_change(UffdEventKind::Remap, 1, 0x1000, 0x2000)),
    );
    tr.emit(
        mon,
        mm,
        "fentry_mfill_ctx",
        Data::MfillStart(uffd_copy(0x1000, 0, 1)),
    );
    tr.emit(
        mon,
        mm,
        "fexit_mfill_ctx",
        Data::MfillEnd(uffd_copy(0x1000, 4096, 1)),
    );
    tr.emit(
        app,
        mm,
        "fexit_uffd_wait",
        Data::UffdChangeEnd(uffd_change(UffdEventKind::Remap, 1, 0, 0)),
    );
}

fn detector_for(tr: &Trace) -> Detector {
    Detector::new(DetectorConfig::from_header(&tr.header))
}

#[test]
fn a_finding_is_emitted_once_when_its_window_closes() {
    let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
    uffd_violation(&mut tr);
    let mut d = detector_for(&tr);
    let mut per_line = Vec::new();
    for l in &tr.lines {
        per_line.push(d.push(l).len());
    }
    // Nothing until the window's closing event (the last line), then one.
    assert_eq!(per_line, vec![0, 0, 0, 1]);
    assert!(d.finish().is_empty());
    assert!(d.finish().is_empty(), "finish is idempotent");
}

#[test]
fn open_windows_are_reported_at_finish() {
    let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
    uffd_violation(&mut tr);
    tr.lines.pop();
    let mut d = detector_for(&tr);
    for l in &tr.lines {
        assert!(d.push(l).is_empty());
    }
    let found = d.finish();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].details["closed_by"], "end_of_input");
}

#[test]
fn loss_of_unrelated_kinds_does_not_touch_a_window() {
    let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
    uffd_violation(&mut tr);
    let end = tr.lines.pop().expect("closing line");
    tr.loss(&[("kernel_fault", 4000), ("migrate_end", 12)]);
    tr.lines.push(end);
    let mut d = detector_for(&tr);
    let mut found = Vec::new();
    for l in &tr.lines {
        found.extend(d.push(l));
    }
    assert_eq!(found[0].severity, Severity::Violation);
    // The same loss of uffd records makes it uncertain.
    let mut tr2 = Trace::new(R612, hooks_function(R612), 1_000);
    uffd_violation(&mut tr2);
    let end = tr2.lines.pop().expect("closing line");
    tr2.loss(&[("uffd_change_end", 1)]);
    tr2.lines.push(end);
    let mut d = detector_for(&tr2);
    let mut found = Vec::new();
    for l in &tr2.lines {
        found.extend(d.push(l));
    }
    assert_eq!(found[0].severity, Severity::Uncertain);
    assert!(
        found[0].explanation.contains("cannot be proven"),
        "{}",
        found[0].explanation
    );
}

#[test]
fn unsequenced_events_never_prove_a_violation() {
    let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
    uffd_violation(&mut tr);
    for l in &mut tr.lines {
        if let Line::Event(e) = l {
            e.hdr_flags = UNSEQUENCED | SEQ_MAP_FULL;
            e.seq = 0;
            e.mm_gen = 0;
        }
    }
    let mut d = detector_for(&tr);
    let mut found = Vec::new();
    for l in &tr.lines {
        found.extend(d.push(l));
    }
    found.extend(d.finish());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, Severity::Uncertain);
    assert_eq!(d.stats().unsequenced, 4);
}

#[test]
fn non_atomic_duplicates_are_neither_loss_nor_late() {
    // 5.10 ("compat" object): two CPUs may hand out the same number.
    let mut tr = Trace::new(R510, hooks_function(R510), 1_000);
    let a = user(7, 7, "a");
    let mm = tr.mm(MM);
    tr.emit(
        a,
        mm,
        "kprobe_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS)),
    );
    tr.emit(
        a,
        mm,
        "kprobe_unmap_vmas",
        Data::UnmapVmasStart(vma(0, 0x1000, 0x73, 0)),
    );
    tr.emit(
        a,
        mm,
        "kretprobe_unmap_vmas",
        Data::UnmapVmasEnd(vma(0, 0x1000, 0x73, 0)),
    );
    if let Some(Line::Event(e)) = tr.lines.get_mut(2) {
        e.seq = 2;
    }
    tr.emit(
        a,
        mm,
        "kretprobe_exit_mmap",
        Data::ExitMmapEnd(mm_state(MM_FLAGS)),
    );
    if let Some(Line::Event(e)) = tr.lines.get_mut(3) {
        e.seq = 3;
    }
    let mut d = detector_for(&tr);
    for l in &tr.lines {
        d.push(l);
    }
    d.finish();
    assert_eq!(d.stats().gaps, 0);
    assert_eq!(d.stats().late_records, 0);
}

#[test]
fn a_filtered_recording_does_not_treat_gaps_as_loss() {
    let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
    uffd_violation(&mut tr);
    tr.header.filters.insert("comm".into(), "app".into());
    for l in &mut tr.lines[2..] {
        if let Line::Event(e) = l {
            e.seq += 5;
        }
    }
    let report = analyze_texts([("f.jsonl", tr.to_jsonl().as_str())]);
    let f = &report.files[0];
    assert_eq!(f.findings.len(), 1);
    assert_eq!(f.findings[0].severity, Severity::Violation);
    assert!(
        f.notes.iter().any(|n| n.contains("filtered")),
        "{:?}",
        f.notes
    );
}

#[test]
fn memory_bounds_are_enforced_and_counted() {
    let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
    // Many uffd windows left open on distinct mms.
    for i in 0..200u64 {
        let mm = Mm {
            addr: MM + i * 0x1000,
            generation: 7 + i,
        };
        let app = user(100, 100, "app");
        tr.emit(
            app,
            mm,
            "fexit_mremap_uffd_prep",
            Data::UffdChangeBegin(uffd_change(UffdEventKind::Remap, 1, 0x1000, 0x2000)),
        );
        tr.emit(
            app,
            mm,
            "fexit_uffd_ioctl",
            Data::UffdCopy(uffd_copy(0x1000, -11, 1)),
        );
    }
    let mut cfg = DetectorConfig::from_header(&tr.header);
    cfg.limits = Limits {
        max_mms: 50,
        ..Limits::default()
    };
    let mut d = Detector::new(cfg);
    let mut found = Vec::new();
    for l in &tr.lines {
        found.extend(d.push(l));
        assert!(d.tracked_mms() <= 50);
    }
    found.extend(d.finish());
    assert_eq!(found.len(), 50, "only the tracked windows are reported");
    assert_eq!(d.stats().mms_evicted, 150);
    assert_eq!(d.stats().windows_dropped, 150);
}

#[test]
fn evidence_is_capped_keeping_first_and_last() {
    let mut tr = Trace::new(R618, hooks_tracepoint(), 1_000);
    let a = user(9, 9, "t_uffd_fork");
    let mm = tr.mm(MM);
    for _ in 0..500 {
        tr.emit(
            a,
            mm,
            "tp_sys_exit_ioctl",
            Data::UffdCopy(uffd_copy(0x1000, -11, 1)),
        );
    }
    tr.emit(
        a,
        mm,
        "tp_sched_process_fork",
        fork(user(10, 10, "child"), MM + 0x1000),
    );
    let report = analyze_texts([("cap.jsonl", tr.to_jsonl().as_str())]);
    let f = &report.files[0].findings[0];
    assert_eq!(f.details["eagain_count"], 500);
    assert_eq!(f.evidence.len(), Limits::default().max_evidence);
    assert_eq!(f.evidence[0].seq, 1);
    assert_eq!(f.evidence.last().map(|e| e.seq), Some(501));
    assert_eq!(f.details["evidence_omitted"], 501 - 32);
}

#[test]
fn exit_status_error_wins_over_findings() {
    let good = fixture("reaper_6x_legal_overlap").to_jsonl();
    let benign = fixture("uffd_copy_no_change").to_jsonl();
    assert_eq!(
        analyze_texts([("b", benign.as_str())]).exit_status(),
        ExitStatus::NoFindings
    );
    assert_eq!(
        analyze_texts([("g", good.as_str())]).exit_status(),
        ExitStatus::Findings
    );
    let both = Report::new(vec![
        analyze_texts([("g", good.as_str())]).files.remove(0),
        FileReport::io_error("missing.jsonl", "No such file or directory (os error 2)"),
    ]);
    assert_eq!(both.exit_status(), ExitStatus::Error);
    assert_eq!(both.exit_status().code(), 2);
    assert!(
        both.render_table()
            .contains("error: missing.jsonl: No such file or directory")
    );
}

#[test]
fn line_errors_name_file_and_line() {
    let good = fixture("uffd_copy_no_change").to_jsonl();
    let mut lines: Vec<&str> = good.lines().collect();
    let header = lines[0];

    // A second header.
    lines.insert(3, header);
    let r = analyze_file("x.jsonl", &lines.join("\n"));
    let e = r.files[0].error.as_ref().expect("error");
    assert_eq!(e.to_string(), "x.jsonl:4: unexpected second header line");

    // A cut-short line followed by more lines is an error, not a warning.
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    lines[5].truncate(40);
    let r = analyze_file("y.jsonl", &lines.join("\n"));
    let e = r.files[0].error.as_ref().expect("error");
    assert!(
        e.to_string().starts_with("y.jsonl:6: line is cut short"),
        "{e}"
    );

    // Empty file, and an incompatible header.
    let r = analyze_file("z.jsonl", "");
    assert_eq!(
        r.files[0].error.as_ref().map(ToString::to_string),
        Some("z.jsonl: empty file: no header".into())
    );
    let v2 = good.replacen("\"version\":1", "\"version\":2", 1);
    let r = analyze_file("v.jsonl", &v2);
    assert!(
        r.files[0]
            .error
            .as_ref()
            .is_some_and(|e| e.to_string().starts_with("v.jsonl:1: incompatible header"))
    );

    // Blank lines and CRLF endings are fine.
    let crlf = good.replace('\n', "\r\n\r\n");
    let r = analyze_file("w.jsonl", &crlf);
    assert!(r.files[0].error.is_none(), "{:?}", r.files[0].error);
    assert!(r.files[0].warnings.is_empty());
}

#[test]
fn json_output_is_one_object_per_line_and_findings_reparse() {
    let texts: Vec<(String, String)> = [
        "reaper_6x_legal_overlap",
        "uffd_fork_eagain_tracepoint",
        "uffd_copy_no_change",
    ]
    .iter()
    .map(|name| (format!("{name}.jsonl"), fixture(name).to_jsonl()))
    .collect();
    let report = analyze_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    let json = report.render_json();
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|v| v["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        kinds,
        ["finding", "finding", "file", "file", "file", "summary"]
    );
    assert_eq!(lines[0]["file"], "reaper_6x_legal_overlap.jsonl");
    assert_eq!(lines[0]["kind"], "reaper_exit_overlap");
    assert_eq!(lines[1]["severity"], "near_miss");
    assert_eq!(lines[1]["details"]["change_kind"], "fork");
    assert_eq!(lines[5]["exit_status"], 1);
    assert_eq!(lines[5]["findings"], 2);
    // The tracepoint host's file line lists the disabled migration rule.
    let cov = lines[3]["coverage"].as_array().expect("coverage");
    assert!(
        cov.iter()
            .any(|c| c["rule"] == "leftover_migration_entry" && c["state"] == "disabled")
    );
    // A finding line is also a valid trace-file finding line.
    for l in json.lines().filter(|l| l.contains("\"type\":\"finding\"")) {
        assert!(matches!(parse_line(l), Ok(Line::Finding(_))), "{l}");
    }
}

#[test]
fn table_output_lists_rules_findings_and_notes() {
    let text = fixture("unstable_tracepoint_unknown").to_jsonl();
    let table = analyze_texts([("host.jsonl", text.as_str())]).render_table();
    for needle in [
        "== host.jsonl (kernel 6.18",
        "leftover_migration_entry   disabled",
        "uncertain  unstable_mm_fault",
        "vhost-8811[8820](kthread)",
        "fault_result=\"unknown (tracepoint rung)\"",
        "note: rule leftover_migration_entry is disabled",
        "1 file(s), 1 finding(s) (0 violation, 0 near miss, 1 uncertain), 0 error(s)",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in:\n{table}");
    }
}

#[test]
fn coverage_is_exposed_without_a_detector() {
    let cov = monitor_detector::coverage(&hooks_tracepoint());
    let states: Vec<(&str, CoverageState)> = cov.iter().map(|c| (c.rule.name(), c.state)).collect();
    assert_eq!(
        states,
        [
            ("reaper_exit_overlap", CoverageState::Partial),
            ("unstable_mm_fault", CoverageState::Partial),
            ("leftover_migration_entry", CoverageState::Disabled),
            ("uffd_copy_vs_mm_change", CoverageState::Partial),
        ]
    );
    // The fixtures' function plan predates the huge-page migration-wait
    // hooks: leftover_migration_entry names those paths, so it is partial
    // and lists them; with them attached every rule is full.
    let mut plan = hooks_function(R612);
    let cov = monitor_detector::coverage(&plan);
    let migration = cov
        .iter()
        .find(|c| c.rule == monitor_detector::FindingKind::LeftoverMigrationEntry)
        .expect("rule");
    assert_eq!(migration.state, CoverageState::Partial, "{migration:#?}");
    let missing: Vec<&str> = migration
        .missing_paths
        .iter()
        .map(|m| m.hook.name())
        .collect();
    assert_eq!(
        missing,
        ["pmd_migration_entry_wait", "migration_entry_wait_huge"]
    );
    let mut huge = plan[0].clone();
    for name in ["pmd_migration_entry_wait", "migration_entry_wait_huge"] {
        huge.hook = monitor_common::catalogue::HookId::from_name(name).expect("hook");
        plan.push(huge.clone());
    }
    let full = monitor_detector::coverage(&plan);
    assert!(
        full.iter()
            .all(|c| c.state == CoverageState::Full && c.missing_paths.is_empty()),
        "{full:#?}"
    );
}

#[test]
fn streaming_line_by_line_equals_whole_text() {
    let text = fixture("reaper_seq_gap_in_window").to_jsonl();
    let whole = analyze_texts([("a", text.as_str())]);
    let mut fa = FileAnalyzer::new("a");
    for l in text.lines() {
        fa.feed_line(l);
    }
    let streamed = Report::new(vec![fa.finish()]);
    assert_eq!(whole.render_json(), streamed.render_json());
}

#[test]
fn a_late_record_after_its_generation_ended_is_dropped() {
    let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
    let a = user(5, 5, "a");
    let mm = tr.mm(MM);
    tr.emit(
        a,
        mm,
        "fentry_exit_mmap",
        Data::ExitMmapStart(mm_state(MM_FLAGS)),
    );
    tr.emit_flags(
        a,
        mm,
        "fentry_mmdrop",
        Data::MmDrop(mm_state(MM_FLAGS)),
        END_GENERATION,
    );
    let straggler = match &tr.lines[0] {
        Line::Event(e) => *e,
        _ => unreachable!(),
    };
    tr.lines.push(Line::Event(straggler));
    let mut d = detector_for(&tr);
    for l in &tr.lines {
        d.push(l);
    }
    d.finish();
    assert_eq!(d.stats().late_after_end, 1);
    assert_eq!(d.tracked_mms(), 0);
}

/// The daemon moves the detector into its event task.
#[test]
fn detector_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Detector>();
    assert_send::<FileAnalyzer>();
    assert_send::<Report>();
}

/// A fault task waiting again and again on one PMD-level (THP) migration
/// entry, with no migration batch in flight, is the left-behind-entry
/// pattern at the PMD level: uncertain, keyed by the entry (the hook sees no
/// address), with the waits' returns as evidence.
#[test]
fn repeated_waits_on_one_pmd_migration_entry_are_reported() {
    use monitor_common::catalogue::HugeMigrationWait;
    use monitor_detector::FindingKind;
    let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
    let task = user(6700, 6700, "java");
    let mm = tr.mm(0xffff_8880_0710_4e00);
    let wait = |entry| HugeMigrationWait {
        entry,
        vm_start: 0,
        level: 1,
        _pad0: 0,
    };
    for _ in 0..3 {
        tr.emit(
            task,
            mm,
            "fentry_pmd_wait",
            Data::HugeMigrationWaitStart(wait(0x3e_8000_0c02)),
        );
        tr.emit(
            task,
            mm,
            "fexit_pmd_wait",
            Data::HugeMigrationWaitEnd(wait(0x3e_8000_0c02)),
        );
    }
    // Another entry waited on once is not a pattern.
    tr.emit(
        task,
        mm,
        "fentry_pmd_wait",
        Data::HugeMigrationWaitStart(wait(0x77)),
    );
    let report = analyze_file("pmd.jsonl", &tr.to_jsonl());
    let findings: Vec<_> = report.findings().map(|(_, f)| f).collect();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = findings[0];
    assert_eq!(f.kind, FindingKind::LeftoverMigrationEntry);
    assert_eq!(f.severity, Severity::Uncertain);
    assert_eq!(f.details["entry"], "0x3e80000c02");
    assert_eq!(f.details["wait_count"], 3);
    assert!(
        f.explanation.contains("PMD-level (THP) migration entry"),
        "{}",
        f.explanation
    );
    let kinds: Vec<&str> = f.evidence.iter().map(|e| e.kind()).collect();
    assert!(kinds.contains(&"huge_migration_wait_end"), "{kinds:?}");
}

/// The in-kernel copy filter's one record per copy (`uffd_copy_done`) is
/// judged like the `mfill` bracket it folds in: a copy that began inside a
/// window and succeeded while that same window stayed open is a violation;
/// one whose window opened during the copy is a near miss; an `-EAGAIN` is
/// a near miss.
#[test]
fn folded_copies_are_judged_like_their_brackets() {
    use monitor_common::event::copy_window::{
        MFILL_HOOKED, OPEN_AT_END, OPEN_AT_START, SAME_WINDOW,
    };
    use monitor_detector::event::UffdCopyDone;
    let done = |ret: i64, window: u32, mfill_changing: i32| {
        Data::UffdCopyDone(UffdCopyDone {
            dst: 0x1000,
            len: 4096,
            ret,
            mfill_start_ns: if window & OPEN_AT_START != 0 {
                1_000
            } else {
                0
            },
            mmap_changing: 1,
            mfill_changing,
            fd: -1,
            window,
        })
    };
    let judge = |copy: Data| {
        let mut tr = Trace::new(R612, hooks_function(R612), 1_000);
        let app = user(100, 100, "app");
        let mon = user(101, 100, "monitor");
        let mm = tr.mm(MM);
        tr.emit(
            app,
            mm,
            "fexit_mremap_uffd_prep",
            Data::UffdChangeBegin(uffd_change(UffdEventKind::Remap, 1, 0x1000, 0x2000)),
        );
        tr.emit(mon, mm, "fexit_uffd_ioctl", copy);
        tr.emit(
            app,
            mm,
            "fexit_uffd_wait",
            Data::UffdChangeEnd(uffd_change(UffdEventKind::Remap, 1, 0, 0)),
        );
        let report = analyze_texts([("f.jsonl", tr.to_jsonl().as_str())]);
        report.files[0]
            .findings
            .iter()
            .map(|f| {
                (
                    f.severity,
                    f.details["pattern"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let inside = MFILL_HOOKED | OPEN_AT_START | SAME_WINDOW | OPEN_AT_END;
    assert_eq!(
        judge(done(4096, inside, 1)),
        vec![(Severity::Violation, "copy_inside_window".to_owned())]
    );
    assert_eq!(
        judge(done(4096, MFILL_HOOKED | OPEN_AT_END, -1)),
        vec![(Severity::NearMiss, "copy_overlapping_change".to_owned())]
    );
    // Another window than the one open at the start: not the same check.
    assert_eq!(
        judge(done(4096, MFILL_HOOKED | OPEN_AT_START | OPEN_AT_END, 1)),
        vec![(Severity::NearMiss, "copy_overlapping_change".to_owned())]
    );
    assert_eq!(
        judge(done(-11, inside, 1)),
        vec![(Severity::NearMiss, "eagain".to_owned())]
    );
    // mmap_changing already down at the mfill entry: no verdict.
    assert!(judge(done(4096, inside, 0)).is_empty());
    // Without the mfill hook the start is unknown: counted, never a violation.
    assert!(judge(done(4096, OPEN_AT_END, -1)).is_empty());
}
