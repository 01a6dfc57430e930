//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/` (cargo-fuzz,
//! nightly), one after the other, each from its seed corpus
//! (`fuzz/seeds/<target>`, in the repository, small) plus a scratch corpus
//! (`target/fuzz-corpus/<target>`, what the fuzzer found interesting).
//!
//! The targets are built with `AYA_BUILD_SKIP=1`: they parse, they never
//! load BPF programs, and the BPF target cannot take sanitizer flags.
//! Prints one line per target with the executions done, for docs/fuzzing.md.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

/// The targets, in the order they run.
pub const TARGETS: [&str; 5] = ["wire_record", "trace_file", "btf", "http_head", "config"];

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per target (libFuzzer -max_total_time).
    #[arg(long, default_value_t = 60)]
    pub time: u64,
    /// Stop each target after this many executions instead (libFuzzer -runs).
    #[arg(long)]
    pub runs: Option<u64>,
    /// Only these targets (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub target: Vec<String>,
    /// Only build the targets.
    #[arg(long)]
    pub build_only: bool,
    /// Sanitizer (cargo fuzz -s): the targets are safe Rust, built with
    /// overflow checks and debug assertions either way; `address` also
    /// checks the unsafe code of dependencies, at a third of the speed.
    #[arg(long, default_value = "none", value_parser = ["none", "address"])]
    pub sanitizer: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn cargo_fuzz(root: &Path, sub: &str, sanitizer: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz", sub])
        .args(["--sanitizer", sanitizer, "--debug-assertions"])
        .current_dir(root)
        .env("AYA_BUILD_SKIP", "1")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    cmd
}

/// `Done 1234567 runs in 60 second(s)` from libFuzzer's last lines.
fn runs_done(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done ")?.split(' ').next()?.parse().ok())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = root();
    let which: Vec<&str> = if args.target.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in &args.target {
            if !TARGETS.contains(&t.as_str()) {
                bail!("unknown fuzz target {t:?} (known: {})", TARGETS.join(", "));
            }
        }
        args.target.iter().map(String::as_str).collect()
    };
    // One build for all (cargo fuzz builds one target or every one).
    let mut build = cargo_fuzz(&root, "build", &args.sanitizer);
    if which.len() == 1 {
        build.arg(which[0]);
    }
    let status = build
        .status()
        .context("running cargo fuzz (install it: cargo install cargo-fuzz --locked)")?;
    if !status.success() {
        bail!("cargo fuzz build failed with {status}");
    }
    if args.build_only {
        return Ok(());
    }
    for t in which {
        let scratch = root.join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&scratch)?;
        let seeds = root.join("fuzz/seeds").join(t);
        let limit = match args.runs {
            Some(n) => format!("-runs={n}"),
            None => format!("-max_total_time={}", args.time),
        };
        let start = Instant::now();
        let out = cargo_fuzz(&root, "run", &args.sanitizer)
            .arg(t)
            .arg(&scratch)
            .arg(&seeds)
            .args([
                "--",
                &limit,
                "-print_final_stats=1",
                "-rss_limit_mb=2048",
                "-max_len=8192",
            ])
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running fuzz target {t}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            eprintln!("{stderr}");
            bail!(
                "fuzz target {t} failed ({}): the crashing input is under fuzz/artifacts/{t}/",
                out.status
            );
        }
        let runs = runs_done(&stderr).map_or("?".to_owned(), |n| n.to_string());
        eprintln!(
            "xtask: fuzz {t}: {runs} executions in {:.0} s, no crash",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_libfuzzer_totals() {
        let err = "#1000\tDONE   cov: 10\nDone 1000 runs in 2 second(s)\n";
        assert_eq!(super::runs_done(err), Some(1000));
        assert_eq!(super::runs_done("nothing"), None);
    }
}
