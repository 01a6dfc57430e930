//! `cargo xtask`: developer tasks (VM test runner, lint). Never builds the BPF
//! crate itself: `monitor/build.rs` does, through aya-build.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("no xtask subcommands yet")
}
