//! Tests for the mutant kernel (`cargo xtask mutant`): Debian's 6.1 source
//! with `xtask/mutants/mmrace-6.1.patch`, whose boot parameter
//! `mmrace_mutant=` removes one race fix per switch. `#[ignore]`d on the
//! host; the xtask boots the mutant once per switch and once with none, and
//! runs the matching test in the guest.
//!
//! Each test runs the daemon (`monitor run`, as shipped: its findings on
//! stdout, violations also in the kernel log) while a scenario opens one
//! race, trying until the expected finding appears (or `max_tries`), and
//! judges the daemon's verdicts:
//! * switch on (read from `/proc/cmdline`): a `violation` of the race's rule
//!   with one of its patterns (and accessor, for unstable faults);
//! * switch off: no violation; near misses of the race's rule;
//! * either way no violation of any other rule (no cross-talk).
//!
//! Each prints `VMH mutant …` lines (tries, verdicts) that the xtask collects.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use monitor_detector::{
    Finding, FindingKind, Severity,
    tracefile::{Line, parse_line},
};

use crate::util::{monitor_bin, scenario, tempdir::TempDir};

/// The switches this boot enabled (`mmrace_mutant=a,b` on the command line).
fn switches() -> Vec<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("mmrace_mutant="))
        .flat_map(|v| v.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `monitor run` in the background, its stdout (one JSON line per finding)
/// in a file.
struct Daemon {
    child: Child,
    stdout: PathBuf,
    stderr: mpsc::Receiver<String>,
    _dir: TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        // The guest's loopback starts down; the daemon serves on it.
        let _ = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        let dir = TempDir::new("mutant-daemon");
        let stdout = dir.path().join("findings.jsonl");
        let mut child = Command::new(monitor_bin())
            .args(["run", "--listen", "127.0.0.1:0"])
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn monitor run");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    let ready = line.starts_with("monitor: serving metrics on ");
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("the daemon did not start serving:\n{}", seen.join("\n"));
                }
            }
        }
        println!("VMH mutant daemon: {}", seen.join(" | "));
        Daemon {
            child,
            stdout,
            stderr: rx,
            _dir: dir,
        }
    }

    fn findings(&self) -> Vec<Finding> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| match parse_line(l) {
                Ok(Line::Finding(f)) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// SIGTERM (the detector closes every open window), then every finding.
    fn stop(mut self) -> Vec<Finding> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for the daemon");
        let mut err = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            err.push(l);
        }
        assert!(
            status.success(),
            "the daemon exited with {status}:\n{}",
            err.join("\n")
        );
        self.findings()
    }
}

/// What proves one switch's race.
struct Race {
    switch: &'static str,
    rule: FindingKind,
    /// Violation patterns (`details.pattern`) that prove it; any one will do.
    patterns: &'static [&'static str],
    /// Who must have made the violating access (`unstable_mm_fault`): any
    /// one of these accessors (`details.accessor`).
    accessors: &'static [&'static str],
    max_tries: u32,
    /// Whether a stock kernel must show a near miss (false where the near
    /// miss is itself a chance event).
    near_miss_required: bool,
}

/// The pattern a finding names; `unstable_mm_fault` has none and is named by
/// its fault result (`handled`, `sigbus`, …).
fn pattern(f: &Finding) -> String {
    let s = |k: &str| f.details.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    s("pattern")
        .or_else(|| s("fault_result").map(|r| r.split([' ', ';']).next().unwrap_or("").to_owned()))
        .unwrap_or_default()
}

/// Who made the access: the detector's `accessor` detail where it gives one,
/// else inferred from the tasks (a kernel thread; a remote task).
fn accessors(f: &Finding) -> Vec<String> {
    match f.details.get("accessor") {
        Some(serde_json::Value::String(a)) => return vec![a.clone()],
        Some(serde_json::Value::Array(a)) => {
            return a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        }
        _ => {}
    }
    let mut out = Vec::new();
    if f.tasks.iter().any(|t| t.kthread) {
        out.push("kthread".to_owned());
    }
    if f.details
        .get("remote_faults")
        .and_then(serde_json::Value::as_u64)
        .is_some_and(|n| n > 0)
    {
        out.push("remote".to_owned());
    }
    out
}

fn proves(r: &Race, f: &Finding) -> bool {
    f.kind == r.rule
        && f.severity == Severity::Violation
        && r.patterns.contains(&pattern(f).as_str())
        && (r.accessors.is_empty()
            || accessors(f)
                .iter()
                .any(|a| r.accessors.contains(&a.as_str())))
}

fn summary(f: &Finding) -> String {
    let tasks: Vec<String> = f
        .tasks
        .iter()
        .map(|t| format!("{}:{}{}", t.pid, t.comm, if t.kthread { "[k]" } else { "" }))
        .collect();
    format!(
        "rule={} severity={} pattern={} accessors={} mm={:#x} gen={} tasks={} :: {}",
        f.kind.name(),
        f.severity.name(),
        pattern(f),
        accessors(f).join("+"),
        f.mm,
        f.mm_gen,
        tasks.join(","),
        f.explanation
    )
}

/// Waits up to `limit` for `want` among the daemon's findings so far.
fn wait_for(d: &Daemon, limit: Duration, want: impl Fn(&Finding) -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if d.findings().iter().any(&want) {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `attempt` under the daemon until the race's evidence shows (the
/// violation with the switch on, a near miss without), then judges.
fn race(r: &Race, mut attempt: impl FnMut(u32) -> serde_json::Value) {
    let on = switches().iter().any(|s| s == r.switch);
    let mode = if on { "on" } else { "off" };
    let d = Daemon::start();
    let want = |f: &Finding| {
        if on {
            proves(r, f)
        } else {
            f.kind == r.rule && f.severity == Severity::NearMiss
        }
    };
    let mut tries = 0;
    let mut seen = false;
    while tries < r.max_tries && !seen {
        tries += 1;
        let report = attempt(tries);
        println!("VMH mutant {} try {tries}: {report}", r.switch);
        seen = wait_for(&d, Duration::from_secs(5), want);
    }
    let findings = d.stop();
    seen = seen || findings.iter().any(want);
    for f in findings
        .iter()
        .filter(|f| f.severity == Severity::Violation || f.kind == r.rule)
    {
        println!("VMH mutant {} finding {}", r.switch, summary(f));
    }
    let crosstalk: Vec<String> = findings
        .iter()
        .filter(|f| f.severity == Severity::Violation && !(on && f.kind == r.rule))
        .map(summary)
        .collect();
    let count = |s: Severity| {
        findings
            .iter()
            .filter(|f| f.kind == r.rule && f.severity == s)
            .count()
    };
    println!(
        "VMH mutant result switch={} mode={mode} tries={tries} seen={seen} violations={} near_misses={} other_violations={}",
        r.switch,
        count(Severity::Violation),
        count(Severity::NearMiss),
        crosstalk.len()
    );
    assert!(
        crosstalk.is_empty(),
        "violations outside the switched race (mmrace_mutant {mode}): {crosstalk:#?}"
    );
    if on {
        assert!(
            seen,
            "mmrace_mutant={}: no {} violation ({:?}, accessor {:?}) in {tries} tries; findings: {:#?}",
            r.switch,
            r.rule.name(),
            r.patterns,
            r.accessors,
            findings.iter().map(summary).collect::<Vec<_>>()
        );
    } else if r.near_miss_required {
        assert!(
            seen,
            "stock kernel: no {} near miss in {tries} tries",
            r.rule.name()
        );
    } else if !seen {
        println!(
            "VMH note {}: no near miss in {tries} tries (a chance event on a stock kernel)",
            r.switch
        );
    }
}

const UFFD: Race = Race {
    switch: "uffd",
    rule: FindingKind::UffdCopyVsMmChange,
    patterns: &["copy_inside_window"],
    accessors: &[],
    max_tries: 3,
    near_miss_required: true,
};

/// UFFDIO_COPY in a loop while a fork's UFFD_EVENT_FORK sits unread for
/// 500 ms: without the mmap_changing checks the copies go through.
#[test]
#[ignore = "mutant kernel only: cargo xtask mutant"]
fn race_uffd() {
    race(&UFFD, |_| uffd_fork());
}

fn uffd_fork() -> serde_json::Value {
    scenario(&[
        "uffd-race",
        "--event",
        "fork",
        "--delay-ms",
        "500",
        "--allow-no-eagain",
    ])
}

/// A vhost worker (kthread_use_mm) kicked after the OOM reaper zapped its
/// owner's ring, and the owner's own blocked thread copying from a reaped
/// page (`--owner-copy`): without check_stable_address_space both faults are
/// handled (zero pages). The detector judges both: the kthread's
/// (`kthread`) and the owner's kernel-mode copy (`owner_kernel`).
#[test]
#[ignore = "mutant kernel only: cargo xtask mutant"]
fn race_unstable() {
    race(
        &Race {
            switch: "unstable",
            rule: FindingKind::UnstableMmFault,
            patterns: &["handled"],
            accessors: &["kthread", "owner_kernel"],
            max_tries: 3,
            near_miss_required: true,
        },
        |_| scenario(&["oom-reap", "--vhost", "--owner-copy"]),
    );
}

/// Execs with 256 KiB of argv (a 64-page temporary stack) on CPU 0 while
/// `migrate_pages(2)` on CPU 1 moves the exec'ing child between nodes in a
/// loop: once `exec_mmap` made the new mm the child's, its only pages are
/// the temporary stack, flagged until `setup_arg_pages` moved it. Without
/// `invalid_migration_vma` the migration installs entries in it. The whole
/// migration holds the mmap read lock, so the stack never moves in the middle
/// of it and the entries are removed again: the violation is logged and the
/// kernel lives. (`--with move-pages` migrates after dropping the lock; with
/// the switch it left an entry behind and crashed the guest in swapops
/// before the daemon could log anything: docs/mutants.md.)
#[test]
#[ignore = "mutant kernel only: cargo xtask mutant"]
fn race_tempstack() {
    race(
        &Race {
            switch: "tempstack",
            rule: FindingKind::LeftoverMigrationEntry,
            patterns: &["migration_entry_in_temp_stack"],
            accessors: &[],
            max_tries: 10,
            near_miss_required: true,
        },
        |_| {
            scenario(&[
                "exec-migrate",
                "--with",
                "migrate-pages",
                "--count",
                "100",
                "--big-args",
                "8",
            ])
        },
    );
}

/// A memcg OOM victim held in the kernel, released at two moments in turn:
/// * odd tries, 500 ms after the kill, long before the reaper's 2 s delay:
///   `exit_mmap` finishes first. Stock: it set `MMF_OOM_SKIP`, so the reaper
///   never starts (no finding). Without the barrier and the reapers'
///   re-checks the reaper runs on the torn-down mm: `reap_after_exit_mmap_end`.
///   Deterministic, and the kernel survives it (the VMA tree is empty).
/// * even tries, `--overlap`: released the moment the reaper (CPU 1) starts
///   zapping, the victim on CPU 0, so `exit_mmap` runs into the reap. Stock:
///   a near miss (`overlap`). Without the write lock `exit_mmap` frees the
///   page tables under the reaper, which may crash in `unmap_page_range`
///   before `exit_mmap` returns, i.e. before the first event that proves
///   the violation: the "Bad page map" crash 212925802454 fixed, measured (docs/mutants.md).
#[test]
#[ignore = "mutant kernel only: cargo xtask mutant"]
fn race_exitlock() {
    race(
        &Race {
            switch: "exitlock",
            rule: FindingKind::ReaperExitOverlap,
            patterns: &[
                "exit_mmap_end_inside_reap",
                "reap_after_exit_mmap_end",
                "mmdrop_inside_reap",
            ],
            accessors: &[],
            max_tries: 6,
            near_miss_required: true,
        },
        |try_no| {
            if try_no % 2 == 1 {
                scenario(&["oom-reap", "--release-ms", "500"])
            } else {
                scenario(&["oom-reap", "--overlap"])
            }
        },
    );
}

/// The evidence survives the crash: a violation the daemon found is in the
/// kernel log, then the kernel is crashed on purpose (sysrq c). The xtask
/// boots this in its expect-panic mode and passes it only if the console
/// shows the violation line before the panic.
#[test]
#[ignore = "mutant kernel only: cargo xtask mutant (expect-panic boot)"]
fn kmsg_line_survives_a_panic() {
    assert!(
        switches().iter().any(|s| s == UFFD.switch),
        "boot with mmrace_mutant=uffd"
    );
    let d = Daemon::start();
    let _ = uffd_fork();
    assert!(
        wait_for(&d, Duration::from_secs(10), |f| proves(&UFFD, f)),
        "no violation to log"
    );
    println!("VMH mutant panic: crashing the kernel with the daemon running");
    // The daemon stays up: the crash must not depend on it flushing anything.
    std::fs::write("/proc/sysrq-trigger", "c").expect("sysrq-trigger");
    unreachable!("the kernel survived sysrq c");
}
