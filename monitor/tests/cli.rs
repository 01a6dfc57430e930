//! Bad input: one clear line on stderr, exit code 2, no panic, nothing loaded.

use std::process::Command;

use crate::util::{monitor_bin, require_root, run};

/// Runs the monitor and checks the one-line error contract.
fn fails_with(args: &[&str], expect: &str) {
    fails_with_cmd(Command::new(monitor_bin()).args(args), expect);
}

fn fails_with_cmd(cmd: &mut Command, expect: &str) {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{cmd:?}: expected exit 2, stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{cmd:?}: expected one line, got:\n{stderr}");
    assert!(
        lines[0].starts_with("monitor: error: "),
        "{cmd:?}: {stderr}"
    );
    assert!(
        lines[0].contains(expect),
        "{cmd:?}: expected {expect:?} in:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{cmd:?} panicked:\n{stderr}");
    assert!(out.stdout.is_empty(), "{cmd:?} printed on stdout");
}

#[test]
fn unknown_flag() {
    fails_with(&["trace", "--bogus"], "unexpected argument '--bogus'");
}

#[test]
fn bad_duration() {
    fails_with(&["trace", "--duration", "10 parsecs"], "unknown unit");
    fails_with(&["trace", "--duration", "0s"], "must be positive");
}

#[test]
fn bad_ring_size() {
    fails_with(&["trace", "--ring-size", "3000"], "power of two");
}

#[test]
fn unknown_hook() {
    fails_with(
        &["trace", "--hooks", "exit_mmap,nope"],
        "unknown hook \"nope\"",
    );
}

#[test]
fn missing_subcommand_is_a_usage_error() {
    let out = run(&mut Command::new(monitor_bin()));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn not_root() {
    // Dropping to nobody needs root in the first place.
    require_root!();
    // Drop to nobody with no capabilities.
    fails_with_cmd(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(monitor_bin())
            .args(["trace", "--duration", "1s"]),
        "needs root",
    );
}

#[test]
fn missing_btf() {
    // The monitor checks for root before it reads BTF or opens its output.
    require_root!();
    fails_with(
        &["trace", "--btf", "/nonexistent/vmlinux", "--duration", "1s"],
        "cannot read kernel BTF from /nonexistent/vmlinux",
    );
}

#[test]
fn unreadable_btf() {
    // The monitor checks for root before it reads BTF or opens its output.
    require_root!();
    // A directory cannot be read as a file, even by root.
    fails_with(
        &["trace", "--btf", "/", "--duration", "1s"],
        "cannot read kernel BTF from /",
    );
}

#[test]
fn garbage_btf() {
    // The monitor checks for root before it reads BTF or opens its output.
    require_root!();
    fails_with(
        &["trace", "--btf", "/etc/os-release", "--duration", "1s"],
        "is unusable: not BTF data",
    );
}

#[test]
fn unwritable_output() {
    // The monitor checks for root before it reads BTF or opens its output.
    require_root!();
    fails_with(
        &[
            "trace",
            "--output",
            "/nonexistent-dir/trace.jsonl",
            "--duration",
            "1s",
        ],
        "cannot write trace file /nonexistent-dir/trace.jsonl",
    );
    fails_with(
        &["trace", "--output", "/tmp", "--duration", "1s"],
        "cannot write trace file /tmp: is a directory",
    );
}

/// The detector's fixtures (recorded or hand-built trace files).
fn fixture(name: &str) -> String {
    format!(
        "{}/../monitor-detector/tests/data/legacy/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn analyze(files: &[&str]) -> (Option<i32>, String, String) {
    let out = run(Command::new(monitor_bin()).arg("analyze").args(files));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `monitor analyze`: 0 without findings, 1 with findings, 2 on bad input
/// (errors win), with the file and line of the problem.
#[test]
fn analyze_exit_codes() {
    // (benign_function_rung.jsonl has a near miss since every accessor is
    // judged: the owner thread's refused kernel-mode fault.)
    let benign = fixture("mm_reuse_function_rung.jsonl");
    let (code, out, err) = analyze(&[&benign]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("findings: none"), "{out}");

    let violation = fixture("uffd_copy_inside_remap_window.jsonl");
    let (code, out, err) = analyze(&[&benign, &violation]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("violation  uffd_copy_vs_mm_change"),
        "the finding must be shown: {out}"
    );
    assert!(err.is_empty(), "{err}");

    let malformed = fixture("error_malformed_line.jsonl");
    let (code, out, err) = analyze(&[&violation, &malformed]);
    assert_eq!(code, Some(2), "errors win over findings: {out}{err}");
    assert!(
        err.contains("error_malformed_line.jsonl:12: malformed line"),
        "the error names file and line: {err}"
    );
    assert!(
        out.contains("violation  uffd_copy_vs_mm_change"),
        "the good file is still analyzed: {out}"
    );

    let (code, _, err) = analyze(&["/nonexistent/trace.jsonl"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("monitor: error: /nonexistent/trace.jsonl: cannot read"),
        "{err}"
    );

    let (code, out, err) = analyze(&[&fixture("error_missing_header.jsonl")]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("error_missing_header.jsonl:1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn analyze_needs_a_file() {
    fails_with(
        &["analyze"],
        "the following required arguments were not provided: <FILE>...",
    );
}

/// `--output x.gz` / `x.zst` traces (written by the trace writer, one
/// member per flush) read back through `monitor analyze` with the same
/// findings as the plain file; a compressed file cut inside a member fails
/// with one line naming it torn, after analysing what was whole.
#[test]
fn compressed_traces_round_trip_through_analyze() {
    use monitor::tracefile::TraceWriter;
    use monitor_detector::tracefile::{Line, parse_line};
    let text =
        std::fs::read_to_string(fixture("uffd_copy_inside_remap_window.jsonl")).expect("fixture");
    let dir = std::env::temp_dir().join(format!("mmrace-compress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let findings = |path: &std::path::Path| {
        let out = run(Command::new(monitor_bin())
            .args(["analyze", "--format", "json"])
            .arg(path));
        // JSON lines; the findings without the file name.
        let found: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
            .filter(|v| v["type"] == "finding")
            .map(|mut v| {
                v["file"] = serde_json::Value::Null;
                v
            })
            .collect();
        (
            out.status.code(),
            found,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let write = |name: &str| {
        let path = dir.join(name);
        let mut w = TraceWriter::create(&path, false).expect("create");
        let mut summary = None;
        for l in text.lines() {
            match parse_line(l).expect("fixture line") {
                Line::Header(h) => w.write_header(h).expect("header"),
                Line::Summary(s) => summary = Some(s),
                line => w.push_serialized(&line, l),
            }
        }
        w.finish(summary.expect("summary")).expect("finish");
        path
    };
    let plain = findings(&write("t.jsonl"));
    assert_eq!((plain.0, plain.1.len()), (Some(1), 1), "{plain:?}");
    for name in ["t.jsonl.gz", "t.jsonl.zst"] {
        let path = write(name);
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !bytes.starts_with(b"{"),
            "{name} is not compressed: {:?}",
            &bytes[..8]
        );
        let (code, f, err) = findings(&path);
        assert_eq!(
            (code, &f),
            (plain.0, &plain.1),
            "{name} analyses as the plain file: {err}"
        );
        // Cut inside the last member (the first holds the header).
        std::fs::write(&path, &bytes[..bytes.len() - 10]).expect("truncate");
        let out = run(Command::new(monitor_bin()).arg("analyze").arg(&path));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("{name}: after line "))
                && err.contains("torn file")
                && !err.contains("malformed"),
            "{err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
