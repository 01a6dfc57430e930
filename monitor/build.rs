//! Builds the two BPF objects (`monitor-ebpf`, `monitor-ebpf-compat`) with
//! aya-build; they are embedded into the binary with `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1") {
        // Builds that never load a program (the fuzz targets, built with
        // sanitizer flags the BPF target cannot take): empty objects, so
        // the crate compiles; loading them fails with a clear error.
        let out = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
        for name in ["monitor-ebpf", "monitor-ebpf-compat"] {
            let p = std::path::Path::new(&out).join(name);
            if !p.exists() {
                std::fs::write(&p, b"").with_context(|| format!("writing {}", p.display()))?;
            }
        }
        return Ok(());
    }
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
