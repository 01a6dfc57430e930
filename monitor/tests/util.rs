//! Shared helpers: running the monitor and the scenarios, reading trace files.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Mutex, MutexGuard, mpsc},
    time::Duration,
};

use monitor_detector::{
    Event,
    tracefile::{Header, Line, Loss, Summary, parse_line},
};

/// The monitor under test (`MONITOR_BIN` overrides it: the VM guest runs the
/// release binary from its initramfs).
pub fn monitor_bin() -> String {
    std::env::var("MONITOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_monitor").to_owned())
}

/// The scenario binary, built into the same target directory and profile
/// (`SCENARIO_BIN` overrides it).
pub fn scenario_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SCENARIO_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("scenario");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p xtask --bin scenario, or run scripts/test.sh)",
        path.display()
    );
    path
}

/// Checks, from `/proc/PID/status`, that a daemon runs as `uid:gid` (real,
/// effective, saved and file-system ids), without supplementary groups,
/// with empty effective, permitted, inheritable and ambient capability sets
/// and `no_new_privs`. `Err` says what differs, with the whole status.
pub fn unprivileged(pid: u32, uid: u32, gid: u32) -> Result<(), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("(absent)")
    };
    let ids = |n: u32| format!("{n}\t{n}\t{n}\t{n}");
    let zero = "0000000000000000";
    let want = [
        ("Uid", ids(uid)),
        ("Gid", ids(gid)),
        ("Groups", String::new()),
        ("CapEff", zero.to_owned()),
        ("CapPrm", zero.to_owned()),
        ("CapInh", zero.to_owned()),
        ("CapAmb", zero.to_owned()),
        ("NoNewPrivs", "1".to_owned()),
    ];
    let wrong: Vec<String> = want
        .iter()
        .filter(|(name, v)| field(name) != v)
        .map(|(name, v)| format!("{name}: {:?}, want {v:?}", field(name)))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("pid {pid}: {}\n{status}", wrong.join("; ")))
    }
}

/// Host-kernel tests share the kernel: run them one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether this test may use the kernel as root. Tests that load BPF
/// programs or change the system need root; without it they are skipped
/// with one line on stderr, so a plain `cargo test` passes and says what it
/// skipped. `MONITOR_ROOT_TESTS=1` (set by `scripts/test.sh`, which CI runs)
/// makes a missing root an error instead, so nothing is skipped there.
#[must_use]
pub fn root() -> bool {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return true;
    }
    assert!(
        std::env::var_os("MONITOR_ROOT_TESTS").is_none(),
        "{test}: MONITOR_ROOT_TESTS is set but the tests do not run as root"
    );
    // Straight to the stderr stream, not `eprintln!`: the test harness
    // captures the print macros of passing tests, and a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: needs root (the monitor refuses to run without it; scripts/test.sh runs this as root)"
    );
    false
}

/// Returns from the calling test unless it runs as root (see [`root`]).
macro_rules! require_root {
    () => {
        if !$crate::util::root() {
            return;
        }
    };
}

pub(crate) use require_root;

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs a scenario subcommand and returns its JSON report.
pub fn scenario(args: &[&str]) -> serde_json::Value {
    let out = run(Command::new(scenario_bin()).args(args));
    assert!(
        out.status.success(),
        "scenario {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scenario report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A `monitor trace` running in the background.
pub struct TraceRun {
    child: Child,
    stderr: mpsc::Receiver<String>,
    pub output: PathBuf,
    _dir: tempdir::TempDir,
}

/// Minimal self-cleaning temporary directory (no extra dependency).
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let p = std::env::temp_dir()
                .join(format!("monitor-test-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&p).expect("create temp dir");
            TempDir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if std::env::var_os("MONITOR_KEEP_TEST_FILES").is_none() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

/// A test that fails between `start` and `stop` must not leave `monitor
/// trace` attached for the tests after it.
impl Drop for TraceRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl TraceRun {
    /// Starts `monitor trace -q --output <tmp>/trace.jsonl ARGS` and waits until
    /// its hooks are attached.
    pub fn start(tag: &str, args: &[&str]) -> TraceRun {
        let dir = tempdir::TempDir::new(tag);
        let output = dir.path().join("trace.jsonl");
        let mut child = Command::new(monitor_bin())
            .arg("trace")
            .arg("-q")
            .arg("--output")
            .arg(&output)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn monitor");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let ready = line.contains("hooks attached");
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "monitor did not attach within 60 s; stderr so far:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
        TraceRun {
            child,
            stderr: rx,
            output,
            _dir: dir,
        }
    }

    /// SIGINT, wait for a clean exit, return the recording and stderr.
    pub fn stop(mut self) -> (Recording, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("wait monitor");
        let mut err = String::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            err.push_str(&l);
            err.push('\n');
        }
        assert!(
            status.success(),
            "monitor exited with {status}; stderr:\n{err}"
        );
        // Under -q nothing is shown: the summary says how many records
        // matched, never "shown N".
        if let Some(summary) = err.lines().find(|l| l.contains("traced, ended by")) {
            assert!(
                !summary.contains(" shown ") && summary.contains("not shown: --quiet"),
                "the -q summary must not claim records were shown: {summary}"
            );
        }
        (Recording::read(&self.output), err)
    }
}

/// A parsed trace file.
#[derive(Debug)]
pub struct Recording {
    /// The file as written.
    pub text: String,
    pub header: Header,
    pub events: Vec<Event>,
    pub losses: Vec<Loss>,
    pub summary: Option<Summary>,
    /// The `cgroup` lines.
    pub cgroups: Vec<monitor_detector::workload::CgroupInfo>,
}

impl Recording {
    pub fn read(path: &Path) -> Recording {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut header = None;
        let mut events = Vec::new();
        let mut losses = Vec::new();
        let mut summary = None;
        let mut cgroups = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match parse_line(line).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1)) {
                Line::Header(h) => {
                    assert_eq!(i, 0, "header must be the first line");
                    header = Some(h);
                }
                Line::Event(e) => events.push(e),
                Line::Loss(l) => losses.push(l),
                Line::Summary(s) => summary = Some(s),
                Line::Finding(_) => {}
                Line::Cgroup(c) => cgroups.push(c),
            }
        }
        Recording {
            text: text.clone(),
            header: header.expect("trace file has a header"),
            events,
            losses,
            summary,
            cgroups,
        }
    }

    /// The detector's verdicts on this recording (what `monitor analyze` says).
    pub fn findings(&self) -> Vec<monitor_detector::Finding> {
        let report = monitor_detector::analyze_texts([("recording", self.text.as_str())]);
        let errors: Vec<String> = report.errors().map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "the recording does not analyze cleanly: {errors:?}"
        );
        report.findings().map(|(_, f)| f.clone()).collect()
    }

    /// The detector's notes on this recording (loss, input quality, …).
    pub fn notes(&self) -> Vec<String> {
        let report = monitor_detector::analyze_texts([("recording", self.text.as_str())]);
        report.files.into_iter().flat_map(|f| f.notes).collect()
    }

    /// Events of one mm generation, in sequence order.
    pub fn generation(&self, mm: u64, mm_gen: u64) -> Vec<&Event> {
        let mut v: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.mm == mm && e.mm_gen == mm_gen && e.is_sequenced())
            .collect();
        v.sort_by_key(|e| e.seq);
        v
    }
}
