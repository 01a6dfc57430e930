//! `monitor analyze --html` and `--format perfetto`, from the outside: the
//! HTML report of real traces recorded in a 6.12 VM (`tests/data/report/`,
//! made with `monitor trace --output` during `scenario oom-reap --overlap`,
//! `scenario oom-reap --vhost` and `scenario uffd-race --event fork`) and of
//! a synthetic violation is opened in headless Chromium: one lane per task,
//! events in per-mm sequence order, the verdict, no console message, no
//! request for anything, a screenshot that is not blank. Hostile task and
//! file names stay text. Thousands of findings stay one page. The Perfetto
//! export is checked against the trace-event format's structure (and the
//! checker against broken traces).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use monitor_detector::{Data, Finding, analyze_texts};
use serde_json::Value;

use crate::{
    browser::{self, Page},
    util::{monitor_bin, run, tempdir::TempDir},
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/report")
        .join(name)
}

/// Real VM recordings, each with one near miss, and the synthetic violation.
const TRACES: [&str; 4] = [
    "vm-6.12-reaper-exit-overlap.jsonl",
    "vm-6.12-vhost-fault-sigbus.jsonl",
    "vm-6.12-uffd-copy-vs-fork.jsonl",
    "synthetic-uffd-copy-inside-remap-window.jsonl",
];

fn findings_of(paths: &[PathBuf]) -> Vec<Finding> {
    let texts: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(p).expect("trace"),
            )
        })
        .collect();
    let report = analyze_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    assert_eq!(report.errors().count(), 0, "the traces analyze cleanly");
    report.findings().map(|(_, f)| f.clone()).collect()
}

/// Runs `monitor analyze ARGS FILES`; returns (exit code, stdout, stderr).
fn analyze(args: &[&str], files: &[PathBuf]) -> (Option<i32>, String, String) {
    let out = run(Command::new(monitor_bin())
        .arg("analyze")
        .args(args)
        .args(files));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn html_report(dir: &TempDir, files: &[PathBuf]) -> PathBuf {
    let out = dir.path().join("report.html");
    let (code, stdout, stderr) = analyze(&["--html", out.to_str().expect("utf-8")], files);
    assert_eq!(
        code,
        Some(1),
        "findings give exit status 1: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("findings:"),
        "--html keeps the table on stdout: {stdout}"
    );
    assert!(stderr.contains("monitor: wrote"), "{stderr}");
    out
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// What the page shows of each finding, read from the DOM and the layout.
const DOM_SUMMARY: &str = r#"Array.from(document.querySelectorAll("details.finding")).map(a => ({
  rule: a.dataset.rule,
  severity: a.dataset.severity,
  lanes: Array.from(a.querySelectorAll("g.lane")).map(l => Number(l.dataset.pid)),
  laneTops: Array.from(a.querySelectorAll("g.lane rect")).map(r => r.getBBox().y),
  events: Array.from(a.querySelectorAll("g.ev")).map(e => ({
    seq: Number(e.dataset.seq), gen: Number(e.dataset.gen), kind: e.dataset.kind,
    lane: Number(e.dataset.lane), x: e.getBBox().x + e.getBBox().width / 2,
    y: e.getBBox().y + e.getBBox().height / 2, deciding: e.classList.contains("deciding") })),
  verdict: a.querySelector("p.verdict").textContent,
  windows: a.querySelectorAll("rect.window").length,
  docs: a.querySelector("a.docs").getAttribute("href"),
  visible: a.querySelector("svg.lanes").getBoundingClientRect().height > 0,
}))"#;

/// Lane of an evidence event: a mark_victim stands for its victim.
fn lane_pid(e: &monitor_detector::Event) -> u32 {
    match &e.data {
        Data::MarkVictim(v) => v.victim_pid,
        _ => e.pid,
    }
}

fn check_findings_drawn(page: &mut Page<'_>, expected: &[Finding]) {
    let shown = page.eval(DOM_SUMMARY);
    let shown = shown.as_array().expect("findings in the DOM");
    assert_eq!(shown.len(), expected.len(), "one article per finding");
    for (f, s) in expected.iter().zip(shown) {
        let what = format!("{} {}", f.severity.name(), f.kind.name());
        assert_eq!(s["rule"], f.kind.name(), "{what}");
        assert_eq!(s["severity"], f.severity.name(), "{what}");
        assert_eq!(s["visible"], true, "{what}: the picture is laid out");
        // One lane per task, in the finding's order.
        let lanes: Vec<u64> = s["lanes"]
            .as_array()
            .expect("lanes")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        let tasks: Vec<u64> = f.tasks.iter().map(|t| u64::from(t.pid)).collect();
        assert_eq!(lanes, tasks, "{what}: one lane per task");
        let tops: BTreeSet<i64> = s["laneTops"]
            .as_array()
            .expect("tops")
            .iter()
            .map(|v| v.as_f64().expect("y") as i64)
            .collect();
        assert_eq!(tops.len(), tasks.len(), "{what}: lanes are drawn apart");
        // Every evidence event, in per-mm sequence order, left to right, in
        // its task's lane.
        let events = s["events"].as_array().expect("events");
        assert_eq!(
            events.len(),
            f.evidence.len(),
            "{what}: every evidence event"
        );
        let mut last_x = f64::MIN;
        for (i, (e, d)) in f.evidence.iter().zip(events).enumerate() {
            assert_eq!(d["seq"], e.seq, "{what}: column {i}");
            assert_eq!(d["gen"], e.mm_gen, "{what}: column {i}");
            assert_eq!(d["kind"], e.kind(), "{what}: column {i}");
            let lane = d["lane"].as_u64().expect("lane") as usize;
            assert_eq!(
                lanes[lane],
                u64::from(lane_pid(e)),
                "{what}: seq {} is in its task's lane",
                e.seq
            );
            let x = d["x"].as_f64().expect("x");
            assert!(
                x > last_x,
                "{what}: seq {} is right of the one before",
                e.seq
            );
            last_x = x;
            if i > 0 && f.evidence[i - 1].mm_gen == e.mm_gen {
                assert!(f.evidence[i - 1].seq < e.seq, "{what}: seq order");
            }
            let lane_top = s["laneTops"][lane].as_f64().expect("top");
            let y = d["y"].as_f64().expect("y");
            assert!(
                y > lane_top && y < lane_top + 60.0,
                "{what}: seq {} is drawn inside its lane",
                e.seq
            );
        }
        let deciding = events.iter().filter(|d| d["deciding"] == true).count();
        assert_eq!(deciding, 1, "{what}: one deciding event");
        assert!(
            s["windows"].as_u64().expect("windows") >= 1,
            "{what}: window shaded"
        );
        let verdict = s["verdict"].as_str().expect("verdict");
        assert!(
            verdict.contains(&f.explanation),
            "{what}: the verdict shows the explanation: {verdict}"
        );
        let label = if f.severity.name() == "near_miss" {
            "near miss"
        } else {
            f.severity.name()
        };
        assert!(
            verdict.starts_with(&format!("Verdict: {label}")),
            "{verdict}"
        );
        assert_eq!(
            s["docs"],
            format!("{}#rule-{}", monitor::report::html::DOCS_URL, f.kind.name())
        );
    }
}

/// Acceptance: the report of real VM recordings (and a synthetic violation)
/// opens in Chromium without console errors or requests and shows each
/// finding's lanes; the screenshot is not blank.
#[test]
fn html_report_of_vm_traces_opens_in_chromium_with_each_findings_lanes() {
    let files: Vec<PathBuf> = TRACES.iter().map(|t| data(t)).collect();
    let expected = findings_of(&files);
    // Five: the reaper/exit overlap recording also holds an exiting owner
    // thread's fault on the reaped mm (a near miss since every accessor is
    // judged).
    assert_eq!(expected.len(), 5, "{expected:#?}");
    // Real kernels carry every fix: the only violation is the synthetic one.
    assert_eq!(
        expected
            .iter()
            .filter(|f| f.severity.name() == "violation")
            .count(),
        1,
        "{expected:#?}"
    );
    assert!(
        expected
            .iter()
            .any(|f| f.evidence.len() == 32 && f.details.contains_key("evidence_omitted")),
        "one finding has a full (truncated) evidence list"
    );
    let dir = TempDir::new("report-html");
    let html = html_report(&dir, &files);
    let text = std::fs::read_to_string(&html).expect("report");
    assert_self_contained(&text);
    let Some(mut b) = browser::chromium() else {
        return;
    };
    let url = file_url(&html);
    let mut page = b.open(&url);
    check_findings_drawn(&mut page, &expected);
    let png = page.screenshot();
    let variance = page.screenshot_variance(&png);
    assert!(
        variance > 100.0,
        "the screenshot is blank (variance {variance})"
    );
    let complaints = page.complaints(&url);
    assert!(
        complaints.is_empty(),
        "the report complained: {complaints:#?}"
    );
    drop(page);
    if let Some(out) = std::env::var_os("MONITOR_REPORT_SCREENSHOT") {
        docs_screenshot(&mut b, &dir, Path::new(&out));
    }
}

/// Nothing in the file refers to anything outside it but the rule links.
fn assert_self_contained(html: &str) {
    for needle in [
        "src=\"http",
        "src='http",
        "@import",
        "url(http",
        "<link",
        "<iframe",
    ] {
        assert!(!html.contains(needle), "the report loads {needle}");
    }
    for (i, _) in html.match_indices("href=\"http") {
        assert!(
            html[i..].starts_with(&format!("href=\"{}#", monitor::report::html::DOCS_URL)),
            "only documentation links leave the file: {}",
            &html[i..(i + 120).min(html.len())]
        );
    }
    assert!(html.contains("Content-Security-Policy"));
}

/// `MONITOR_REPORT_SCREENSHOT=docs/report-vhost-near-miss.png`: the picture
/// in docs/ and the README, the vhost near miss as the report draws it.
fn docs_screenshot(b: &mut browser::Browser, dir: &TempDir, out: &Path) {
    let html = dir.path().join("vhost.html");
    let (code, _, err) = analyze(
        &["--html", html.to_str().expect("utf-8")],
        &[data(TRACES[1])],
    );
    assert_eq!(code, Some(1), "{err}");
    let mut page = b.open(&file_url(&html));
    let rect = page.eval(
        "(() => { const r = document.querySelector('details.finding').getBoundingClientRect(); \
         return {x: r.x - 8, y: r.y + window.scrollY - 8, width: r.width + 16, height: r.height + 16}; })()",
    );
    let png = page.clip_screenshot(&rect);
    std::fs::write(out, decode_base64(&png)).expect("write the screenshot");
    eprintln!("wrote {}", out.display());
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && *c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(val(*c))).collect();
        let n = v.iter().fold(0u32, |a, x| (a << 6) | x) << (6 * (4 - v.len()));
        out.extend(&n.to_be_bytes()[1..v.len()]);
    }
    out
}

/// The checks above can fail: a page that logs, throws and loads an image
/// is reported, and a blank page has no variance.
#[test]
fn browser_checks_catch_console_errors_requests_and_blank_pages() {
    let Some(mut b) = browser::chromium() else {
        return;
    };
    let dir = TempDir::new("report-broken");
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><p>x</p><img src=\"http://127.0.0.1:9/pixel.png\">\
         <script>console.error('drawn wrong'); throw new Error('lane missing');</script>",
    )
    .expect("write");
    let url = file_url(&bad);
    let mut page = b.open(&url);
    let complaints = page.complaints(&url).join("\n");
    assert!(complaints.contains("console.error"), "{complaints}");
    assert!(complaints.contains("lane missing"), "{complaints}");
    assert!(
        complaints.contains("request: http://127.0.0.1:9/pixel.png"),
        "{complaints}"
    );
    drop(page);
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").expect("write");
    let mut page = b.open(&file_url(&blank));
    let png = page.screenshot();
    let v = page.screenshot_variance(&png);
    assert!(v < 1.0, "a blank page has no variance, got {v}");
}

/// A trace is untrusted input: task and file names with markup stay text.
#[test]
fn hostile_task_and_file_names_stay_text() {
    let dir = TempDir::new("report-hostile");
    // At most 15 bytes: a task name is `TASK_COMM_LEN` (16) with its NUL, and
    // the reader keeps no more.
    let evil_comm = "<img src=//x>";
    let evil_file = dir.path().join("t<script>alert(2)<!--.jsonl");
    let text = std::fs::read_to_string(data(TRACES[3]))
        .expect("fixture")
        .replace(
            "\"uffd-monitor\"",
            &serde_json::to_string(evil_comm).expect("json"),
        );
    std::fs::write(&evil_file, text).expect("write");
    let html = html_report(&dir, std::slice::from_ref(&evil_file));
    let raw = std::fs::read_to_string(&html).expect("report");
    assert!(!raw.contains(evil_comm), "raw markup from the trace");
    assert!(
        !raw.contains("<script>alert"),
        "raw markup from the file name"
    );
    assert!(raw.contains("&lt;img src=//x&gt;"));
    let Some(mut b) = browser::chromium() else {
        return;
    };
    let url = file_url(&html);
    let mut page = b.open(&url.replace('<', "%3C").replace('>', "%3E"));
    let v = page.eval(
        "({imgs: document.images.length, scripts: document.scripts.length, \
          task: Array.from(document.querySelectorAll('g.lane text.task')).map(t => t.textContent)})",
    );
    assert_eq!(v["imgs"], 0, "{v}");
    assert_eq!(v["scripts"], 1, "only the report's own script: {v}");
    assert!(
        v["task"].to_string().contains("<img src=//x>"),
        "the name is shown as text: {v}"
    );
}

/// Thousands of findings: a few hundred are drawn, all are indexed, the
/// index is paginated, and the page still opens cleanly.
#[test]
fn thousands_of_findings_stay_one_readable_page() {
    const N: usize = 2500;
    let template = std::fs::read_to_string(data(TRACES[3])).expect("fixture");
    let mut lines = template.lines();
    let mut text = String::from(lines.next().expect("header"));
    text.push('\n');
    let body: Vec<&str> = lines.filter(|l| l.contains("\"type\":\"event\"")).collect();
    for i in 0..N {
        let mm = format!("0xffff8880{:08x}", 0x0100_0000 + i * 0x1000);
        for l in &body {
            text.push_str(&l.replace("0xffff888007104e00", &mm).replace(
                "\"mm_gen\":12000000000",
                &format!("\"mm_gen\":{}", 12_000_000_000u64 + i as u64),
            ));
            text.push('\n');
        }
    }
    let dir = TempDir::new("report-many");
    let trace = dir.path().join("many.jsonl");
    std::fs::write(&trace, text).expect("write");
    let html = html_report(&dir, std::slice::from_ref(&trace));
    let size = std::fs::metadata(&html).expect("report").len();
    assert!(size < 12 << 20, "{N} findings make a {size}-byte report");
    let raw = std::fs::read_to_string(&html).expect("report");
    assert_eq!(
        raw.matches("<details class=\"finding ").count(),
        monitor::report::html::DRAW_LIMIT
    );
    assert!(raw.contains("id=\"draw-limit\""));
    let Some(mut b) = browser::chromium() else {
        return;
    };
    let url = file_url(&html);
    let mut page = b.open(&url);
    let v = page.eval(
        "(() => { const rows = Array.from(document.querySelectorAll('table.findings tbody tr')); \
          return {rows: rows.length, shown: rows.filter(r => !r.hidden).length, \
                  pager: document.querySelector('.pager span').textContent}; })()",
    );
    assert_eq!(v["rows"], N, "{v}");
    assert_eq!(
        v["shown"],
        monitor::report::html::PAGE_ROWS,
        "one page of the index: {v}"
    );
    assert!(
        v["pager"].as_str().is_some_and(|p| p.contains("of 25")),
        "{v}"
    );
    let complaints = page.complaints(&url);
    assert!(complaints.is_empty(), "{complaints:#?}");
}

/// Every rule's link goes to an anchor that docs/detection.md has (GitHub's
/// heading slugs).
#[test]
fn rule_links_point_at_headings_of_detection_md() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/detection.md"))
            .expect("docs/detection.md");
    let slugs: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    for kind in monitor_detector::FindingKind::ALL {
        let anchor = monitor::report::html::rule_anchor(kind.name());
        assert!(
            slugs.contains(&anchor),
            "no heading for #{anchor}: {slugs:?}"
        );
    }
    assert!(slugs.contains("reading-a-finding"));
}

// ---------------------------------------------------------------------------
// The trace-event format (Chrome's "Trace Event Format" document, as read by
// Perfetto's JSON importer and chrome://tracing's trace viewer).

/// A complete event's start, end and category.
type Interval = (f64, f64, String);
/// (pid, cat, id) of an async slice.
type AsyncKey = (u64, String, String);
/// Begins, ends, begin time, end time.
type AsyncPair = (usize, usize, f64, f64);

fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// Every structural rule a trace-event viewer relies on; returns the broken
/// ones.
pub fn trace_event_errors(doc: &Value) -> Vec<String> {
    let mut err = Vec::new();
    let Some(events) = doc["traceEvents"].as_array() else {
        return vec!["no traceEvents array".to_owned()];
    };
    if let Some(u) = doc.get("displayTimeUnit")
        && u != "ms"
        && u != "ns"
    {
        err.push(format!("displayTimeUnit {u}"));
    }
    let mut procs: BTreeSet<u64> = BTreeSet::new();
    let mut threads: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut used_procs: BTreeSet<u64> = BTreeSet::new();
    let mut used_threads: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut slices: BTreeMap<(u64, u64), Vec<Interval>> = BTreeMap::new();
    let mut asyncs: BTreeMap<AsyncKey, AsyncPair> = BTreeMap::new();
    let mut flows: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let at = format!("traceEvents[{i}]");
        let Some(ph) = e["ph"].as_str() else {
            err.push(format!("{at}: no ph"));
            continue;
        };
        let (Some(pid), Some(tid)) = (e["pid"].as_u64(), e["tid"].as_u64()) else {
            err.push(format!(
                "{at}: pid and tid must be non-negative integers: {e}"
            ));
            continue;
        };
        if pid > u64::from(u32::MAX) || tid > u64::from(u32::MAX) {
            err.push(format!("{at}: pid/tid beyond 32 bits"));
        }
        if !e["name"].is_string() {
            err.push(format!("{at}: name must be a string"));
        }
        if ph == "M" {
            match e["name"].as_str() {
                Some("process_name") if e["args"]["name"].is_string() => {
                    procs.insert(pid);
                }
                Some("thread_name") if e["args"]["name"].is_string() => {
                    threads.insert((pid, tid));
                }
                Some("process_sort_index" | "thread_sort_index")
                    if e["args"]["sort_index"].is_i64() => {}
                other => err.push(format!("{at}: bad metadata event {other:?}: {e}")),
            }
            continue;
        }
        let Some(ts) = num(&e["ts"]).filter(|t| *t >= 0.0) else {
            err.push(format!("{at}: ts must be a finite number >= 0"));
            continue;
        };
        used_procs.insert(pid);
        let cat = e["cat"].as_str().unwrap_or("").to_owned();
        match ph {
            "X" => {
                let Some(dur) = num(&e["dur"]).filter(|d| *d >= 0.0) else {
                    err.push(format!("{at}: X needs dur >= 0"));
                    continue;
                };
                used_threads.insert((pid, tid));
                slices
                    .entry((pid, tid))
                    .or_default()
                    .push((ts, ts + dur, cat));
            }
            "i" | "I" => match e.get("s").and_then(Value::as_str).unwrap_or("t") {
                "t" => {
                    used_threads.insert((pid, tid));
                }
                "p" | "g" => {}
                s => err.push(format!("{at}: instant scope {s}")),
            },
            "b" | "e" => {
                let id = match &e["id"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => {
                        err.push(format!("{at}: async event without id"));
                        continue;
                    }
                };
                if cat.is_empty() {
                    err.push(format!("{at}: async event without cat"));
                }
                let a = asyncs.entry((pid, cat, id)).or_insert((0, 0, 0.0, 0.0));
                if ph == "b" {
                    a.0 += 1;
                    a.2 = ts;
                } else {
                    a.1 += 1;
                    a.3 = ts;
                }
            }
            "s" | "f" => {
                used_threads.insert((pid, tid));
                let Some(id) = e["id"].as_u64().map(|i| i.to_string()) else {
                    err.push(format!("{at}: flow without id"));
                    continue;
                };
                if ph == "f" && e["bp"] != "e" {
                    err.push(format!(
                        "{at}: flow end must bind to its enclosing slice (bp e)"
                    ));
                }
                flows.entry(id).or_default().push(e);
            }
            other => err.push(format!("{at}: phase {other} is not used by this exporter")),
        }
    }
    for p in &used_procs {
        if !procs.contains(p) {
            err.push(format!("pid {p} has no process_name"));
        }
    }
    for t in &used_threads {
        if !threads.contains(t) {
            err.push(format!("pid/tid {t:?} has no thread_name"));
        }
    }
    // X events of a thread nest (Perfetto drops and flags those that do not).
    for ((pid, tid), v) in &mut slices {
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut stack: Vec<f64> = Vec::new();
        for (s, e, _) in v.iter() {
            while stack.last().is_some_and(|end| *end < *s) {
                stack.pop();
            }
            if stack.last().is_some_and(|end| *e > *end) {
                err.push(format!(
                    "pid {pid} tid {tid}: slice {s}..{e} crosses its parent's end"
                ));
            }
            stack.push(*e);
        }
    }
    for ((pid, cat, id), (b, e, tb, te)) in &asyncs {
        if *b != 1 || *e != 1 || te < tb {
            err.push(format!(
                "async {pid}/{cat}/{id}: {b} begin(s), {e} end(s), {tb}..{te}"
            ));
        }
    }
    for (id, v) in &flows {
        let phases: Vec<&str> = v.iter().filter_map(|e| e["ph"].as_str()).collect();
        if phases != ["s", "f"] {
            err.push(format!("flow {id}: phases {phases:?}"));
            continue;
        }
        if num(&v[1]["ts"]) < num(&v[0]["ts"]) {
            err.push(format!("flow {id} goes back in time"));
        }
        for e in v {
            let key = (
                e["pid"].as_u64().unwrap_or(0),
                e["tid"].as_u64().unwrap_or(0),
            );
            let ts = num(&e["ts"]).unwrap_or(-1.0);
            let cat = e["cat"].as_str().unwrap_or("");
            let bound = slices
                .get(&key)
                .is_some_and(|s| s.iter().any(|(a, b, c)| *a == ts && ts <= *b && c == cat));
            if !bound {
                err.push(format!(
                    "flow {id}: no slice of cat {cat} at {ts} on {key:?} to bind to"
                ));
            }
        }
    }
    err
}

fn perfetto(files: &[PathBuf]) -> Value {
    let (code, out, err) = analyze(&["--format", "perfetto"], files);
    assert_eq!(code, Some(1), "{err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", &out[..out.len().min(300)]))
}

/// Acceptance: the Perfetto export validates against the trace-event
/// format and shows what the issue asks for.
#[test]
fn perfetto_export_is_valid_trace_event_json() {
    let files: Vec<PathBuf> = TRACES.iter().map(|t| data(t)).collect();
    let expected = findings_of(&files);
    let doc = perfetto(&files);
    let errors = trace_event_errors(&doc);
    assert!(errors.is_empty(), "{errors:#?}");
    let ev = doc["traceEvents"].as_array().expect("events");
    let named = |ph: &str, name: &str| {
        ev.iter()
            .filter(|e| e["ph"] == ph && e["name"].as_str().is_some_and(|n| n.starts_with(name)))
            .count()
    };
    // Findings as marked slices, one per finding, on the findings track.
    let findings: Vec<&Value> = ev
        .iter()
        .filter(|e| e["ph"] == "b" && e["cat"] == "finding")
        .collect();
    assert_eq!(findings.len(), expected.len());
    assert!(
        findings
            .iter()
            .any(|e| e["name"] == "violation: uffd_copy_vs_mm_change" && e["cname"] == "terrible")
    );
    // Windows as complete events, faults and copies as instants, flows.
    for bracket in [
        "__oom_reap_task_mm",
        "exit_mmap",
        "unmap_page_range",
        "kthread_use_mm",
        "mmap_changing raised",
        "UFFDIO_COPY (mfill)",
    ] {
        assert!(named("X", bracket) > 0, "no {bracket} slice");
    }
    assert!(named("i", "fault") >= 3, "faults are instants");
    assert!(named("i", "uffd_copy") >= 90, "copies are instants");
    assert!(
        named("s", "order:") >= expected.len(),
        "a deciding order per finding"
    );
    // tgid as pid, tid as tid; threads named by their comm.
    let reaper = ev
        .iter()
        .find(|e| e["name"] == "__oom_reap_task_mm")
        .expect("reaper slice");
    assert_eq!(
        reaper["pid"], reaper["tid"],
        "the oom_reaper kthread is its own process"
    );
    let thread_names: Vec<&str> = ev
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    assert!(
        thread_names.iter().any(|n| n.starts_with("oom_reaper ")),
        "{thread_names:?}"
    );
    assert!(
        thread_names.iter().any(|n| n.starts_with("vhost-")),
        "{thread_names:?}"
    );
}

/// The format checker is not a rubber stamp: each kind of breakage is found.
#[test]
fn trace_event_checker_catches_broken_traces() {
    let doc = perfetto(&[data(TRACES[0])]);
    assert!(trace_event_errors(&doc).is_empty());
    type Breakage = (&'static str, fn(&mut Vec<Value>));
    let breakages: [Breakage; 5] = [
        ("crosses its parent's end", |ev| {
            let x = ev
                .iter()
                .position(|e| e["ph"] == "X" && e["name"] == "__oom_reap_task_mm")
                .expect("X");
            let mut child = ev[x].clone();
            child["ts"] = serde_json::json!(child["ts"].as_f64().expect("ts") + 1.0);
            ev.push(child);
        }),
        ("has no thread_name", |ev| {
            ev.retain(|e| e["name"] != "thread_name")
        }),
        ("begin(s)", |ev| {
            let b = ev.iter().position(|e| e["ph"] == "e").expect("e");
            ev.remove(b);
        }),
        ("to bind to", |ev| {
            let f = ev.iter().position(|e| e["ph"] == "f").expect("f");
            ev[f]["ts"] = serde_json::json!(ev[f]["ts"].as_f64().expect("ts") + 0.5);
        }),
        ("ts must be", |ev| {
            let i = ev.iter().position(|e| e["ph"] == "i").expect("i");
            ev[i]["ts"] = serde_json::json!(-1);
        }),
    ];
    for (what, broken) in breakages {
        let mut d = doc.clone();
        broken(d["traceEvents"].as_array_mut().expect("events"));
        let errors = trace_event_errors(&d);
        assert!(
            errors.iter().any(|e| e.contains(what)),
            "{what} not caught: {errors:?}"
        );
    }
}
