//! Human rendering of events (the `trace` table) and small formatting helpers.

use monitor_common::event::Value;
use monitor_common::{mmf, pf, vm_fault};
use monitor_detector::{CoverageState, Event, tracefile::HookStatus};

/// Column header of the event table.
pub const TABLE_HEADER: &str = "    TIME(s) CPU     PID COMM             EVENT                            MM  GEN:SEQ  DETAILS";

/// What `trace` and the daemon say at start about the hook plan: how many
/// hooks attached; the unavailable ones, one line per reason (on a kernel
/// without kprobes most share one); what that costs each detector rule.
pub fn plan_lines(hooks: &[HookStatus], object: &str) -> Vec<String> {
    let attached = hooks.iter().filter(|h| h.target.is_some()).count();
    let mut lines = vec![format!(
        "{attached} of {} hooks attached (kernel {}, {object} BPF object)",
        hooks.len(),
        crate::sys::kernel_release(),
    )];
    let mut unavailable: Vec<(String, Vec<&str>)> = Vec::new();
    for h in hooks.iter().filter(|h| h.target.is_none()) {
        let why = h
            .refused
            .last()
            .map_or("no candidate".to_owned(), |r| r.reason.clone());
        match unavailable.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => names.push(h.hook.name()),
            None => unavailable.push((why, vec![h.hook.name()])),
        }
    }
    for (why, names) in unavailable {
        let (noun, verb) = if names.len() == 1 {
            ("hook", "is")
        } else {
            ("hooks", "are")
        };
        lines.push(format!(
            "{noun} {} {verb} unavailable: {why}",
            names.join(", ")
        ));
    }
    for r in monitor_detector::coverage(hooks) {
        if r.state != CoverageState::Full {
            lines.push(format!(
                "rule {} is {}: {} (details: monitor check)",
                r.rule.name(),
                r.state.name(),
                r.reasons.first().map_or("", String::as_str)
            ));
        }
    }
    lines
}

/// Names for `enum migrate_reason` (stable since 5.x).
pub fn migrate_reason(r: u32) -> String {
    match r {
        0 => "compaction".into(),
        1 => "memory_failure".into(),
        2 => "memory_hotplug".into(),
        3 => "syscall_or_cpuset".into(),
        4 => "mempolicy_mbind".into(),
        5 => "numa_misplaced".into(),
        6 => "contig_range".into(),
        7 => "longterm_pin".into(),
        8 => "demotion".into(),
        n => format!("reason_{n}"),
    }
}

/// The `mm->flags` bits the monitor interprets, as words.
pub fn mm_flag_names(flags: u64) -> String {
    let mut v = Vec::new();
    if flags & (1 << mmf::MMF_OOM_SKIP) != 0 {
        v.push("OOM_SKIP");
    }
    if flags & (1 << mmf::MMF_UNSTABLE) != 0 {
        v.push("UNSTABLE");
    }
    if v.is_empty() {
        format!("{flags:#x}")
    } else {
        format!("{flags:#x}[{}]", v.join(","))
    }
}

/// A `vm_fault_t` result as words.
pub fn fault_result(ret: u32) -> String {
    let mut v = Vec::new();
    for (bit, name) in [
        (vm_fault::OOM, "OOM"),
        (vm_fault::SIGBUS, "SIGBUS"),
        (vm_fault::MAJOR, "MAJOR"),
        (vm_fault::HWPOISON, "HWPOISON"),
        (vm_fault::SIGSEGV, "SIGSEGV"),
        (vm_fault::NOPAGE, "NOPAGE"),
        (vm_fault::RETRY, "RETRY"),
        (vm_fault::COMPLETED, "COMPLETED"),
    ] {
        if ret & bit != 0 {
            v.push(name);
        }
    }
    if v.is_empty() {
        "0".into()
    } else {
        v.join("|")
    }
}

fn errno_name(ret: i64) -> String {
    match ret {
        -11 => "-EAGAIN".into(),
        -2 => "-ENOENT".into(),
        -17 => "-EEXIST".into(),
        -14 => "-EFAULT".into(),
        -12 => "-ENOMEM".into(),
        -22 => "-EINVAL".into(),
        r => r.to_string(),
    }
}

/// The DETAILS column for one event: every payload field as `name=value`,
/// in catalogue order, with words for the values the kernel encodes
/// (`mm->flags` bits, `vm_fault_t`, errnos, migration reasons).
pub fn details(ev: &Event) -> String {
    let mut out = String::new();
    ev.data.fields().for_each(&mut |name, v| {
        if !out.is_empty() {
            out.push(' ');
        }
        let text = match (name, v) {
            ("mm_flags", Value::Hex(f)) => mm_flag_names(f),
            ("reason", Value::Unsigned(r)) => migrate_reason(r as u32),
            ("ret", Value::Unsigned(r)) => fault_result(r as u32),
            ("ret", Value::Signed(r)) => errno_name(r),
            (_, Value::Unsigned(n)) => n.to_string(),
            (_, Value::Signed(n)) => n.to_string(),
            (_, Value::Hex(n)) => format!("{n:#x}"),
            (_, Value::Bool(b)) => b.to_string(),
            (_, Value::Str(b)) => String::from_utf8_lossy(b).into_owned(),
            (_, Value::Name(n)) => n.to_owned(),
            (_, Value::Null) => "unknown".to_owned(),
        };
        out.push_str(name);
        out.push('=');
        out.push_str(&text);
    });
    out
}

/// Short display of a generation id: the BPF side stamps generations with the
/// kernel time of their first event; shown as milliseconds since boot.
pub fn short_gen(mm_gen: u64) -> String {
    if mm_gen == 0 {
        "-".into()
    } else {
        format!("{}", mm_gen / 1_000_000)
    }
}

/// One row of the event table; `t0` is the recording's start (kernel time).
pub fn table_row(ev: &Event, t0: u64) -> String {
    let t = ev.t.saturating_sub(t0) as f64 / 1e9;
    let mm = if ev.mm == 0 {
        "-".to_owned()
    } else {
        format!("{:#x}", ev.mm)
    };
    let gs = if ev.is_sequenced() {
        format!("{}:{}", short_gen(ev.mm_gen), ev.seq)
    } else {
        "-".to_owned()
    };
    let comm = if ev.task_flags & pf::PF_KTHREAD != 0 {
        format!("[{}]", ev.comm())
    } else {
        ev.comm().into_owned()
    };
    format!(
        "{t:>11.6} {:>3} {:>7} {:<16.16} {:<22} {:>18} {:>8}  {}",
        ev.cpu,
        ev.pid,
        comm,
        ev.kind(),
        mm,
        gs,
        details(ev)
    )
}
