//! Scenario programs: each opens one of the monitored race windows on purpose
//! (or produces benign look-alikes), on the host and inside the test VMs.
//!
//! Every scenario prints one JSON object on stdout describing what it did
//! (pids, counts, timings); tests assert on what the *monitor* recorded and
//! use this report only to know which pid or mm to look for.

mod bench;
mod bpfstats;
mod churn;
mod compact;
mod exec;
mod exec_migrate;
mod exit_first;
mod hold;
mod migrate;
mod mrelease;
mod oom;
mod sys;
mod uffd;
mod uffd_abandon;
mod uffd_park;
mod uffd_race;
mod uffd_storm;
mod vhost;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "scenario",
    about = "Workloads that open the mm race windows the monitor watches"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A memcg OOM whose victim cannot exit within the reaper delay, so the
    /// oom_reaper really reaps it; then the victim exits (`docs/kernel.md`, "Reproducing the races").
    OomReap(oom::OomArgs),
    /// fork + exec a small program many times.
    ExecStorm(exec::ExecArgs),
    /// Fragment memory, then trigger compaction (page migration).
    Compact(compact::CompactArgs),
    /// Execs with a large argv while move_pages(2) targets the child's
    /// temporary stack from the other CPU.
    ExecMigrate(exec_migrate::ExecMigrateArgs),
    /// UFFDIO_COPY in a loop while the mm changes (fork, mremap, madvise,
    /// munmap) and the monitor sits on the event (`docs/kernel.md`).
    UffdRace(uffd_race::UffdArgs),
    /// process_mrelease(2) on a killed process kept alive: a synchronous reap.
    Mrelease(mrelease::MreleaseArgs),
    /// migrate_pages(2) between the two NUMA nodes.
    Migrate(migrate::MigrateArgs),
    /// Benign churn: exits, munmap, execs, compaction, quiet UFFDIO_COPY.
    Churn(churn::ChurnArgs),
    /// Many records fast: UFFDIO_COPY onto a filled page (-EEXIST), one
    /// record per call.
    UffdStorm(uffd_storm::UffdStormArgs),
    /// Threads parked in userfaultfd faults inside handle_mm_fault, more
    /// than a kretprobe has instances: the kernel misses returns.
    UffdPark(uffd_park::UffdParkArgs),
    /// A userfaultfd closed while a remove window is pending, after -EAGAIN
    /// copies and no success: the copy filter's state must go with it.
    UffdAbandon(uffd_abandon::UffdAbandonArgs),
    /// Overhead: each workload without and with `monitor trace`, alternating;
    /// optionally the highest UFFDIO_COPY event rate with zero ring loss.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::OomReap(a) => oom::run(&a),
        Command::ExecStorm(a) => exec::run(&a),
        Command::Compact(a) => compact::run(&a),
        Command::ExecMigrate(a) => exec_migrate::run(&a),
        Command::UffdRace(a) => uffd_race::run(&a),
        Command::Mrelease(a) => mrelease::run(&a),
        Command::Migrate(a) => migrate::run(&a),
        Command::Churn(a) => churn::run(&a),
        Command::UffdStorm(a) => uffd_storm::run(&a),
        Command::UffdPark(a) => uffd_park::run(&a),
        Command::UffdAbandon(a) => uffd_abandon::run(&a),
        Command::Bench(a) => bench::run(&a),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scenario: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
