//! `cargo xtask soak`: the daemon in a guest under a mixed stress-ng load
//! and the race scenarios in a loop, scraped every 15 s by a real
//! Prometheus on the host through a port forward; at the end, criteria
//! judged from Prometheus' own samples and the daemon's final counters
//! (docs/soak.md).
//!
//! Prometheus runs on the host, not in the guest: the guest's memory and
//! its two TCG CPUs are what is under test (a Prometheus inside would
//! compete with the load, and `oom-pipe` could OOM-kill it), its TSDB
//! outlives the guest for the verdict and for inspection, and the scrape
//! crosses a real network stack (virtio-net, QEMU's user network) like a
//! production scrape from another machine.

use std::{
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::vm;

/// The daemon's port in the guest (the shipped default, `deploy/monitor.toml`).
const GUEST_PORT: u16 = 10416;
/// The shipped scrape interval (`deploy/prometheus/prometheus.yml`).
const SCRAPE: f64 = 15.0;
/// A gap between two samples longer than this is a missed scrape.
const MAX_GAP: f64 = SCRAPE * 1.5;

#[derive(clap::Args)]
pub struct Args {
    /// Kernel to boot (a short name of `cargo xtask vm --list`).
    #[arg(long, default_value = "6.12")]
    kernel: String,
    /// Length of the load phase (`90s`, `5m`, `1h`); the run adds a quiet
    /// settle before and after it, and the boot.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    duration: Duration,
    /// Guest memory in MiB (split over two NUMA nodes).
    #[arg(long, default_value_t = 1024)]
    mem: u32,
    /// Flat RSS: the last quarter's peak may exceed the first quarter's
    /// (after warm-up) by at most this many MiB.
    #[arg(long, default_value_t = 4.0)]
    rss_slack_mib: f64,
    /// Map fill must stay below this ratio (default: the threshold of the
    /// shipped `MmRaceMapNearlyFull` alert).
    #[arg(long)]
    map_threshold: Option<f64>,
    /// After the load, each map's entries may exceed their baseline by at
    /// most this fraction of its capacity.
    #[arg(long, default_value_t = 0.01)]
    map_return: f64,
    /// Break the run on purpose to see a criterion fail: `kill-daemon`
    /// (SIGKILL halfway through the load).
    #[arg(long, value_parser = ["kill-daemon"])]
    inject: Option<String>,
    /// The same guest, load and scenarios without the daemon: a baseline for
    /// the guest's own stalls. Only the heartbeat is reported; nothing is
    /// judged and no Prometheus runs.
    #[arg(long, conflicts_with = "inject")]
    bare: bool,
    /// Turn on the kernel's BPF run-time statistics (`[bpf] run_stats`) in
    /// the guest's config and print the programs that ran longest over the
    /// load: a diagnosis, not the shipped setup.
    #[arg(long, conflicts_with = "bare")]
    bpf_stats: bool,
    /// More guest kernel parameters, e.g. `preempt=full` (a diagnosis: the
    /// Debian kernel's default is voluntary preemption).
    #[arg(long, default_value = "")]
    kernel_args: String,
    /// Where to write the JSON result (default: target/soak/<kernel>-<UTC time>.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Do not rebuild the binaries (use what is in target/x86_64-unknown-linux-musl/release).
    #[arg(long)]
    no_build: bool,
    /// Do not stream the guest console.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 90s, 5m, 1h)"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: unknown unit (s, m or h)")),
    };
    // Flat RSS compares quarters of the load after warm-up: at least two
    // scrapes each.
    if !(180..=86_400).contains(&secs) {
        return Err(format!("{s:?}: between 3m and 24h"));
    }
    Ok(Duration::from_secs(secs))
}

/// Quiet time before the load (the maps' baseline) and after it (the maps
/// return, the last counters settle): at least three scrapes and two
/// map-fill refreshes (`map_fill_interval = "10s"`) each.
const SETTLE: u64 = 45;

/// The guest's script: network, the daemon on the shipped config, the load,
/// the quiet end, SIGTERM. Every line the host reads starts with `SOAK `.
fn guest_script(args: &Args, config: &str) -> String {
    let secs = args.duration.as_secs();
    let inject = match args.inject.as_deref() {
        Some("kill-daemon") => format!(
            "( sleep {}; echo \"SOAK inject kill-daemon\"; kill -9 $D ) &\n",
            secs / 2
        ),
        _ => String::new(),
    };
    // `--bare`: a sleeping stand-in keeps `$D` a live process, so the rest
    // of the script runs as it does with the daemon (its endpoint checks
    // fail and say so).
    let start_daemon = if args.bare {
        "sleep 1000000 > /tmp/findings.jsonl 2> /tmp/daemon.log &\nD=$!\n".to_owned()
    } else {
        format!(
            r#"sh -c 'echo $$ > /sys/fs/cgroup/soak-daemon/cgroup.procs && renice -n -5 -p $$ > /dev/null && exec /bin/monitor run --config /etc/mm-race-monitor/monitor.toml' > /tmp/findings.jsonl 2> /tmp/daemon.log &
D=$!
i=0
until wget -q -O /dev/null http://127.0.0.1:{GUEST_PORT}/healthz; do
    i=$((i+1)); [ $i -gt 600 ] && {{ echo "SOAK error: the daemon never answered /healthz"; cat /tmp/daemon.log; exit 1; }}
    sleep 0.5
done
"#
        )
    };
    format!(
        r#"set -u
ifconfig lo 127.0.0.1 up
ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up || echo "SOAK error: no eth0"
# The first memory cgroup turns on memcg_kmem_online_key: let its text
# patching happen on a quiet machine (TCG has taken a stale int3 from a
# static key patched under load: "Oops: int3" in kmem_cache_alloc).
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mkdir -p /sys/fs/cgroup/soak-warm /etc/mm-race-monitor
# CPU shared as on a production host: the daemon and the load each in a
# cgroup of its own with the cpu controller on (a systemd service with CPU
# accounting, a Kubernetes pod), so the daemon's share does not shrink with
# every task the load forks. (Flat in the root cgroup, the TCG guest's
# daemon waited seconds in the run queue: docs/soak.md.)
echo +cpu > /sys/fs/cgroup/cgroup.subtree_control || {{ echo "SOAK error: no cpu controller"; exit 1; }}
mkdir -p /sys/fs/cgroup/soak-daemon /sys/fs/cgroup/soak-scen
# CPUWeight=300, as the shipped unit sets it: the cgroup form of Nice=-5
# (weight 3121 against nice 0's 1024), which between cgroups is what counts.
echo 300 > /sys/fs/cgroup/soak-daemon/cpu.weight
cat > /etc/mm-race-monitor/monitor.toml <<'TOML'
{config}TOML
# Nice=-5, as the shipped unit runs it (busybox has renice, not nice): the
# shell lowers its own niceness, then becomes the daemon.
{start_daemon}echo "SOAK ready pid=$D"
# A second view of the endpoint, from inside the guest (loopback, no
# virtio-net, no slirp): every 5 s, how long /metrics takes. Not a
# criterion; it tells a slow scrape's network path from the daemon.
# (`timeout`, not `wget -T`: busybox 1.35's wget segfaults on -T.) With
# each probe, the daemon's time on a CPU and waiting for one, summed over its
# threads (schedstat, ns): how much of a slow scrape was the run queue.
( while [ ! -e /tmp/probe-stop ]; do
    a=$(cut -d' ' -f1 /proc/uptime)
    if timeout 10 wget -q -O /dev/null http://127.0.0.1:{GUEST_PORT}/metrics; then r=ok; else r=fail; fi
    b=$(cut -d' ' -f1 /proc/uptime)
    s=$(cat /proc/$D/task/*/schedstat 2>/dev/null | awk '{{r+=$1; w+=$2}} END {{printf "%.0f %.0f", r, w}}')
    pm=?; pc=?
    read -r _ pm _ < /proc/pressure/memory 2>/dev/null; read -r _ pc _ < /proc/pressure/cpu 2>/dev/null
    echo "$a $b $r ${{s:-? ?}} mem_some_$pm cpu_some_$pc" >> /tmp/probe.log
    sleep 5
  done ) &
# A heartbeat at niceness -20 in the root cgroup (weight 88761: busybox has
# no chrt for a real-time one): no other task delays it by much, so a gap in
# it is the whole guest stalling (its vCPUs not run by QEMU, or its kernel
# not scheduling), not the daemon's CPU share. Its clock is the guest's
# uptime; a gap over 2 s is printed as it happens, so the host stamps it
# with its own clock. Shell builtins only, besides sleep: no fork to wait on.
sh -c 'renice -n -20 -p $$ > /dev/null
  read -r up _ < /proc/uptime; prev=${{up%.*}}${{up#*.}}; max=0; n=0
  while [ ! -e /tmp/probe-stop ]; do
    sleep 1
    read -r up _ < /proc/uptime; cs=${{up%.*}}${{up#*.}}; g=$((cs-prev)); prev=$cs
    [ $g -gt $max ] && max=$g
    if [ $g -gt 200 ]; then
      n=$((n+1)); ma=?; pm=?; pc=?
      while read -r k v _; do [ "$k" = MemAvailable: ] && {{ ma=$((v/1024))MiB; break; }}; done < /proc/meminfo
      [ -r /proc/pressure/memory ] && read -r _ pm _ < /proc/pressure/memory
      [ -r /proc/pressure/cpu ] && read -r _ pc _ < /proc/pressure/cpu
      echo "SOAK stall uptime=$up gap=$((g/100)).$((g%100/10))s mem_available=$ma mem_some_$pm cpu_some_$pc"
    fi
    echo "$max $n" > /tmp/hb.max
  done' &
sleep {SETTLE}
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
echo "SOAK load-start"
# The load runs in a memory cgroup of its own (640 MiB of the 1 GiB): its
# OOM kills are real, reaper and all, but memcg-local, as a workload's are
# on a production host; the rest of the guest (the daemon, the network,
# this shell) keeps its memory. Without it the one-hour run drove the guest
# into global OOM after 35 minutes and then wedged it.
mkdir -p /sys/fs/cgroup/soak-load
echo 640M > /sys/fs/cgroup/soak-load/memory.max
echo 0 > /sys/fs/cgroup/soak-load/memory.swap.max 2>/dev/null || true
# `in_load CMD ARG...`: runs the command in the load's cgroup (its exit status is the command's).
in_load() {{ sh -c 'echo $$ > /sys/fs/cgroup/soak-load/cgroup.procs && exec "$@"' in_load "$@"; }}
{inject}in_load stress-ng --oom-pipe 1 --userfaultfd 1 --numa 1 --mmapfork 1 --mremap 1 \
    --pathological --timeout {secs}s --temp-path /tmp --quiet > /tmp/stress-root.log 2>&1 &
S1=$!
# stress-ng's exec stressor refuses to run as root.
in_load su -p -s /bin/sh nobody -c "stress-ng --exec 1 --timeout {secs}s --temp-path /tmp --quiet" \
    > /tmp/stress-exec.log 2>&1 &
S2=$!
unset LD_LIBRARY_PATH
END=$(( $(date +%s) + {secs} ))
runs=0; fails=0; rounds=0; gone=; deaf=
# Each scenario gets 5 minutes: one that hangs is reported and killed, and
# the run goes on (the 14:18 hour run sat idle from a hung scenario until
# QEMU's timeout). Exit status 124 is the timeout's.
scen() {{
    runs=$((runs+1))
    sh -c 'echo $$ > /sys/fs/cgroup/soak-scen/cgroup.procs && exec timeout -s KILL 300 /bin/scenario "$@"' scen "$@" > /dev/null 2>> /tmp/scenario.err
    rc=$?
    if [ $rc -ne 0 ]; then
        fails=$((fails+1))
        if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "SOAK scenario-hung: $*"; else echo "SOAK scenario-failed: $*"; fi
    fi
}}
while [ $(date +%s) -lt $END ]; do
    rounds=$((rounds+1))
    scen oom-reap --overlap
    scen oom-reap --vhost
    scen mrelease
    scen uffd-race --event fork --delay-ms 400 --run-ms 1500
    scen uffd-race --event unmap --delay-ms 400 --run-ms 1500
    scen exec-migrate --count 20
    scen churn --rounds 3
    # A daemon that died, or stopped answering, says so at once, in the
    # kernel log too (the console keeps it if the run is cut short).
    if [ -z "$gone" ] && ! kill -0 $D 2>/dev/null; then
        gone=1
        echo "SOAK daemon-gone round=$rounds"
        {{ echo "daemon gone in round $rounds"; tail -n 20 /tmp/daemon.log; }} |
            while read -r l; do echo "mmrace-soak: $l" > /dev/kmsg; done
    elif [ -z "$deaf" ] && ! timeout 10 wget -q -O /dev/null http://127.0.0.1:{GUEST_PORT}/healthz; then
        deaf=1
        echo "SOAK healthz-failed round=$rounds"
        echo "mmrace-soak: /healthz did not answer within 10 s in round $rounds" > /dev/kmsg
    fi
done
wait $S1; r1=$?
wait $S2; r2=$?
echo "SOAK load-end rounds=$rounds runs=$runs fails=$fails stress-root=$r1 stress-exec=$r2"
sleep {SETTLE}
echo "SOAK stop"
touch /tmp/probe-stop
# Longer than the scrape timeout: a scrape started before the mark ends first.
sleep 6
kill -TERM $D
wait $D
echo "SOAK daemon-exit $?"
echo "SOAK findings near_miss=$(grep -c '"severity":"near_miss"' /tmp/findings.jsonl) violation=$(grep -c '"severity":"violation"' /tmp/findings.jsonl)"
grep 'ended by' /tmp/daemon.log | sed 's/^/SOAK summary /'
grep '"severity":"violation"' /tmp/findings.jsonl | head -n 5 | sed 's/^/SOAK violation: /'
awk '{{d=$2-$1; n++; if (d>m) m=d; if (d>1) o++; if ($3!="ok") f++}}
     END {{printf "SOAK probe n=%d max=%.2f over1s=%d failed=%d\n", n, m, o, f}}' /tmp/probe.log
awk '$2-$1>1 || $3!="ok" {{print "SOAK probe-slow uptime=" $1 " took=" $2-$1 " " $3 " " $6 " " $7}}' /tmp/probe.log | head -n 20
read -r hbmax hbn < /tmp/hb.max
echo "SOAK heartbeat max_gap=$((hbmax/100)).$((hbmax%100/10))s over2s=$hbn"
awk '$4 != "?" {{if (n++) {{dr=($4-r)/1e9; dw=($5-w)/1e9; tr+=dr; tw+=dw; if (dw>mw) mw=dw}}; r=$4; w=$5}}
     END {{printf "SOAK sched run=%.1fs wait=%.1fs max_wait_per_probe=%.2fs\n", tr, tw, mw}}' /tmp/probe.log
tail -n 40 /tmp/daemon.log | sed 's/^/SOAK log: /'
tail -n 5 /tmp/scenario.err 2>/dev/null | sed 's/^/SOAK scenario-stderr: /'
tail -n 5 /tmp/stress-root.log /tmp/stress-exec.log | sed 's/^/SOAK stress: /'
"#
    )
}

/// The shipped daemon config with the guest's listen address (and, with
/// `--bpf-stats`, run-time statistics on).
fn guest_config(bpf_stats: bool) -> anyhow::Result<String> {
    let mut config = fs::read_to_string(vm::workspace_root().join("deploy/monitor.toml"))
        .context("deploy/monitor.toml")?;
    let mut edits = vec![(
        format!("listen = \"127.0.0.1:{GUEST_PORT}\""),
        format!("listen = \"0.0.0.0:{GUEST_PORT}\""),
    )];
    if bpf_stats {
        edits.push((
            "run_stats = false".to_owned(),
            "run_stats = true".to_owned(),
        ));
    }
    for (from, to) in edits {
        if !config.contains(&from) {
            bail!("deploy/monitor.toml has no line {from}");
        }
        config = config.replacen(&from, &to, 1);
    }
    Ok(config)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A real Prometheus on the shipped scrape config and rules, target
/// substituted, data kept in the run directory.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> anyhow::Result<Prometheus> {
        let root = vm::workspace_root();
        let shipped = fs::read_to_string(root.join("deploy/prometheus/prometheus.yml"))?;
        let rules = root.join("deploy/prometheus/mm-race-monitor.rules.yml");
        let mut config = shipped.clone();
        for (from, to) in [
            ("localhost:10416", format!("127.0.0.1:{target_port}")),
            (
                "/etc/prometheus/rules/mm-race-monitor.rules.yml",
                rules.display().to_string(),
            ),
        ] {
            if !config.contains(from) {
                bail!("deploy/prometheus/prometheus.yml no longer contains {from:?}");
            }
            config = config.replacen(from, &to, 1);
        }
        if !config.contains("scrape_interval: 15s") {
            bail!("deploy/prometheus/prometheus.yml no longer scrapes every 15s");
        }
        let config = format!("global:\n  evaluation_interval: 15s\n\n{config}");
        let data = dir.join("prometheus");
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&data)?;
        let path = data.join("prometheus.yml");
        fs::write(&path, config)?;
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(&path)
            .output()
            .context("promtool (apt install prometheus: scripts/setup.sh --for-tests)")?;
        if !check.status.success() {
            bail!(
                "promtool check config: {}",
                String::from_utf8_lossy(&check.stdout)
            );
        }
        let port = free_port()?;
        let child = vm::qemu::die_with_parent(&mut Command::new("prometheus"))
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(fs::File::create(data.join("prometheus.log"))?)
            .spawn()
            .context("prometheus (apt install prometheus: scripts/setup.sh --for-tests)")?;
        let mut p = Prometheus { child, port };
        let start = Instant::now();
        while http_get(port, "/-/ready").ok().map(|(s, _)| s) != Some(200) {
            if start.elapsed() > Duration::from_secs(60) || p.child.try_wait()?.is_some() {
                bail!(
                    "Prometheus not ready: {}",
                    fs::read_to_string(data.join("prometheus.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(p)
    }

    /// An instant query at `time`; returns `data.result`.
    fn query(&self, expr: &str, time: f64) -> anyhow::Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}&time={time:.3}", url_encode(expr));
        let (status, body) = http_get(self.port, &path)?;
        let v: Value =
            serde_json::from_slice(&body).with_context(|| format!("{expr}: not JSON"))?;
        if status != 200 || v["status"] != "success" {
            bail!("{expr}: HTTP {status}: {v}");
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Every raw sample of `selector` in `[from, to]`: (labels, [(t, v)]).
    fn samples(&self, selector: &str, from: f64, to: f64) -> anyhow::Result<Vec<Series>> {
        let range = (to - from).ceil().max(1.0) as u64;
        let series = self.query(&format!("{selector}[{range}s]"), to)?;
        Ok(series
            .iter()
            .map(|s| Series {
                labels: s["metric"].clone(),
                points: s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse::<f64>().ok()?)))
                    .filter(|(t, _)| *t >= from)
                    .collect(),
            })
            .collect())
    }

    /// The value of a query that returns one series (or none: `None`).
    fn scalar(&self, expr: &str, time: f64) -> anyhow::Result<Option<f64>> {
        let r = self.query(expr, time)?;
        Ok(r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Series {
    labels: Value,
    points: Vec<(f64, f64)>,
}

fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP head")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    Ok((status, buf[split + 4..].to_vec()))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first host time at which each `SOAK <mark>` line appeared in the
/// guest's output, read live while the guest runs.
#[derive(Default)]
struct Marks {
    marks: Vec<(String, f64)>,
    /// The heartbeat's gaps (`SOAK stall …`).
    stalls: Vec<Stall>,
}

/// A gap in the guest's heartbeat.
struct Stall {
    /// Host time when its line appeared: the stall's end.
    end: f64,
    /// Seconds without a beat.
    gap: f64,
    /// Free memory and pressure when it ended, as the guest printed them.
    pressure: String,
}

impl Marks {
    fn at(&self, mark: &str) -> Option<f64> {
        self.marks.iter().find(|(m, _)| m == mark).map(|(_, t)| *t)
    }
}

/// `HH:MM:SS` UTC of a Unix time.
fn hms(t: f64) -> String {
    let s = t as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn watch(results: PathBuf, marks: Arc<Mutex<Marks>>, done: Arc<AtomicBool>) {
    const WATCHED: [&str; 4] = ["ready", "load-start", "load-end", "stop"];
    let mut seen = 0;
    while !done.load(Ordering::Relaxed) && seen < WATCHED.len() {
        let text = fs::read_to_string(&results).unwrap_or_default();
        let t = now();
        {
            let mut m = marks.lock().expect("marks");
            let known = m.stalls.len();
            let new: Vec<Stall> = text
                .lines()
                .filter_map(|l| l.strip_prefix("SOAK stall "))
                .skip(known)
                // One entry per line, parsed or not (gap NaN), so `known`
                // keeps counting lines and none is taken twice.
                .map(|l| {
                    let after = l.split_once("gap=").map_or("", |(_, a)| a);
                    let (gap, rest) = after.split_once(' ').unwrap_or((after, ""));
                    Stall {
                        end: t,
                        gap: gap
                            .strip_suffix('s')
                            .and_then(|g| g.parse().ok())
                            .unwrap_or(f64::NAN),
                        pressure: rest.trim().to_owned(),
                    }
                })
                .collect();
            m.stalls.extend(new);
        }
        for mark in WATCHED {
            let line = format!("SOAK {mark}");
            let mut m = marks.lock().expect("marks");
            if m.at(mark).is_none()
                && text
                    .lines()
                    .any(|l| l == line || l.starts_with(&format!("{line} ")))
            {
                m.marks.push((mark.to_owned(), t));
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One criterion's outcome.
struct Check {
    name: &'static str,
    value: String,
    limit: String,
    pass: bool,
}

/// The threshold of the shipped `MmRaceMapNearlyFull` alert (`… > 0.9`).
fn shipped_map_threshold() -> anyhow::Result<f64> {
    let rules = fs::read_to_string(
        vm::workspace_root().join("deploy/prometheus/mm-race-monitor.rules.yml"),
    )?;
    rules
        .lines()
        .skip_while(|l| !l.contains("alert: MmRaceMapNearlyFull"))
        .find_map(|l| l.trim().strip_prefix("expr:"))
        .and_then(|e| e.rsplit_once('>'))
        .and_then(|(_, v)| v.trim().parse().ok())
        .context("no threshold in the MmRaceMapNearlyFull alert")
}

const MIB: f64 = 1024.0 * 1024.0;

/// The soak's times (host clock, Unix seconds).
struct Window {
    ready: f64,
    load_start: f64,
    load_end: f64,
    stop: f64,
}

/// The rest of the guest's first `SOAK <tag> ...` line.
fn soak_line<'a>(results: &'a str, tag: &str) -> Option<&'a str> {
    results.lines().find_map(|l| {
        l.strip_prefix("SOAK ")?
            .strip_prefix(tag)?
            .strip_prefix(' ')
    })
}

/// What the guest saw of its own endpoint and CPU: reported with the
/// scrapes, not judged.
struct GuestView<'a> {
    /// The loopback probe's summary (`SOAK probe`).
    probe: Option<&'a str>,
    /// The daemon's run and run-queue time (`SOAK sched`).
    sched: Option<&'a str>,
    /// The heartbeat's summary (`SOAK heartbeat`).
    heartbeat: Option<&'a str>,
    /// The heartbeat's gaps over 2 s.
    stalls: &'a [Stall],
}

fn judge_scrapes(
    p: &Prometheus,
    w: &Window,
    guest: &GuestView<'_>,
) -> anyhow::Result<(Check, Value)> {
    let up = p.samples("up{job=\"mm-race-monitor\"}", w.ready, w.stop)?;
    let points: Vec<(f64, f64)> = up.iter().flat_map(|s| s.points.clone()).collect();
    let failed = points.iter().filter(|(_, v)| *v != 1.0).count();
    // Each failed scrape with the guest stall that overlaps it, if any: a
    // stall is stamped at its end, so it overlaps the scrape [t, t + 5 s]
    // when it ends after t and began before t + 5 s.
    let down: Vec<String> = points
        .iter()
        .filter(|(_, v)| *v != 1.0)
        .map(|(t, _)| {
            let stall = guest
                .stalls
                .iter()
                .find(|s| s.end >= *t && s.end - s.gap <= t + 5.0);
            match stall {
                Some(s) => format!(
                    "{} (in a {:.1} s guest stall ending {}: {})",
                    hms(*t),
                    s.gap,
                    hms(s.end),
                    s.pressure
                ),
                None => format!("{} (no guest stall)", hms(*t)),
            }
        })
        .collect();
    let mut edges = vec![w.ready];
    edges.extend(points.iter().map(|(t, _)| *t));
    edges.push(w.stop);
    let max_gap = edges.windows(2).map(|e| e[1] - e[0]).fold(0.0, f64::max);
    let expected = ((w.stop - w.ready) / SCRAPE).floor() as usize;
    let mut durations: Vec<f64> = p
        .samples(
            "scrape_duration_seconds{job=\"mm-race-monitor\"}",
            w.ready,
            w.stop,
        )?
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .collect();
    durations.sort_by(f64::total_cmp);
    let slowest = durations.last().copied().unwrap_or(0.0);
    let quantile = |q: f64| {
        durations
            .get(((durations.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    let (median, p90) = (quantile(0.5), quantile(0.9));
    let over_1s = durations.iter().filter(|d| **d > 1.0).count();
    let pass = up.len() == 1 && failed == 0 && points.len() >= expected && max_gap <= MAX_GAP;
    Ok((
        Check {
            name: "every scrape answered",
            value: format!(
                "{} of {} up, max gap {max_gap:.1} s, scrape time median {median:.2} s, \
                 p90 {p90:.2} s, slowest {slowest:.2} s ({over_1s} over 1 s){}{}{}{}",
                points.len() - failed,
                points.len(),
                if down.is_empty() {
                    String::new()
                } else {
                    format!("; down at {}", down.join(", "))
                },
                guest
                    .probe
                    .map_or(String::new(), |p| format!("; in the guest (loopback): {p}")),
                guest
                    .sched
                    .map_or(String::new(), |s| format!("; the daemon's threads: {s}")),
                guest
                    .heartbeat
                    .map_or(String::new(), |h| format!("; the guest's heartbeat: {h}"))
            ),
            limit: format!("up == 1, >= {expected} samples, gap <= {MAX_GAP} s"),
            pass,
        },
        json!({"samples": points.len(), "down": failed, "expected_at_least": expected,
               "max_gap_s": max_gap, "slowest_scrape_s": slowest, "median_scrape_s": median,
               "p90_scrape_s": p90, "scrapes_over_1s": over_1s, "down_at": down,
               "guest_probe": guest.probe, "daemon_sched": guest.sched,
               "guest_heartbeat": guest.heartbeat,
               "guest_stalls": guest.stalls.iter().map(|s| json!({"end": hms(s.end), "gap_s": s.gap, "pressure": s.pressure})).collect::<Vec<_>>()}),
    ))
}

fn judge_rss(p: &Prometheus, w: &Window, slack_mib: f64) -> anyhow::Result<(Check, Value)> {
    let rss = p.samples("process_resident_memory_bytes", w.ready, w.stop)?;
    let points: Vec<(f64, f64)> = rss.iter().flat_map(|s| s.points.clone()).collect();
    let load = w.load_end - w.load_start;
    let warm = (load * 0.1).max(60.0).min(load / 2.0);
    let (from, to) = (w.load_start + warm, w.load_end);
    let q = (to - from) / 4.0;
    let peak = |a: f64, b: f64| {
        points
            .iter()
            .filter(|(t, _)| *t >= a && *t <= b)
            .map(|(_, v)| *v)
            .fold(f64::NAN, f64::max)
    };
    let first = peak(from, from + q);
    let last = peak(to - q, to);
    if first.is_nan() || last.is_nan() {
        return Ok((
            Check {
                name: "flat RSS",
                value: format!("{} samples: a quarter of the load has none", points.len()),
                limit: format!("<= +{slack_mib} MiB after {warm:.0} s warm-up"),
                pass: false,
            },
            json!({"samples": points.len()}),
        ));
    }
    let all = peak(w.ready, w.stop);
    let start = points.first().map_or(f64::NAN, |p| p.1);
    let end = points.last().map_or(f64::NAN, |p| p.1);
    let growth = (last - first) / MIB;
    Ok((
        Check {
            name: "flat RSS",
            value: format!(
                "{:.1} -> {:.1} MiB (peak {:.1}); last-quarter peak {:+.2} MiB vs first",
                start / MIB,
                end / MIB,
                all / MIB,
                growth
            ),
            limit: format!("<= +{slack_mib} MiB after {warm:.0} s warm-up"),
            pass: growth <= slack_mib,
        },
        json!({"start_mib": start / MIB, "end_mib": end / MIB, "peak_mib": all / MIB,
               "first_quarter_peak_mib": first / MIB, "last_quarter_peak_mib": last / MIB,
               "growth_mib": growth, "warmup_s": warm, "slack_mib": slack_mib}),
    ))
}

fn judge_maps(
    p: &Prometheus,
    w: &Window,
    threshold: f64,
    back: f64,
) -> anyhow::Result<(Check, Value)> {
    let entries = p.samples("mmrace_bpf_map_entries", w.ready, w.stop)?;
    let caps = p.samples("mmrace_bpf_map_max_entries", w.ready, w.stop)?;
    let mut pass = !entries.is_empty();
    let mut parts = Vec::new();
    let mut out = serde_json::Map::new();
    for s in &entries {
        let map = s.labels["map"].as_str().unwrap_or("?").to_owned();
        let cap = caps
            .iter()
            .find(|c| c.labels["map"] == s.labels["map"])
            .and_then(|c| c.points.last())
            .map_or(f64::NAN, |p| p.1);
        let peak = s.points.iter().map(|p| p.1).fold(0.0, f64::max);
        let baseline = s
            .points
            .iter()
            .rfind(|(t, _)| *t <= w.load_start)
            .map_or(f64::NAN, |p| p.1);
        let end = s.points.last().map_or(f64::NAN, |p| p.1);
        let ok = peak / cap < threshold && end <= baseline + (back * cap).max(1.0);
        pass &= ok;
        parts.push(format!(
            "{map} {baseline:.0}/{peak:.0}/{end:.0} of {cap:.0}{}",
            if ok { "" } else { " (FAIL)" }
        ));
        out.insert(
            map,
            json!({"capacity": cap, "baseline": baseline, "peak": peak, "end": end,
                   "peak_fill": peak / cap}),
        );
    }
    // Which hooks hold the STASH slots at the end (a leak names itself).
    let by_hook = p.query("mmrace_bpf_stash_slots > 0", w.stop)?;
    let mut held: Vec<(String, f64)> = by_hook
        .iter()
        .filter_map(|s| {
            let hook = s["metric"]["hook"].as_str()?.to_owned();
            Some((hook, s["value"][1].as_str()?.parse().ok()?))
        })
        .collect();
    held.sort_by(|a, b| b.1.total_cmp(&a.1));
    if !held.is_empty() {
        let list: Vec<String> = held.iter().map(|(h, n)| format!("{h} {n:.0}")).collect();
        parts.push(format!("STASH at the end by hook: {}", list.join(", ")));
    }
    out.insert(
        "stash_by_hook".to_owned(),
        held.iter().map(|(h, n)| (h.clone(), json!(n))).collect(),
    );
    Ok((
        Check {
            name: "bounded map fill",
            value: format!("baseline/peak/end: {}", parts.join(", ")),
            limit: format!(
                "peak < {:.0}% of capacity; end <= baseline + {:.0}%",
                threshold * 100.0,
                back * 100.0
            ),
            pass,
        },
        Value::Object(out),
    ))
}

/// Counters of the daemon's final line (`produced P, delivered D, lost L`).
fn final_counters(summary: &str) -> Option<(u64, u64, u64)> {
    let num = |key: &str| -> Option<u64> {
        let rest = &summary[summary.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((num("produced ")?, num("delivered ")?, num("lost ")?))
}

fn judge_loss(p: &Prometheus, w: &Window, results: &str) -> anyhow::Result<(Check, Value)> {
    let summary = soak_line(results, "summary").unwrap_or("");
    let last = |e: &str| p.scalar(e, w.stop).map(|v| v.unwrap_or(f64::NAN));
    let (pp, pd, pl) = (
        last("sum(mmrace_events_produced_total)")?,
        last("sum(mmrace_events_delivered_total)")?,
        last("sum(mmrace_events_lost_total{reason=\"ringbuf_full\"})")?,
    );
    let prom_exact = pp == pd + pl;
    let (value, pass, fin) = match final_counters(summary) {
        Some((fp, fd, fl)) => (
            format!("final: {fp} = {fd} + {fl} lost; last scrape: {pp} = {pd} + {pl}"),
            fp == fd + fl && prom_exact && fp as f64 >= pp,
            json!({"produced": fp, "delivered": fd, "lost": fl}),
        ),
        None => (
            format!("no final summary from the daemon; last scrape: {pp} = {pd} + {pl}?"),
            false,
            Value::Null,
        ),
    };
    Ok((
        Check {
            name: "exact loss accounting",
            value,
            limit: "produced == delivered + lost, at the end and at the last scrape".to_owned(),
            pass,
        },
        json!({"final": fin, "last_scrape": {"produced": pp, "delivered": pd, "lost": pl}}),
    ))
}

fn judge_findings(p: &Prometheus, w: &Window, results: &str) -> anyhow::Result<(Check, Value)> {
    let series = p.samples(
        "mmrace_findings_total{severity=\"violation\"}",
        w.ready,
        w.stop,
    )?;
    let prom_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let near = p
        .scalar("sum(mmrace_findings_total{severity=\"near_miss\"})", w.stop)?
        .unwrap_or(f64::NAN);
    let count = |key: &str| -> Option<u64> {
        let l = results.lines().find(|l| l.starts_with("SOAK findings "))?;
        let rest = &l[l.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let (logged_v, logged_n) = (count("violation="), count("near_miss="));
    let pass = !series.is_empty() && prom_max == 0.0 && logged_v == Some(0);
    Ok((
        Check {
            name: "zero violations",
            value: format!(
                "{prom_max} in Prometheus, {} logged; near misses {near} ({} logged)",
                logged_v.map_or("?".to_owned(), |v| v.to_string()),
                logged_n.map_or("?".to_owned(), |v| v.to_string()),
            ),
            limit: "0".to_owned(),
            pass,
        },
        json!({"violations": prom_max, "violations_logged": logged_v,
               "near_misses": near, "near_misses_logged": logged_n}),
    ))
}

fn judge_daemon(results: &str) -> Check {
    let exit = soak_line(results, "daemon-exit").unwrap_or("?");
    let verified = results
        .lines()
        .any(|l| l.starts_with("SOAK summary ") && l.contains("(verified)"));
    Check {
        name: "daemon stopped cleanly",
        value: format!(
            "exit {exit}{}",
            if verified { ", detach verified" } else { "" }
        ),
        limit: "exit 0 on SIGTERM, detach verified".to_owned(),
        pass: exit == "0" && verified,
    }
}

fn utc(fmt: &str) -> String {
    Command::new("date")
        .args(["-u", fmt])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The ten programs that ran longest during the load: (program, seconds, runs).
fn top_programs(p: &Prometheus, w: &Window) -> anyhow::Result<Vec<(String, f64, f64)>> {
    let range = (w.load_end - w.load_start).ceil().max(1.0) as u64;
    let of = |metric: &str| -> anyhow::Result<Vec<(String, f64)>> {
        Ok(p.query(
            &format!("sum by (program) (increase({metric}[{range}s]))"),
            w.load_end,
        )?
        .iter()
        .filter_map(|s| {
            let v = s["value"][1].as_str()?.parse().ok()?;
            Some((s["metric"]["program"].as_str()?.to_owned(), v))
        })
        .collect())
    };
    let runs = of("mmrace_program_runs_total")?;
    let mut top: Vec<(String, f64, f64)> = of("mmrace_program_run_seconds_total")?
        .into_iter()
        .map(|(prog, secs)| {
            let n = runs
                .iter()
                .find(|(p, _)| *p == prog)
                .map_or(0.0, |(_, n)| *n);
            (prog, secs, n)
        })
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top.truncate(10);
    Ok(top)
}

/// Boots the guest while a thread stamps its marks and stalls with the
/// host clock: (start time, the guest's output, the boot, the marks).
fn boot_watched(
    boot: &vm::ScriptBoot<'_>,
    dir: &Path,
) -> anyhow::Result<(String, String, vm::qemu::BootResult, Marks)> {
    let marks = Arc::new(Mutex::new(Marks::default()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (marks, done, results) = (marks.clone(), done.clone(), dir.join("results.txt"));
        std::thread::spawn(move || watch(results, marks, done))
    };
    let started = utc("+%Y-%m-%d %H:%M UTC");
    let res = vm::boot_script(boot);
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let res = res?;
    let results = fs::read_to_string(&res.results).unwrap_or_default();
    let marks = std::mem::take(&mut *marks.lock().expect("marks"));
    Ok((started, results, res, marks))
}

/// `--bare`: the guest without the daemon; prints the heartbeat's stalls
/// with the host's time of each.
fn run_bare(boot: &vm::ScriptBoot<'_>, dir: &Path) -> anyhow::Result<()> {
    let (started, results, _, marks) = boot_watched(boot, dir)?;
    println!("xtask soak --bare: started {started}, no daemon");
    for s in &marks.stalls {
        println!(
            "  guest stall of {:.1} s ending {} UTC ({})",
            s.gap,
            hms(s.end),
            s.pressure
        );
    }
    let heartbeat = soak_line(&results, "heartbeat").map(str::trim);
    let load = soak_line(&results, "load-end").map(str::trim);
    println!(
        "  heartbeat: {}; load: {}",
        heartbeat.unwrap_or("no summary (the guest did not reach its stop)"),
        load.unwrap_or("did not end")
    );
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    for (bin, pkg) in [
        ("stress-ng", "stress-ng"),
        ("prometheus", "prometheus"),
        ("promtool", "prometheus"),
    ] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {bin} >/dev/null")])
            .status()
            .map_or(true, |s| !s.success())
        {
            bail!("{bin} not found: apt install {pkg} (scripts/setup.sh --for-tests)");
        }
    }
    let threshold = match args.map_threshold {
        Some(t) => t,
        None => shipped_map_threshold()?,
    };
    let script = guest_script(args, &guest_config(args.bpf_stats)?);
    let host_port = free_port()?;
    // Pressure stall information (Debian builds it in, off by default): the
    // heartbeat prints the memory and CPU pressure of each stall.
    let append = format!("psi=1 {}", args.kernel_args);
    let boot = vm::ScriptBoot {
        kernel: &args.kernel,
        script: &script,
        modules: &["virtio_net"],
        forward: Some((host_port, GUEST_PORT)),
        mem_mb: args.mem,
        // Boot (~1.5 min under TCG), two settles, stress-ng's own stop and
        // one scenario round past the end.
        timeout: args.duration + Duration::from_secs(900),
        quiet: args.quiet,
        no_build: args.no_build,
        tag: if args.bare { "-soak-bare" } else { "-soak" },
        append: append.trim_end(),
    };
    let dir = vm::script_dir(&boot);
    fs::create_dir_all(&dir)?;
    // The watcher must not read the marks of an earlier run.
    let _ = fs::remove_file(dir.join("results.txt"));
    if args.bare {
        return run_bare(&boot, &dir);
    }
    let prom = Prometheus::start(&dir, host_port)?;
    eprintln!(
        "xtask soak: Prometheus on http://127.0.0.1:{} scrapes the guest through 127.0.0.1:{host_port} every 15 s",
        prom.port
    );
    let (started, results, res, marks) = boot_watched(&boot, &dir)?;
    for l in results.lines().filter(|l| l.starts_with("SOAK ")) {
        eprintln!("[guest] {l}");
    }
    let (Some(ready), Some(load_start)) = (marks.at("ready"), marks.at("load-start")) else {
        bail!(
            "the daemon never became ready in the guest (log: {})",
            dir.display()
        );
    };
    let ended = now();
    let load_end = marks.at("load-end").unwrap_or(ended);
    let stop = marks.at("stop").unwrap_or(ended);
    let w = Window {
        ready,
        load_start,
        load_end,
        stop,
    };
    // Let Prometheus commit the last scrapes before asking.
    std::thread::sleep(Duration::from_secs(2));

    let guest = GuestView {
        probe: soak_line(&results, "probe").map(str::trim),
        sched: soak_line(&results, "sched").map(str::trim),
        heartbeat: soak_line(&results, "heartbeat").map(str::trim),
        stalls: &marks.stalls,
    };
    let mut checks = Vec::new();
    let mut detail = serde_json::Map::new();
    let boot_ok = res.ending == vm::qemu::Ending::PoweredOff && marks.at("stop").is_some();
    checks.push(Check {
        name: "guest ran to the end",
        value: format!("{:?} after {:.0} s", res.ending, res.elapsed.as_secs_f64()),
        limit: "powered off after the stop mark".to_owned(),
        pass: boot_ok,
    });
    for (key, judged) in [
        ("scrapes", judge_scrapes(&prom, &w, &guest)),
        ("rss", judge_rss(&prom, &w, args.rss_slack_mib)),
        ("maps", judge_maps(&prom, &w, threshold, args.map_return)),
        ("findings", judge_findings(&prom, &w, &results)),
        ("loss", judge_loss(&prom, &w, &results)),
    ] {
        let (check, value) = judged?;
        checks.push(check);
        detail.insert(key.to_owned(), value);
    }
    checks.push(judge_daemon(&results));
    let load_line = soak_line(&results, "load-end").unwrap_or("").to_owned();

    let pass = checks.iter().all(|c| c.pass);
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nsoak on {} for {} (load), {started}: {}",
        args.kernel,
        human(args.duration),
        if pass { "PASS" } else { "FAIL" }
    );
    let _ = writeln!(table, "  load: {load_line}");
    for c in &checks {
        let _ = writeln!(
            table,
            "  {:<4} {:<24} {}  [{}]",
            if c.pass { "ok" } else { "FAIL" },
            c.name,
            c.value,
            c.limit
        );
    }
    if args.bpf_stats {
        let _ = writeln!(
            table,
            "  programs by kernel time over the load (run_stats):"
        );
        for (program, secs, runs) in top_programs(&prom, &w)? {
            let _ = writeln!(
                table,
                "    {program:<36} {secs:8.2} s  {runs:>10.0} runs  {:>8.0} ns/run",
                if runs > 0.0 { secs * 1e9 / runs } else { 0.0 }
            );
        }
    }
    print!("{table}");
    let rev = Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(vm::workspace_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cell = |i: usize| {
        checks
            .get(i)
            .map_or(String::new(), |c: &Check| c.value.clone())
    };
    let mut load_cell = human(args.duration);
    if args.bpf_stats {
        load_cell.push_str(", `--bpf-stats`");
    }
    if !args.kernel_args.is_empty() {
        let _ = write!(load_cell, ", guest kernel `{}`", args.kernel_args);
    }
    let row = format!(
        "| {started} | {} | {} | `{rev}` | {} | {} | {} | {} | {} | {} | {} |",
        args.kernel,
        load_cell,
        cell(2),
        cell(3),
        cell(4),
        cell(5),
        cell(1),
        load_line,
        if pass { "PASS" } else { "FAIL" }
    );
    println!("\nrow for docs/soak.md:\n{row}");

    let out = args.json.clone().unwrap_or_else(|| {
        vm::workspace_root().join("target/soak").join(format!(
            "{}-{}.json",
            args.kernel,
            utc("+%Y%m%dT%H%M%SZ")
        ))
    });
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)?;
    }
    let result = json!({
        "kernel": args.kernel,
        "started": started,
        "revision": rev,
        "duration_s": args.duration.as_secs(),
        "inject": args.inject,
        "kernel_args": args.kernel_args,
        "bpf_stats": args.bpf_stats,
        "pass": pass,
        "window": {"ready": w.ready, "load_start": w.load_start, "load_end": w.load_end, "stop": w.stop},
        "load": load_line,
        "checks": checks.iter().map(|c| json!({"name": c.name, "pass": c.pass, "value": c.value, "limit": c.limit})).collect::<Vec<_>>(),
        "detail": detail,
        "row": row,
        "run_dir": dir.display().to_string(),
    });
    fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    eprintln!("xtask soak: result in {}", out.display());
    if !pass {
        let failed: Vec<&str> = checks.iter().filter(|c| !c.pass).map(|c| c.name).collect();
        bail!("soak failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        soak: Args,
    }

    /// The guest's script is shell the guest can parse (busybox's when the
    /// host has it, as the guest does; else the host's sh), with and
    /// without the daemon.
    #[test]
    fn guest_script_parses() {
        let shell = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        for extra in [&[][..], &["--bare"], &["--inject", "kill-daemon"]] {
            let mut argv = vec!["soak", "--duration", "5m"];
            argv.extend_from_slice(extra);
            let args = Cli::parse_from(argv).soak;
            let path = std::env::temp_dir().join(format!("soak-script-{}.sh", std::process::id()));
            fs::write(&path, guest_script(&args, "listen = \"0.0.0.0:10416\"\n")).expect("write");
            let out = match shell {
                Some(b) => Command::new(b).arg("sh").arg("-n").arg(&path).output(),
                None => Command::new("sh").arg("-n").arg(&path).output(),
            }
            .expect("sh -n");
            let _ = fs::remove_file(&path);
            assert!(
                out.status.success(),
                "{extra:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn hms_is_utc_time_of_day() {
        assert_eq!(hms(1_796_666_423.9), "18:00:23");
        assert_eq!(hms(0.0), "00:00:00");
    }
}
