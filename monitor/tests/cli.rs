//! Bad input: one clear line on stderr, exit code 2, no panic, nothing loaded.

use std::process::Command;

use crate::util::{monitor_bin, run};

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
    fails_with(
        &["trace", "--btf", "/nonexistent/vmlinux", "--duration", "1s"],
        "cannot read kernel BTF from /nonexistent/vmlinux",
    );
}

#[test]
fn unreadable_btf() {
    // A directory cannot be read as a file, even by root.
    fails_with(
        &["trace", "--btf", "/", "--duration", "1s"],
        "cannot read kernel BTF from /",
    );
}

#[test]
fn garbage_btf() {
    fails_with(
        &["trace", "--btf", "/etc/os-release", "--duration", "1s"],
        "is unusable: not BTF data",
    );
}

#[test]
fn unwritable_output() {
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
