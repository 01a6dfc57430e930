//! The Debian package under a real systemd (PID 1) in a Debian bookworm
//! guest: `cargo xtask vm --kernel 6.1 --systemd` builds the root file system
//! with mmdebstrap, puts the `.deb` from `cargo xtask dist --deb` into it and
//! runs this module there (`#[ignore]` on the host).
//!
//! One test, in the order an operator meets the package: `dpkg -i` starts
//! the unit (`Type=notify`) and, once attached, the daemon runs as the
//! `mm-race-monitor` user without capabilities (`/proc/PID/status`),
//! Prometheus scrapes it, `systemctl reload` starts a new trace file
//! without losing a record (both files the daemon user's, mode 0600),
//! `systemctl stop` detaches every program (checked against the kernel's
//! program list), a hung daemon (SIGSTOP: the poll loop stops exactly as if
//! it deadlocked, and no test-only hook ships in the binary) is restarted
//! by the watchdog, and `journalctl -p warning` holds warnings but not the
//! start banner or near misses. Any failure prints `systemctl status` and
//! the unit's journal.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use monitor_detector::tracefile::{Line, parse_line};

use crate::util::scenario;

const UNIT: &str = "mm-race-monitor";
const CONFIG: &str = "/etc/mm-race-monitor/monitor.toml";
const RECORD_DIR: &str = "/var/lib/mm-race-monitor";
/// A copy of the config as the package installed it.
const SHIPPED: &str = "/root/monitor.toml.shipped";

fn note(msg: &str) {
    println!("VMH note {msg}");
}

/// `sh -c CMD`; panics unless it succeeds; returns stdout.
fn sh(cmd: &str) -> String {
    let (ok, out, err) = sh_status(cmd);
    assert!(ok, "`{cmd}` failed:\n{out}\n{err}");
    out
}

fn sh_status(cmd: &str) -> (bool, String, String) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `systemctl show -p PROP --value mm-race-monitor`.
fn show(prop: &str) -> String {
    sh(&format!("systemctl show -p {prop} --value {UNIT}"))
        .trim()
        .to_owned()
}

/// On any failure (every assertion of the test, and `sh`): the panic
/// message, then the unit's status and its journal, which say why.
fn diagnose_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let (_, status, err) = sh_status(&format!("systemctl status --no-pager --full {UNIT}"));
        let (_, log, _) = sh_status(&format!(
            "journalctl -u {UNIT} --no-pager -n 80 -o short-monotonic"
        ));
        eprintln!("--- systemctl status {UNIT}:\n{status}{err}--- journalctl -u {UNIT}:\n{log}");
    }));
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    start.elapsed()
}

fn running() -> bool {
    show("ActiveState") == "active" && show("SubState") == "running"
}

fn main_pid() -> u32 {
    show("MainPID").parse().expect("MainPID")
}

fn curl(url: &str) -> Option<String> {
    let (ok, out, _) = sh_status(&format!("curl -sf --max-time 5 '{url}'"));
    ok.then_some(out)
}

/// Sum of a metric's samples in the daemon's exposition.
fn metric_sum(name: &str) -> f64 {
    curl("http://127.0.0.1:10416/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Program ids the kernel has loaded (BPF_PROG_GET_NEXT_ID).
fn kernel_programs() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect()
}

/// How many hooks `monitor check --format json` attached.
pub fn hooks_attached_by_check(json: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(json).expect("check JSON");
    v["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .filter(|h| h["rung"] != "unavailable" && h["rung"] != "excluded")
        .count()
}

/// Program ids behind the BPF program and link descriptors a process holds
/// (`prog_id:` in /proc/PID/fdinfo).
fn daemon_programs(pid: u32) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
    {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if t != "anon_inode:bpf-prog" && t != "anon_inode:bpf_link" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        ids.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u32>().ok()),
        );
    }
    ids
}

/// Writes the shipped config with these lines changed, and restarts the unit.
fn configure(changes: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(SHIPPED).expect("saved shipped config");
    for (from, to) in changes {
        assert!(text.contains(from), "{from:?} is not in the shipped config");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(CONFIG, text).expect("write config");
    sh(&format!("systemctl restart {UNIT}"));
    wait_until(
        "the restarted unit to run",
        Duration::from_secs(120),
        running,
    );
}

fn journal(priority: &str) -> String {
    sh(&format!(
        "journalctl -u {UNIT} --no-pager -o cat -p {priority}"
    ))
}

fn trace_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(RECORD_DIR)
        .expect("record dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".trace.jsonl"))
        .collect();
    files.sort();
    files
}

/// The `mm-race-monitor` system user's uid and gid (`getent passwd`).
fn daemon_user() -> (u32, u32) {
    let passwd = sh(&format!("getent passwd {UNIT}"));
    let f: Vec<&str> = passwd.trim().split(':').collect();
    assert!(
        f.len() == 7 && passwd.trim().ends_with(":/nonexistent:/usr/sbin/nologin"),
        "system user: {passwd}"
    );
    (f[2].parse().expect("uid"), f[3].parse().expect("gid"))
}

/// The daemon (attached and serving) runs as its user without capabilities.
fn assert_unprivileged(pid: u32) {
    let (uid, gid) = daemon_user();
    if let Err(e) = crate::util::unprivileged(pid, uid, gid) {
        panic!("the daemon after attach: {e}");
    }
}

fn read_lines(path: &Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .expect("trace file")
        .lines()
        .enumerate()
        .map(|(i, l)| parse_line(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

#[test]
#[ignore = "runs in the systemd VM guest (cargo xtask vm --systemd)"]
fn the_package_runs_under_systemd() {
    assert_eq!(
        std::fs::read_to_string("/proc/1/comm")
            .expect("/proc/1/comm")
            .trim(),
        "systemd",
        "PID 1 must be systemd"
    );
    diagnose_on_panic();
    let deb = std::env::var("DEB").expect("DEB: the package to install");
    let before = kernel_programs();

    // dpkg -i: user, directory, conffile, unit enabled and started; READY=1.
    let t = Instant::now();
    sh(&format!("dpkg -i {deb}"));
    let ready = wait_until(
        "the unit to be active (running)",
        Duration::from_secs(180),
        running,
    );
    note(&format!(
        "systemd: dpkg -i to active (running) in {:.1}s",
        (t.elapsed()).as_secs_f64().max(ready.as_secs_f64())
    ));
    assert_eq!(show("Type"), "notify");
    let status = show("StatusText");
    assert!(
        status.contains("hooks attached, serving http://127.0.0.1:10416/metrics"),
        "STATUS= from the daemon: {status:?}"
    );
    assert_eq!(show("NRestarts"), "0");
    // The unit's sandbox costs no hook: as many attach as for plain root.
    let attached = hooks_attached_by_check(&sh("mm-race-monitor check --format json"));
    assert!(
        status.starts_with(&format!(
            "{attached} of {} hooks attached",
            monitor_common::catalogue::HookId::ALL.len()
        )),
        "under systemd: {status:?}; as root outside the unit {attached} hooks attach"
    );
    let journal_start = journal("info");
    assert!(
        !journal_start.contains("kernel addresses are hidden"),
        "the unit must keep CAP_SYSLOG and /proc/kallsyms readable:\n{journal_start}"
    );
    note(&format!("systemd: {status}"));
    // Attached (READY=1 came after it): the user switch is done.
    assert_unprivileged(main_pid());
    assert!(
        journal_start.contains(&format!(
            "monitor: user after attach: {UNIT} (uid {}",
            daemon_user().0
        )) && journal_start.contains("monitor: capabilities after attach: none"),
        "the daemon must say it runs as {UNIT} without capabilities:\n{journal_start}"
    );
    assert_eq!(
        sh(&format!("stat -c '%U %G %a' {RECORD_DIR}")).trim(),
        "mm-race-monitor root 770"
    );
    let conffiles = sh("dpkg-query -W -f='${Conffiles}' mm-race-monitor");
    assert!(conffiles.contains(CONFIG), "conffiles: {conffiles}");
    for f in [
        "/usr/share/man/man8/mm-race-monitor.8.gz",
        "/usr/share/man/man8/mm-race-monitor-run.8.gz",
        "/usr/share/bash-completion/completions/mm-race-monitor",
        "/usr/share/doc/mm-race-monitor/copyright",
    ] {
        assert!(Path::new(f).exists(), "{f} is not installed");
    }
    std::fs::copy(CONFIG, SHIPPED).expect("save the shipped config");
    let health = curl("http://127.0.0.1:10416/healthz").expect("/healthz answers");
    assert!(health.starts_with("ok: "), "{health}");
    let version = sh("mm-race-monitor --version");
    assert!(
        version.contains("(git ") && version.contains("x86_64-unknown-linux-musl"),
        "{version}"
    );

    // The watchdog is armed and fed (the last ping moves).
    assert_eq!(show("WatchdogUSec"), "30s");
    let ping = show("WatchdogTimestampMonotonic");
    wait_until("a watchdog ping", Duration::from_secs(40), || {
        show("WatchdogTimestampMonotonic") != ping
    });

    // Prometheus (the guest's own, on the shipped scrape job) scrapes it.
    let t = Instant::now();
    let prom_diag = || {
        sh_status(
            "systemctl status --no-pager prometheus; journalctl -u prometheus --no-pager -n 20; \
             curl -s http://127.0.0.1:9090/api/v1/targets",
        )
        .1
    };
    let start = Instant::now();
    while !curl("http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22mm-race-monitor%22%7D")
        .is_some_and(|r| r.contains(r#""value":["#) && r.contains(r#","1"]"#))
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "Prometheus did not scrape the daemon within 120s:\n{}",
            prom_diag()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    note(&format!(
        "systemd: first Prometheus scrape after {:.0}s",
        t.elapsed().as_secs_f64()
    ));
    let info = curl("http://127.0.0.1:9090/api/v1/query?query=mmrace_build_info").expect("query");
    assert!(
        info.contains(r#""revision":""#) && !info.contains(r#""revision":"unknown""#),
        "{info}"
    );

    // Recording + `systemctl reload`: a new file, nothing lost between them.
    configure(&[(
        "# dir = \"/var/lib/mm-race-monitor\"",
        "dir = \"/var/lib/mm-race-monitor\"",
    )]);
    let pid = main_pid();
    let produced0 = metric_sum("mmrace_events_produced_total");
    scenario(&["uffd-race", "--event", "fork", "--delay-ms", "200"]);
    wait_until("records of the first race", Duration::from_secs(30), || {
        metric_sum("mmrace_events_delivered_total") > produced0
    });
    assert_eq!(trace_files().len(), 1, "{:?}", trace_files());
    let t = Instant::now();
    sh(&format!("systemctl reload {UNIT}"));
    wait_until(
        "a second trace file after reload",
        Duration::from_secs(30),
        || trace_files().len() == 2,
    );
    note(&format!(
        "systemd: reload to new trace file in {:.2}s",
        t.elapsed().as_secs_f64()
    ));
    assert!(running(), "the unit must stay active through a reload");
    assert_eq!(main_pid(), pid, "reload must not restart the daemon");
    assert_unprivileged(pid);
    scenario(&["uffd-race", "--event", "fork", "--delay-ms", "200"]);
    // The daemon's programs: the prog_id of each BPF descriptor it holds
    // (systemd loads its own programs for the unit's IPAddressDeny=).
    let ids = daemon_programs(main_pid());
    let loaded = kernel_programs();
    assert!(
        !ids.is_empty() && ids.is_subset(&loaded) && ids.is_disjoint(&before),
        "the daemon's programs {ids:?} must be new in the kernel's list {loaded:?}"
    );

    // `systemctl stop`: clean exit, every program gone.
    let t = Instant::now();
    sh(&format!("systemctl stop {UNIT}"));
    note(&format!(
        "systemd: stop in {:.2}s",
        t.elapsed().as_secs_f64()
    ));
    assert_eq!(show("ActiveState"), "inactive");
    assert_eq!(show("Result"), "success");
    let left: Vec<u32> = kernel_programs().intersection(&ids).copied().collect();
    assert!(left.is_empty(), "programs left after stop: {left:?}");
    let bpftool = sh("bpftool prog show");
    for id in &ids {
        assert!(
            !bpftool.lines().any(|l| l.starts_with(&format!("{id}:"))),
            "bpftool still lists program {id}"
        );
    }
    let log = journal("debug");
    assert!(log.contains("programs (verified)"), "stop line:\n{log}");

    let files = trace_files();
    assert_eq!(files.len(), 2, "{files:?}");
    // Both created by the daemon as its user (the second one after the
    // reload, long after attach), readable by it alone.
    let (uid, gid) = daemon_user();
    for f in &files {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::symlink_metadata(f).expect("stat");
        assert!(
            m.file_type().is_file() && (m.uid(), m.gid(), m.mode() & 0o7777) == (uid, gid, 0o600),
            "{}: uid {} gid {} mode {:o}, want {uid} {gid} 600",
            f.display(),
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        );
    }
    let (mut events, mut produced, mut delivered, mut lost) = (0u64, 0, 0, 0);
    for (i, f) in files.iter().enumerate() {
        let lines = read_lines(f);
        assert!(
            matches!(lines.first(), Some(Line::Header(_))),
            "{}: header",
            f.display()
        );
        let Some(Line::Summary(s)) = lines.last() else {
            panic!("{} does not end with a summary", f.display());
        };
        assert_eq!(s.ended_by, if i == 0 { "reload" } else { "signal" });
        let n = lines.iter().filter(|l| matches!(l, Line::Event(_))).count() as u64;
        assert!(n > 0, "{} has no events", f.display());
        assert_eq!(n, s.delivered - s.decode_errors, "{}", f.display());
        events += n;
        produced += s.produced;
        delivered += s.delivered;
        lost += s.lost;
    }
    assert_eq!(lost, 0, "no record may be lost");
    assert_eq!(produced, delivered + lost, "the files' counts add up");
    assert_eq!(events, delivered, "every delivered record is in a file");
    note(&format!(
        "systemd: {events} records in 2 files around the reload, 0 lost"
    ));

    // Watchdog: a stopped (hung) daemon is killed and restarted.
    sh(&format!("rm -f {RECORD_DIR}/*.trace.jsonl"));
    configure(&[]);
    let pid = main_pid();
    let t = Instant::now();
    sh(&format!("kill -STOP {pid}"));
    wait_until(
        "the watchdog to restart the daemon",
        Duration::from_secs(240),
        || show("NRestarts") == "1" && running() && main_pid() != pid,
    );
    note(&format!(
        "systemd: SIGSTOP to restarted and running again in {:.0}s (WatchdogSec=30s, RestartSec=5s)",
        t.elapsed().as_secs_f64()
    ));
    let log = journal("debug");
    assert!(
        log.contains("Watchdog timeout"),
        "no watchdog timeout in the journal"
    );
    assert_unprivileged(main_pid());

    // Priorities: warnings and worse under -p warning, not the banner; near
    // misses at notice.
    sh(&format!("systemctl reload {UNIT}")); // not recording: a warning
    configure(&[("ring_size = \"4M\"", "ring_size = \"4K\"")]);
    scenario(&["uffd-race", "--event", "fork"]);
    wait_until("loss to be counted", Duration::from_secs(30), || {
        metric_sum("mmrace_events_lost_total") > 0.0
    });
    std::thread::sleep(Duration::from_secs(3));
    let warnings = journal("warning");
    assert!(
        warnings.contains("nothing to reopen"),
        "the reload warning is missing from -p warning:\n{warnings}"
    );
    assert!(
        warnings.contains("records lost (ring buffer full)"),
        "the loss warning is missing from -p warning:\n{warnings}"
    );
    assert!(
        !warnings.contains("hooks attached") && !warnings.contains("serving metrics"),
        "the start banner must not be a warning:\n{warnings}"
    );
    for line in warnings.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).expect("finding JSON");
        assert_ne!(v["severity"], "near_miss", "a near miss at warning: {line}");
    }
    let notices = journal("notice");
    assert!(
        notices
            .lines()
            .any(|l| l.starts_with('{') && l.contains(r#""severity":"near_miss""#)),
        "near misses are logged at notice:\n{notices}"
    );
    let info = journal("info");
    assert!(
        info.contains("hooks attached"),
        "the banner is at info:\n{info}"
    );
    sh(&format!("systemctl stop {UNIT}"));
}
