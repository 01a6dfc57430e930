//! The monitor's one integration-test binary (ripgrep style).
//!
//! - `cli`: bad input gets one clear line and exit code 2, never a panic.
//! - `host`: the real host kernel, as root: real OOM reaping, execs,
//!   compaction, sequence numbering and loss accounting, asserted on the trace
//!   files the monitor recorded. These need root and the `scenario` binary
//!   (`cargo build -p xtask --bin scenario`; `scripts/test.sh` does it).

mod cli;
mod host;
mod util;
