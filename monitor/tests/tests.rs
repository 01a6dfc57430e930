//! The monitor's one integration-test binary (ripgrep style).
//!
//! - `cli`: bad input gets one clear line and exit code 2, never a panic.
//! - `host`: the real host kernel, as root: real OOM reaping, execs,
//!   compaction, sequence numbering and loss accounting, asserted on the trace
//!   files the monitor recorded. These need root and the `scenario` binary
//!   (`cargo build -p xtask --bin scenario`; `scripts/test.sh` does it).
//! - `daemon`: `monitor run` scraped by a real Prometheus while scenarios
//!   run; promtool on the exposition and the alert rules; every dashboard
//!   and rule query run against Prometheus; docs/metrics.md against the
//!   scrape; the systemd unit's sandbox exercised; SIGTERM, capabilities and
//!   bad input. Root, the `scenario` binary and the `prometheus` package.
//! - `vm`: the same kind of checks inside QEMU guests running Debian kernels
//!   (`#[ignore]` on the host; `cargo xtask vm` runs them in the guest).
//! - `mutant`: the mutant kernel's switches (`cargo xtask mutant` runs them
//!   in the guest; `#[ignore]` elsewhere).
//! - `vm_selftest`: a deliberately failing guest test for the harness self-test.
//! - `tidy`: no kernel, no root: metric names agree between the daemon,
//!   docs/metrics.md, the dashboards and the alert rules.
//! - `report`: `monitor analyze --html` opened in headless Chromium
//!   (`browser`: the DevTools protocol on a pipe) and the Perfetto export
//!   checked against the trace-event format. Needs Debian's `chromium`.
//! - `grafana`: the dashboards type-checked against Grafana's published
//!   schema (`@grafana/schema`, pinned, in `dashboards/schema`).
//! - `hostile`: one regression test per defect of the reliability review:
//!   stalled and closed outputs, a full disk, bad BTF, slowloris peers,
//!   privileges and files after attach, bounded inputs. Root.
//! - `checks`: the assertions host and VM tests share.
//! - `ship`: the release artifacts (`cargo xtask dist --deb --image`): the
//!   static tarball, Debian 11, lintian, podman, kustomize (`#[ignore]`;
//!   scripts/test.sh runs them after building the artifacts).
//! - `vm_systemd`: the `.deb` under systemd as PID 1 in a Debian bookworm
//!   guest (`cargo xtask vm --systemd`).

mod browser;
mod checks;
mod cli;
mod daemon;
mod grafana;
mod host;
mod hostile;
mod mutant;
mod report;
mod ship;
mod tidy;
mod util;
mod vm;
mod vm_selftest;
mod vm_systemd;
