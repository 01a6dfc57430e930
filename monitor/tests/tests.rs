//! The monitor's one integration-test binary (ripgrep style).
//!
//! - `cli`: bad input gets one clear line and exit code 2, never a panic.
//! - `host`: the real host kernel, as root: real OOM reaping, execs,
//!   compaction, sequence numbering and loss accounting, asserted on the trace
//!   files the monitor recorded. These need root and the `scenario` binary
//!   (`cargo build -p xtask --bin scenario`; `scripts/test.sh` does it).
//! - `vm`: the same kind of checks inside QEMU guests running Debian kernels
//!   (`#[ignore]` on the host; `cargo xtask vm` runs them in the guest).
//! - `vm_selftest`: a deliberately failing guest test for the harness self-test.
//! - `checks`: the assertions host and VM tests share.

mod checks;
mod cli;
mod host;
mod util;
mod vm;
mod vm_selftest;
