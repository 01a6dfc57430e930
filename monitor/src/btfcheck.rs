//! Does a `--btf` file describe the running kernel?
//!
//! The BPF programs read kernel memory at the offsets resolved from the BTF
//! the loader was given (`Config::offsets`). BTF of another kernel build
//! loads fine and resolves every field, at the wrong offsets: mm flags then
//! read as garbage or 0, `MMF_UNSTABLE` is never seen and the victim's
//! faults are never recorded, silently. So before anything is loaded:
//!
//! 1. when the running kernel exports its own BTF (`/sys/kernel/btf/vmlinux`)
//!    and the file given is not that one, every field the programs read and
//!    the size of every struct they read it from are compared; any difference
//!    refuses the file, naming the first differences;
//! 2. otherwise (a kernel without `CONFIG_DEBUG_INFO_BTF`, the case `--btf`
//!    exists for), the file's function records are checked against
//!    `/proc/kallsyms`: the BTF of the running kernel names functions the
//!    kernel has; when more than [`MAX_MISSING_FUNCS`] of them are absent, the
//!    file is another kernel's.

use std::{collections::HashSet, path::Path};

use monitor_common::config::Field;

use crate::btf::Btf;

/// The running kernel's own BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Share of BTF `FUNC` names allowed to be missing from `/proc/kallsyms`
/// (functions BTF describes but the linker dropped or renamed). Measured on
/// the 6.18 host: 0.4 % (see the unit test `host_btf_matches_kallsyms`).
pub const MAX_MISSING_FUNCS: f64 = 0.05;

/// How many differences an error names.
const SHOWN: usize = 4;

/// The fields the programs read, differing between two BTFs:
/// `(what, in the file, in the kernel)`.
pub fn layout_differences(file: &Btf, kernel: &Btf) -> Vec<(String, String, String)> {
    let show = |r: Result<u32, _>| match r {
        Ok(off) => format!("at byte {off}"),
        Err(_) => "absent".to_owned(),
    };
    let mut out = Vec::new();
    let mut structs = Vec::new();
    for (_, path) in Field::PATHS {
        let (a, b) = (file.field_offset(path), kernel.field_offset(path));
        if a.as_ref().ok() != b.as_ref().ok() {
            out.push((path.to_owned(), show(a), show(b)));
        }
        if let Some(root) = path.split('.').next()
            && !structs.contains(&root)
        {
            structs.push(root);
        }
    }
    for s in structs {
        let (a, b) = (file.struct_size(s), kernel.struct_size(s));
        if a != b {
            let show = |v: Option<u32>| v.map_or("absent".to_owned(), |n| format!("{n} bytes"));
            out.push((format!("sizeof(struct {s})"), show(a), show(b)));
        }
    }
    out
}

/// Share of the file's function records that the symbol table lacks, or
/// `None` when there is nothing to compare (no symbols readable).
pub fn missing_funcs(file: &Btf, kallsyms_text: &HashSet<String>) -> Option<(usize, usize)> {
    if kallsyms_text.is_empty() {
        return None;
    }
    let mut total = 0;
    let mut missing = 0;
    for name in file.func_names() {
        total += 1;
        if !kallsyms_text.contains(name) {
            missing += 1;
        }
    }
    (total > 0).then_some((missing, total))
}

/// Text symbol names of `/proc/kallsyms` (names are visible without
/// privileges), compiler-clone suffixes removed.
pub fn kallsyms_text() -> HashSet<String> {
    let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
        return HashSet::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "t" | "T").then(|| name.split('.').next().unwrap_or(name).to_owned())
        })
        .collect()
}

/// `Err(reason)` when the BTF at `path` does not describe the running
/// kernel. `raw` is the file's content (compared byte for byte first).
pub fn verify(btf: &Btf, raw: &[u8], path: &Path) -> Result<(), String> {
    let kernel_path = Path::new(KERNEL_BTF);
    let same_file = std::fs::canonicalize(path).ok() == std::fs::canonicalize(kernel_path).ok();
    if same_file {
        return Ok(());
    }
    if let Ok(kernel_raw) = std::fs::read(kernel_path) {
        if kernel_raw == raw {
            return Ok(());
        }
        let kernel = Btf::parse(&kernel_raw)
            .map_err(|e| format!("cannot compare it with {KERNEL_BTF}: {e}"))?;
        let diffs = layout_differences(btf, &kernel);
        if diffs.is_empty() {
            log::info!(
                "{} differs from {KERNEL_BTF} but every field the programs read is at the same \
                 offset",
                path.display()
            );
            return Ok(());
        }
        let shown: Vec<String> = diffs
            .iter()
            .take(SHOWN)
            .map(|(what, a, b)| format!("{what} {a} there, {b} in the running kernel"))
            .collect();
        let more = diffs.len().saturating_sub(SHOWN);
        return Err(format!(
            "it does not describe the running kernel ({KERNEL_BTF}): {}{}; the programs would \
             read the wrong memory (use {KERNEL_BTF}, or the BTF of exactly this kernel build)",
            shown.join("; "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        ));
    }
    match missing_funcs(btf, &kallsyms_text()) {
        Some((missing, total)) if missing as f64 > total as f64 * MAX_MISSING_FUNCS => {
            Err(format!(
                "it does not describe the running kernel: {missing} of its {total} functions are \
             not in /proc/kallsyms (the BTF of another kernel build?)"
            ))
        }
        Some(_) => Ok(()),
        None => {
            log::warn!(
                "cannot check that {} describes the running kernel (no {KERNEL_BTF}, no \
                 readable /proc/kallsyms)",
                path.display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check's threshold holds a margin over what the running kernel's
    /// own BTF shows (the figure quoted in `MAX_MISSING_FUNCS`).
    #[test]
    #[allow(
        clippy::print_stderr,
        reason = "the measured figure, and why a test did not run"
    )]
    fn host_btf_matches_kallsyms() {
        let Ok(raw) = std::fs::read(KERNEL_BTF) else {
            eprintln!("skipped: no {KERNEL_BTF}");
            return;
        };
        let btf = Btf::parse(&raw).expect("host BTF");
        let syms = kallsyms_text();
        let Some((missing, total)) = missing_funcs(&btf, &syms) else {
            eprintln!("skipped: /proc/kallsyms unreadable");
            return;
        };
        let share = missing as f64 / total as f64;
        eprintln!(
            "{missing} of {total} BTF functions not in kallsyms ({:.2} %)",
            share * 100.0
        );
        assert!(share < MAX_MISSING_FUNCS / 2.0, "{share}");
        assert!(verify(&btf, &raw, Path::new(KERNEL_BTF)).is_ok());
        assert!(layout_differences(&btf, &btf).is_empty());
    }
}
