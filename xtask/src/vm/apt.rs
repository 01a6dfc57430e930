//! Fetching kernel packages with `apt-get download` through a private apt
//! configuration per suite (its own sources list and package lists under the
//! cache directory), leaving the system's apt configuration untouched.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::kernels::Suite;

pub struct Apt {
    root: PathBuf,
    suite: Suite,
}

impl Apt {
    pub fn new(cache: &Path, suite: Suite) -> anyhow::Result<Apt> {
        let root = cache.join("apt").join(suite.name());
        fs::create_dir_all(root.join("lists/partial"))?;
        fs::create_dir_all(root.join("archives/partial"))?;
        fs::write(root.join("sources.list"), suite.sources())?;
        Ok(Apt { root, suite })
    }

    fn opts(&self) -> Vec<String> {
        let r = self.root.display();
        vec![
            format!("-o=Dir::Etc::sourcelist={r}/sources.list"),
            "-o=Dir::Etc::sourceparts=-".into(),
            format!("-o=Dir::State::Lists={r}/lists"),
            format!("-o=Dir::Cache::Archives={r}/archives"),
            "-o=APT::Get::List-Cleanup=0".into(),
            "-o=Debug::NoLocking=1".into(),
            "-q".into(),
        ]
    }

    fn update(&self) -> anyhow::Result<()> {
        eprintln!("xtask vm: apt-get update ({} lists)", self.suite.name());
        let out = Command::new("apt-get")
            .args(self.opts())
            .arg("update")
            .output()
            .context("running apt-get (is this Debian/Ubuntu?)")?;
        if !out.status.success() {
            bail!(
                "apt-get update for {} failed: {}",
                self.suite.name(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Downloads `package` (or `package=version`) into `dir` unless a `.deb`
    /// for it is already there.
    pub fn download(&self, package: &str, dir: &Path) -> anyhow::Result<PathBuf> {
        fs::create_dir_all(dir)?;
        if let Some(found) = find_deb(dir, package)? {
            return Ok(found);
        }
        // Refresh the private lists once if they are missing or stale.
        let lists_empty = fs::read_dir(self.root.join("lists"))?
            .filter_map(Result::ok)
            .all(|e| !e.file_name().to_string_lossy().ends_with("Packages"));
        if lists_empty {
            self.update()?;
        }
        let attempt = |apt: &Apt| {
            Command::new("apt-get")
                .args(apt.opts())
                .args(["download", package])
                .current_dir(dir)
                .output()
        };
        let mut out = attempt(self).context("running apt-get download")?;
        if !out.status.success() && !lists_empty {
            self.update()?;
            out = attempt(self).context("running apt-get download")?;
        }
        if !out.status.success() {
            bail!(
                "apt-get download {package} ({}) failed: {}",
                self.suite.name(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        find_deb(dir, package)?.with_context(|| format!("{package}: no .deb after download"))
    }
}

fn find_deb(dir: &Path, package: &str) -> anyhow::Result<Option<PathBuf>> {
    // apt escapes ':' and '+' differently across versions; match on the prefix.
    let prefix = match package.split_once('=') {
        Some((name, version)) => format!("{name}_{version}_"),
        None => format!("{package}_"),
    };
    let escaped = prefix.replace('+', "%2b");
    for e in fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if (name.starts_with(&prefix) || name.starts_with(&escaped)) && name.ends_with(".deb") {
            return Ok(Some(dir.join(name)));
        }
    }
    Ok(None)
}
