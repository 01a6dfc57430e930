//! Command dispatch. Each subcommand lives in its own module and returns the
//! process exit code; errors are printed once, as one line with their causes.

use std::process::ExitCode;

use clap::{Parser as _, error::ErrorKind};

pub mod analyze;
pub mod args;
pub mod check;
pub mod generate;
pub mod report;
pub mod run;
pub mod trace;

use args::{Cli, Command};

use crate::journal;

/// Exit code for errors (bad input, missing privileges, unusable kernel).
pub const EXIT_ERROR: u8 = 2;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Trace(args) => trace::run(args),
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Generate(args) => generate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}monitor: error: {e:#}", err_prefix());
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Help and version go to stdout as clap renders them; a usage error becomes
/// one line on stderr and exit code 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{e}");
            ExitCode::from(EXIT_ERROR)
        }
        _ => {
            // clap's first paragraph (e.g. "… not provided:" and the
            // arguments on the following lines), joined into one line.
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect();
            let first = first.join(" ");
            let first = first.trim_start_matches("error: ");
            let first = if first.is_empty() {
                "invalid command line"
            } else {
                first
            };
            eprintln!("monitor: error: {first} (see monitor --help)");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    log::set_max_level(level);
    let _ = log::set_logger(&StderrLogger);
}

fn err_prefix() -> &'static str {
    journal::stderr(journal::Priority::Err)
}

/// Plain stderr logger (journald adds its own timestamps; under journald
/// each line carries its syslog priority, see `journal.rs`).
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "{}monitor: {}: {}",
                journal::stderr(journal::Priority::from_level(record.level())),
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
