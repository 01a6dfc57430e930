//! `cargo xtask vm`: boot Debian kernels under QEMU (TCG) with a busybox
//! initramfs, run the VM test module of the monitor's integration tests inside,
//! and report pass/fail per test and per kernel with the guest log on failure.
//!
//! Artifacts are kept under `target/vm-cache/` (downloads, unpacked kernels)
//! and `target/vm-runs/<kernel>/` (initramfs, console.txt, results.txt).

pub mod apt;
mod cpio;
mod guest;
mod image;
pub mod kernels;
pub mod qemu;
mod report;
mod systemd;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use guest::Mode;
pub use guest::Payload;
use kernels::{KERNELS, Kernel};
pub use report::Report;

#[derive(clap::Args)]
pub struct Args {
    /// Kernel(s) to boot: a short name (5.10, 6.1, 6.12, 6.18, 7.3), a package
    /// name, or `all` (every kernel not marked on demand: `--list` says which).
    #[arg(long, default_value = "all")]
    kernel: Vec<String>,
    /// Test name filters passed to the guest's test binary (default: every VM test).
    tests: Vec<String>,
    /// Guest memory in MiB (split over two NUMA nodes).
    #[arg(long, default_value_t = 1024)]
    mem: u32,
    /// Per-VM timeout in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Boot a failed VM once more before reporting it (TCG timing is noisy).
    #[arg(long, default_value_t = 1)]
    retries: u32,
    /// Do not rebuild the binaries (use what is in target/release).
    #[arg(long)]
    no_build: bool,
    /// Do not stream the guest console.
    #[arg(long, short)]
    quiet: bool,
    /// Run this shell command in the guest instead of the tests and show its
    /// output (the monitor is /bin/monitor, the scenarios /bin/scenario).
    #[arg(long, value_name = "CMD")]
    run: Option<String>,
    /// Extra guest kernel command-line arguments (a diagnosis, e.g.
    /// `loglevel=7` to see warnings the default `loglevel=4` hides).
    #[arg(long, value_name = "ARGS", default_value = "")]
    kernel_args: String,
    /// List the kernels of the matrix and exit.
    #[arg(long)]
    list: bool,
    /// Check the harness itself: a wrong expectation, a guest panic, a hang and
    /// a silent guest must each make a run fail (on the first kernel given).
    #[arg(long)]
    self_test: bool,
    /// Boot a Debian bookworm root file system with systemd as PID 1 instead
    /// of the busybox initramfs, install the .deb (`cargo xtask dist --deb`,
    /// built first) and run the `vm_systemd::` tests.
    #[arg(long)]
    systemd: bool,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// Runs cargo in the workspace (stderr passed through); fails unless it
/// succeeds. Shared with `cargo xtask bench`.
pub fn cargo(args: &[&str]) -> anyhow::Result<std::process::Output> {
    cargo_with_env(args, &[])
}

/// [`cargo`] with extra environment variables.
pub fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<std::process::Output> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let out = Command::new("cargo")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(out)
}

/// Builds the release `monitor` and `scenario` binaries (what runs in a
/// guest and what the benchmarks drive).
pub fn build_release_binaries() -> anyhow::Result<()> {
    cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "monitor",
        "--bin",
        "monitor",
    ])?;
    cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "xtask",
        "--bin",
        "scenario",
    ])?;
    Ok(())
}

/// Builds the static (musl) release monitor, scenario binary and
/// integration test binary, the monitor exactly as `cargo xtask dist` ships
/// it; returns their paths. Static binaries need no shared libraries in the
/// guest.
pub fn build(no_build: bool) -> anyhow::Result<Payload> {
    let target = workspace_root().join(format!("target/{}/release", crate::dist::TARGET));
    let tests = if no_build {
        newest_test_binary(&target.join("deps"))?
    } else {
        let out = crate::dist::build_static()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "tests")
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .context("cargo did not report the integration test executable")?
    };
    Ok(Payload {
        monitor: target.join("monitor"),
        scenario: target.join("scenario"),
        tests,
        busybox: ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("busybox not found: install busybox-static (scripts/setup.sh --for-tests)")?,
    })
}

fn newest_test_binary(deps: &Path) -> anyhow::Result<PathBuf> {
    fs::read_dir(deps)?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("tests-") && !n.contains('.')
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .context("no built test binary; run without --no-build")
}

struct Prepared {
    vmlinuz: PathBuf,
    modules: Vec<(String, Vec<u8>)>,
}

fn prepare(kernel: &Kernel) -> anyhow::Result<Prepared> {
    prepare_with(kernel, kernels::MODULES)
}

/// [`prepare`] with another set of modules (and their dependencies).
fn prepare_with(kernel: &Kernel, wanted: &[&str]) -> anyhow::Result<Prepared> {
    let cache = workspace_root().join("target/vm-cache");
    let t = Instant::now();
    let apt = apt::Apt::new(&cache, kernel.suite)?;
    let mut debs = vec![apt.download(kernel.package, &cache.join("debs"))?];
    for part in kernel.parts {
        debs.push(apt.download(part, &cache.join("debs"))?);
    }
    let unpacked = image::unpack(&debs, &cache.join("kernels").join(kernel.package))?;
    let modules = image::modules(&unpacked, wanted)?;
    eprintln!(
        "xtask vm: {} ready ({}, {} modules: {}) in {:.1}s",
        kernel.name,
        unpacked.release,
        modules.len(),
        modules
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        t.elapsed().as_secs_f64()
    );
    Ok(Prepared {
        vmlinuz: unpacked.vmlinuz,
        modules,
    })
}

/// Boots once; returns the verdict (None = pass) and the parsed report.
fn run_once(
    args: &Args,
    kernel: &Kernel,
    prep: &Prepared,
    payload: &Payload,
    mode: &Mode,
    filter: &[String],
    tag: &str,
) -> anyhow::Result<(Option<String>, Report, PathBuf)> {
    let dir = workspace_root()
        .join("target/vm-runs")
        .join(format!("{}{tag}", kernel.name));
    fs::create_dir_all(&dir)?;
    let initrd = dir.join("initrd.cpio");
    guest::write_initramfs(&initrd, payload, &prep.modules, mode, filter, kernel.name)?;
    let res = qemu::boot(&qemu::Boot {
        label: kernel.name,
        kernel: &prep.vmlinuz,
        initrd: &initrd,
        dir: &dir,
        mem_mb: args.mem,
        timeout: Duration::from_secs(args.timeout),
        quiet: args.quiet,
        disk: None,
        append: &args.kernel_args,
        forward: None,
    })?;
    let text = fs::read_to_string(&res.results).unwrap_or_default();
    let report = Report::parse(&text);
    let verdict = boot_failure(res.ending, args.timeout).or_else(|| match mode {
        Mode::Command(_) => match report.exit_code {
            Some(0) => None,
            Some(c) => Some(format!("the command exited with {c}")),
            None => Some("the command never finished".to_owned()),
        },
        _ => report.verdict(),
    });
    if let Mode::Command(_) = mode {
        for line in text.lines() {
            println!("[{}] {line}", kernel.name);
        }
    }
    conclude(kernel.name, "", verdict.as_deref(), &res);
    Ok((verdict, report, dir))
}

/// A failure the way the guest ended shows by itself (`None`: it powered
/// off; its report decides).
fn boot_failure(ending: qemu::Ending, timeout: u64) -> Option<String> {
    match ending {
        qemu::Ending::Panic => Some("the guest kernel panicked or locked up".to_owned()),
        qemu::Ending::Timeout => Some(format!("timed out after {timeout}s")),
        qemu::Ending::PoweredOff => None,
    }
}

/// Prints the outcome of a boot, and the guest's log when it failed.
fn conclude(name: &str, what: &str, verdict: Option<&str>, res: &qemu::BootResult) {
    eprintln!(
        "xtask vm: {name} {what}{} in {:.1}s",
        if verdict.is_none() {
            "passed"
        } else {
            "FAILED"
        },
        res.elapsed.as_secs_f64()
    );
    if let Some(why) = verdict {
        show_guest_log(name, why, &res.console, &res.results);
    }
}

fn show_guest_log(name: &str, why: &str, console: &Path, results: &Path) {
    eprintln!("xtask vm: ---- {name} failed: {why}");
    let console = fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = console.lines().collect();
    let tail = &lines[lines.len().saturating_sub(150)..];
    eprintln!("xtask vm: ---- guest console (last {} lines):", tail.len());
    for l in tail {
        eprintln!("  {l}");
    }
    eprintln!("xtask vm: ---- guest test output ({}):", results.display());
    for l in fs::read_to_string(results).unwrap_or_default().lines() {
        eprintln!("  {l}");
    }
    eprintln!("xtask vm: ---- end of guest log");
}

fn select(names: &[String]) -> anyhow::Result<Vec<&'static Kernel>> {
    if names.iter().any(|n| n == "all") {
        return Ok(KERNELS.iter().filter(|k| !k.on_demand).collect());
    }
    names
        .iter()
        .map(|n| {
            kernels::find(n).with_context(|| {
                let known: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
                format!("unknown kernel {n:?} (known: {}, or all)", known.join(", "))
            })
        })
        .collect()
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.list {
        for k in KERNELS {
            println!(
                "{:<5} {:<40} {}{} ({})",
                k.name,
                k.package,
                k.suite.name(),
                if k.on_demand { ", on demand" } else { "" },
                k.why
            );
        }
        return Ok(());
    }
    let kernels = select(&args.kernel)?;
    if args.systemd {
        return run_systemd(args, &kernels);
    }
    let payload = build(args.no_build)?;
    if args.self_test {
        return self_test(args, kernels[0], &payload);
    }
    if let Some(cmd) = &args.run {
        let mut failed = Vec::new();
        for kernel in &kernels {
            let prep = prepare(kernel)?;
            let mode = Mode::Command(cmd.clone());
            if run_once(args, kernel, &prep, &payload, &mode, &[], "-run")?
                .0
                .is_some()
            {
                failed.push(kernel.name);
            }
        }
        if !failed.is_empty() {
            bail!("the command failed on {}", failed.join(", "));
        }
        return Ok(());
    }
    let filter = if args.tests.is_empty() {
        vec!["vm::".to_owned()]
    } else {
        args.tests.clone()
    };
    let start = Instant::now();
    let mut summary = Vec::new();
    for kernel in &kernels {
        let prep = prepare(kernel)?;
        let mut attempt = 0;
        let outcome = loop {
            let (verdict, report, dir) =
                run_once(args, kernel, &prep, &payload, &Mode::Tests, &filter, "")?;
            match verdict {
                None => break (None, report, dir, attempt),
                Some(_) if attempt < args.retries => {
                    attempt += 1;
                    eprintln!(
                        "xtask vm: retrying {} (attempt {})",
                        kernel.name,
                        attempt + 1
                    );
                }
                Some(why) => break (Some(why), report, dir, attempt),
            }
        };
        summary.push((kernel, outcome));
    }
    eprintln!(
        "\nxtask vm: summary ({:.0}s)",
        start.elapsed().as_secs_f64()
    );
    let mut failed = Vec::new();
    for (kernel, (verdict, report, dir, retries)) in &summary {
        let status = match (verdict, retries) {
            (None, 0) => "PASS".to_owned(),
            (None, n) => format!("PASS (after {n} retry)"),
            (Some(why), _) => format!("FAIL: {why}"),
        };
        eprintln!(
            "  {:<5} {} [{}]  {}",
            kernel.name,
            status,
            kernel.package,
            dir.display()
        );
        eprint!("{report}");
        if verdict.is_some() {
            failed.push(kernel.name);
        }
    }
    if !failed.is_empty() {
        bail!("VM tests failed on {}", failed.join(", "));
    }
    Ok(())
}

/// `--systemd`: the package under systemd as PID 1, on each kernel given.
fn run_systemd(args: &Args, kernels: &[&'static Kernel]) -> anyhow::Result<()> {
    let deb = crate::dist::make(true, false, args.no_build)?
        .deb
        .context("cargo xtask dist made no .deb")?;
    let payload = build(args.no_build)?;
    let filter = if args.tests.is_empty() {
        vec!["vm_systemd::".to_owned()]
    } else {
        args.tests.clone()
    };
    let mut failed = Vec::new();
    for kernel in kernels {
        let mut attempt = 0;
        loop {
            let (verdict, report, dir) = systemd::run(args, kernel, &payload, &deb, &filter)?;
            eprint!("{report}");
            match verdict {
                None => break,
                Some(_) if attempt < args.retries => {
                    attempt += 1;
                    eprintln!("xtask vm: retrying {} (systemd)", kernel.name);
                }
                Some(why) => {
                    eprintln!(
                        "xtask vm: {} systemd FAILED: {why} ({})",
                        kernel.name,
                        dir.display()
                    );
                    failed.push(kernel.name);
                    break;
                }
            }
        }
    }
    if !failed.is_empty() {
        bail!("systemd VM tests failed on {}", failed.join(", "));
    }
    Ok(())
}

/// Boots `kernel` once with the binaries in target/release (build them
/// first), runs `cmd` in the guest and returns its output (stdout and
/// stderr). For `cargo xtask bench`.
pub fn run_in_guest(kernel: &str, cmd: &str, timeout: Duration) -> anyhow::Result<String> {
    let kernel = *select(&[kernel.to_owned()])?.first().context("no kernel")?;
    let args = Args {
        kernel: vec![kernel.name.to_owned()],
        tests: Vec::new(),
        mem: 1024,
        timeout: timeout.as_secs(),
        retries: 0,
        no_build: true,
        quiet: true,
        run: Some(cmd.to_owned()),
        list: false,
        kernel_args: String::new(),
        self_test: false,
        systemd: false,
    };
    let payload = build(false)?;
    let prep = prepare(kernel)?;
    let (verdict, _, dir) = run_once(
        &args,
        kernel,
        &prep,
        &payload,
        &Mode::Command(cmd.to_owned()),
        &[],
        "-bench",
    )?;
    if let Some(why) = verdict {
        bail!("{why} (log in {})", dir.display());
    }
    Ok(fs::read_to_string(dir.join("results.txt"))?)
}

/// Each broken guest must be reported as a failure, with its log.
fn self_test(args: &Args, kernel: &Kernel, payload: &Payload) -> anyhow::Result<()> {
    let prep = prepare(kernel)?;
    let short = Args {
        timeout: args.timeout.min(45),
        retries: 0,
        kernel: args.kernel.clone(),
        tests: Vec::new(),
        mem: args.mem,
        no_build: true,
        quiet: args.quiet,
        list: false,
        kernel_args: String::new(),
        run: None,
        self_test: true,
        systemd: false,
    };
    let cases: [(&str, Mode, Vec<String>); 4] = [
        (
            "wrong expectation",
            Mode::Tests,
            vec!["vm_selftest::".to_owned()],
        ),
        ("guest panic", Mode::Panic, Vec::new()),
        ("timeout", Mode::Hang, Vec::new()),
        ("missing output", Mode::Silent, Vec::new()),
    ];
    let mut undetected = Vec::new();
    for (name, mode, filter) in cases {
        eprintln!("xtask vm: self-test: {name}");
        let (verdict, _, _) =
            run_once(&short, kernel, &prep, payload, &mode, &filter, "-selftest")?;
        match verdict {
            Some(why) => eprintln!("xtask vm: self-test: {name}: detected ({why})"),
            None => undetected.push(name),
        }
    }
    if !undetected.is_empty() {
        bail!(
            "the harness reported success for: {}",
            undetected.join(", ")
        );
    }
    eprintln!("xtask vm: self-test passed: every broken guest was reported as a failure");
    Ok(())
}

/// A kernel built in this checkout (`cargo xtask mutant`), booted like the
/// matrix's kernels but with no modules (what the tests need is built in)
/// and extra kernel parameters. The caller judges the outcome: a run may be
/// *expected* to panic.
pub struct LocalBoot<'a> {
    pub label: &'a str,
    pub bzimage: &'a Path,
    pub append: &'a str,
    /// Test name filters for the guest's test binary.
    pub tests: &'a [String],
    pub timeout: Duration,
    pub quiet: bool,
}

pub struct LocalOutcome {
    pub ending: qemu::Ending,
    pub report: Report,
    /// The guest's test output (second serial port) and kernel console.
    pub results: String,
    pub console: String,
    pub dir: PathBuf,
    pub elapsed: Duration,
}

pub fn boot_local(b: &LocalBoot<'_>, payload: &Payload) -> anyhow::Result<LocalOutcome> {
    let dir = workspace_root().join("target/vm-runs").join(b.label);
    fs::create_dir_all(&dir)?;
    let initrd = dir.join("initrd.cpio");
    guest::write_initramfs(&initrd, payload, &[], &Mode::Tests, b.tests, b.label)?;
    let res = qemu::boot(&qemu::Boot {
        label: b.label,
        kernel: b.bzimage,
        initrd: &initrd,
        dir: &dir,
        mem_mb: 1024,
        timeout: b.timeout,
        quiet: b.quiet,
        disk: None,
        append: b.append,
        forward: None,
    })?;
    let results = fs::read_to_string(&res.results).unwrap_or_default();
    Ok(LocalOutcome {
        ending: res.ending,
        report: Report::parse(&results),
        results,
        console: fs::read_to_string(&res.console).unwrap_or_default(),
        dir,
        elapsed: res.elapsed,
    })
}

/// A guest that runs one script: `cargo xtask soak`.
pub struct ScriptBoot<'a> {
    /// The kernel's short name (`6.12`).
    pub kernel: &'a str,
    /// Written to the guest's `/etc/guest-script.sh` and run (its output
    /// goes to `results.txt`); stress-ng is in the image.
    pub script: &'a str,
    /// Modules loaded besides the matrix's own (with their dependencies).
    pub modules: &'a [&'a str],
    /// As [`qemu::Boot::forward`].
    pub forward: Option<(u16, u16)>,
    pub mem_mb: u32,
    pub timeout: Duration,
    pub quiet: bool,
    pub no_build: bool,
    /// The run directory, `target/vm-runs/<kernel><tag>`.
    pub tag: &'a str,
    /// More kernel parameters (may be empty).
    pub append: &'a str,
}

/// The run directory of a [`ScriptBoot`] (known before it boots, so a
/// caller can watch its `results.txt` live).
pub fn script_dir(b: &ScriptBoot<'_>) -> PathBuf {
    workspace_root()
        .join("target/vm-runs")
        .join(format!("{}{}", b.kernel, b.tag))
}

/// Builds (unless `no_build`), prepares the kernel and boots it once;
/// returns the boot's result (the script's output is in its `results`).
pub fn boot_script(b: &ScriptBoot<'_>) -> anyhow::Result<qemu::BootResult> {
    let kernel = *select(&[b.kernel.to_owned()])?
        .first()
        .context("no kernel")?;
    let payload = build(b.no_build)?;
    let wanted: Vec<&str> = kernels::MODULES.iter().chain(b.modules).copied().collect();
    let prep = prepare_with(kernel, &wanted)?;
    let dir = script_dir(b);
    fs::create_dir_all(&dir)?;
    let initrd = dir.join("initrd.cpio");
    let mode = Mode::Script(b.script.to_owned());
    guest::write_initramfs(&initrd, &payload, &prep.modules, &mode, &[], kernel.name)?;
    qemu::boot(&qemu::Boot {
        label: kernel.name,
        kernel: &prep.vmlinuz,
        initrd: &initrd,
        dir: &dir,
        mem_mb: b.mem_mb,
        timeout: b.timeout,
        quiet: b.quiet,
        disk: None,
        append: b.append,
        forward: b.forward,
    })
}
