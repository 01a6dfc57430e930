//! Unpacking a kernel package: the `vmlinuz` and the modules a scenario needs,
//! with their dependencies resolved from each module's `.modinfo` (Debian's
//! image packages ship no `modules.dep`), decompressed for busybox `insmod`.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

pub struct Unpacked {
    pub root: PathBuf,
    pub vmlinuz: PathBuf,
    /// `uname -r` of the kernel (the directory under lib/modules).
    pub release: String,
}

/// `dpkg-deb -x` of every package into `dir` (once; a stamp file naming the
/// packages marks completion). The image may be split over several packages
/// (7.x: `linux-binary-*` holds `usr/lib/modules/<release>/vmlinuz`,
/// `linux-modules-*` the modules); older ones put `vmlinuz-<release>` in
/// `boot/`.
pub fn unpack(debs: &[PathBuf], dir: &Path) -> anyhow::Result<Unpacked> {
    let stamp = dir.join(".unpacked");
    let names: String = debs.iter().map(|d| format!("{}\n", d.display())).collect();
    if fs::read_to_string(&stamp).ok().as_deref() != Some(names.as_str()) {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
        for deb in debs {
            let status = Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb)
                .arg(dir)
                .status()
                .context("running dpkg-deb")?;
            if !status.success() {
                bail!("dpkg-deb -x {} failed", deb.display());
            }
        }
        fs::write(&stamp, &names)?;
    }
    let what = debs
        .first()
        .map_or_else(String::new, |d| d.display().to_string());
    let in_boot = fs::read_dir(dir.join("boot"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        });
    let (vmlinuz, release) = match in_boot {
        Some(p) => {
            let release = p
                .file_name()
                .map(|n| {
                    n.to_string_lossy()
                        .trim_start_matches("vmlinuz-")
                        .to_owned()
                })
                .unwrap_or_default();
            (p, release)
        }
        None => modules_roots(dir)
            .into_iter()
            .flat_map(|r| fs::read_dir(r).into_iter().flatten().filter_map(Result::ok))
            .map(|e| e.path().join("vmlinuz"))
            .find(|p| p.is_file())
            .map(|p| {
                let release = p
                    .parent()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (p, release)
            })
            .with_context(|| format!("no vmlinuz in {what}"))?,
    };
    Ok(Unpacked {
        root: dir.to_owned(),
        vmlinuz,
        release,
    })
}

/// `lib/modules` and (merged /usr, Debian 13) `usr/lib/modules` under `root`.
fn modules_roots(root: &Path) -> Vec<PathBuf> {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d))
        .filter(|p| p.is_dir())
        .collect()
}

/// Every `.ko`, `.ko.xz`, `.ko.zst` under (usr/)lib/modules/<release>, by module name.
fn module_index(u: &Unpacked) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack: Vec<PathBuf> = modules_roots(&u.root)
        .into_iter()
        .map(|r| r.join(&u.release))
        .collect();
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            for ext in [".ko", ".ko.xz", ".ko.zst"] {
                if let Some(stem) = name.strip_suffix(ext) {
                    index.insert(stem.replace('-', "_"), p.clone());
                }
            }
        }
    }
    Ok(index)
}

/// Reads a module file, decompressing `.xz`/`.zst` with the system tools.
fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some(("xz", "xz-utils"))
    } else if name.ends_with(".zst") {
        Some(("zstd", "zstd"))
    } else {
        None
    };
    match tool {
        None => fs::read(path).with_context(|| format!("reading {}", path.display())),
        Some((bin, pkg)) => {
            let out = Command::new(bin)
                .args(["-dc"])
                .arg(path)
                .output()
                .with_context(|| format!("running {bin} (install {pkg})"))?;
            if !out.status.success() {
                bail!("{bin} -dc {} failed", path.display());
            }
            Ok(out.stdout)
        }
    }
}

/// `depends=` from a module's `.modinfo` strings.
fn depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let Some(pos) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[pos + key.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(0);
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// Resolves `wanted` and their dependencies; returns (name, uncompressed .ko)
/// in load order. Modules built into this kernel are simply absent and
/// skipped.
pub fn modules(u: &Unpacked, wanted: &[&str]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let index = module_index(u)?;
    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        order: &mut Vec<(String, Vec<u8>)>,
        depth: u32,
    ) -> anyhow::Result<()> {
        if depth > 16 || order.iter().any(|(n, _)| n == name) {
            return Ok(());
        }
        let Some(path) = index.get(name) else {
            // Built in (or not shipped): nothing to load.
            return Ok(());
        };
        let ko = read_module(path)?;
        for dep in depends(&ko) {
            visit(&dep, index, order, depth + 1)?;
        }
        if !order.iter().any(|(n, _)| n == name) {
            order.push((name.to_owned(), ko));
        }
        Ok(())
    }
    for w in wanted {
        visit(w, &index, &mut order, 0)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::depends;

    #[test]
    fn parses_modinfo_depends() {
        let blob = b"\x7fELF....license=GPL\0depends=tun,vhost,tap,vhost_iotlb\0retpoline=Y\0";
        assert_eq!(depends(blob), vec!["tun", "vhost", "tap", "vhost_iotlb"]);
        assert!(depends(b"depends=\0").is_empty());
        assert!(depends(b"nothing here").is_empty());
    }
}
