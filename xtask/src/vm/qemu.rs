//! Booting one guest under QEMU (TCG: KVM hangs on these machines), streaming
//! its console, enforcing a timeout and stopping early on a kernel panic or
//! lockup.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;

/// Makes the child die with the thread that spawns it (`PR_SET_PDEATHSIG`):
/// an xtask stopped by SIGTERM or SIGKILL leaves no QEMU (or Prometheus)
/// running. Call from the thread that waits for the child.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and calls only prctl(2),
    // getppid(2) and _exit(2), all async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody is left
            // to send the signal.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    };
    cmd
}

pub struct Boot<'a> {
    pub label: &'a str,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub dir: &'a Path,
    pub mem_mb: u32,
    pub timeout: Duration,
    pub quiet: bool,
    /// A raw disk image attached as virtio-blk (`/dev/vda`).
    pub disk: Option<&'a Path>,
    /// More kernel parameters, after the harness's own (may be empty).
    pub append: &'a str,
    /// A virtio NIC on QEMU's user network with this host port (on
    /// 127.0.0.1) forwarded to this guest port at 10.0.2.15 (`restrict=on`:
    /// the guest reaches nothing else). `cargo xtask soak` scrapes through it.
    pub forward: Option<(u16, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself (the guest powered off).
    PoweredOff,
    /// A panic or lockup was seen on the console.
    Panic,
    /// The timeout expired.
    Timeout,
}

pub struct BootResult {
    pub ending: Ending,
    pub console: PathBuf,
    pub results: PathBuf,
    pub elapsed: Duration,
}

/// Console lines that mean the guest kernel is broken.
pub const FATAL: &[&str] = &[
    "Kernel panic",
    "BUG: soft lockup",
    "watchdog: BUG:",
    "rcu_sched self-detected stall",
    "BUG: unable to handle",
    "Oops:",
    "general protection fault",
];

/// Held while a guest runs: one TCG guest saturates both cores of these
/// machines, so two at once (from two checkouts, or a test and a benchmark)
/// only stretch each other's timings until one times out.
const VM_LOCK: &str = "/tmp/mm-race-monitor-vm.lock";

/// Waits for the machine-wide VM lock (`flock`, released when the file closes).
fn vm_lock(quiet: bool) -> anyhow::Result<fs::File> {
    use std::os::fd::AsRawFd as _;
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(VM_LOCK)
        .with_context(|| format!("opening the VM lock {VM_LOCK}"))?;
    // SAFETY: flock on an fd we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if !quiet {
            eprintln!("vm: another guest is running on this machine; waiting for {VM_LOCK}");
        }
        // SAFETY: as above, blocking this time.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            anyhow::bail!("locking {VM_LOCK}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(f)
}

pub fn boot(b: &Boot<'_>) -> anyhow::Result<BootResult> {
    let _lock = vm_lock(b.quiet)?;
    fs::create_dir_all(b.dir)?;
    let console = b.dir.join("console.txt");
    let results = b.dir.join("results.txt");
    let _ = fs::remove_file(&results);
    let half = b.mem_mb / 2;
    let mut cmd = Command::new("qemu-system-x86_64");
    // MMRACE_VM_TCG_THREAD=single runs both vCPUs on one host thread (a
    // diagnosis: multi-threaded TCG's handling of code one vCPU patches while
    // the other runs it, docs/kernel.md).
    let accel = match std::env::var("MMRACE_VM_TCG_THREAD").as_deref() {
        Ok("single") => "tcg,thread=single",
        _ => "tcg",
    };
    cmd.args(["-accel", accel, "-cpu", "max", "-smp", "2"])
        .args(["-m", &format!("{}M", b.mem_mb)])
        // Two NUMA nodes, one CPU each (migrate_pages(2) between them).
        .args(["-object", &format!("memory-backend-ram,id=m0,size={half}M")])
        .args([
            "-object",
            &format!("memory-backend-ram,id=m1,size={}M", b.mem_mb - half),
        ])
        .args(["-numa", "node,nodeid=0,cpus=0,memdev=m0"])
        .args(["-numa", "node,nodeid=1,cpus=1,memdev=m1"])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nodefaults",
        ])
        .args(["-serial", "stdio"])
        .args(["-serial", &format!("file:{}", results.display())])
        .arg("-kernel")
        .arg(b.kernel)
        .arg("-initrd")
        .arg(b.initrd)
        .arg("-append")
        .arg(
            format!(
                "console=ttyS0 panic=-1 oops=panic softlockup_panic=1 quiet loglevel=4 \
                 transparent_hugepage=madvise {}",
                b.append
            )
            .trim_end(),
        )
        .args(b.disk.map_or_else(Vec::new, |d| {
            vec![
                "-drive".to_owned(),
                format!("file={},format=raw,if=virtio,cache=unsafe", d.display()),
            ]
        }))
        .args(b.forward.map_or_else(Vec::new, |(host, guest)| {
            vec![
                "-netdev".to_owned(),
                format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{host}-10.0.2.15:{guest}"),
                "-device".to_owned(),
                "virtio-net-pci,netdev=n0".to_owned(),
            ]
        }))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = die_with_parent(&mut cmd)
        .spawn()
        .context("starting qemu-system-x86_64 (install qemu-system-x86)")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let fatal = Arc::new(AtomicBool::new(false));
    let reader = {
        let fatal = fatal.clone();
        let label = b.label.to_owned();
        let quiet = b.quiet;
        let mut log = fs::File::create(&console)?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let t = start.elapsed().as_secs_f64();
                let _ = writeln!(log, "[{t:8.3}] {line}");
                if !quiet {
                    eprintln!("[{label} {t:7.2}] {line}");
                }
                if FATAL.iter().any(|f| line.contains(f)) {
                    fatal.store(true, Ordering::Relaxed);
                }
            }
        })
    };
    let mut ending = Ending::PoweredOff;
    let mut panic_seen_at: Option<Instant> = None;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if fatal.load(Ordering::Relaxed) {
            // Give the console a moment to print the backtrace, then stop.
            let at = *panic_seen_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_secs(2) {
                ending = Ending::Panic;
                let _ = child.kill();
                break;
            }
        }
        if start.elapsed() > b.timeout {
            ending = Ending::Timeout;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
    let _ = reader.join();
    if ending == Ending::PoweredOff && fatal.load(Ordering::Relaxed) {
        // panic=-1 makes QEMU exit on its own right after a panic.
        ending = Ending::Panic;
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    if !stderr.trim().is_empty() {
        let mut log = fs::OpenOptions::new().append(true).open(&console)?;
        writeln!(log, "--- qemu stderr ---\n{stderr}")?;
    }
    Ok(BootResult {
        ending,
        console,
        results,
        elapsed: start.elapsed(),
    })
}
