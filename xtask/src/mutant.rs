//! `cargo xtask mutant`: the monitor's violations, proven on a real kernel.
//!
//! Builds Debian's own 6.1 kernel source (`linux-source-6.1`, pinned) with
//! `xtask/mutants/mmrace-6.1.patch`, whose boot parameter `mmrace_mutant=`
//! removes one race fix per switch (default: none, the kernel as shipped),
//! from Debian's cloud config with every module off and tun/vhost built in
//! (BTF kept: the monitor needs it). Then boots it in the VM harness once
//! with no switch and once per switch, runs the matching `mutant::` test
//! (monitor/tests/mutant.rs) in the guest and judges, from the guest's test
//! output *and* its kernel console:
//!
//! * no switch: the four race tests pass (near misses only, no violation)
//!   and the kernel log holds no violation line;
//! * each switch: a violation of that race's rule and pattern, in the kernel
//!   log, and no other rule's violation; a guest that panics after the
//!   violation line reached the console passes too (the mutant may crash:
//!   that is the bug);
//! * expect-panic: with `uffd` on, a violation is logged and the guest is
//!   crashed on purpose (sysrq c): the violation line must be on the console
//!   before the panic.
//!
//! Everything is cached under `target/mutant/`: the packages, the extracted
//! source (the patch is re-applied only when it changes, so a rebuild
//! recompiles only the touched files) and the image, keyed by source
//! version + patch + final `.config` (`target/mutant/kernels/<key>/`).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::vm::{self, apt::Apt, kernels, qemu::Ending};

/// The pinned source: the same Debian version as the matrix's 6.1 image.
const SOURCE_PACKAGE: &str = "linux-source-6.1";
const SOURCE_VERSION: &str = "6.1.176-1";
/// Kernel whose image package gives the config (its Debian version must be
/// `SOURCE_VERSION`).
const CONFIG_FROM: &str = "6.1";
const PATCH: &str = "xtask/mutants/mmrace-6.1.patch";
const LOCALVERSION: &str = "-mmrace";

/// Kernel log lines of the daemon's violations (monitor/src/daemon/kmsg.rs).
const KMSG_TAG: &str = "mm-race-monitor: violation ";
/// Console lines of a crash (besides the harness's FATAL list).
const CRASH: &[&str] = &["sysrq: Trigger a crash", "kernel BUG at"];

/// Tools and headers the kernel build needs, with the Debian package.
const BUILD_DEPS: &[(&str, &str)] = &[
    ("/usr/bin/make", "make"),
    ("/usr/bin/gcc", "gcc"),
    ("/usr/bin/bc", "bc"),
    ("/usr/bin/flex", "flex"),
    ("/usr/bin/bison", "bison"),
    ("/usr/bin/pahole", "dwarves"),
    ("/usr/bin/perl", "perl"),
    ("/usr/bin/patch", "patch"),
    ("/usr/bin/xz", "xz-utils"),
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/include/openssl/opensslv.h", "libssl-dev"),
];

/// One guest boot and what must come out of it.
struct Run {
    name: &'static str,
    /// `mmrace_mutant=` value ("" = no switch).
    switches: &'static str,
    tests: &'static [&'static str],
    /// The violation the kernel log must show: (rule, patterns).
    violation: Option<(&'static str, &'static [&'static str])>,
    expect_panic: bool,
}

const RUNS: &[Run] = &[
    Run {
        name: "stock",
        switches: "",
        tests: &["mutant::race_"],
        violation: None,
        expect_panic: false,
    },
    Run {
        name: "uffd",
        switches: "uffd",
        tests: &["mutant::race_uffd"],
        violation: Some(("uffd_copy_vs_mm_change", &["copy_inside_window"])),
        expect_panic: false,
    },
    Run {
        name: "unstable",
        switches: "unstable",
        tests: &["mutant::race_unstable"],
        violation: Some(("unstable_mm_fault", &["handled"])),
        expect_panic: false,
    },
    Run {
        name: "tempstack",
        switches: "tempstack",
        tests: &["mutant::race_tempstack"],
        violation: Some((
            "leftover_migration_entry",
            &["migration_entry_in_temp_stack"],
        )),
        expect_panic: false,
    },
    Run {
        name: "exitlock",
        switches: "exitlock",
        tests: &["mutant::race_exitlock"],
        violation: Some((
            "reaper_exit_overlap",
            &[
                "exit_mmap_end_inside_reap",
                "reap_after_exit_mmap_end",
                "mmdrop_inside_reap",
            ],
        )),
        expect_panic: false,
    },
    Run {
        name: "panic",
        switches: "uffd",
        tests: &["mutant::kmsg_line_survives_a_panic"],
        violation: Some(("uffd_copy_vs_mm_change", &["copy_inside_window"])),
        expect_panic: true,
    },
];

#[derive(clap::Args)]
pub struct Args {
    /// Runs to do (comma list of stock, uffd, unstable, tempstack, exitlock,
    /// panic) [default: all].
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Build the kernel (or find it in the cache), print its path and stop.
    #[arg(long)]
    build_only: bool,
    /// Only check that the patch applies to the pinned source, that every
    /// hunk names what it removes, and that no switch is on by default
    /// (needs no kernel build; about a minute).
    #[arg(long)]
    check_patch: bool,
    /// Per-boot timeout in seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
    /// Boot a failed run once more before reporting it (TCG timing is noisy).
    #[arg(long, default_value_t = 1)]
    retries: u32,
    /// Do not rebuild the monitor, scenario and test binaries.
    #[arg(long)]
    no_build: bool,
    /// Do not stream the guest console.
    #[arg(long, short)]
    quiet: bool,
}

fn root() -> PathBuf {
    vm::workspace_root().join("target/mutant")
}

fn sh(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect();
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

fn check_build_deps() -> anyhow::Result<()> {
    let missing: Vec<&str> = BUILD_DEPS
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        bail!(
            "the kernel build needs {}: run `scripts/setup.sh --mutant` (or apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

/// The patch without its leading description (what is compared with the
/// patch already applied to the tree).
fn patch_body(text: &str) -> &str {
    text.find("\ndiff ").map_or(text, |i| &text[i + 1..])
}

/// Every hunk that changes code adds a comment naming its switch and the
/// upstream commit it reverts (`mmrace_mutant=<switch>: <12-hex id>`); the
/// switch's own files, its `#include`s and build rule are plumbing.
fn check_hunks(body: &str) -> anyhow::Result<usize> {
    let mut file = "";
    let mut hunks: Vec<(&str, Vec<&str>)> = Vec::new();
    for l in body.lines() {
        if let Some(f) = l.strip_prefix("+++ b/") {
            file = f;
        } else if l.starts_with("@@ ") {
            hunks.push((file, Vec::new()));
        } else if let (Some(added), Some(h)) = (l.strip_prefix('+'), hunks.last_mut()) {
            h.1.push(added);
        }
    }
    let commit = |l: &str| {
        l.split(|c: char| !c.is_ascii_hexdigit())
            .any(|w| w.len() == 12)
    };
    for (file, added) in &hunks {
        let plumbing = file.contains("mmrace_mutant")
            || added.iter().all(|l| {
                l.trim().is_empty()
                    || l.starts_with("#include <linux/mmrace_mutant.h>")
                    || l.contains("mmrace_mutant.o")
                    || l.trim() == "bool exitlock;"
            });
        if !plumbing
            && !added
                .iter()
                .any(|l| l.contains("mmrace_mutant=") && commit(l))
        {
            bail!(
                "{PATCH}: a hunk in {file} does not name the fix it removes (a `mmrace_mutant=<switch>: <commit>` comment)"
            );
        }
    }
    if hunks.is_empty() {
        bail!("{PATCH} has no hunks");
    }
    Ok(hunks.len())
}

fn download(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cache = vm::workspace_root().join("target/vm-cache");
    let kernel = kernels::find(CONFIG_FROM).context("6.1 is in the matrix")?;
    let apt = Apt::new(&cache, kernel.suite)?;
    let source = apt.download(&format!("{SOURCE_PACKAGE}={SOURCE_VERSION}"), dir)?;
    let image = apt.download(kernel.package, &cache.join("debs"))?;
    let out = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&image)
        .arg("Version")
        .output()
        .context("running dpkg-deb -f")?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if version != SOURCE_VERSION {
        bail!(
            "{} is Debian version {version}, the pinned source is {SOURCE_VERSION}: update SOURCE_VERSION and the patch together",
            kernel.package
        );
    }
    Ok((source, image))
}

/// Extracts `members` (or everything) of the source tarball in `deb` into
/// `into` (which gets `linux-source-6.1/`).
fn extract(deb: &Path, into: &Path, members: &[&str]) -> anyhow::Result<()> {
    fs::create_dir_all(into)?;
    let tar = format!("./usr/src/{SOURCE_PACKAGE}.tar.xz");
    let mut script = format!("dpkg-deb --fsys-tarfile \"$0\" | tar -xO {tar} | tar -xJ -C \"$1\"");
    for m in members {
        let _ = write!(script, " {SOURCE_PACKAGE}/{m}");
    }
    sh(
        Command::new("sh").arg("-c").arg(script).arg(deb).arg(into),
        "extracting the kernel source",
    )
}

fn patch(tree: &Path, file: &Path, reverse: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new("patch");
    cmd.args(["-p1", "-s", "--batch", "-E"]).current_dir(tree);
    if reverse {
        cmd.arg("-R");
    } else {
        cmd.arg("--forward");
    }
    cmd.arg("-i").arg(file);
    sh(
        &mut cmd,
        &format!(
            "patch {}{}",
            if reverse { "-R " } else { "" },
            file.display()
        ),
    )
}

/// `--check-patch`: the touched files from the pinned source, patched in a
/// scratch directory.
fn check_patch() -> anyhow::Result<()> {
    let t = Instant::now();
    let text = fs::read_to_string(vm::workspace_root().join(PATCH))?;
    let body = patch_body(&text);
    let hunks = check_hunks(body)?;
    let files: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("--- a/"))
        .filter(|f| !f.contains("mmrace_mutant"))
        .collect();
    let (source, _) = download(&root().join("debs"))?;
    let scratch = root().join("check");
    if scratch.exists() {
        fs::remove_dir_all(&scratch)?;
    }
    extract(&source, &scratch, &files)?;
    let tree = scratch.join(SOURCE_PACKAGE);
    let body_file = scratch.join("body.patch");
    fs::write(&body_file, body)?;
    patch(&tree, &body_file, false)?;
    // Default off: the switch word is zero-initialised and only the boot
    // parameter sets it.
    let c = fs::read_to_string(tree.join("mm/mmrace_mutant.c"))?;
    if !c.contains("unsigned int mmrace_mutant __read_mostly;")
        || !c.contains("early_param(\"mmrace_mutant\"")
    {
        bail!(
            "mm/mmrace_mutant.c: the switches must default to off and be set only by mmrace_mutant="
        );
    }
    patch(&tree, &body_file, true)?;
    fs::remove_dir_all(&scratch)?;
    println!(
        "mutant: {PATCH} applies to {SOURCE_PACKAGE} {SOURCE_VERSION} ({} files, {hunks} hunks, each naming its fix) and reverts cleanly; no switch is on by default ({:.0}s)",
        files.len() + 2,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The source tree, extracted once, with the current patch applied.
fn source_tree(source: &Path, body: &str) -> anyhow::Result<PathBuf> {
    let src = root().join("src");
    let tree = src.join(SOURCE_PACKAGE);
    let stamp = src.join(format!(".extracted-{SOURCE_VERSION}"));
    if !stamp.exists() {
        eprintln!("mutant: extracting {SOURCE_PACKAGE} {SOURCE_VERSION}");
        if src.exists() {
            fs::remove_dir_all(&src)?;
        }
        extract(source, &src, &[])?;
        fs::write(&stamp, "")?;
    }
    let applied = tree.join(".mmrace-applied.patch");
    let old = fs::read_to_string(&applied).ok();
    if old.as_deref() != Some(body) {
        if old.is_some() {
            eprintln!("mutant: the patch changed: reverting the old one");
            patch(&tree, &applied, true)?;
            fs::remove_file(&applied)?;
        }
        let new = src.join("current.patch");
        fs::write(&new, body)?;
        patch(&tree, &new, false)?;
        fs::rename(&new, &applied)?;
        eprintln!("mutant: applied {PATCH}");
    }
    Ok(tree)
}

fn make(tree: &Path, args: &[&str], stdin_yes: bool, what: &str) -> anyhow::Result<()> {
    let mut cmd = Command::new("make");
    cmd.arg("-s").args(args).current_dir(tree);
    if stdin_yes {
        // localmodconfig asks about new symbols: take the defaults.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running make")?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write as _;
            let _ = stdin.write_all(&b"\n".repeat(4096));
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        return Ok(());
    }
    sh(&mut cmd, what)
}

/// Debian's cloud config, every module off, vhost-net built in, BTF kept.
fn configure(tree: &Path, image: &Path) -> anyhow::Result<String> {
    let unpacked = root().join("config-image");
    if unpacked.exists() {
        fs::remove_dir_all(&unpacked)?;
    }
    sh(
        Command::new("dpkg-deb").arg("-x").arg(image).arg(&unpacked),
        "unpacking the image package",
    )?;
    let config = fs::read_dir(unpacked.join("boot"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("config-"))
        })
        .context("no boot/config-* in the image package")?;
    fs::copy(&config, tree.join(".config"))?;
    fs::remove_dir_all(&unpacked)?;
    let empty = root().join("empty.lsmod");
    fs::write(&empty, "")?;
    make(tree, &["olddefconfig"], false, "make olddefconfig")?;
    let lsmod = format!("LSMOD={}", empty.display());
    make(
        tree,
        &[lsmod.as_str(), "localmodconfig"],
        true,
        "make localmodconfig",
    )?;
    sh(
        Command::new("./scripts/config")
            .current_dir(tree)
            .args(["--set-str", "SYSTEM_TRUSTED_KEYS", ""])
            .args(["--set-str", "SYSTEM_REVOCATION_KEYS", ""])
            .args(["--set-str", "LOCALVERSION", LOCALVERSION])
            .args([
                "-e",
                "TUN",
                "-e",
                "VHOST_MENU",
                "-e",
                "VHOST_NET",
                "-e",
                "VHOST",
            ]),
        "scripts/config",
    )?;
    make(tree, &["olddefconfig"], false, "make olddefconfig")?;
    let text = fs::read_to_string(tree.join(".config"))?;
    for need in [
        "CONFIG_DEBUG_INFO_BTF=y",
        "CONFIG_VHOST_NET=y",
        "CONFIG_TUN=y",
        "CONFIG_USERFAULTFD=y",
        "CONFIG_MEMCG=y",
        "CONFIG_NUMA=y",
        "CONFIG_COMPACTION=y",
        "CONFIG_KPROBES=y",
        "CONFIG_MAGIC_SYSRQ=y",
    ] {
        if !text.lines().any(|l| l == need) {
            bail!("the generated .config lacks {need}");
        }
    }
    Ok(text)
}

fn sha256(parts: &[&str]) -> anyhow::Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().context("sha256sum stdin")?;
        for p in parts {
            stdin.write_all(p.as_bytes())?;
            stdin.write_all(b"\0")?;
        }
    }
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned())
}

/// The mutant kernel image: from the cache, or built.
fn kernel() -> anyhow::Result<PathBuf> {
    let text = fs::read_to_string(vm::workspace_root().join(PATCH))
        .with_context(|| format!("reading {PATCH}"))?;
    let body = patch_body(&text);
    check_hunks(body)?;
    check_build_deps()?;
    let (source, image) = download(&root().join("debs"))?;
    let tree = source_tree(&source, body)?;
    let config = configure(&tree, &image)?;
    let key = sha256(&[SOURCE_VERSION, body, &config])?;
    let out = root().join("kernels").join(&key[..16]);
    let bzimage = out.join("bzImage");
    if bzimage.exists() {
        eprintln!("mutant: kernel {} (cached)", bzimage.display());
        return Ok(bzimage);
    }
    let jobs = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let log = root().join("build.log");
    eprintln!(
        "mutant: building bzImage (nice -n 10 make -j{jobs}; 22-70 min on 2 cores from scratch, minutes after a patch change; log {})",
        log.display()
    );
    let t = Instant::now();
    let status = Command::new("nice")
        .args(["-n", "10", "make", &format!("-j{jobs}"), "bzImage"])
        .current_dir(&tree)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::options().append(true).open(&log)?)
        .status()
        .context("running make")?;
    if !status.success() {
        bail!("the kernel build failed ({status}); see {}", log.display());
    }
    let secs = t.elapsed().as_secs();
    fs::create_dir_all(&out)?;
    fs::copy(tree.join("arch/x86/boot/bzImage"), &bzimage)?;
    fs::write(out.join("config"), &config)?;
    fs::write(
        out.join("build.txt"),
        format!(
            "{SOURCE_PACKAGE} {SOURCE_VERSION}, {PATCH}, make -j{jobs} bzImage: {secs}s wall\n"
        ),
    )?;
    eprintln!(
        "mutant: built {} in {}m{:02}s",
        bzimage.display(),
        secs / 60,
        secs % 60
    );
    Ok(bzimage)
}

/// The guest console's kernel log lines from the daemon, in order.
fn kmsg_lines(console: &str) -> Vec<&str> {
    console
        .lines()
        .filter_map(|l| l.find(KMSG_TAG).map(|i| &l[i..]))
        .collect()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("")
}

/// The first console line that shows a crash.
fn crash_line(console: &str) -> Option<usize> {
    console
        .lines()
        .position(|l| vm::qemu::FATAL.iter().chain(CRASH).any(|m| l.contains(m)))
}

/// Why `run` failed (`None` = it did what it must).
fn judge(run: &Run, o: &vm::LocalOutcome) -> Option<String> {
    let lines = kmsg_lines(&o.console);
    let banner = o
        .console
        .lines()
        .filter(|l| l.contains("mmrace_mutant: protection removed: "))
        .count();
    let wanted = run.switches.split(',').filter(|s| !s.is_empty()).count();
    if banner != wanted {
        return Some(format!(
            "the kernel reported {banner} switches on, expected {wanted} (mmrace_mutant={:?})",
            run.switches
        ));
    }
    let right = |l: &&str| {
        run.violation.is_some_and(|(rule, patterns)| {
            field(l, "rule") == rule && patterns.contains(&field(l, "pattern"))
        })
    };
    let other: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            run.violation
                .is_none_or(|(rule, _)| field(l, "rule") != rule)
        })
        .collect();
    if !other.is_empty() {
        return Some(format!(
            "violations of another rule in the kernel log: {other:?}"
        ));
    }
    if run.violation.is_some() {
        let Some(first) = o
            .console
            .lines()
            .position(|l| l.contains(KMSG_TAG) && right(&l))
        else {
            return Some(format!(
                "no {:?} violation line in the guest's kernel log (kernel log lines: {lines:?})",
                run.violation
            ));
        };
        if let Some(crash) = crash_line(&o.console)
            && crash < first
        {
            return Some("the guest crashed before the violation reached its kernel log".into());
        }
    }
    let crashed = o.ending == Ending::Panic;
    if run.expect_panic {
        return match o.ending {
            Ending::Panic => None,
            Ending::Timeout => Some("timed out instead of panicking".into()),
            Ending::PoweredOff => Some("the guest powered off instead of panicking".into()),
        };
    }
    if o.ending == Ending::Timeout {
        return Some("timed out".into());
    }
    if crashed {
        // A mutant may crash after the violation was logged: that is the
        // race it lets through, not a harness failure.
        return if run.violation.is_some() {
            None
        } else {
            Some("the stock kernel panicked".into())
        };
    }
    o.report.verdict()
}

/// `VMH mutant …` lines of the guest output.
fn guest_lines(results: &str) -> Vec<&str> {
    results
        .lines()
        .filter_map(|l| l.strip_prefix("VMH mutant "))
        .filter(|l| l.starts_with("result ") || l.contains(" finding ") || l.starts_with("panic"))
        .collect()
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.check_patch {
        return check_patch();
    }
    let t = Instant::now();
    let bzimage = kernel()?;
    if args.build_only {
        println!("{}", bzimage.display());
        return Ok(());
    }
    for o in &args.only {
        if !RUNS.iter().any(|r| r.name == o) {
            let names: Vec<&str> = RUNS.iter().map(|r| r.name).collect();
            bail!("unknown run {o:?} in --only (known: {})", names.join(", "));
        }
    }
    let payload = vm::build(args.no_build)?;
    let mut summary = String::new();
    let mut failed = Vec::new();
    for run in RUNS
        .iter()
        .filter(|r| args.only.is_empty() || args.only.iter().any(|o| o == r.name))
    {
        let append = if run.switches.is_empty() {
            String::new()
        } else {
            format!("mmrace_mutant={}", run.switches)
        };
        let tests: Vec<String> = run.tests.iter().map(|s| (*s).to_owned()).collect();
        let label = format!("mutant-{}", run.name);
        let mut attempt = 0;
        let (verdict, outcome) = loop {
            eprintln!(
                "mutant: {} (mmrace_mutant={:?}, {})",
                run.name,
                run.switches,
                tests.join(" ")
            );
            let o = vm::boot_local(
                &vm::LocalBoot {
                    label: &label,
                    bzimage: &bzimage,
                    append: &append,
                    tests: &tests,
                    timeout: Duration::from_secs(args.timeout),
                    quiet: args.quiet,
                },
                &payload,
            )?;
            let v = judge(run, &o);
            if v.is_some() && attempt < args.retries {
                attempt += 1;
                eprintln!(
                    "mutant: {} failed ({}); booting again",
                    run.name,
                    v.as_deref().unwrap_or("")
                );
                continue;
            }
            break (v, o);
        };
        let status = match &verdict {
            None => "PASS".to_owned(),
            Some(why) => format!("FAIL: {why}"),
        };
        let _ = writeln!(
            summary,
            "{:<9} {status} ({:.0}s, {:?}{}) {}",
            run.name,
            outcome.elapsed.as_secs_f64(),
            outcome.ending,
            if attempt > 0 { ", after a retry" } else { "" },
            outcome.dir.display()
        );
        for l in guest_lines(&outcome.results) {
            let _ = writeln!(summary, "    guest: {l}");
        }
        for l in kmsg_lines(&outcome.console) {
            let _ = writeln!(summary, "    kmsg:  {l}");
        }
        if verdict.is_some() {
            failed.push(run.name);
            let tail: Vec<&str> = outcome.console.lines().rev().take(60).collect();
            eprintln!("mutant: ---- {} console (last lines):", run.name);
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
            eprintln!(
                "mutant: ---- {} guest output:\n{}",
                run.name, outcome.results
            );
        }
    }
    let head = format!(
        "cargo xtask mutant: {SOURCE_PACKAGE} {SOURCE_VERSION} + {PATCH}, {} ({:.0}s)\n",
        bzimage.display(),
        t.elapsed().as_secs_f64()
    );
    let report = format!("{head}{summary}");
    fs::write(root().join("last-run.txt"), &report)?;
    eprintln!(
        "\n{report}(also in {})",
        root().join("last-run.txt").display()
    );
    if !failed.is_empty() {
        bail!("mutant runs failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hunk_of_the_patch_names_its_fix() {
        let text = include_str!("../mutants/mmrace-6.1.patch");
        assert_eq!(check_hunks(patch_body(text)).ok(), Some(22));
        let stripped =
            patch_body(text).replace("mmrace_mutant=tempstack: a8bef8ff6ea1 removed", "x");
        assert!(check_hunks(&stripped).is_err());
    }

    const BOOT: &str = "[   1.000] [    0.000000] mmrace_mutant: protection removed: uffd\n";
    const LINE: &str = "[  20.000] [   18.123456] mm-race-monitor: violation rule=uffd_copy_vs_mm_change pattern=copy_inside_window mm=0xff11 gen=3 tasks=1/1:scenario t=1..2\n";
    const CRASH_LINE: &str = "[  21.000] [   19.000000] sysrq: Trigger a crash\n[  21.001] Kernel panic - not syncing: sysrq triggered crash\n";

    fn outcome(ending: Ending, console: &str) -> vm::LocalOutcome {
        vm::LocalOutcome {
            ending,
            report: vm::Report::default(),
            results: String::new(),
            console: console.to_owned(),
            dir: PathBuf::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn run(name: &str) -> &'static Run {
        RUNS.iter().find(|r| r.name == name).expect("run")
    }

    #[test]
    fn a_panic_passes_only_after_the_violation_reached_the_console() {
        let panic = run("panic");
        let good = format!("{BOOT}{LINE}{CRASH_LINE}");
        assert_eq!(judge(panic, &outcome(Ending::Panic, &good)), None);
        let late = format!("{BOOT}{CRASH_LINE}{LINE}");
        assert!(judge(panic, &outcome(Ending::Panic, &late)).is_some());
        let none = format!("{BOOT}{CRASH_LINE}");
        assert!(judge(panic, &outcome(Ending::Panic, &none)).is_some());
        assert!(
            judge(
                panic,
                &outcome(Ending::PoweredOff, &format!("{BOOT}{LINE}"))
            )
            .is_some()
        );
    }

    #[test]
    fn wrong_rule_missing_switch_or_stock_violation_fail() {
        let uffd = run("uffd");
        let other = LINE.replace("uffd_copy_vs_mm_change", "unstable_mm_fault");
        assert!(
            judge(
                uffd,
                &outcome(Ending::PoweredOff, &format!("{BOOT}{LINE}{other}"))
            )
            .is_some()
        );
        assert!(
            judge(uffd, &outcome(Ending::PoweredOff, LINE)).is_some(),
            "switch not on"
        );
        // A mutant that crashes after logging is the bug, not a failure.
        assert_eq!(
            judge(
                uffd,
                &outcome(Ending::Panic, &format!("{BOOT}{LINE}{CRASH_LINE}"))
            ),
            None
        );
        let stock = run("stock");
        assert!(judge(stock, &outcome(Ending::PoweredOff, LINE)).is_some());
        assert!(judge(stock, &outcome(Ending::Panic, "")).is_some());
    }
}
