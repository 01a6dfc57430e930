//! Real-kernel tests on the host (6.18 here: tracepoint rung only). Each test
//! asserts on what the monitor recorded, and that the hooks it relies on fired.

use monitor_detector::Data;

use crate::{
    checks,
    util::{TraceRun, require_root, scenario, serial},
};

#[test]
fn oom_reaper_reaps_victim_and_order_is_recorded() {
    require_root();
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

#[test]
fn exec_events_are_recorded_in_window_order() {
    require_root();
    let _g = serial();
    let run = TraceRun::start("exec", &[]);
    scenario(&["exec-storm", "--count", "25", "--exe", "/bin/true"]);
    let (rec, _) = run.stop();
    checks::exec_windows(&rec, "/bin/true", 25);
    checks::assert_fired(&rec, &["tp_sched_process_exec", "tp_task_rename"]);
    assert!(checks::assert_gap_free(&rec) >= 25);
}

#[test]
fn compaction_migration_batches_are_recorded() {
    require_root();
    let _g = serial();
    let run = TraceRun::start("compact", &[]);
    let report = scenario(&["compact", "--mb", "128"]);
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
    for event in ["fork", "remap", "remove", "unmap"] {
        let (rec, _) = checks::uffd_race(event, &[]);
        checks::assert_fired(&rec, &["tp_sys_enter_ioctl", "tp_sys_exit_ioctl"]);
    }
}
