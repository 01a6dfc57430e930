//! `cargo xtask bench`: the monitor's cost, measured where it runs.
//!
//! * host: `scenario bench` with the release monitor on this machine's best
//!   rung (on the CI host that is the tracepoint rung), plus the UFFDIO_COPY
//!   burst (highest event rate with zero ring-buffer loss);
//! * VM: the same workloads in one guest, each round running the workload
//!   bare and then once per rung (fentry, kprobe, tracepoint), so the rungs
//!   are compared side by side; TCG figures compare rungs, they are not
//!   absolute;
//! * stress: the stress-ng stressors that hit the hooks (`userfaultfd`,
//!   `fault`, `exec`, `mremap`, `numa`, `oom-pipe`, `mmapfork`), bare vs
//!   monitored alternating, on the host and in the guest per rung, with the
//!   records produced and lost and the trace bytes per minute (`--output`);
//! * detector: `cargo bench -p monitor-detector --bench replay`;
//! * daemon: `monitor run` idle, RSS and CPU over a window with a scrape every
//!   15 s, like a Prometheus server would.
//!
//! Everything is printed as it is measured and collected in
//! `target/bench/results.json`; nothing here asserts a timing. BENCHMARKS.md
//! records the results with these commands.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::vm;

#[derive(clap::Args)]
pub struct Args {
    /// Parts to run (default: all of them).
    #[arg(long, value_enum)]
    only: Vec<Part>,
    /// Measured rounds per workload on the host.
    #[arg(long, default_value_t = 11)]
    rounds: usize,
    /// Measured rounds per workload in the VM.
    #[arg(long, default_value_t = 5)]
    vm_rounds: usize,
    /// Workload size in the VM, relative to the host's (TCG is slow).
    #[arg(long, default_value_t = 0.1)]
    vm_scale: f64,
    /// Kernel to boot for the rung comparison (see `cargo xtask vm --list`).
    #[arg(long, default_value = "6.12")]
    kernel: String,
    /// Measured rounds per stress-ng workload (host and VM).
    #[arg(long, default_value_t = 3)]
    stress_rounds: usize,
    /// Idle window for the daemon measurement, in seconds.
    #[arg(long, default_value_t = 120)]
    daemon_secs: u64,
    /// Do not rebuild (use what is in target/release).
    #[arg(long)]
    no_build: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Host,
    Vm,
    /// stress-ng on the host, then in the guest (needs `stress-ng` on the host).
    Stress,
    Detector,
    Daemon,
}

fn release(bin: &str) -> PathBuf {
    vm::workspace_root().join("target/release").join(bin)
}

/// The JSON report line of `scenario bench` in some output.
fn bench_report(text: &str) -> anyhow::Result<Value> {
    text.lines()
        .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["scenario"] == "bench")
        .context("no bench report in the output")
}

fn host(args: &Args) -> anyhow::Result<Value> {
    let monitor = release("monitor");
    let rounds = args.rounds.to_string();
    let cmd = [
        "bench",
        "--monitor",
        monitor.to_str().context("path")?,
        "--rounds",
        &rounds,
        "--burst",
    ];
    eprintln!("xtask bench: target/release/scenario {}", cmd.join(" "));
    let out = Command::new(release("scenario"))
        .args(cmd)
        .stderr(Stdio::inherit())
        .output()
        .context("running scenario bench")?;
    if !out.status.success() {
        bail!("scenario bench failed on the host");
    }
    bench_report(&String::from_utf8_lossy(&out.stdout))
}

fn in_vm(args: &Args) -> anyhow::Result<Value> {
    let cmd = format!(
        "/bin/scenario bench --monitor /bin/monitor --rounds {} --scale {} --burst \
         --variant 'fentry=--max-rung fentry' --variant 'kprobe=--max-rung kprobe' \
         --variant 'tracepoint=--max-rung tracepoint'",
        args.vm_rounds, args.vm_scale
    );
    eprintln!("xtask bench: in the {} guest: {cmd}", args.kernel);
    let text = vm::run_in_guest(&args.kernel, &cmd, Duration::from_secs(3000))?;
    bench_report(&text)
}

/// `--workload` arguments of the stress-ng workloads.
const STRESS: &str = "--workload stress-userfaultfd --workload stress-fault --workload stress-exec \
     --workload stress-mremap --workload stress-numa --workload stress-oom-pipe \
     --workload stress-mmapfork";

/// The trace file a monitored stress-ng run writes (its size is reported).
const STRESS_TRACE: &str = "/tmp/mmrace-bench-trace.jsonl";

fn stress(args: &Args) -> anyhow::Result<Value> {
    let monitor = release("monitor");
    let rounds = args.stress_rounds.to_string();
    let variant = format!("default=--output {STRESS_TRACE} --force");
    let mut cmd = vec![
        "bench",
        "--monitor",
        monitor.to_str().context("path")?,
        "--rounds",
        &rounds,
    ];
    cmd.extend(STRESS.split_whitespace());
    cmd.extend(["--variant", &variant]);
    eprintln!("xtask bench: target/release/scenario {}", cmd.join(" "));
    let out = Command::new(release("scenario"))
        .args(&cmd)
        .stderr(Stdio::inherit())
        .output()
        .context("running scenario bench")?;
    if !out.status.success() {
        bail!("scenario bench (stress-ng) failed on the host");
    }
    let host = bench_report(&String::from_utf8_lossy(&out.stdout))?;
    print_workloads("host, stress-ng", &host);
    let rung = |r: &str| format!("--variant '{r}=--max-rung {r} --output {STRESS_TRACE} --force'");
    let cmd = format!(
        "/bin/scenario bench --monitor /bin/monitor --rounds {} --scale {} {STRESS} {} {} {}",
        args.stress_rounds,
        args.vm_scale,
        rung("fentry"),
        rung("kprobe"),
        rung("tracepoint")
    );
    eprintln!("xtask bench: in the {} guest: {cmd}", args.kernel);
    let text = vm::run_in_guest(&args.kernel, &cmd, Duration::from_secs(5400))?;
    let guest = bench_report(&text)?;
    Ok(json!({ "host": host, "vm": guest }))
}

fn detector() -> anyhow::Result<Value> {
    let out = vm::cargo(&[
        "bench",
        "--locked",
        "-p",
        "monitor-detector",
        "--bench",
        "replay",
    ])?;
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{out}");
    Ok(json!({ "part": "detector", "output": out }))
}

fn scrape(addr: &str) -> anyhow::Result<usize> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(body.len())
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time a process has run, in nanoseconds (`/proc/PID/schedstat`, exact,
/// unlike the tick-sampled utime/stime that over-charge a process waking
/// on timer ticks).
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    Ok(s.split_whitespace().next().context("schedstat")?.parse()?)
}

fn daemon(args: &Args) -> anyhow::Result<Value> {
    let mut child = Command::new(release("monitor"))
        .args(["run", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting monitor run")?;
    let pid = child.id();
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let result = (|| {
        let addr = loop {
            let l = rx
                .recv_timeout(Duration::from_secs(120))
                .context("the daemon did not start serving within 120 s")?;
            eprintln!("  daemon: {l}");
            if let Some(rest) = l.split("serving metrics on http://").nth(1) {
                break rest.split('/').next().context("address")?.to_owned();
            }
        };
        // Settle: first scrape, caches, allocator.
        scrape(&addr)?;
        std::thread::sleep(Duration::from_secs(10));
        let t0 = Instant::now();
        let c0 = cpu_ns(pid)?;
        let mut scrapes = 0;
        let mut bytes = 0;
        while t0.elapsed() < Duration::from_secs(args.daemon_secs) {
            bytes = scrape(&addr)?;
            scrapes += 1;
            std::thread::sleep(Duration::from_secs(15));
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = (cpu_ns(pid)? - c0) as f64 / 1e9;
        let rss_kib = proc_status(pid, "VmRSS:").unwrap_or(0);
        let hwm_kib = proc_status(pid, "VmHWM:").unwrap_or(0);
        Ok(json!({
            "part": "daemon",
            "window_s": wall,
            "scrapes": scrapes,
            "metrics_bytes": bytes,
            "cpu_s": cpu,
            "cpu_percent_of_one_core": 100.0 * cpu / wall,
            "rss_mib": rss_kib as f64 / 1024.0,
            "peak_rss_mib": hwm_kib as f64 / 1024.0,
        }))
    })();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    result
}

fn print_workloads(where_: &str, v: &Value) {
    println!(
        "\n{where_} (kernel {})",
        v["kernel"].as_str().unwrap_or("?")
    );
    println!(
        "  {:<10} {:<11} {:>8} {:>15} {:>8} {:>15} {:>7} {:>10} {:>5} {:>9}",
        "workload",
        "variant",
        "wall",
        "(min–max)",
        "cpu",
        "(min–max)",
        "bare s",
        "events/run",
        "lost",
        "monitor s"
    );
    for r in v["results"].as_array().into_iter().flatten() {
        let w = r["workload"].as_str().unwrap_or("?");
        if w == "burst" {
            println!(
                "  burst: UFFDIO_COPY (-EEXIST) on {} threads, unmonitored {:.0}/s ({:.0}/s on one thread)",
                r["threads"],
                r["generator_rate_unmonitored"].as_f64().unwrap_or(0.0),
                r["generator_rate_unmonitored_one_thread"]
                    .as_f64()
                    .unwrap_or(0.0)
            );
            for b in r["variants"].as_array().into_iter().flatten() {
                let steps: Vec<String> = b["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        format!(
                            "{} -> {:.0}/s lost {} (reader {:.0} ns/record)",
                            s["target_rate"]
                                .as_u64()
                                .map_or("flat out".to_owned(), |t| format!("{t}/s")),
                            s["achieved_rate"].as_f64().unwrap_or(0.0),
                            s["lost"],
                            s["monitor_ns_per_record"].as_f64().unwrap_or(0.0)
                        )
                    })
                    .collect();
                println!(
                    "  burst      {:<11} max rate with zero loss {:.0}/s; steps: {}",
                    b["variant"].as_str().unwrap_or("?"),
                    b["max_rate_without_loss"].as_f64().unwrap_or(0.0),
                    steps.join(", ")
                );
            }
            continue;
        }
        for x in r["variants"].as_array().into_iter().flatten() {
            let f = |k: &str| x[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "  {:<10} {:<11} {:>7.3}x {:>6.3}–{:<7.3} {:>7.3}x {:>6.3}–{:<7.3} {:>7.3} {:>10} {:>5} {:>9.3}",
                w,
                x["variant"].as_str().unwrap_or("?"),
                f("median_ratio"),
                f("min_ratio"),
                f("max_ratio"),
                f("cpu_median_ratio"),
                f("cpu_min_ratio"),
                f("cpu_max_ratio"),
                r["median_without_s"].as_f64().unwrap_or(f64::NAN),
                x["events_per_run"],
                x["events_lost"],
                f("monitor_cpu_s_per_run"),
            );
            let bpf = &x["bpf"];
            let progs: Vec<String> = bpf["programs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} {}x{:.0}ns",
                        p["program"].as_str().unwrap_or("?"),
                        p["calls"],
                        p["ns_per_call"].as_f64().unwrap_or(0.0)
                    )
                })
                .collect();
            println!(
                "  {:<22} BPF {:.2} ms/run ({:.2}% of the workload's CPU): {}",
                "",
                bpf["bpf_ms_per_run"].as_f64().unwrap_or(0.0),
                100.0 * bpf["share_of_workload_cpu"].as_f64().unwrap_or(0.0),
                progs.join(", ")
            );
        }
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let all = [Part::Host, Part::Vm, Part::Detector, Part::Daemon];
    let parts: &[Part] = if args.only.is_empty() {
        &all
    } else {
        &args.only
    };
    if !args.no_build {
        vm::build_release_binaries()?;
    }
    let out_dir = vm::workspace_root().join("target/bench");
    fs::create_dir_all(&out_dir)?;
    let mut results = Vec::new();
    for part in parts {
        eprintln!("xtask bench: {part:?}");
        let v = match part {
            Part::Host => host(args)?,
            Part::Vm => in_vm(args)?,
            Part::Stress => stress(args)?,
            Part::Detector => detector()?,
            Part::Daemon => daemon(args)?,
        };
        match part {
            Part::Host => print_workloads("host", &v),
            Part::Vm => print_workloads("VM (TCG: compare rungs, not absolute)", &v),
            Part::Stress => print_workloads("VM, stress-ng (TCG: compare rungs)", &v["vm"]),
            Part::Detector => {}
            Part::Daemon => println!(
                "\ndaemon idle: {:.3}% of one core over {:.0} s ({} scrapes of {} bytes), RSS {:.1} MiB (peak {:.1} MiB)",
                v["cpu_percent_of_one_core"].as_f64().unwrap_or(f64::NAN),
                v["window_s"].as_f64().unwrap_or(0.0),
                v["scrapes"],
                v["metrics_bytes"],
                v["rss_mib"].as_f64().unwrap_or(0.0),
                v["peak_rss_mib"].as_f64().unwrap_or(0.0),
            ),
        }
        results.push(json!({ "part": format!("{part:?}").to_lowercase(), "result": v }));
        write_results(&out_dir, &results)?;
    }
    Ok(())
}

fn write_results(dir: &Path, results: &[Value]) -> anyhow::Result<()> {
    let path = dir.join("results.json");
    fs::write(&path, serde_json::to_string_pretty(results)? + "\n")?;
    eprintln!("xtask bench: results so far in {}", path.display());
    Ok(())
}
