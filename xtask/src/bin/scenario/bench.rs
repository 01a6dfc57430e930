//! Overhead benchmarks, run where they are measured (the host, or a guest).
//!
//! Each workload runs `rounds` times without the monitor and `rounds` times
//! with `monitor trace` attached, alternating (without, with, without, …), so
//! slow drift of the machine affects both sides alike; the monitor is attached
//! before and detached after each measured run, outside the timing. The
//! result per workload is the median of the per-pair ratios (with / without)
//! and their spread (min, max). Nothing here asserts a timing.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::{
    bpfstats::{self, StatsEnabled},
    hold::{fork_child, touch_anon},
    sys::{self, Memcg, wait_child},
    uffd_storm::{self, StormResult},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// 40 × (mmap 64 MiB, touch every page, munmap): the page-fault and
    /// unmap paths.
    Faults,
    /// 3000 × fork + exec of a small static binary (`--exe`).
    Exec,
    /// Page migration: 80 × migrate_pages(2) of 16 MiB between two NUMA
    /// nodes if there are two, else 16 × (fragment 64 MiB, compact_memory).
    Migration,
    /// 40 memcg OOM kills in a row (32 MiB limit): mark_victim, reaping,
    /// exit_mmap.
    Oom,
    /// stress-ng (Debian package `stress-ng`), one instance, a fixed number
    /// of bogo-ops per run (so the time ratio is the inverse of the bogo-ops/s
    /// ratio): `--userfaultfd` (UFFDIO_COPY, no event feature) 300000 ops,
    StressUserfaultfd,
    /// `--fault` 9000 ops (minor and major page faults),
    StressFault,
    /// `--exec` 2000 ops (run as uid 65534: stress-ng refuses root),
    StressExec,
    /// `--mremap` 10 ops,
    StressMremap,
    /// `--numa` 12 ops (mbind, migrate_pages, move_pages),
    StressNuma,
    /// `--oom-pipe` 20 ops (with `--pathological`: it grows pipes until the
    /// OOM killer acts),
    StressOomPipe,
    /// `--mmapfork` 1 op (32 children mmap, touch and exit).
    StressMmapfork,
}

impl Workload {
    /// The stress-ng stressor and its bogo-ops per run at scale 1.
    fn stressor(self) -> Option<(&'static str, f64)> {
        Some(match self {
            Workload::StressUserfaultfd => ("userfaultfd", 300_000.0),
            Workload::StressFault => ("fault", 9000.0),
            Workload::StressExec => ("exec", 2000.0),
            Workload::StressMremap => ("mremap", 10.0),
            Workload::StressNuma => ("numa", 12.0),
            Workload::StressOomPipe => ("oom-pipe", 20.0),
            Workload::StressMmapfork => ("mmapfork", 1.0),
            _ => return None,
        })
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// The monitor binary to attach.
    #[arg(long, default_value = "monitor")]
    monitor: String,
    /// A monitor configuration to measure, `NAME=ARGS` (ARGS: extra `monitor
    /// trace` arguments separated by spaces), e.g. `kprobe=--max-rung kprobe`.
    /// Repeatable: every round runs the workload once bare and once per
    /// variant, so variants are compared within the same run. Default: one
    /// variant, `default=` (the best rung the kernel allows).
    #[arg(long, value_name = "NAME=ARGS", value_parser = parse_variant)]
    variant: Vec<Variant>,
    /// Workloads to run (default: all).
    #[arg(long, value_enum)]
    workload: Vec<Workload>,
    /// Measured runs per side.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Scale of each run (1 = the documented size).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Also measure the highest UFFDIO_COPY event rate with zero loss.
    #[arg(long)]
    burst: bool,
    /// Program (and arguments) for the exec storm: a small static binary.
    #[arg(long, default_value = "/bin/busybox true")]
    exe: String,
}

#[derive(Clone, Debug)]
pub struct Variant {
    name: String,
    args: Vec<String>,
}

fn parse_variant(s: &str) -> Result<Variant, String> {
    let (name, args) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=ARGS, e.g. kprobe=--max-rung kprobe"))?;
    if name.is_empty() {
        return Err(format!("{s:?}: the variant needs a name"));
    }
    Ok(Variant {
        name: name.to_owned(),
        args: args.split_whitespace().map(str::to_owned).collect(),
    })
}

impl BenchArgs {
    fn variants(&self) -> Vec<Variant> {
        if self.variant.is_empty() {
            vec![Variant {
                name: "default".to_owned(),
                args: Vec::new(),
            }]
        } else {
            self.variant.clone()
        }
    }
}

/// A `monitor trace` attached for one measured run.
struct Attached {
    child: Child,
    stderr: mpsc::Receiver<String>,
    /// The monitor's CPU time (ns) once its hooks were attached.
    cpu_at_attach: u64,
}

/// What a monitor said and spent while attached.
struct Detached {
    summary: String,
    /// User + system CPU of the monitor process while attached (its reader
    /// thread: draining the ring, decoding, the detector), seconds.
    cpu_s: f64,
}

/// CPU time a process has run, in nanoseconds (`/proc/PID/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

impl Attached {
    fn start(monitor: &str, extra: &[String], ring: Option<&str>) -> anyhow::Result<Attached> {
        let mut cmd = Command::new(monitor);
        cmd.args(["trace", "--quiet"]).args(extra);
        if let Some(r) = ring {
            cmd.args(["--ring-size", r]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {monitor}"))?;
        let stderr = child.stderr.take().context("monitor stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(l) if l.contains("hooks attached") => break,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    bail!("the monitor did not attach within 120 s");
                }
            }
        }
        let cpu_at_attach = cpu_ns(child.id());
        Ok(Attached {
            child,
            stderr: rx,
            cpu_at_attach,
        })
    }

    /// Stops the monitor; returns its summary line (produced/delivered/lost)
    /// and the CPU it spent while attached.
    fn stop(mut self) -> anyhow::Result<Detached> {
        let cpu = cpu_ns(self.child.id()).saturating_sub(self.cpu_at_attach);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait()?;
        let mut summary = String::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            if l.contains("traced, ended by") {
                summary = l;
            }
        }
        if !status.success() {
            bail!("the monitor exited with {status}");
        }
        Ok(Detached {
            summary,
            cpu_s: cpu as f64 / 1e9,
        })
    }
}

/// `<key> N` from the monitor's summary line (`produced`, `lost`).
fn count(summary: &str, key: &str) -> Option<u64> {
    let rest = summary.split(&format!("{key} ")).nth(1)?;
    rest.split_whitespace()
        .next()?
        .trim_end_matches(',')
        .parse()
        .ok()
}

fn faults(scale: f64) -> anyhow::Result<()> {
    let len = 64 << 20;
    for _ in 0..((40.0 * scale) as usize).max(1) {
        let p = touch_anon(len)?;
        // SAFETY: our own mapping.
        unsafe { libc::munmap(p.cast(), len) };
    }
    Ok(())
}

fn exec(scale: f64, exe: &str) -> anyhow::Result<()> {
    let mut words = exe.split_whitespace();
    let prog = words.next().context("--exe is empty")?;
    let rest: Vec<&str> = words.collect();
    for _ in 0..((3000.0 * scale) as usize).max(1) {
        let status = Command::new(prog)
            .args(&rest)
            .status()
            .with_context(|| format!("exec {exe}"))?;
        if !status.success() {
            bail!("{exe} failed");
        }
    }
    Ok(())
}

fn two_nodes() -> bool {
    std::fs::read_to_string("/sys/devices/system/node/online").is_ok_and(|s| s.trim() != "0")
}

fn migration(scale: f64) -> anyhow::Result<()> {
    if two_nodes() {
        let len = 16 << 20;
        let p = touch_anon(len)?;
        for i in 0..((80.0 * scale) as usize).max(1) {
            let (from, to): (u64, u64) = if i % 2 == 0 { (1, 2) } else { (2, 1) };
            // SAFETY: single-word node masks.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_migrate_pages,
                    0,
                    64,
                    &raw const from,
                    &raw const to,
                )
            };
            if rc < 0 {
                bail!("migrate_pages: {}", std::io::Error::last_os_error());
            }
        }
        // SAFETY: our own mapping.
        unsafe { libc::munmap(p.cast(), len) };
    } else {
        let page = sys::page_size();
        for _ in 0..((16.0 * scale) as usize).max(1) {
            let len = 64 << 20;
            let p = touch_anon(len)?;
            for off in (0..len).step_by(2 * page) {
                // SAFETY: inside our mapping.
                unsafe { libc::madvise(p.add(off).cast(), page, libc::MADV_DONTNEED) };
            }
            std::fs::write("/proc/sys/vm/compact_memory", "1")?;
            // SAFETY: our own mapping.
            unsafe { libc::munmap(p.cast(), len) };
        }
    }
    Ok(())
}

fn oom(scale: f64) -> anyhow::Result<()> {
    // SAFETY: getpid has no preconditions.
    let memcg = Memcg::create(
        &format!("mmrace-bench-{}", unsafe { libc::getpid() }),
        32 << 20,
    )?;
    for _ in 0..((40.0 * scale) as usize).max(1) {
        let pid = fork_child(|| {
            // SAFETY: getpid has no preconditions.
            if memcg.add(unsafe { libc::getpid() }).is_err() {
                return 1;
            }
            loop {
                let _ = touch_anon(1 << 20);
            }
        })?;
        wait_child(pid, Duration::from_secs(60))?;
    }
    Ok(())
}

/// One stress-ng run of `ops` bogo-ops of `name` (one instance).
fn stress_ng(name: &str, ops: f64) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let ops = (ops as u64).max(1).to_string();
    let mut cmd = Command::new("stress-ng");
    cmd.args([&format!("--{name}"), "1", &format!("--{name}-ops"), &ops])
        .args(["--timeout", "600s", "--temp-path", "/tmp", "--quiet"])
        .current_dir("/tmp")
        // In the VM guest its libraries sit at their host paths with no ld.so cache.
        .env(
            "LD_LIBRARY_PATH",
            "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match name {
        "oom-pipe" => {
            cmd.arg("--pathological");
        }
        // stress-ng's exec stressor refuses to run as root.
        "exec" => {
            cmd.uid(65534).gid(65534);
        }
        _ => {}
    }
    let out = cmd
        .output()
        .context("running stress-ng (install it: scripts/setup.sh --for-tests)")?;
    if !out.status.success() {
        bail!(
            "stress-ng --{name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// User + system CPU of this process and its waited-for children, seconds.
fn cpu_time() -> f64 {
    let get = |who| {
        // SAFETY: getrusage writes into the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::getrusage(who, &raw mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// One run: (wall seconds, CPU seconds of the workload's own processes). The
/// BPF programs run in the context of the task that hits the hook, so their
/// cost shows in both; CPU time is less sensitive to scheduling noise.
fn run_workload(w: Workload, args: &BenchArgs) -> anyhow::Result<(f64, f64)> {
    let (t, c) = (Instant::now(), cpu_time());
    match w {
        Workload::Faults => faults(args.scale)?,
        Workload::Exec => exec(args.scale, &args.exe)?,
        Workload::Migration => migration(args.scale)?,
        Workload::Oom => oom(args.scale)?,
        _ => {
            let (name, ops) = w.stressor().context("not a stress-ng workload")?;
            stress_ng(name, ops * args.scale)?;
        }
    }
    Ok((t.elapsed().as_secs_f64(), cpu_time() - c))
}

/// (median, min, max) of a sample.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let lo = v.iter().copied().fold(f64::MAX, f64::min);
    let hi = v.iter().copied().fold(f64::MIN, f64::max);
    (median(&mut v.to_vec()), lo, hi)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn bench_workload(w: Workload, args: &BenchArgs) -> anyhow::Result<Value> {
    let variants = args.variants();
    // One untimed warm-up run.
    run_workload(w, args)?;
    let (mut base, mut base_cpu) = (Vec::new(), Vec::new());
    let n = variants.len();
    let (mut with, mut ratios, mut cpu_ratios) = (
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
    );
    let mut lost = vec![0u64; n];
    let mut produced = vec![0u64; n];
    let mut cpu = vec![0f64; n];
    // A variant with `--output FILE` (`--force`): the trace file's size per run.
    let mut bytes = vec![0u64; n];
    let outputs: Vec<Option<&String>> = variants
        .iter()
        .map(|v| {
            let i = v.args.iter().position(|a| a == "--output" || a == "-o")?;
            v.args.get(i + 1)
        })
        .collect();
    for round in 0..args.rounds {
        // Sides in a rotating order (bare first, then second, …), so that
        // what a run leaves behind (freed memory, caches) favours none.
        let mut results: Vec<Option<(f64, f64)>> = vec![None; n + 1];
        for k in 0..=n {
            let side = (round + k) % (n + 1);
            results[side] = Some(if side == 0 {
                run_workload(w, args)?
            } else {
                let i = side - 1;
                let attached = Attached::start(&args.monitor, &variants[i].args, None)?;
                let r = run_workload(w, args)?;
                let d = attached.stop()?;
                lost[i] += count_of(&d.summary, "lost")?;
                if let Some(f) = outputs[i] {
                    bytes[i] += std::fs::metadata(f).map_or(0, |m| m.len());
                }
                produced[i] += count_of(&d.summary, "produced")?;
                cpu[i] += d.cpu_s;
                r
            });
        }
        let (b, bc) = results[0].context("bare run")?;
        base.push(b);
        base_cpu.push(bc);
        for i in 0..n {
            let (m, mc) = results[i + 1].context("monitored run")?;
            ratios[i].push(m / b);
            cpu_ratios[i].push(mc / bc.max(1e-6));
            with[i].push(m);
        }
    }
    let mut profiles = Vec::new();
    for v in &variants {
        profiles.push(profile(w, args, v)?);
    }
    let per_variant: Vec<Value> = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (med, lo, hi) = stats(&ratios[i]);
            let (cmed, clo, chi) = stats(&cpu_ratios[i]);
            let minutes = with[i].iter().sum::<f64>() / 60.0;
            json!({
                "variant": v.name,
                "monitor_args": v.args,
                "median_ratio": med,
                "min_ratio": lo,
                "max_ratio": hi,
                "cpu_median_ratio": cmed,
                "cpu_min_ratio": clo,
                "cpu_max_ratio": chi,
                "median_with_s": median(&mut with[i]),
                "events_per_run": produced[i] / args.rounds.max(1) as u64,
                "events_lost": lost[i],
                "records_per_min": produced[i] as f64 / minutes.max(1e-9),
                "trace_bytes_per_min": outputs[i].map(|_| bytes[i] as f64 / minutes.max(1e-9)),
                "monitor_cpu_s_per_run": cpu[i] / args.rounds.max(1) as f64,
                "bpf": profiles[i],
            })
        })
        .collect();
    Ok(json!({
        "workload": format!("{w:?}").to_lowercase(),
        "rounds": args.rounds,
        "median_without_s": median(&mut base),
        "median_cpu_without_s": median(&mut base_cpu),
        "variants": per_variant,
    }))
}

/// One more monitored run with the kernel's BPF statistics on: the time the
/// monitor's programs ran, in total and per program and call. Exact, unlike
/// the wall-clock ratios, but blind to the cost of reaching a program
/// (trampoline, kprobe trap, tracepoint dispatch).
fn profile(w: Workload, args: &BenchArgs, v: &Variant) -> anyhow::Result<Value> {
    let before = bpfstats::snapshot().context("listing BPF programs")?;
    let attached = Attached::start(&args.monitor, &v.args, None)?;
    let stats = StatsEnabled::on().context("enabling kernel.bpf_stats_enabled")?;
    let s0 = bpfstats::snapshot()?;
    let (_, workload_cpu) = run_workload(w, args)?;
    let s1 = bpfstats::snapshot()?;
    drop(stats);
    attached.stop()?;
    let mut progs: Vec<(String, u64, u64)> = s1
        .iter()
        .filter(|(id, _)| !before.contains_key(id))
        .map(|(id, (name, now))| {
            let then = s0.get(id).map(|x| x.1).unwrap_or_default();
            (
                name.clone(),
                now.run_cnt.saturating_sub(then.run_cnt),
                now.run_time_ns.saturating_sub(then.run_time_ns),
            )
        })
        .filter(|p| p.1 > 0)
        .collect();
    progs.sort_by_key(|p| std::cmp::Reverse(p.2));
    let total_ns: u64 = progs.iter().map(|p| p.2).sum();
    Ok(json!({
        "bpf_ms_per_run": total_ns as f64 / 1e6,
        "share_of_workload_cpu": total_ns as f64 / 1e9 / workload_cpu.max(1e-6),
        "programs": progs.iter().take(6).map(|(name, calls, ns)| json!({
            "program": name,
            "calls": calls,
            "ns_per_call": *ns as f64 / (*calls).max(1) as f64,
        })).collect::<Vec<_>>(),
    }))
}

/// UFFDIO_COPY calls that fail fast with -EAGAIN inside a held change
/// window: each is one ioctl and one record on every rung. `threads` threads
/// each run `count` of them, paced at `rate`/s per thread (0 = flat out);
/// returns the achieved total rate.
fn uffd_burst(count: u64, rate: u64, threads: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || uffd_storm::storm(count, rate, StormResult::Eagain)))
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("burst thread panicked"))??;
    }
    Ok((count * threads as u64) as f64 / start.elapsed().as_secs_f64())
}

/// Per variant: paced rates up to what the generator can reach with the
/// monitor attached, then flat out on every CPU; each step two seconds long
/// (at the target rate), with the records produced and lost.
fn burst(args: &BenchArgs) -> anyhow::Result<Value> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let probe = uffd_burst(20_000, 0, 1)?;
    let alone_one = uffd_burst(((probe * 2.0) as u64).max(10_000), 0, 1)?;
    let alone_all = uffd_burst(((alone_one * 2.0) as u64).max(10_000), 0, cpus)?;
    let mut per_variant = Vec::new();
    for v in args.variants() {
        let mut best = 0.0_f64;
        let mut tried = Vec::new();
        let mut step = |target: Option<u64>, threads: usize| -> anyhow::Result<bool> {
            let attached = Attached::start(&args.monitor, &v.args, None)?;
            let (count, rate) = match target {
                Some(r) => (r * 2 / threads as u64, r / threads as u64),
                // About two seconds' worth, whatever the machine.
                None => (((alone_one * 2.0) as u64).max(10_000), 0),
            };
            let achieved = uffd_burst(count, rate, threads)?;
            let d = attached.stop()?;
            let l = count_of(&d.summary, "lost")?;
            let p = count_of(&d.summary, "produced")?;
            tried.push(json!({
                "target_rate": target,
                "threads": threads,
                "achieved_rate": achieved,
                "produced": p,
                "lost": l,
                "monitor_cpu_s": d.cpu_s,
                "monitor_ns_per_record": if p > 0 { d.cpu_s * 1e9 / p as f64 } else { 0.0 },
            }));
            if l == 0 {
                best = best.max(achieved);
            }
            // Paced steps stop when the generator can no longer keep up.
            Ok(l == 0 && target.is_none_or(|r| achieved > r as f64 * 0.9))
        };
        for rate in [
            100_000u64, 250_000, 500_000, 1_000_000, 1_500_000, 2_000_000,
        ] {
            if rate as f64 > alone_all * 1.05 || !step(Some(rate), cpus)? {
                break;
            }
        }
        step(None, cpus)?;
        per_variant.push(json!({
            "variant": v.name,
            "max_rate_without_loss": best,
            "steps": tried,
        }));
    }
    Ok(json!({
        "workload": "burst",
        "generator_rate_unmonitored_one_thread": alone_one,
        "generator_rate_unmonitored": alone_all,
        "threads": cpus,
        "variants": per_variant,
    }))
}

fn count_of(summary: &str, key: &str) -> anyhow::Result<u64> {
    count(summary, key).with_context(|| format!("no {key:?} in the monitor's summary: {summary:?}"))
}

pub fn run(args: &BenchArgs) -> anyhow::Result<Value> {
    let workloads = if args.workload.is_empty() {
        vec![
            Workload::Faults,
            Workload::Exec,
            Workload::Migration,
            Workload::Oom,
        ]
    } else {
        args.workload.clone()
    };
    let mut results = Vec::new();
    for w in workloads {
        eprintln!("bench: {w:?}");
        results.push(bench_workload(w, args)?);
    }
    if args.burst {
        eprintln!("bench: burst");
        results.push(burst(args)?);
    }
    Ok(json!({
        "scenario": "bench",
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "results": results,
    }))
}
