//! `cargo xtask`: developer tasks. One module per subcommand. xtask never
//! builds the BPF crate for use (monitor/build.rs does, through aya-build); it
//! only lints it.

mod bench;
mod clippy;
mod dist;
mod fuzz;
mod mutant;
mod soak;
mod unprivileged;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Developer tasks for the mm race monitor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run clippy on the host crates and on the BPF crate (for its BPF target).
    Clippy(clippy::Args),
    /// Measure the monitor's overhead (host, VM rungs, detector, daemon).
    Bench(bench::Args),
    /// Boot Debian kernels under QEMU and run the VM tests inside.
    Vm(vm::Args),
    /// Build the release artifacts: static tarball (and --deb, --image) in target/dist.
    Dist(dist::Args),
    /// Run the libFuzzer targets of fuzz/ (cargo-fuzz, nightly), one after the other.
    Fuzz(fuzz::Args),
    /// Build Debian's 6.1 with race fixes removable at boot (mmrace_mutant=)
    /// and prove the monitor reports each race as a violation.
    Mutant(mutant::Args),
    /// The daemon in a guest under stress-ng and the race scenarios, scraped
    /// by a real Prometheus; judges flat RSS, map fill, violations, loss
    /// accounting and every scrape (docs/soak.md).
    Soak(soak::Args),
    /// Build the tests and run them as an unprivileged user (run as root):
    /// what needs root or a VM must skip with a reason, the rest pass.
    Unprivileged(unprivileged::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Clippy(a) => clippy::run(&a),
        Command::Vm(a) => vm::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Dist(a) => dist::run(&a),
        Command::Fuzz(a) => fuzz::run(&a),
        Command::Mutant(a) => mutant::run(&a),
        Command::Soak(a) => soak::run(&a),
        Command::Unprivileged(a) => unprivileged::run(&a),
    }
}
