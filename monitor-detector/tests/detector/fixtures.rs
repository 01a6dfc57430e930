//! Data-driven tests.
//!
//! * `tests/fixtures/*.trace`: the fixtures, compact trace text, one event
//!   per line (syntax: `support::parse_trace`), every program and field
//!   checked against the catalogue. Each is written out as a trace file,
//!   analysed as `monitor analyze` would, and compared with its snapshot.
//! * `tests/data/legacy/`: the regression corpus, the traces exactly as the
//!   build before the catalogue wrote them (JSON Lines, with the program
//!   names its test builders invented, and three damaged files), with their
//!   snapshots (`*.findings`). Every trace recorded before the redesign must
//!   keep giving the same findings, and a fixture of the same name must give
//!   exactly the legacy snapshot. `UPDATE_EXPECT=1` refreshes the snapshots.
//!
//! Snapshots can be refreshed blindly, so [`EXPECTED`] pins the verdicts that
//! matter independently: for each fixture, the exact list of
//! (kind, severity) it must produce and the exit status.

use std::{fmt::Write as _, fs, path::Path};

use expect_test::expect_file;
use monitor_detector::{FileAnalyzer, Report, event::Event, finding::Finding};

use super::support::{Trace, parse_trace};

/// (fixture, expected findings in order as (kind, severity), exit status).
type Expectation = (&'static str, &'static [(&'static str, &'static str)], u8);

const EXPECTED: &[Expectation] = &[
    // The victim's own thread faults (SIGBUS) after the reap: since every
    // accessor is judged, a near miss by the owner's kernel-mode access.
    (
        "benign_function_rung",
        &[("unstable_mm_fault", "near_miss")],
        1,
    ),
    ("benign_tracepoint_host", &[], 0),
    ("error_malformed_line", &[], 2),
    ("error_missing_header", &[], 2),
    ("migration_completes", &[], 0),
    (
        "migration_entry_in_temp_stack",
        &[("leftover_migration_entry", "violation")],
        1,
    ),
    (
        "migration_repeated_wait",
        &[("leftover_migration_entry", "uncertain")],
        1,
    ),
    (
        "migration_skip_temp_stack",
        &[("leftover_migration_entry", "near_miss")],
        1,
    ),
    ("migration_tracepoint_host", &[], 0),
    ("mm_reuse_function_rung", &[], 0),
    ("mm_reuse_tracepoint_rung", &[], 0),
    ("reaper_510_nested_own_reap", &[], 0),
    (
        "reaper_510_exit_first_replayed",
        &[("reaper_exit_overlap", "violation")],
        1,
    ),
    (
        "reaper_510_overlap_before_barrier",
        &[("reaper_exit_overlap", "near_miss")],
        1,
    ),
    (
        "reaper_510_overlap_unmap_vmas",
        &[("reaper_exit_overlap", "violation")],
        1,
    ),
    (
        "reaper_6x_exit_first_replayed",
        &[("reaper_exit_overlap", "near_miss")],
        1,
    ),
    (
        "reaper_6x_exit_end_inside_reap",
        &[("reaper_exit_overlap", "violation")],
        1,
    ),
    (
        "reaper_6x_legal_overlap",
        &[("reaper_exit_overlap", "near_miss")],
        1,
    ),
    (
        "reaper_6x_mmdrop_inside_reap",
        &[("reaper_exit_overlap", "violation")],
        1,
    ),
    (
        "reaper_cross_cpu_swapped",
        &[("reaper_exit_overlap", "near_miss")],
        1,
    ),
    (
        "reaper_loss_line_in_window",
        &[("reaper_exit_overlap", "uncertain")],
        1,
    ),
    (
        "reaper_seq_gap_in_window",
        &[("reaper_exit_overlap", "uncertain")],
        1,
    ),
    (
        "reaper_tp_exit_end_inside_reap",
        &[("reaper_exit_overlap", "violation")],
        1,
    ),
    (
        "reaper_tp_reap_after_exit_end",
        &[("reaper_exit_overlap", "violation")],
        1,
    ),
    (
        "reaper_unknown_kernel",
        &[("reaper_exit_overlap", "near_miss")],
        1,
    ),
    (
        "uffd_copy_inside_remap_window",
        &[("uffd_copy_vs_mm_change", "violation")],
        1,
    ),
    ("uffd_copy_no_change", &[], 0),
    (
        "uffd_fork_eagain_function",
        &[("uffd_copy_vs_mm_change", "near_miss")],
        1,
    ),
    (
        "uffd_fork_eagain_tracepoint",
        &[("uffd_copy_vs_mm_change", "near_miss")],
        1,
    ),
    (
        "uffd_remove_overlap_legal",
        &[("uffd_copy_vs_mm_change", "near_miss")],
        1,
    ),
    (
        "uffd_violation_across_gap",
        &[("uffd_copy_vs_mm_change", "uncertain")],
        1,
    ),
    (
        "unstable_flag_set_during_fault",
        &[("unstable_mm_fault", "near_miss")],
        1,
    ),
    (
        "unstable_handled_across_loss",
        &[("unstable_mm_fault", "uncertain")],
        1,
    ),
    (
        "unstable_kthread_handled",
        &[("unstable_mm_fault", "violation")],
        1,
    ),
    (
        "unstable_kthread_handled_during_reap",
        &[("unstable_mm_fault", "near_miss")],
        1,
    ),
    (
        "unstable_kthread_handled_after_partial_reap",
        &[("unstable_mm_fault", "violation")],
        1,
    ),
    (
        "unstable_kthread_handled_shared",
        &[("unstable_mm_fault", "near_miss")],
        1,
    ),
    (
        "unstable_kthread_sigbus",
        &[("unstable_mm_fault", "near_miss")],
        1,
    ),
    // Recorded when the owner's faults were excluded: its handled user-mode
    // fault after the reap (#8) is a violation now (6b31d5955cb2).
    (
        "unstable_owner_and_stable_faults",
        &[("unstable_mm_fault", "violation")],
        1,
    ),
    (
        "unstable_owner_writer_sigbus",
        &[("unstable_mm_fault", "near_miss")],
        1,
    ),
    (
        "unstable_owner_writer_handled",
        &[("unstable_mm_fault", "violation")],
        1,
    ),
    ("unstable_owner_retry_only", &[], 0),
    (
        "unstable_remote_gup",
        &[("unstable_mm_fault", "near_miss")],
        1,
    ),
    (
        "unstable_tracepoint_unknown",
        &[("unstable_mm_fault", "uncertain")],
        1,
    ),
    (
        "warn_truncated_last_line",
        &[("reaper_exit_overlap", "near_miss")],
        1,
    ),
];

fn data_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/legacy"))
}

fn evidence_line(e: &Event) -> String {
    format!(
        "seq={:<3} cpu={} t={}.{:09} {:<30} {}[{}]{}",
        e.seq,
        e.cpu,
        e.t / 1_000_000_000,
        e.t % 1_000_000_000,
        e.kind(),
        e.comm(),
        e.pid,
        if e.is_kthread() { " kthread" } else { "" }
    )
}

fn render_finding(s: &mut String, f: &Finding) {
    let _ = writeln!(
        s,
        "- {} {} mm={:#x} gen={} t={}..{}",
        f.severity.name(),
        f.kind.name(),
        f.mm,
        f.mm_gen,
        f.start_t,
        f.end_t
    );
    let tasks: Vec<String> = f
        .tasks
        .iter()
        .map(|t| {
            format!(
                "{}[{}/{}]{}",
                t.comm,
                t.pid,
                t.tgid,
                if t.kthread { " kthread" } else { "" }
            )
        })
        .collect();
    let _ = writeln!(s, "  tasks: {}", tasks.join(", "));
    let _ = writeln!(s, "  why: {}", f.explanation);
    for (k, v) in &f.details {
        let _ = writeln!(s, "  {k}: {v}");
    }
    let _ = writeln!(s, "  evidence:");
    for e in &f.evidence {
        let _ = writeln!(s, "    {}", evidence_line(e));
    }
}

/// The snapshot text for one analysed file.
fn render(report: &Report) -> String {
    let mut s = String::new();
    for f in &report.files {
        let _ = writeln!(
            s,
            "kernel: {}",
            f.era.as_ref().map_or_else(|| "-".to_owned(), |e| e.label())
        );
        let _ = writeln!(s, "rules:");
        for c in &f.coverage {
            let _ = writeln!(
                s,
                "  {}: {} ({})",
                c.rule.name(),
                c.state.name(),
                c.reason()
            );
        }
        let _ = writeln!(s, "findings: {}", f.findings.len());
        for x in &f.findings {
            render_finding(&mut s, x);
        }
        for n in &f.notes {
            let _ = writeln!(s, "note: {n}");
        }
        for w in &f.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        if let Some(e) = &f.error {
            let _ = writeln!(s, "error: {e}");
        }
        let st = &f.stats;
        let _ = writeln!(
            s,
            "stats: events={} held={} gaps={} missing={} late={} loss_lines={} lost={} peak_mms={}",
            st.events,
            st.held,
            st.gaps,
            st.records_missing,
            st.late_records,
            st.loss_lines,
            st.lost_records,
            st.peak_mms
        );
    }
    let _ = writeln!(s, "exit_status: {}", report.exit_status().code());
    s
}

/// Analyses a file the way `monitor analyze` does: line by line.
pub fn analyze_file(name: &str, text: &str) -> Report {
    let mut a = FileAnalyzer::new(name);
    for line in text.split('\n') {
        a.feed_line(line);
    }
    Report::new(vec![a.finish()])
}

/// The names of the files in `dir` ending in `suffix`, without it, sorted
/// (at least 30: the corpus is never this small).
#[expect(
    clippy::disallowed_methods,
    reason = "the test harness reads its fixture directories; the library under test does no IO"
)]
fn stems(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(suffix))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 30, "found only {} fixtures", names.len());
    names
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "the test harness reads its fixture files; the library under test does no IO"
)]
fn fixtures() {
    // Walk the corpus: every trace has a snapshot and pinned verdicts.
    let names = stems(data_dir(), ".jsonl");
    let mut failures = Vec::new();
    for name in &names {
        let text = fs::read_to_string(data_dir().join(format!("{name}.jsonl"))).expect("readable");
        let report = analyze_file(&format!("{name}.jsonl"), &text);
        expect_file![format!("../data/legacy/{name}.findings")].assert_eq(&render(&report));

        let Some((_, want, status)) = EXPECTED.iter().find(|(n, _, _)| n == name) else {
            failures.push(format!("{name}: no entry in EXPECTED"));
            continue;
        };
        let got: Vec<(&str, &str)> = report
            .findings()
            .map(|(_, f)| (f.kind.name(), f.severity.name()))
            .collect();
        if got != *want {
            failures.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
        if report.exit_status().code() != *status {
            failures.push(format!(
                "{name}: expected exit status {status}, got {}",
                report.exit_status().code()
            ));
        }
    }
    for (name, _, _) in EXPECTED {
        // A fixture added after the redesign has no legacy trace, only its
        // compact text (checked by `compact_fixtures`).
        if !names.iter().any(|n| n == name)
            && !fixtures_dir().join(format!("{name}.trace")).exists()
        {
            failures.push(format!("{name}: listed in EXPECTED but no fixture file"));
        }
    }
    assert!(
        failures.is_empty(),
        "fixture failures:\n{}",
        failures.join("\n")
    );
}

/// Every finding kind is exercised with every severity it can produce, and
/// benign look-alikes exist for each rule.
#[test]
fn fixtures_cover_every_kind_and_severity() {
    for kind in monitor_detector::FindingKind::ALL {
        for sev in monitor_detector::Severity::ALL {
            let covered = EXPECTED
                .iter()
                .any(|(_, f, _)| f.contains(&(kind.name(), sev.name())));
            assert!(
                covered,
                "no fixture produces {}/{}",
                kind.name(),
                sev.name()
            );
        }
    }
    let benign = EXPECTED
        .iter()
        .filter(|(_, f, s)| f.is_empty() && *s == 0)
        .count();
    assert!(benign >= 8, "{benign} benign fixtures");
}

fn fixtures_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// The compact fixture `name`, parsed (panics with the line on an error).
#[expect(
    clippy::disallowed_methods,
    reason = "the test harness reads its fixture files; the library under test does no IO"
)]
pub fn fixture(name: &str) -> Trace {
    let path = fixtures_dir().join(format!("{name}.trace"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_trace(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fixture gives its pinned verdicts and, where the legacy corpus has
/// the same trace, exactly the legacy snapshot: the compact text, the
/// catalogue's program names and today's writer and reader changed nothing.
#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "the test harness reads its fixture files; the library under test does no IO"
)]
fn compact_fixtures() {
    let names = stems(fixtures_dir(), ".trace");
    let mut failures = Vec::new();
    for name in &names {
        let report = analyze_file(&format!("{name}.jsonl"), &fixture(name).to_jsonl());
        let got = render(&report);
        match fs::read_to_string(data_dir().join(format!("{name}.findings"))) {
            Ok(legacy) if legacy != got => failures.push(format!(
                "{name}: differs from the legacy snapshot\n--- legacy\n{legacy}\n+++ fixture\n{got}"
            )),
            Ok(_) => {}
            Err(_) => expect_file![format!("../fixtures/{name}.findings")].assert_eq(&got),
        }
        let Some((_, want, status)) = EXPECTED.iter().find(|(n, _, _)| n == name) else {
            failures.push(format!("{name}: no entry in EXPECTED"));
            continue;
        };
        let verdicts: Vec<(&str, &str)> = report
            .findings()
            .map(|(_, f)| (f.kind.name(), f.severity.name()))
            .collect();
        if verdicts != *want || report.exit_status().code() != *status {
            failures.push(format!(
                "{name}: expected {want:?}/{status}, got {verdicts:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "fixture failures:\n{}",
        failures.join("\n")
    );
}

/// The compact text is checked against the catalogue: a program it does not
/// have, a program that does not emit the kind, a field the kind does not
/// have, are errors naming the line.
#[test]
fn compact_text_is_checked_against_the_catalogue() {
    let head = "kernel 6.12.1\nplan function\ntask r 40/40 oom_reaper kthread\nmm v 0x1000\n";
    let err = |line: &str| {
        parse_trace(&format!("{head}{line}\n"))
            .err()
            .unwrap_or_default()
    };
    assert!(
        err("1.000000000 cpu0 r fentry___oom_reap_task_mm reap_start v/1#1")
            .contains("not a program of the catalogue")
    );
    assert!(
        err("1.000000000 cpu0 r fentry_oom_reap reap_end v/1#1").contains("does not emit reap_end")
    );
    assert!(
        err("1.000000000 cpu0 r fentry_oom_reap reap_start v/1#1 victim=3")
            .contains("has no field victim")
    );
    assert!(
        err("1.000000000 cpu0 r fentry_oom_reap reap_start v/1#1 source=sideways")
            .contains("source")
    );
    assert!(
        parse_trace(&format!(
            "{head}1.000000000 cpu0 r fentry_oom_reap reap_start v/1#1 source=function\n"
        ))
        .is_ok()
    );
}

/// The owner's thread faulting in kernel mode (a `write(2)` copying from its
/// reaped buffer, no `FAULT_FLAG_USER`) is judged like any accessor and
/// named: `owner_kernel`, the writer's tid first; refused = near miss,
/// handled = violation.
#[test]
fn owner_kernel_writer_is_judged_and_named() {
    for (name, severity) in [
        ("unstable_owner_writer_sigbus", "near_miss"),
        ("unstable_owner_writer_handled", "violation"),
    ] {
        let report = analyze_file(&format!("{name}.jsonl"), &fixture(name).to_jsonl());
        let found: Vec<&Finding> = report.findings().map(|(_, f)| f).collect();
        assert_eq!(found.len(), 1, "{name}: {found:#?}");
        let f = found[0];
        assert_eq!(f.severity.name(), severity, "{name}");
        assert_eq!(
            f.details["accessor"],
            serde_json::json!(["owner_kernel"]),
            "{name}"
        );
        assert_eq!(f.details["first_task"], "3101 (t_oom_writer)", "{name}");
        assert_eq!(f.details["owner_kernel_faults"], 1, "{name}");
        assert!(
            f.tasks.iter().any(|t| t.pid == 3101),
            "{name}: {:?}",
            f.tasks
        );
        assert!(
            f.explanation
                .to_lowercase()
                .contains("the owner's thread in kernel mode"),
            "{name}: {}",
            f.explanation
        );
    }
}

/// The "installed more or fewer migration PTEs than they removed" note only
/// where both counts are per PTE (the tracepoint rung): on the function rung
/// removals are counted per rmap callback, so a batch that restored 65 PTEs
/// through 64 callbacks is normal and says nothing.
#[test]
fn pte_balance_note_only_where_the_counts_compare() {
    const NOTE: &str = "installed more or fewer migration PTEs";
    let function = render(&analyze_file(
        "f.jsonl",
        &fixture("migration_repeated_wait").to_jsonl(),
    ));
    assert!(!function.contains(NOTE), "function rung:\n{function}");
    let tracepoint = render(&analyze_file(
        "t.jsonl",
        &fixture("migration_tracepoint_host").to_jsonl(),
    ));
    assert!(tracepoint.contains(NOTE), "tracepoint rung:\n{tracepoint}");
}
