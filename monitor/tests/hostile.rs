//! Hostile input, hostile peers, hostile disks: one regression test per
//! defect of the reliability review (D1–D6, S1–S4 and the lower items),
//! each reproducing the review's case against the real binary and kernel.
//! Root and the `scenario` binary, like the other host tests.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::{PermissionsExt as _, symlink},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use monitor_detector::tracefile::{Line, Summary, parse_line};

use crate::util::{monitor_bin, require_root, run, scenario, serial, tempdir::TempDir};

// ---------------------------------------------------------------------------
// Plumbing.

/// A pipe whose buffer is full and whose reader never reads: any blocking
/// write to `write` sleeps until `read` is closed.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: a two-element array for pipe2(2).
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let fl = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: fcntl/write on a descriptor we own.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) };
    let chunk = [b'.'; 4096];
    while unsafe { libc::write(w.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) } > 0 {}
    // Blocking again, as a stalled journal or pipe would be.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, fl) };
    (r, w)
}

/// The write end of a pipe whose reader is gone (writes get EPIPE).
fn closed_pipe() -> OwnedFd {
    let (r, w) = full_pipe();
    drop(r);
    w
}

/// A monitor process whose stderr is read line by line (when piped).
struct Proc {
    child: Child,
    lines: Option<mpsc::Receiver<String>>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let lines = child.stderr.take().map(|err| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `what`; returns it.
    fn wait_line(&mut self, what: &str) -> String {
        let rx = self.lines.as_ref().expect("stderr is piped");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stderr line with {what:?}; got:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Stderr lines arriving within `d` (added to what was seen).
    fn collect(&mut self, d: Duration) -> &[String] {
        let rx = self.lines.as_ref().expect("stderr is piped");
        let deadline = Instant::now() + d;
        while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(l);
        }
        &self.seen
    }

    /// The address from `serving metrics on http://ADDR/metrics`.
    fn serving(&mut self) -> SocketAddr {
        let l = self.wait_line("serving metrics on http://");
        l.split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {l}"))
    }

    /// Sends `sig`, waits at most `limit` for the exit (then kills and
    /// fails); returns the status, how long it took and the rest of stderr.
    fn stop(mut self, sig: i32, limit: Duration) -> (ExitStatus, Duration, String) {
        let start = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running {limit:?} after signal {sig}; stderr:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = start.elapsed();
        let mut rest = self.seen.join("\n");
        if let Some(rx) = &self.lines {
            while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
                rest.push('\n');
                rest.push_str(&l);
            }
        }
        (status, took, rest)
    }
}

impl Drop for Proc {
    /// A failed assertion must not leave a monitor running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion, failing (and killing it) if that takes longer
/// than `limit`: a daemon that should refuse to start must not hang a test.
fn output_within(mut cmd: Command, limit: Duration) -> std::process::Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{cmd:?} still running after {limit:?}");
        }
    }
}

fn monitor(args: &[&str]) -> Command {
    let mut c = Command::new(monitor_bin());
    c.args(args).stdin(Stdio::null());
    c
}

fn daemon(args: &[&str]) -> Command {
    let mut c = monitor(&["run", "--listen", "127.0.0.1:0"]);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// One HTTP/1.0 GET with a deadline for the whole exchange.
fn get(addr: SocketAddr, path: &str, deadline: Duration) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, deadline).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(deadline))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(deadline))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))?;
    Ok((status, text))
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = get(addr, "/metrics", Duration::from_secs(10)).expect("scrape");
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

/// A size-limited tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn new(tag: &str, size: &str) -> Tmpfs {
        let dir = TempDir::new(tag);
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(dir.path()));
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system up to about `leave` free bytes.
    fn fill(&self, leave: u64) -> PathBuf {
        let p = self.path().join("filler");
        // SAFETY: zeroed out-struct for statvfs.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes()).expect("c");
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        let free = st.f_bavail * st.f_frsize;
        std::fs::write(&p, vec![0u8; free.saturating_sub(leave) as usize]).expect("filler");
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).status();
    }
}

/// Every line of a trace file parses; returns them (a torn line anywhere
/// but at the very end fails, like `monitor analyze`).
fn lines_of(path: &Path) -> Vec<Line> {
    // Plain or compressed (`.gz`/`.zst`): decoded whole, as analyze reads it.
    let file = BufReader::new(std::fs::File::open(path).expect("trace file"));
    let (_, mut r) = monitor::compress::reader(file).expect("trace file");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut r, &mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            parse_line(l).unwrap_or_else(|e| panic!("{}:{}: {e}: {l}", path.display(), i + 1))
        })
        .collect()
}

/// The file's summary agrees with its contents.
fn assert_summary_is_true(path: &Path, lines: &[Line]) -> Option<Summary> {
    let events = lines.iter().filter(|l| matches!(l, Line::Event(_))).count() as u64;
    let lost: u64 = lines
        .iter()
        .filter_map(|l| match l {
            Line::Loss(x) => Some(x.total()),
            _ => None,
        })
        .sum();
    let s = lines.iter().find_map(|l| match l {
        Line::Summary(s) => Some(s.clone()),
        _ => None,
    })?;
    let p = path.display();
    assert_eq!(s.written, events, "{p}: written = event lines");
    assert_eq!(
        s.delivered - s.decode_errors,
        s.written + s.recorder_dropped,
        "{p}: {s:?}"
    );
    assert_eq!(
        lost,
        s.lost + s.recorder_dropped,
        "{p}: loss lines = lost + dropped"
    );
    Some(s)
}

fn analyze_rc(files: &[PathBuf]) -> (i32, String) {
    let out = run(Command::new(monitor_bin()).arg("analyze").args(files));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code().unwrap_or(-1), err)
}

fn trace_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".trace.jsonl"))
        .collect();
    v.sort();
    v
}

/// Runs uffd-race until the daemon at `addr` counted a finding (the race is
/// timing-dependent: a refused copy is not guaranteed on every run).
fn make_a_finding(addr: SocketAddr) {
    for _ in 0..20 {
        scenario(&[
            "uffd-race",
            "--event",
            "fork",
            "--run-ms",
            "300",
            "--delay-ms",
            "100",
        ]);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if metric(addr, "mmrace_findings_total") >= 1.0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!("20 uffd-race runs made no finding");
}

// ---------------------------------------------------------------------------
// D1: a stdout nobody reads.

/// D1: the daemon's stdout is a full pipe nobody reads. On the first release
/// the first finding froze it in `write`: no `/healthz`, no SIGTERM. Now
/// findings are queued: it keeps serving, counting and stopping on time.
#[test]
fn d1_daemon_with_a_stdout_nobody_reads_keeps_serving_and_stops_on_sigterm() {
    require_root!();
    let _g = serial();
    let (_reader, writer) = full_pipe();
    let mut cmd = daemon(&[]);
    cmd.stdout(Stdio::from(writer));
    let mut d = Proc::spawn(cmd);
    let addr = d.serving();
    make_a_finding(addr);
    make_a_finding(addr);
    for _ in 0..5 {
        let (code, body) = get(addr, "/healthz", Duration::from_secs(5)).expect("healthz answers");
        assert_eq!(code, 200, "{body}");
    }
    assert!(metric(addr, "mmrace_findings_total") >= 1.0);
    let (status, took, err) = d.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "{status}: {err}");
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
    assert!(
        err.contains("ended by signal") && err.contains("(verified)"),
        "{err}"
    );
}

/// D1 for `trace`: events to a full stdout pipe; SIGTERM ends it at once,
/// reported as a signal (not "sink closed" when the reader finally dies).
#[test]
fn d1_trace_with_a_stdout_nobody_reads_stops_on_sigterm() {
    require_root!();
    let _g = serial();
    let (_reader, writer) = full_pipe();
    let mut cmd = monitor(&["trace", "--format", "json"]);
    cmd.stdout(Stdio::from(writer)).stderr(Stdio::piped());
    let mut t = Proc::spawn(cmd);
    t.wait_line("hooks attached");
    // About 20 MB of JSON lines: more than the 8 MiB queue.
    scenario(&["uffd-storm", "--count", "60000"]);
    let (status, took, err) = t.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "{status}: {err}");
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
    assert!(err.contains("ended by signal"), "{err}");
    assert!(
        err.contains("lines not printed (stdout reader too slow)"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// D2: broken pipes.

/// D2: `monitor analyze F | head -1`, `monitor --help | true`: quiet, with
/// the command's own status (analyze: 1, it found something), never 101.
#[test]
fn d2_a_closed_stdout_ends_analyze_and_help_quietly() {
    let fixture = format!(
        "{}/../monitor-detector/tests/data/legacy/uffd_copy_inside_remap_window.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    for (args, code) in [(vec!["analyze", fixture.as_str()], 1), (vec!["--help"], 0)] {
        let out = run(monitor(&args).stdout(Stdio::from(closed_pipe())));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// D2: `monitor check | true` (after loading the BPF object).
#[test]
fn d2_a_closed_stdout_ends_check_quietly() {
    require_root!();
    let _g = serial();
    let out = run(monitor(&["check"]).stdout(Stdio::from(closed_pipe())));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// D2: the daemon's stderr reader goes away before start-up; the daemon
/// logs (start-up lines, the capability line, warnings) into the void and
/// keeps serving, then stops cleanly.
#[test]
fn d2_a_closed_stderr_never_kills_the_daemon() {
    require_root!();
    let _g = serial();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = monitor(&["run", "--listen", &listen, "-v"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::from(closed_pipe()));
    let d = Proc::spawn(cmd);
    let addr: SocketAddr = listen.parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = get(addr, "/healthz", Duration::from_secs(2)) {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never served");
        std::thread::sleep(Duration::from_millis(200));
    }
    scenario(&["uffd-storm", "--count", "1000"]);
    let (code, _) = get(addr, "/healthz", Duration::from_secs(5)).expect("still serving");
    assert_eq!(code, 200);
    let (status, _, _) = d.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "{status}");
}

// ---------------------------------------------------------------------------
// D3, U8: a disk that fills up.

/// D3: the review's case. A 512 KiB tmpfs is filled, the daemon records a
/// storm into it, space is freed, more is recorded, SIGTERM. The first
/// release left a torn line followed by more lines (analyze: exit 2) and a
/// summary claiming nothing was lost. Now every line is whole, the lines
/// kept while the disk was full are written once space is back, analyze
/// accepts the files, and every summary agrees with its file.
#[test]
fn d3_recording_on_a_full_disk_never_tears_and_tells_the_truth() {
    require_root!();
    let _g = serial();
    let fs = Tmpfs::new("full-disk", "512k");
    let filler = fs.fill(40 << 10);
    let dir = fs.path().to_str().expect("utf-8").to_owned();
    let mut d = Proc::spawn(daemon(&["--record", &dir, "--record-max-size", "64K"]));
    let addr = d.serving();
    scenario(&["uffd-storm", "--count", "1000"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        metric(addr, "mmrace_record_errors_total") >= 1.0,
        "the disk must have filled"
    );
    std::fs::remove_file(&filler).expect("free space");
    scenario(&["uffd-storm", "--count", "50"]);
    // The lines kept while the disk was full are written now: no line of
    // any file is torn (the first release: a cut line, then more lines).
    std::thread::sleep(Duration::from_secs(2));
    for f in trace_files(fs.path()) {
        lines_of(&f);
    }
    // A failed rotation is retried after 10 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(addr, "mmrace_record_files_total") < 2.0 {
        if Instant::now() > deadline {
            let (_, body) = get(addr, "/metrics", Duration::from_secs(5)).expect("scrape");
            let rec: Vec<&str> = body
                .lines()
                .filter(|l| l.starts_with("mmrace_record"))
                .collect();
            let (_, _, err) = d.stop(libc::SIGTERM, Duration::from_secs(5));
            panic!("no rotation once space was back: {rec:?}\n{err}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (status, _, err) = d.stop(libc::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "{status}: {err}");
    let files = trace_files(fs.path());
    assert!(!files.is_empty());
    let mut summaries = 0;
    for f in &files {
        let lines = lines_of(f);
        assert!(
            matches!(lines.first(), Some(Line::Header(_))),
            "{}",
            f.display()
        );
        summaries += usize::from(assert_summary_is_true(f, &lines).is_some());
    }
    assert_eq!(
        summaries,
        files.len(),
        "space came back: every file ends with its summary; stderr:\n{err}"
    );
    assert!(
        files.len() >= 2,
        "the 64K files rotated once space was back: {files:?}"
    );
    let (rc, err) = analyze_rc(&files);
    assert!(rc == 0 || rc == 1, "analyze: {rc}: {err}");
}

/// The header of the trace files the writer tests make.
fn writer_test_header() -> monitor_detector::tracefile::Header {
    use monitor_detector::tracefile::{FORMAT_NAME, FORMAT_VERSION, Header};
    Header {
        format: FORMAT_NAME.to_owned(),
        version: FORMAT_VERSION,
        wire_version: 1,
        monitor_version: "test".to_owned(),
        kernel_release: "6.18".to_owned(),
        hostname: "h".to_owned(),
        bpf_object: "atomic".to_owned(),
        start_ktime_ns: 1,
        start_unix_ms: 1,
        hooks: Vec::new(),
        filters: Default::default(),
    }
}

/// D3 at the writer: with a 16 KiB retry buffer on a full 64 KiB tmpfs,
/// lines beyond the buffer are dropped and counted, a loss line marks the
/// gap, and the summary's `written`/`recorder_dropped` match the file.
#[test]
fn d3_the_writer_keeps_whole_lines_and_counts_what_it_drops() {
    require_root!();
    use monitor::tracefile::TraceWriter;
    use monitor_detector::{Data, Event, event::MmState};
    let fs = Tmpfs::new("writer", "64k");
    let path = fs.path().join("t.jsonl");
    let mut w = TraceWriter::create(&path, false)
        .expect("create")
        .with_limit(16 << 10);
    w.write_header(writer_test_header()).expect("header");
    let filler = fs.fill(6 << 10);
    let ev = |i: u64| Event {
        t: 10 + i,
        cpu: 0,
        pid: 1,
        tgid: 1,
        comm: *b"xxxxxxxxxxxxxxx\0",
        task_flags: 0,
        mm: 0x1000,
        mm_gen: 1,
        seq: i + 1,
        cgroup_id: 0,
        memcg_id: 0,
        hdr_flags: 0,
        probe: monitor_common::catalogue::ProbeId::TpExitMmap.into(),
        data: Data::ExitMmapEnd(MmState { mm_flags: 0x200000 }),
    };
    let mut pushed = 0;
    for i in 0..400 {
        w.push(&Line::Event(ev(i)));
        pushed += 1;
        if i % 50 == 0 {
            let _ = w.flush();
        }
    }
    assert!(w.flush().is_err(), "the disk is full");
    assert!(w.dropped_events() > 0, "16 KiB cannot hold 400 lines");
    std::fs::remove_file(&filler).expect("free");
    for i in 400..420 {
        w.push(&Line::Event(ev(i)));
        pushed += 1;
    }
    let s = finish_once_space_is_back(w, path, pushed);
    assert!(s.recorder_dropped > 0 && s.written > 0, "{s:?}");
}

/// Finishes `w` with `delivered` records; the file's summary must agree
/// with its lines and `analyze` must read it.
fn finish_once_space_is_back(
    mut w: monitor::tracefile::TraceWriter,
    path: PathBuf,
    delivered: u64,
) -> Summary {
    let summary = Summary {
        delivered,
        ..Summary::default()
    };
    w.finish(summary).expect("finish once space is back");
    let lines = lines_of(&path);
    let s = assert_summary_is_true(&path, &lines).expect("summary");
    let (rc, err) = analyze_rc(&[path]);
    assert!(rc == 0 || rc == 1, "{err}");
    s
}

/// D3 for compressed files: a gzip member the full disk cut is truncated off
/// and written again whole once space is back, so the file decodes to every
/// line with its summary (`zcat` would read it too).
#[test]
fn d3_a_compressed_member_cut_by_a_full_disk_is_written_again_whole() {
    require_root!();
    use monitor::tracefile::TraceWriter;
    use monitor_detector::{Data, Event, event::MmState};
    let fs = Tmpfs::new("writer-gz", "64k");
    let path = fs.path().join("t.jsonl.gz");
    let mut w = TraceWriter::create(&path, false).expect("create");
    w.write_header(writer_test_header()).expect("header");
    let header_bytes = w.len();
    let filler = fs.fill(2 << 10);
    // Lines that compress poorly (pseudo-random times): more than 2 KiB of gzip.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let n = 300;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.push(&Line::Event(Event {
            t: x >> 8,
            cpu: 0,
            pid: 1,
            tgid: 1,
            comm: *b"xxxxxxxxxxxxxxx\0",
            task_flags: 0,
            mm: 0x1000 + (x & 0xffff_f000),
            mm_gen: 1,
            seq: i + 1,
            cgroup_id: 0,
            memcg_id: 0,
            hdr_flags: 0,
            probe: monitor_common::catalogue::ProbeId::TpExitMmap.into(),
            data: Data::ExitMmapEnd(MmState { mm_flags: x }),
        }));
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert!(w.flush().is_err(), "the disk is full");
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        header_bytes,
        "the cut member was truncated off"
    );
    std::fs::remove_file(&filler).expect("free");
    let s = finish_once_space_is_back(w, path, n);
    assert_eq!((s.written, s.recorder_dropped), (n, 0), "{s:?}");
}

/// U8: `trace --output` on a disk that fills: exit 2 with the reason, and
/// the summary line on stderr all the same; the file is whole.
#[test]
fn u8_trace_output_on_a_full_disk_still_summarises() {
    require_root!();
    let _g = serial();
    let fs = Tmpfs::new("trace-full", "64k");
    let out = fs.path().join("t.jsonl");
    let mut cmd = monitor(&["trace", "-q", "--output", out.to_str().expect("utf-8")]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut t = Proc::spawn(cmd);
    t.wait_line("hooks attached");
    scenario(&["uffd-storm", "--count", "5000"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = t.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "trace did not stop on a full disk"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, _, err) = t.stop(0, Duration::from_secs(1));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("traced, ended by sink closed"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    lines_of(&out);
}

// ---------------------------------------------------------------------------
// D4, U3, U5, U10, U12: bad input on the command line and in files.

fn one_line_error(out: &std::process::Output, expect: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("monitor: error: ") && lines[0].contains(expect),
        "{err}"
    );
}

/// D4: durations past u64 seconds were a panic (exit 101).
#[test]
fn d4_huge_durations_are_one_line_errors() {
    let dir = TempDir::new("d4");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[metrics]\nmap_fill_interval = \"99999999999999999999\"\n",
    )
    .expect("w");
    let cfg = cfg.to_str().expect("utf-8");
    for (args, expect) in [
        (
            vec!["trace", "--duration", "99999999999999999999"],
            "too long",
        ),
        (vec!["trace", "--duration", "9999999999999999h"], "too long"),
        (
            vec![
                "run",
                "--record-max-age",
                "99999999999999999999",
                "--check-config",
            ],
            "--record-max-age: duration",
        ),
        (
            vec!["run", "--config", cfg, "--check-config"],
            "key metrics.map_fill_interval: duration",
        ),
    ] {
        one_line_error(&run(&mut monitor(&args)), expect);
    }
    let out = run(&mut monitor(&[
        "run",
        "--record-max-age",
        "1h30m",
        "--check-config",
    ]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_file_age = \"1h30m\""));
}

/// U3: `1G` is the stated maximum; a size whose multiplication wraps is an
/// error (it silently became a 4 KiB ring).
#[test]
fn u3_ring_sizes_accept_1g_and_never_wrap() {
    let out = run(&mut monitor(&[
        "run",
        "--ring-size",
        "1G",
        "--check-config",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    one_line_error(
        &run(&mut monitor(&[
            "trace",
            "--ring-size",
            "18014398509481988K",
        ])),
        "too large",
    );
}

/// U5: `--btf /dev/zero` grew to gigabytes, a FIFO hung; a 5 MB line was
/// read whole, `/dev/zero` forever.
#[test]
fn u5_inputs_are_bounded() {
    require_root!();
    let dir = TempDir::new("u5");
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("c");
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for (btf, expect) in [
        ("/dev/zero", "a device"),
        (fifo.to_str().expect("utf-8"), "a FIFO"),
    ] {
        let start = Instant::now();
        let out = output_within(monitor(&["check", "--btf", btf]), Duration::from_secs(60));
        one_line_error(&out, expect);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{btf} took {:?}",
            start.elapsed()
        );
    }
    let long = dir.path().join("long.jsonl");
    std::fs::write(&long, vec![b'x'; 5 << 20]).expect("write");
    for f in [long.to_str().expect("utf-8"), "/dev/zero"] {
        let out = run(&mut monitor(&["analyze", f]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{f}: {err}");
        assert!(err.contains("line 1 is longer than 4 MiB"), "{f}: {err}");
        // U4: a file not analysed does not claim to have no findings.
        assert!(!String::from_utf8_lossy(&out.stdout).contains("findings: none\n"));
    }
}

/// `setpriv` arguments: nobody, no capability.
const AS_NOBODY: [&str; 4] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
];

/// U10 and U12: a header from an unknown wire layout, and filters that can
/// never match, get a warning line.
#[test]
fn u10_u12_surprising_input_gets_a_warning() {
    let dir = TempDir::new("u10");
    let src = format!(
        "{}/../monitor-detector/tests/data/legacy/mm_reuse_function_rung.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(src).expect("fixture");
    let f = dir.path().join("w99.jsonl");
    std::fs::write(
        &f,
        text.replacen("\"wire_version\":1", "\"wire_version\":99", 1),
    )
    .expect("w");
    let out = run(&mut monitor(&["analyze", f.to_str().expect("utf-8")]));
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(wire_version) 99, this build has"), "{err}");

    // The rest runs `trace` as nobody: only root can switch to it.
    require_root!();
    let out = run(Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(monitor_bin())
        .args([
            "trace",
            "--comm",
            "a-very-long-command-name",
            "--pid",
            "4000000000",
        ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can never match; use \"a-very-long-com\""),
        "{err}"
    );
    assert!(err.contains("--pid 4000000000: no such process"), "{err}");
    // U6: CAP_SYS_RESOURCE is only needed before 5.11.
    assert!(
        err.contains("plus CAP_SYS_RESOURCE before Linux 5.11"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// D5: BTF of another kernel.

/// D5: `check` accepted such a file with exit 0 and `trace` went blind.
/// Now both refuse it naming the field; an exact copy of the kernel's BTF
/// elsewhere is still accepted.
#[test]
fn d5_btf_that_does_not_describe_the_running_kernel_is_refused() {
    require_root!();
    let _g = serial();
    let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        panic!("the host has kernel BTF");
    };
    let dir = TempDir::new("d5");
    let bad = dir.path().join("shifted.btf");
    std::fs::write(&bad, crate::checks::shift_mm_struct(&raw)).expect("write");
    let bad = bad.to_str().expect("utf-8");
    for args in [
        vec!["check", "--btf", bad],
        vec!["trace", "--btf", bad, "--duration", "1s"],
    ] {
        one_line_error(
            &run(&mut monitor(&args)),
            "does not describe the running kernel (/sys/kernel/btf/vmlinux): mm_struct.",
        );
    }
    let copy = dir.path().join("copy.btf");
    std::fs::write(&copy, &raw).expect("write");
    let out =
        run(monitor(&["check", "--btf", copy.to_str().expect("utf-8")]).stdout(Stdio::null()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// D6: tracefs left mounted.

/// D6: in a private mount namespace without tracefs, `trace` mounts it to
/// attach the syscall tracepoints, then is SIGKILLed. The first release kept
/// the mount for its whole run, so it stayed; now it is released right after
/// attach.
/// D5, the kernel's own word: the attach-time sanity read refuses a wrong
/// layout the file checks cannot see (`checks::sanity_read`).
#[test]
fn d5_the_sanity_read_refuses_a_wrong_layout_the_file_checks_cannot_see() {
    require_root!();
    let _g = serial();
    crate::checks::sanity_read();
}

#[test]
fn d6_sigkill_of_trace_leaves_no_tracefs_mount() {
    require_root!();
    let _g = serial();
    let script = r#"
        umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null
        "$M" trace -q -v --duration 60s 2>"$E" & pid=$!
        for i in $(seq 600); do grep -q 'hooks attached' "$E" && break; sleep 0.1; done
        sleep 0.5
        kill -KILL $pid; wait $pid 2>/dev/null
        sleep 0.2
        grep -c ' /sys/kernel/tracing ' /proc/self/mountinfo || true
    "#;
    let dir = TempDir::new("d6");
    let err = dir.path().join("err");
    let out = run(Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env("M", monitor_bin())
        .env("E", &err));
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        stderr.contains("uffd_ioctl") && !stderr.contains("cannot mount tracefs"),
        "the syscall tracepoints were attached through a tracefs mount: {stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "tracefs still mounted after SIGKILL; stderr: {stderr}"
    );
}

// ---------------------------------------------------------------------------
// S1, U2: the endpoint.

/// Whether the server is done with a (non-blocking) connection: closed,
/// reset, or it answered (a 408).
fn server_done(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 512];
    match s.read(&mut b) {
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        // EOF.
        Ok(0) => true,
        // An answer (a 408): the server is done with it too.
        Ok(_answer) => true,
    }
}

/// Keeps `n` connections to `addr` open until `stop` is set: the even ones
/// silent, the odd ones sending a request head one byte a second; each is
/// reopened as soon as the server is done with it.
fn slowloris(
    addr: SocketAddr,
    n: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let head = b"GET /metrics HTTP/1.1\r\nX-Slow: ";
        let mut conns: Vec<Option<(TcpStream, usize)>> = (0..n).map(|_| None).collect();
        let mut tick = 0usize;
        while !stop.load(Ordering::Relaxed) {
            for (i, c) in conns.iter_mut().enumerate() {
                if c.as_mut().is_none_or(|(s, _)| server_done(s)) {
                    *c = TcpStream::connect(addr)
                        .and_then(|s| s.set_nonblocking(true).map(|()| (s, 0)))
                        .ok();
                }
                if i % 2 == 1
                    && tick.is_multiple_of(10)
                    && let Some((s, sent)) = c
                {
                    let _ = s.write_all(&[head[*sent % head.len()]]);
                    *sent += 1;
                }
            }
            tick += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// S1: 1,000 idle and byte-a-second connections from one local user. The
/// first release (16 slots taken before accept, 5 s each) made scrapes take
/// 24–44 s with 200 of them and `/healthz` time out; the deadline here is a
/// generous 5 s per request, and the latencies are printed.
#[test]
fn s1_a_thousand_slow_connections_cannot_starve_the_endpoint() {
    require_root!();
    let _g = serial();
    monitor::sys::raise_fd_limit(8192);
    let mut d = Proc::spawn(daemon(&[]));
    let addr = d.serving();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = slowloris(addr, 1000, stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    let mut took = Vec::new();
    for path in ["/metrics", "/healthz"].iter().cycle().take(10) {
        let start = Instant::now();
        let (code, body) = get(addr, path, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{path} under 1,000 slow connections: {e}"));
        assert_eq!(code, 200, "{body}");
        took.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("scrapes under 1,000 slow connections: {took:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    attacker.join().expect("attacker");
    let (status, _, err) = d.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "{err}");
}

/// U2: with its descriptor table full, the daemon logged an accept error
/// every 100 ms (111 lines in 8 s); now at most one a minute, and it still
/// serves (the oldest connection is evicted to make room).
#[test]
fn u2_accept_errors_are_throttled() {
    require_root!();
    let _g = serial();
    // How many descriptors the daemon holds once attached, then the same
    // daemon under a limit a few above that (the review used 84 for 78).
    let mut probe = Proc::spawn(daemon(&[]));
    probe.serving();
    let used = std::fs::read_dir(format!("/proc/{}/fd", probe.pid()))
        .expect("fd")
        .count() as u64;
    probe.stop(libc::SIGTERM, Duration::from_secs(5));
    let limit = used + 4;
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={limit}:{limit}"))
        .arg(monitor_bin())
        .args(["run", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut d = Proc::spawn(cmd);
    let addr = d.serving();
    let idle: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let seen = d.collect(Duration::from_secs(4)).join("\n");
    let warnings = seen.matches("accepting a metrics connection").count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} accept warnings in 4 s:\n{seen}"
    );
    let (code, _) = get(addr, "/healthz", Duration::from_secs(15)).expect("still serving");
    assert_eq!(code, 200);
    drop(idle);
    let (status, _, err) = d.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "{err}");
}

// ---------------------------------------------------------------------------
// S2–S4, U11: privileges and files.

/// S2: after attach the daemon runs as an unprivileged user (default:
/// mm-race-monitor, else nobody; or numeric), with no supplementary groups
/// and no capability; `--user root` keeps root, and so does a daemon
/// without CAP_SETUID and CAP_SETGID, saying why.
#[test]
fn s2_the_daemon_switches_to_an_unprivileged_user_after_attach() {
    require_root!();
    let _g = serial();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let default_uid = ["mm-race-monitor", "nobody"]
        .iter()
        .find_map(|n| {
            passwd
                .lines()
                .find(|l| l.starts_with(&format!("{n}:")))?
                .split(':')
                .nth(2)
        })
        .unwrap_or("65534")
        .to_owned();
    for (args, uid) in [
        (vec![], default_uid.as_str()),
        (vec!["--user", "4242:4343"], "4242"),
        (vec!["--user", "root"], "0"),
    ] {
        let mut d = Proc::spawn(daemon(&args));
        let addr = d.serving();
        let line = d
            .seen
            .iter()
            .find(|l| l.contains("user after attach"))
            .cloned()
            .expect("line");
        let pid = d.pid();
        assert_eq!(
            status_field(pid, "Uid:"),
            format!("{uid}\t{uid}\t{uid}\t{uid}"),
            "{line}"
        );
        assert_eq!(status_field(pid, "CapEff:"), "0000000000000000", "{line}");
        assert_eq!(status_field(pid, "CapPrm:"), "0000000000000000");
        if uid != "0" {
            assert_eq!(status_field(pid, "Groups:"), "", "{line}");
            assert!(line.contains(&format!("(uid {uid}")), "{line}");
        }
        scenario(&["uffd-storm", "--count", "100"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(addr, "mmrace_events_delivered_total") < 100.0 {
            assert!(Instant::now() < deadline, "no counting after the switch");
            std::thread::sleep(Duration::from_millis(200));
        }
        let (status, _, err) = d.stop(libc::SIGTERM, Duration::from_secs(5));
        assert!(status.success() && err.contains("(verified)"), "{err}");
    }

    // Without CAP_SETUID and CAP_SETGID (a narrowed bounding set, a
    // container granted only what loading needs) the default user cannot
    // be had: the daemon stays uid 0 without capabilities and says why (the
    // first release blamed `security.user = "root"`); a user asked for
    // explicitly is refused at start.
    let narrowed = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set", "-setuid,-setgid", "--"])
            .arg(monitor_bin())
            .args(["run", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let mut d = Proc::spawn(narrowed(&[]));
    d.wait_line("staying uid 0 (without capabilities) after attach");
    let line = d.wait_line("user after attach");
    assert!(
        line.contains("root (switching to ") && line.ends_with("needs CAP_SETUID and CAP_SETGID)"),
        "{line}"
    );
    d.serving();
    let pid = d.pid();
    assert_eq!(status_field(pid, "Uid:"), "0\t0\t0\t0");
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000000000");
    let (status, _, err) = d.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success() && err.contains("(verified)"), "{err}");

    let out = output_within(narrowed(&["--user", "4242:4343"]), Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("security.user is 4242:4343 but the process lacks CAP_SETUID and CAP_SETGID"),
        "{err}"
    );
}

/// S3 and U11: a record directory writable by others is refused; in a
/// proper one, a symlink planted under the next file names is never
/// followed (the first release created the link's target, root-owned);
/// a second daemon on the same directory is refused.
#[test]
fn s3_u11_record_directories_are_checked_locked_and_never_followed() {
    require_root!();
    let _g = serial();
    let root = TempDir::new("s3");
    let gw = root.path().join("gw");
    std::fs::create_dir(&gw).expect("mkdir");
    std::fs::set_permissions(&gw, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = output_within(
        daemon(&["--record", gw.to_str().expect("utf-8")]),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("writable by everyone"), "{err}");

    let rec = root.path().join("rec");
    std::fs::create_dir(&rec).expect("mkdir");
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let targets = root.path().join("targets");
    std::fs::create_dir(&targets).expect("mkdir");
    let now = std::time::SystemTime::now();
    for s in 0..40 {
        let stamp = monitor::daemon::record::utc_stamp(now + Duration::from_secs(s));
        for n in 0..2 {
            let name = format!("mm-race-{stamp}-{n:04}.trace.jsonl");
            symlink(targets.join(&name), rec.join(&name)).expect("plant");
        }
    }
    let recs = rec.to_str().expect("utf-8").to_owned();
    let mut d = Proc::spawn(daemon(&["--record", &recs]));
    d.serving();
    let second = output_within(daemon(&["--record", &recs]), Duration::from_secs(60));
    let err2 = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err2}");
    assert!(err2.contains("is in use by another monitor"), "{err2}");
    let (status, _, err) = d.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.success(), "{err}");
    assert_eq!(
        std::fs::read_dir(&targets).expect("dir").count(),
        0,
        "a planted link was followed"
    );
    let files = trace_files(&rec)
        .into_iter()
        .filter(|p| !p.symlink_metadata().expect("meta").is_symlink())
        .collect::<Vec<_>>();
    assert_eq!(files.len(), 1, "{files:?}");
}

/// S4: trace and record files are 0600 under umask 022, an existing file is
/// never overwritten without --force, and `trace` drops its capabilities
/// once attached.
#[test]
fn s4_files_are_private_and_trace_drops_capabilities() {
    require_root!();
    let _g = serial();
    let dir = TempDir::new("s4");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = dir.path().join("t.jsonl");
    let outs = out.to_str().expect("utf-8").to_owned();
    // SAFETY: umask is inherited by the child; restored below.
    let old = unsafe { libc::umask(0o022) };
    let mut cmd = monitor(&["trace", "-q", "--output", &outs]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut t = Proc::spawn(cmd);
    unsafe { libc::umask(old) };
    t.wait_line("hooks attached");
    std::thread::sleep(Duration::from_millis(300));
    let pid = t.pid();
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "CapPrm:"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    scenario(&["uffd-storm", "--count", "100"]);
    let (status, _, err) = t.stop(libc::SIGINT, Duration::from_secs(5));
    assert!(status.success(), "{err}");
    let mode = std::fs::metadata(&out).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "keep me").expect("w");
    let o = run(&mut monitor(&[
        "trace",
        "--output",
        precious.to_str().expect("utf-8"),
        "--duration",
        "1s",
    ]));
    one_line_error(&o, "the file exists");
    assert_eq!(std::fs::read_to_string(&precious).expect("r"), "keep me");
}

/// Issue 15: the one-line usage error keeps clap's `tip:`, and every
/// subcommand's help ends with examples.
#[test]
fn usage_errors_keep_the_tip_and_help_has_examples() {
    let out = run(&mut monitor(&["trace", "--", "--frobnicate"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let out = run(&mut monitor(&["trace", "--frobnicate"]));
    one_line_error(&out, "unexpected argument '--frobnicate' found; tip: ");
    for sub in ["trace", "run", "check", "analyze"] {
        let out = run(&mut monitor(&[sub, "--help"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Examples:\n  "),
            "{sub}: {text}"
        );
    }
}
