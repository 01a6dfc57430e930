//! The daemon's config file: any text is a configuration or a one-line
//! error naming line and column or the key, never a panic.
#![no_main]

use std::{path::Path, sync::OnceLock};

use clap::Parser as _;
use libfuzzer_sys::fuzz_target;
use monitor::{
    cli::args::{Cli, Command, RunArgs},
    daemon::config,
};

fn no_flags() -> &'static RunArgs {
    static ARGS: OnceLock<RunArgs> = OnceLock::new();
    ARGS.get_or_init(|| match Cli::try_parse_from(["monitor", "run"]) {
        Ok(Cli {
            command: Command::Run(a),
            ..
        }) => a,
        _ => unreachable!("`monitor run` parses"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::parse(text) {
        Ok(cfg) => {
            if let Err(e) = config::merge(cfg, Some(Path::new("fuzz.toml")), no_flags()) {
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        }
        Err((line, column, message)) => {
            assert!(line >= 1 && column >= 1, "{line}:{column}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
});
