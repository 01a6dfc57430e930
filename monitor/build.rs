//! Builds the two BPF objects (`monitor-ebpf`, `monitor-ebpf-compat`) with
//! aya-build; they are embedded into the binary with `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata_root()?;
    let ebpf_dir = format!("{metadata}/monitor-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: &ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the BPF objects (needs nightly rust-src and bpf-linker: run scripts/setup.sh)",
    )
}

/// The workspace root: the parent of this crate's manifest directory.
fn cargo_metadata_root() -> anyhow::Result<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root = std::path::Path::new(&dir)
        .parent()
        .ok_or_else(|| anyhow!("{dir} has no parent"))?;
    Ok(root.display().to_string())
}
