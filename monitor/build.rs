//! Builds the two BPF objects (`monitor-ebpf`, `monitor-ebpf-compat`) with
//! aya-build; they are embedded into the binary with `include_bytes_aligned!`.
//!
//! The objects are compiled with full debug info because bpf-linker derives
//! their BTF from it, then stripped of the DWARF sections here: the kernel
//! and aya only read `.BTF` and `.BTF.ext`, and DWARF is three quarters of
//! each object (2.6 MB → 0.6 MB). The build fails if a stripped object lacks
//! either BTF section or still has DWARF.
//!
//! Also stamps the build (`src/build_info.rs`): `MMRACE_GIT_REV` (the commit, or the variable of
//! that name when set, e.g. by `cargo xtask dist`) and `MMRACE_BUILD_DATE`
//! (UTC, from `SOURCE_DATE_EPOCH` when set, else the commit's date, so two
//! builds of one commit are identical).
use std::{path::Path, process::Command};

use anyhow::{Context as _, anyhow, bail};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let metadata = cargo_metadata_root()?;
    if std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1") {
        // Builds that never load a program (the fuzz targets, built with
        // sanitizer flags the BPF target cannot take): empty objects, so
        // the crate compiles; loading them fails with a clear error.
        let out = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
        for name in ["monitor-ebpf", "monitor-ebpf-compat"] {
            let p = Path::new(&out).join(name);
            if !p.exists() {
                std::fs::write(&p, b"").with_context(|| format!("writing {}", p.display()))?;
            }
        }
        // `build_info.rs` needs the stamp whatever the objects are.
        return stamp(Path::new(&metadata));
    }
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
    )?;
    let out = std::env::var("OUT_DIR").context("OUT_DIR not set")?;
    for name in ["monitor-ebpf", "monitor-ebpf-compat"] {
        strip_dwarf(&Path::new(&out).join(name))?;
    }
    stamp(Path::new(&metadata))
}

/// Removes every `.debug_*` section, its relocations and the symbols that
/// point into it, keeping `.BTF` and `.BTF.ext` (and their relocations).
fn strip_dwarf(path: &Path) -> anyhow::Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut elf = object::build::elf::Builder::read(&*data)
        .map_err(|e| anyhow!("parsing {}: {e}", path.display()))?;
    let is_dwarf = |name: &[u8]| name.starts_with(b".debug_") || name.starts_with(b".rel.debug_");
    let mut dropped = Vec::new();
    for section in &mut elf.sections {
        if is_dwarf(&section.name) {
            section.delete = true;
            dropped.push(section.id());
        }
    }
    for section in &mut elf.sections {
        if section
            .sh_info_section
            .is_some_and(|s| dropped.contains(&s))
        {
            section.delete = true;
        }
    }
    for sym in &mut elf.symbols {
        if sym.section.is_some_and(|s| dropped.contains(&s)) {
            sym.delete = true;
        }
    }
    let names: Vec<Vec<u8>> = elf
        .sections
        .iter()
        .filter(|s| !s.delete)
        .map(|s| s.name.to_vec())
        .collect();
    for want in [&b".BTF"[..], b".BTF.ext"] {
        if !names.iter().any(|n| n == want) {
            bail!(
                "{} has no {} section (bpf-linker derives it from debug info: keep \
                 `debug = 2` for monitor-ebpf)",
                path.display(),
                String::from_utf8_lossy(want)
            );
        }
    }
    // LLVM shares one string table between section and symbol names; the
    // writer wants section names in their own table.
    if !elf
        .sections
        .iter()
        .any(|s| matches!(s.data, object::build::elf::SectionData::SectionString))
    {
        let shstrtab = elf.sections.add();
        shstrtab.name = b".shstrtab"[..].into();
        shstrtab.sh_type = object::elf::SHT_STRTAB;
        shstrtab.sh_addralign = 1;
        shstrtab.data = object::build::elf::SectionData::SectionString;
    }
    let mut stripped = Vec::new();
    elf.write(&mut stripped)
        .map_err(|e| anyhow!("writing the stripped {}: {e}", path.display()))?;
    std::fs::write(path, stripped).with_context(|| format!("writing {}", path.display()))
}

/// Emits `MMRACE_GIT_REV` and `MMRACE_BUILD_DATE` for `build_info.rs`.
fn stamp(root: &Path) -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=MMRACE_GIT_REV");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    // Rebuild when HEAD moves: HEAD itself and the branch it points to.
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        for dir in [
            git(&["rev-parse", "--git-dir"]),
            git(&["rev-parse", "--git-common-dir"]),
        ]
        .into_iter()
        .flatten()
        {
            let p = root.join(&dir).join(path);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    let rev = std::env::var("MMRACE_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let epoch: Option<i64> = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        ),
        _ => git(&["log", "-1", "--format=%ct"]).and_then(|s| s.parse().ok()),
    };
    let date = epoch.map_or_else(|| "unknown".to_owned(), utc_date);
    println!("cargo:rustc-env=MMRACE_GIT_REV={rev}");
    println!("cargo:rustc-env=MMRACE_BUILD_DATE={date}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=MMRACE_TARGET={target}");
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (Howard Hinnant's
/// civil-from-days).
fn utc_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The workspace root: the parent of this crate's manifest directory.
fn cargo_metadata_root() -> anyhow::Result<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root = Path::new(&dir)
        .parent()
        .ok_or_else(|| anyhow!("{dir} has no parent"))?;
    Ok(root.display().to_string())
}
