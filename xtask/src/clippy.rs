//! Lint everything: host crates with stable clippy, the BPF crate with nightly
//! clippy for `bpfel-unknown-none` (a whole-workspace run cannot do both:
//! feature unification and build-std differ).

use std::process::Command;

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct Args {
    /// Also fail on warnings in dependencies' build scripts output.
    #[arg(long)]
    pub fix: bool,
}

fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let fix: &[&str] = if args.fix {
        &["--fix", "--allow-dirty"]
    } else {
        &[]
    };
    run_cmd(
        Command::new("cargo")
            .args([
                "clippy",
                "--workspace",
                "--exclude",
                "monitor-ebpf",
                "--all-targets",
                "--locked",
            ])
            .args(fix)
            .args(["--", "-D", "warnings"]),
    )?;
    run_cmd(
        Command::new("rustup")
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "--package",
                "monitor-ebpf",
                "--locked",
            ])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(fix)
            .args(["--", "-D", "warnings"])
            // aya-ebpf's build script derives `bpf_target_arch` from the host.
            .env("CARGO_TARGET_DIR", "target/clippy-bpf")
            .env_remove("RUSTC")
            .env_remove("RUSTC_WORKSPACE_WRAPPER"),
    )
}
