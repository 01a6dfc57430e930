//! A test that always fails, on purpose: `cargo xtask vm --self-test` runs it
//! in a guest to prove that a wrong expectation makes the harness report a
//! failure (with the guest log). It is never part of the normal matrix
//! (`vm::` filter) nor of host runs (`#[ignore]`).

use crate::{checks, util::TraceRun};

#[test]
#[ignore = "harness self-test only: cargo xtask vm --self-test"]
fn wrong_expectation_must_fail() {
    let run = TraceRun::start("selftest", &[]);
    let (rec, _) = run.stop();
    // Nothing was OOM-killed, so expecting a reap is wrong on every kernel.
    checks::assert_fired(&rec, &["tp_start_task_reaping"]);
}
