//! Real-kernel tests on the host (6.18 here: tracepoint rung only). Each test
//! asserts on what the monitor recorded, and that the hooks it relies on fired.

use std::process::Command;

use monitor_detector::Data;
use serde_json::Value;

use crate::{
    checks,
    util::{TraceRun, monitor_bin, require_root, run, scenario, serial},
};

/// `trace --quiet` without `--output` prints only its summary, and runs to
/// its end: its stdout (here /dev/null) is not an output it was asked for.
/// (It once ended at the first drain, "sink closed", which made every
/// benchmark variant without `--output` monitor for a fraction of a second.)
#[test]
fn a_quiet_trace_without_a_file_runs_to_its_duration() {
    require_root!();
    let _g = serial();
    let out = run(Command::new(monitor_bin())
        .args(["trace", "--quiet", "--duration", "2s"])
        .stdout(std::process::Stdio::null()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ended by duration"),
        "the trace must end by its duration: {stderr}"
    );
}

#[test]
fn oom_reaper_reaps_victim_and_order_is_recorded() {
    require_root!();
    let _g = serial();
    let rec = checks::oom_reap(&[]);
    checks::assert_fired(
        &rec,
        &[
            "tp_mark_victim",
            "tp_start_task_reaping",
            "tp_finish_task_reaping",
            "tp_exit_mmap",
        ],
    );
}

/// An exec storm with no migration near: every exec passes through the exec
/// hooks, none is recorded (the hot path costs lookups, not records), and so
/// the mms of the exec'd processes are never tracked (their exits and forks
/// produce nothing either).
#[test]
fn execs_without_migration_are_filtered_in_the_kernel() {
    require_root!();
    let _g = serial();
    let run = TraceRun::start("exec", &[]);
    scenario(&["exec-storm", "--count", "50", "--exe", "/bin/true"]);
    let (rec, _) = run.stop();
    checks::exec_programs_fired(&rec, 50);
    checks::assert_fired(&rec, &["tp_exit_mmap", "tp_sched_process_fork"]);
    checks::no_exec_records(&rec, "/bin/true");
}

/// Execs during compaction: the windows that a migration batch overlapped
/// are recorded whole (exec_mm_switch before exec on the same mm generation).
#[test]
fn exec_windows_under_migration_are_recorded_whole() {
    require_root!();
    let _g = serial();
    let run = TraceRun::start("exec-compact", &[]);
    let compactor = std::thread::spawn(|| scenario(&["compact", "--mb", "256", "--rounds", "20"]));
    scenario(&["exec-storm", "--count", "300", "--exe", "/bin/true"]);
    let compacted = compactor.join().expect("compaction thread");
    let (rec, _) = run.stop();
    checks::exec_programs_fired(&rec, 300);
    let recorded = checks::exec_windows(&rec, "/bin/true");
    println!("{recorded} of 300 execs overlapped a migration batch; compaction: {compacted}");
    assert!(checks::assert_gap_free(&rec) >= recorded);
}

#[test]
fn compaction_migration_batches_are_recorded() {
    require_root!();
    let _g = serial();
    let run = TraceRun::start("compact", &[]);
    // Right after another test compacted memory, a fresh allocation can lie
    // wholly where compaction's migration and free scanners never meet (the
    // kernel then moves a handful of pages, none of them mapped): allocate
    // afresh and compact again, a few times, before judging.
    let mut report = scenario(&["compact", "--mb", "128"]);
    for _ in 0..4 {
        if report["pgmigrate_success"].as_u64().unwrap_or(0) >= 256 {
            break;
        }
        report = scenario(&["compact", "--mb", "256"]);
    }
    let (rec, _) = run.stop();
    checks::migration_batches(&rec, 0);
    let ptes_set: u64 = rec
        .events
        .iter()
        .filter_map(|e| match &e.data {
            Data::MigrateEnd(m) => Some(m.ptes_set),
            _ => None,
        })
        .sum();
    // Per-PTE tracepoints are aggregated in the kernel into the batch records.
    assert!(
        ptes_set > 0,
        "no migration PTEs counted in the batches: {report}"
    );
    checks::assert_fired(&rec, &["tp_set_migration_pte", "tp_remove_migration_pte"]);
}

#[test]
fn tiny_ring_reports_loss_and_accounts_for_every_record() {
    require_root!();
    let _g = serial();
    let run = TraceRun::start("loss", &["--ring-size", "4K"]);
    scenario(&["uffd-storm", "--count", "200000"]);
    let (rec, stderr) = run.stop();
    let s = rec.summary.as_ref().expect("summary line");
    assert!(
        s.lost > 0,
        "a 4 KiB ring under a storm of 200,000 records must lose some: {s:?}"
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
    require_root!();
    let _g = serial();
    for event in ["fork", "remap", "remove", "unmap"] {
        let (rec, _) = checks::uffd_race(event, &[]);
        checks::assert_fired(&rec, &["tp_sys_enter_ioctl", "tp_sys_exit_ioctl"]);
    }
}

/// `monitor check` on this host: every hook is attached or says, for every
/// rung it tried, why not; the hooks the tracepoint fallback relies on are
/// attached; every rule not fully covered says what it cannot see.
#[test]
fn check_explains_every_hook_and_rule() {
    require_root!();
    let _g = serial();
    let out = run(Command::new(monitor_bin()).args(["check", "--format", "json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("check JSON");
    let hooks = v["hooks"].as_array().expect("hooks");
    assert_eq!(
        hooks.len(),
        monitor_common::catalogue::HookId::ALL.len(),
        "one entry per hook of the plan"
    );
    for h in hooks {
        let rung = h["rung"].as_str().expect("rung");
        let refused = h["refused"].as_array().expect("refused");
        for r in refused {
            let reason = r["reason"].as_str().unwrap_or("");
            assert!(reason.len() > 10, "a refusal without a reason: {h}");
        }
        if rung == "unavailable" {
            assert!(h["target"].is_null(), "{h}");
            assert!(!refused.is_empty(), "unavailable without a reason: {h}");
        } else {
            assert!(["fentry", "kprobe", "tracepoint"].contains(&rung), "{h}");
            assert!(h["target"].is_string(), "{h}");
            assert!(
                !h["programs"].as_array().expect("programs").is_empty(),
                "{h}"
            );
        }
    }
    // The tracepoint fallback exists on every supported kernel (5.10+).
    for name in [
        "mark_victim",
        "reap_skip",
        "oom_reap",
        "exit_mmap",
        "exec",
        "fork",
        "migrate_pages",
        "handle_mm_fault",
        "uffd_ioctl",
    ] {
        let h = hooks
            .iter()
            .find(|h| h["hook"] == name)
            .unwrap_or_else(|| panic!("no hook {name}"));
        assert_ne!(h["rung"], "unavailable", "{h}");
    }
    let rules = v["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 4, "{rules:?}");
    for r in rules {
        let coverage = r["coverage"].as_str().expect("coverage");
        assert!(["full", "partial", "disabled"].contains(&coverage), "{r}");
        assert_eq!(
            coverage == "full",
            r["reasons"].as_array().expect("reasons").is_empty(),
            "a rule not fully covered says why, a full one has nothing to say: {r}"
        );
    }
}

/// A hook whose every candidate fails (as if the kernel lacked its symbols
/// and tracepoints) is reported with a reason per rung, disables the rule
/// that needs it, and costs nothing else: the other hooks still record.
#[test]
fn a_hook_that_cannot_attach_disables_its_rule_and_nothing_else() {
    require_root!();
    let _g = serial();
    let run = TraceRun::start("broken", &["--test-break-hook", "oom_reap"]);
    let report = scenario(&["oom-reap", "--release-ms", "2000"]);
    let (rec, stderr) = run.stop();
    let h = rec
        .header
        .hooks
        .iter()
        .find(|h| h.hook == monitor_common::catalogue::HookId::OomReap)
        .expect("oom_reap in the header");
    assert_eq!(
        h.rung,
        monitor_common::catalogue::Rung::Unavailable,
        "{h:?}"
    );
    assert!(
        !h.refused.is_empty()
            && h.refused
                .iter()
                .all(|r| r.reason.contains("monitor_test_no_such_symbol")),
        "every rung tried must name the missing symbol: {h:?}"
    );
    assert!(
        stderr.contains("monitor: hook oom_reap is unavailable: ")
            && stderr
                .contains("monitor: rule reaper_exit_overlap is disabled: oom_reap is unavailable"),
        "the user is told what is missing and what it costs:\n{stderr}"
    );
    let victim = report["victim_pid"].as_u64().expect("victim pid") as u32;
    assert!(
        rec.events
            .iter()
            .any(|e| matches!(&e.data, Data::MarkVictim(v) if v.victim_tgid == victim)),
        "mark_victim must still be recorded"
    );
    assert!(
        !rec.events
            .iter()
            .any(|e| matches!(e.kind(), "reap_start" | "reap_end")),
        "no reaping record can come from a hook that is not attached"
    );
    checks::assert_fired(&rec, &["tp_mark_victim", "tp_exit_mmap"]);
    let analysis = monitor_detector::analyze_texts([("broken", rec.text.as_str())]);
    let table = analysis.render_table();
    assert!(
        table.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 2 && w[0] == "reaper_exit_overlap" && w[1] == "disabled"
        }),
        "{table}"
    );
}

/// Issue 15 item 7 on this host's cgroup v1 memory hierarchy (plus the v2
/// one): `checks::cgroup_attribution`.
#[test]
fn records_and_findings_name_the_cgroup_and_container() {
    require_root!();
    let _g = serial();
    checks::cgroup_attribution();
}

/// The fault gate's blind spot: a victim killed and reaped (process_mrelease)
/// *before* the monitor started opened no gate. At start the monitor finds
/// the killed, still-dying process (`SIGKILL` in `ShdPnd`) and opens the gate
/// for it, so the victim thread's copy_from_user on its reaped buffer, after
/// the monitor attached, is recorded: a kernel fault on an `MMF_UNSTABLE` mm.
#[test]
fn a_victim_reaped_before_start_opens_the_fault_gate() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    use monitor_common::mmf::MMF_UNSTABLE;
    require_root!();
    let _g = serial();
    let mut child = Command::new(crate::util::scenario_bin())
        .args(["mrelease", "--owner-copy", "--linger-ms", "25000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scenario");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.starts_with("reaped ") {
        line.clear();
        if err.read_line(&mut line).expect("scenario stderr") == 0 {
            panic!(
                "the scenario ended before reaping: {:?}",
                child.wait_with_output()
            );
        }
    }
    let victim: u32 = line["reaped ".len()..].trim().parse().expect("pid");
    let run = TraceRun::start("dying", &[]);
    let out = child.wait_with_output().expect("scenario");
    assert!(out.status.success(), "scenario failed: {out:?}");
    let (rec, stderr) = run.stop();
    let faults: Vec<_> = rec
        .events
        .iter()
        .filter(|e| {
            e.tgid == victim
                && matches!(&e.data, Data::Fault(f) | Data::KernelFault(f)
                    if f.mm_flags & (1 << MMF_UNSTABLE) != 0)
        })
        .collect();
    assert!(
        !faults.is_empty(),
        "no fault of victim {victim} on its reaped mm was recorded: the gate stayed closed; \
         monitor said:\n{stderr}"
    );
}
