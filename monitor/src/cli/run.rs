//! `monitor run`: the daemon. Everything lives in [`crate::daemon`]; this
//! module only hands the parsed flags over.

use std::process::ExitCode;

use super::args::RunArgs;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    crate::daemon::run(&args)
}
