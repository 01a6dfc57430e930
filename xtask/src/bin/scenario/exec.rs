//! fork + exec storms (optionally with large argv, which makes exec's
//! temporary stack span many pages: `docs/kernel.md`).

use std::{process::Command, time::Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use crate::sys::ms_since;

#[derive(Args)]
pub struct ExecArgs {
    /// Number of execs.
    #[arg(long, default_value_t = 1000)]
    count: u32,
    /// Program to exec (a small static binary is best).
    #[arg(long, default_value = "/bin/true")]
    exe: String,
    /// Extra argv: this many arguments of 32 KiB each.
    #[arg(long, default_value_t = 0)]
    big_args: u32,
}

pub fn run(args: &ExecArgs) -> anyhow::Result<serde_json::Value> {
    let big = "x".repeat(32 * 1024);
    let start = Instant::now();
    let mut failed = 0u32;
    for _ in 0..args.count {
        let mut cmd = Command::new(&args.exe);
        for _ in 0..args.big_args {
            cmd.arg(&big);
        }
        let status = cmd.status().with_context(|| format!("exec {}", args.exe))?;
        if !status.success() {
            failed += 1;
        }
    }
    if failed == args.count && args.count > 0 {
        bail!("every exec of {} failed", args.exe);
    }
    let ms = ms_since(start);
    Ok(json!({
        "scenario": "exec-storm",
        "count": args.count,
        "failed": failed,
        "elapsed_ms": ms,
        "execs_per_s": if ms > 0 { f64::from(args.count) * 1000.0 / ms as f64 } else { 0.0 },
    }))
}
