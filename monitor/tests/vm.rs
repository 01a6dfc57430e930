//! Tests that only make sense inside the test VMs (`cargo xtask vm`): Debian
//! kernels with kprobes and fentry, two NUMA nodes, vhost modules. They are
//! `#[ignore]`d on the host and run in the guest with `--ignored vm::`.
//!
//! Each test runs a scenario under `monitor trace` and asserts on the trace
//! file the monitor recorded, and that the hooks it relies on fired.

use crate::{checks, util::scenario};

/// Tells the harness about a scenario the kernel cannot run (the test then
/// passes without asserting; the note shows in the VM report).
fn note(msg: &str) {
    println!("VMH note {msg}");
}

fn kernel() -> String {
    std::env::var("VM_KERNEL").unwrap_or_default()
}

#[test]
#[ignore = "VM only: cargo xtask vm"]
fn oom_reaper_reaps_victim() {
    checks::oom_reap(&[]);
}

#[test]
#[ignore = "VM only: cargo xtask vm"]
fn uffd_copy_vs_fork() {
    checks::uffd_race("fork", &[]);
}

#[test]
#[ignore = "VM only: cargo xtask vm"]
fn uffd_copy_vs_mremap() {
    checks::uffd_race("remap", &[]);
}

#[test]
#[ignore = "VM only: cargo xtask vm"]
fn uffd_copy_vs_madvise_remove() {
    checks::uffd_race("remove", &[]);
}

#[test]
#[ignore = "VM only: cargo xtask vm"]
fn uffd_copy_vs_munmap() {
    checks::uffd_race("unmap", &[]);
}

#[test]
#[ignore = "VM only: cargo xtask vm"]
fn exec_storm_with_large_argv_under_compaction() {
    let run = crate::util::TraceRun::start("exec", &[]);
    let compactor = std::thread::spawn(|| scenario(&["compact", "--mb", "64", "--rounds", "4"]));
    scenario(&[
        "exec-storm",
        "--count",
        "60",
        "--big-args",
        "8",
        "--exe",
        "/bin/true",
    ]);
    let compacted = compactor.join().expect("compaction thread");
    let (rec, _) = run.stop();
    checks::exec_windows(&rec, "/bin/true", 60);
    checks::migration_batches(&rec, 0);
    checks::assert_gap_free(&rec);
    if kernel() == "5.10" {
        note(
            "exec_storm: 5.10 has no migrate:set_migration_pte tracepoint (PTE counts need the function rung)",
        );
    }
    println!("compaction: {compacted}");
}
