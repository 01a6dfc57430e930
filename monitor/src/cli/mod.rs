//! Command dispatch. Each subcommand lives in its own module and returns the
//! process exit code; errors are printed once, as one line with their causes.

use std::process::ExitCode;

use clap::{Parser as _, error::ErrorKind};

use crate::{output, say};

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
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            say!("{}monitor: error: {e:#}", err_prefix());
            ExitCode::from(EXIT_ERROR)
        }
    };
    // Whatever the readers do, exit on time (queued lines are abandoned).
    output::flush(EXIT_FLUSH);
    code
}

/// How long the process waits at exit for stdout/stderr readers to take what
/// is queued.
pub const EXIT_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

/// Help and version go to stdout as clap renders them; a usage error becomes
/// one line on stderr and exit code 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // A closed stdout (`monitor --help | head -1`) is not an error.
            let mut text = e.render().to_string();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            output::STDOUT.bytes(text.into_bytes());
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            output::STDERR.bytes(e.render().to_string().into_bytes());
            ExitCode::from(EXIT_ERROR)
        }
        _ => {
            say!(
                "monitor: error: {} (see monitor --help)",
                one_line(&e.to_string())
            );
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// clap's first paragraph (e.g. "… not provided:" and the arguments on the
/// following lines) joined into one line, with its `tip:` lines kept.
fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let first: Vec<&str> = lines
        .iter()
        .copied()
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let first = first.join(" ");
    let first = first.trim_start_matches("error: ");
    let mut out = if first.is_empty() {
        "invalid command line".to_owned()
    } else {
        first.to_owned()
    };
    for tip in lines.iter().filter(|l| l.starts_with("tip: ")) {
        out.push_str("; ");
        out.push_str(tip);
    }
    out
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
/// each line carries its syslog priority, see `journal.rs`). Writes through
/// [`output::STDERR`]: a closed or stalled stderr never stops the process.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            say!(
                "{}monitor: {}: {}",
                journal::stderr(journal::Priority::from_level(record.level())),
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
