//! The Chrome trace-event JSON export (`monitor analyze --format perfetto`),
//! opened by Perfetto UI (<https://ui.perfetto.dev>, "Open trace file") and
//! `chrome://tracing`-compatible viewers.
//!
//! Mapping (docs/report.md has the reader's version):
//! * every task is a thread: `pid` = its tgid, `tid` = its pid, named by
//!   `process_name`/`thread_name` metadata events (a second file's ids are
//!   offset by [`FILE_ID_STRIDE`], above the kernel's `pid_max`);
//! * brackets (reaping, `exit_mmap`, `unmap_vmas`, `mfill`, the
//!   `mmap_changing` change, the exec stack move, …) are complete (`X`)
//!   events on the thread that ran them, paired over the whole file; a
//!   bracket that would not nest in its thread's slices becomes an async
//!   (`b`/`e`) slice instead, so every thread's `X` events nest;
//! * faults, copies and every other point event are thread instants (`i`);
//! * every finding is an async slice on the file's "findings" track
//!   (`violation: RULE`, coloured with `cname`) plus an instant on the task
//!   of its deciding event, and its deciding order is a chain of flow
//!   events (`s`/`f`) between zero-length `X` markers at those events;
//! * loss lines are process instants on the findings track.
//!
//! Times: `ts` in µs since the file's recording start (kernel monotonic
//! clock), ns precision; the header's clock pair is in `otherData`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    adapter::{Bracket, Ev, FileView, Shape},
    story,
};

/// Offset between the ids of two files (Linux `pid_max` is at most 2^22).
pub const FILE_ID_STRIDE: u64 = 10_000_000;
/// The findings track's pid within a file's id range.
const FINDINGS_PID: u64 = 9_000_000;

fn us(ns: u64) -> Value {
    // Exact to the ns: integers up to 2^53 ns (104 days) are exact in f64.
    json!(ns as f64 / 1000.0)
}

struct Slice {
    pid: u64,
    tid: u64,
    start: u64,
    end: u64,
    name: String,
    cat: &'static str,
    args: Value,
}

fn cat_of(b: Bracket) -> &'static str {
    match b {
        Bracket::Reap | Bracket::ReaperUnmap | Bracket::Mrelease => "reaper",
        Bracket::ExitMmap | Bracket::UnmapVmas => "exit",
        Bracket::KthreadUseMm => "fault",
        Bracket::Mfill | Bracket::UffdChange => "uffd",
        Bracket::StackMove | Bracket::Exec | Bracket::Migrate | Bracket::HugeMigrationWait => {
            "migration"
        }
    }
}

fn point_cat(e: &Ev) -> &'static str {
    match e.kind {
        "fault" | "kernel_fault" => "fault",
        k if k.starts_with("uffd") || k == "fork" => "uffd",
        k if k.starts_with("reap") || k == "mark_victim" => "reaper",
        "mmdrop" => "exit",
        _ => "migration",
    }
}

fn ev_args(e: &Ev) -> Value {
    json!({
        "seq": e.seq,
        "mm": format!("{:#x}", e.mm),
        "mm_gen": e.mm_gen,
        "cpu": e.cpu,
        "probe": e.probe,
        "detail": e.detail,
    })
}

/// Builds the trace. `generator` names the program (in `otherData`).
pub fn render(files: &[FileView], generator: &str) -> String {
    let mut out: Vec<Value> = Vec::new();
    let mut async_id: u64 = 0;
    let mut flow_id: u64 = 0;
    let multi = files.len() > 1;
    let mut origins = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        let base = fi as u64 * FILE_ID_STRIDE;
        let origin = f
            .clock
            .map(|c| c.0)
            .into_iter()
            .chain(f.events.iter().map(|e| e.t))
            .chain(f.findings.iter().map(|x| x.start_t))
            .min()
            .unwrap_or(0);
        origins.push(json!({
            "file": f.file,
            "ts_zero_ktime_ns": origin,
            "header_clock": f.clock.map(|(k, ms)| json!({"ktime_ns": k, "unix_ms": ms})),
            "kernel_release": f.kernel_release,
            "hostname": f.hostname,
            "pid_offset": base,
        }));
        let t = |ns: u64| ns.saturating_sub(origin);
        let suffix = if multi {
            format!(" [{}]", f.file)
        } else {
            String::new()
        };

        // Names: process (tgid) and thread (pid).
        let mut procs: BTreeMap<u32, String> = BTreeMap::new();
        let mut threads: BTreeMap<(u32, u32), String> = BTreeMap::new();
        let evidence = f.findings.iter().flat_map(|x| x.evidence.iter());
        for e in f.events.iter().chain(evidence) {
            threads
                .entry((e.tgid, e.pid))
                .or_insert_with(|| e.comm.clone());
            if e.pid == e.tgid {
                procs.insert(e.tgid, e.comm.clone());
            } else {
                procs.entry(e.tgid).or_insert_with(|| e.comm.clone());
            }
        }
        for (tgid, name) in &procs {
            out.push(
                json!({"ph": "M", "name": "process_name", "pid": base + u64::from(*tgid),
                "tid": base + u64::from(*tgid), "args": {"name": format!("{name}{suffix}")}}),
            );
        }
        for ((tgid, pid), name) in &threads {
            out.push(
                json!({"ph": "M", "name": "thread_name", "pid": base + u64::from(*tgid),
                "tid": base + u64::from(*pid), "args": {"name": format!("{name} {pid}")}}),
            );
        }
        let fpid = base + FINDINGS_PID;
        out.push(
            json!({"ph": "M", "name": "process_name", "pid": fpid, "tid": fpid,
            "args": {"name": format!("mm race findings{suffix}")}}),
        );
        out.push(
            json!({"ph": "M", "name": "process_sort_index", "pid": fpid, "tid": fpid,
            "args": {"sort_index": -1}}),
        );
        out.push(
            json!({"ph": "M", "name": "thread_name", "pid": fpid, "tid": fpid,
            "args": {"name": "findings"}}),
        );

        // Brackets and points over the whole file.
        let mut slices: Vec<Slice> = Vec::new();
        let mut open: BTreeMap<(u32, Bracket, u64), Vec<&Ev>> = BTreeMap::new();
        let last_t = f.events.iter().map(|e| e.t).max().unwrap_or(origin);
        for e in &f.events {
            let (pid, tid) = (base + u64::from(e.tgid), base + u64::from(e.pid));
            match e.shape {
                Shape::Open(b) => open.entry((e.pid, b, e.mm)).or_default().push(e),
                Shape::Close(b) => match open.get_mut(&(e.pid, b, e.mm)).and_then(Vec::pop) {
                    Some(s) => slices.push(Slice {
                        pid,
                        tid,
                        start: t(s.t),
                        end: t(e.t).max(t(s.t)),
                        name: b.label().to_owned(),
                        cat: cat_of(b),
                        args: json!({"start": ev_args(s), "end": ev_args(e)}),
                    }),
                    None => out.push(json!({"ph": "i", "s": "t", "name": format!("{} (start not seen)", e.kind),
                        "cat": cat_of(b), "ts": us(t(e.t)), "pid": pid, "tid": tid, "args": ev_args(e)})),
                },
                Shape::Point => out.push(json!({"ph": "i", "s": "t", "name": e.kind, "cat": point_cat(e),
                    "ts": us(t(e.t)), "pid": pid, "tid": tid, "args": ev_args(e)})),
            }
        }
        for ((_, b, _), starts) in open {
            for s in starts {
                slices.push(Slice {
                    pid: base + u64::from(s.tgid),
                    tid: base + u64::from(s.pid),
                    start: t(s.t),
                    end: t(last_t).max(t(s.t)),
                    name: format!("{} (end not seen)", b.label()),
                    cat: cat_of(b),
                    args: json!({"start": ev_args(s), "end": null}),
                });
            }
        }

        // Findings: async slices, deciding instants, order flows with markers.
        for (xi, x) in f.findings.iter().enumerate() {
            let st = story::tell(x);
            let id = format!("{fi}.{xi}");
            let name = format!("{}: {}", x.severity, x.rule);
            let cname = match x.severity {
                "violation" => "terrible",
                "uncertain" => "bad",
                _ => "good",
            };
            let args = json!({
                "explanation": x.explanation,
                "mm": format!("{:#x}", x.mm),
                "mm_gen": x.mm_gen,
                "tasks": x.tasks.iter().map(|t| format!("{}[{}/{}]", t.comm, t.pid, t.tgid)).collect::<Vec<_>>(),
                "details": x.details,
                "evidence_events": x.evidence.len(),
            });
            out.push(json!({"ph": "b", "cat": "finding", "name": name, "id": id, "pid": fpid, "tid": fpid,
                "ts": us(t(x.start_t)), "cname": cname, "args": args}));
            out.push(json!({"ph": "e", "cat": "finding", "name": name, "id": id, "pid": fpid, "tid": fpid,
                "ts": us(t(x.end_t.max(x.start_t))), "cname": cname}));
            if let Some(d) = st.deciding {
                let e = &x.evidence[d];
                out.push(json!({"ph": "i", "s": "t", "cat": "finding", "name": format!("deciding: {name}"),
                    "ts": us(t(e.t)), "pid": base + u64::from(e.tgid), "tid": base + u64::from(e.pid),
                    "cname": cname, "args": {"why": st.deciding_why, "event": ev_args(e)}}));
            }
            for (k, col) in st.order.iter().enumerate() {
                let e = &x.evidence[*col];
                let (pid, tid, ts) = (
                    base + u64::from(e.tgid),
                    base + u64::from(e.pid),
                    us(t(e.t)),
                );
                slices.push(Slice {
                    pid,
                    tid,
                    start: t(e.t),
                    end: t(e.t),
                    name: format!("order {}: {}", k + 1, e.kind),
                    cat: "order",
                    args: json!({"finding": name, "event": ev_args(e)}),
                });
                if k + 1 < st.order.len() {
                    flow_id += 1;
                    out.push(
                        json!({"ph": "s", "cat": "order", "name": format!("order: {name}"),
                        "id": flow_id, "ts": ts, "pid": pid, "tid": tid}),
                    );
                    let n = &x.evidence[st.order[k + 1]];
                    out.push(json!({"ph": "f", "bp": "e", "cat": "order", "name": format!("order: {name}"),
                        "id": flow_id, "ts": us(t(n.t)), "pid": base + u64::from(n.tgid),
                        "tid": base + u64::from(n.pid)}));
                }
            }
        }
        for (lt, n) in &f.losses {
            out.push(
                json!({"ph": "i", "s": "p", "cat": "loss", "name": format!("{n} record(s) lost"),
                "ts": us(t(*lt)), "pid": fpid, "tid": fpid, "cname": "bad"}),
            );
        }

        // Every thread's X events must nest: longest first at equal starts;
        // a slice that would cross its parent's end becomes an async slice.
        slices.sort_by(|a, b| {
            (a.pid, a.tid, a.start, std::cmp::Reverse(a.end)).cmp(&(
                b.pid,
                b.tid,
                b.start,
                std::cmp::Reverse(b.end),
            ))
        });
        let mut stack: Vec<(u64, u64, u64)> = Vec::new(); // (pid, tid, end)
        for s in slices {
            while stack
                .last()
                .is_some_and(|(p, t, end)| (*p, *t) != (s.pid, s.tid) || *end < s.start)
            {
                stack.pop();
            }
            let nests = stack.last().is_none_or(|(_, _, end)| s.end <= *end);
            if nests {
                stack.push((s.pid, s.tid, s.end));
                out.push(
                    json!({"ph": "X", "cat": s.cat, "name": s.name, "ts": us(s.start),
                    "dur": us(s.end - s.start), "pid": s.pid, "tid": s.tid, "args": s.args}),
                );
            } else {
                async_id += 1;
                let id = format!("overlap.{async_id}");
                out.push(
                    json!({"ph": "b", "cat": s.cat, "name": s.name, "id": id, "ts": us(s.start),
                    "pid": s.pid, "tid": s.tid, "args": s.args}),
                );
                out.push(
                    json!({"ph": "e", "cat": s.cat, "name": s.name, "id": id, "ts": us(s.end),
                    "pid": s.pid, "tid": s.tid}),
                );
            }
        }
    }
    let doc = json!({
        "displayTimeUnit": "ns",
        "otherData": {"generator": generator, "files": origins},
        "traceEvents": out,
    });
    let mut s = serde_json::to_string(&doc).unwrap_or_else(|e| {
        format!(
            "{{\"traceEvents\":[],\"otherData\":{{\"error\":{:?}}}}}",
            e.to_string()
        )
    });
    s.push('\n');
    s
}
