//! `cargo xtask unprivileged`: the test suite as a user without privileges.
//!
//! `cargo test` must pass for a contributor who is not root: tests that need
//! root or a VM skip themselves with a one-line reason, the rest run. Run as
//! root, this builds the test binaries (`cargo test --no-run`, the same
//! ones `cargo test` runs) and runs each one in its package directory, as
//! cargo would, under `setpriv` as an unprivileged user with no capability
//! and `MONITOR_ROOT_TESTS` unset. Any failure fails the command; the skips
//! are counted and the distinct reasons listed.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct Args {
    /// The user to run the tests as (a name or a numeric uid).
    #[arg(long, default_value = "nobody")]
    pub user: String,
}

/// A test binary: its path and the package directory cargo runs it in.
struct TestBinary {
    exe: PathBuf,
    dir: PathBuf,
    name: String,
}

fn test_binaries() -> anyhow::Result<Vec<TestBinary>> {
    let out = Command::new("cargo")
        .args(["test", "--locked", "--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed with {}", out.status);
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(manifest)) =
            (msg["executable"].as_str(), msg["manifest_path"].as_str())
        else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let dir = PathBuf::from(manifest)
            .parent()
            .context("manifest path without a parent")?
            .to_owned();
        let name = format!(
            "{} ({})",
            msg["target"]["name"].as_str().unwrap_or("?"),
            msg["target"]["kind"][0].as_str().unwrap_or("?")
        );
        bins.push(TestBinary {
            exe: exe.into(),
            dir,
            name,
        });
    }
    if bins.is_empty() {
        bail!("cargo test --no-run named no test binary");
    }
    Ok(bins)
}

/// `test result: ok. 67 passed; 0 failed; 3 ignored; ...` → (passed, ignored).
fn result_counts(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("test result: "))?;
    let count = |what: &str| {
        line.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(what)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    Some((count(" passed")?, count(" ignored")?))
}

/// The reason of a `skipped NAME: REASON` line, without the test's name.
fn skip_reason(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("skipped ")?;
    Some(rest.split_once(": ").map_or(rest, |(_, why)| why))
}

/// Search permission for others on the directories above the checkout
/// that lack it (`/root` is 0700 on many machines), for the run only: the
/// tests read their fixtures by absolute path. Nothing is made readable or
/// writable; the modes are restored when this is dropped.
struct Reach {
    changed: Vec<(PathBuf, u32)>,
}

impl Reach {
    fn grant(root: &std::path::Path) -> anyhow::Result<Reach> {
        use std::os::unix::fs::PermissionsExt as _;
        let mut reach = Reach {
            changed: Vec::new(),
        };
        for dir in root.ancestors() {
            let mode = std::fs::metadata(dir)
                .with_context(|| format!("stat {}", dir.display()))?
                .permissions()
                .mode();
            if mode & 0o001 == 0 {
                eprintln!(
                    "xtask: {} has mode {:o}: others may search it for this run only",
                    dir.display(),
                    mode & 0o7777
                );
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))
                    .with_context(|| format!("chmod o+x {}", dir.display()))?;
                reach.changed.push((dir.to_owned(), mode));
            }
        }
        Ok(reach)
    }
}

impl Drop for Reach {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt as _;
        for (dir, mode) in &self.changed {
            if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(*mode)) {
                eprintln!("xtask: restoring the mode of {}: {e}", dir.display());
            }
        }
    }
}

/// The uid and primary gid of `user` (a name or a numeric uid).
fn lookup(user: &str) -> anyhow::Result<(u32, u32)> {
    let name = std::ffi::CString::new(user).context("user name with a NUL")?;
    // SAFETY: a NUL-terminated name; the result is read at once, before any
    // other passwd call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if !pw.is_null() {
        // SAFETY: non-null, as returned by getpwnam.
        let pw = unsafe { &*pw };
        return Ok((pw.pw_uid, pw.pw_gid));
    }
    let uid: u32 = user
        .parse()
        .with_context(|| format!("no user {user:?} (give a name from /etc/passwd or a uid)"))?;
    Ok((uid, uid))
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    // SAFETY: no arguments, no memory.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "run this as root: it builds the tests, then runs them as {}",
            args.user
        );
    }
    let (uid, gid) = lookup(&args.user)?;
    let bins = test_binaries()?;
    let _reach = Reach::grant(&crate::vm::workspace_root())?;
    let (mut passed, mut ignored, mut skipped) = (0, 0, 0);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed = Vec::new();
    for b in &bins {
        let out = Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ])
            .arg(&b.exe)
            .current_dir(&b.dir)
            .env_remove("MONITOR_ROOT_TESTS")
            .env("HOME", "/tmp")
            .env("TMPDIR", "/tmp")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} as {}", b.exe.display(), args.user))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for why in stderr.lines().filter_map(skip_reason) {
            skipped += 1;
            *reasons.entry(why.to_owned()).or_default() += 1;
        }
        match result_counts(&stdout) {
            Some((p, i)) if out.status.success() => {
                passed += p;
                ignored += i;
                eprintln!("xtask: {}: {p} passed, {i} ignored", b.name);
            }
            _ => {
                eprintln!("{stdout}{stderr}");
                eprintln!(
                    "xtask: {}: FAILED as {} ({})",
                    b.name, args.user, out.status
                );
                failed.push(b.name.clone());
            }
        }
    }
    eprintln!(
        "xtask: as {}: {passed} passed, {ignored} ignored (slow or on demand), {skipped} of \
         the passed skipped what needs privileges:",
        args.user
    );
    for (why, n) in &reasons {
        eprintln!("  {n:>3} × {why}");
    }
    if !failed.is_empty() {
        bail!(
            "tests failed as the unprivileged user {}: {}",
            args.user,
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_harness_summary_and_skip_lines() {
        let out = "running 3 tests\n...\ntest result: ok. 67 passed; 0 failed; 3 ignored; 0 \
                   measured; 0 filtered out; finished in 5.50s\n";
        assert_eq!(super::result_counts(out), Some((67, 3)));
        assert_eq!(super::result_counts("no summary"), None);
        assert_eq!(
            super::skip_reason("skipped daemon::x: needs root (the monitor refuses)"),
            Some("needs root (the monitor refuses)")
        );
        assert_eq!(super::skip_reason("ok"), None);
    }
}
