//! The HTML report: one self-contained file (inline CSS, inline SVG, a few
//! lines of JavaScript; nothing loaded from anywhere).
//!
//! Layout: a summary (counts, findings per rule and severity, coverage per
//! file), then per file its facts, coverage, loss notes and a findings index
//! grouped by rule (paginated when long), then one article per drawn finding:
//! verdict, caveats, the swimlane picture and the evidence table.
//!
//! Picture: one lane per task of the finding (its `tasks`, in order of first
//! appearance), one column per evidence event in per-mm sequence order; the
//! real time of each event is printed under its column (relative to the
//! first one; wall clock in the tooltip and the evidence table). Brackets a
//! task ran are bars in its lane, the race window is shaded across all lanes,
//! the deciding event is ringed and the deciding order is drawn as arrows.
//!
//! Size: at most [`DRAW_LIMIT`] findings are drawn (violations first, then
//! uncertain, then near misses, taking turns between rules); every finding is
//! in the index.

use std::fmt::Write as _;

use super::{
    adapter::{Ev, FileView, FindingView, Shape},
    esc, rel,
    story::{self, Story},
    wall,
};

/// Findings drawn in one report; the rest are listed in the index only.
pub const DRAW_LIMIT: usize = 200;
/// Rows per page of a findings index.
pub const PAGE_ROWS: usize = 100;
/// Where the rules are documented. The report is opened offline, so the
/// link goes to the repository and the text names the path in the source
/// tree (`docs/detection.md`).
pub const DOCS_URL: &str =
    "https://github.com/mm-race-monitor/mm-race-monitor/blob/main/docs/detection.md";

/// The anchor of a rule's section in docs/detection.md (the heading
/// "Rule `NAME`"; a test checks every rule's anchor exists).
pub fn rule_anchor(rule: &str) -> String {
    format!("rule-{rule}")
}

const SEVERITIES: [&str; 3] = ["violation", "uncertain", "near_miss"];

fn sev_label(s: &str) -> &'static str {
    match s {
        "violation" => "violation",
        "uncertain" => "uncertain",
        "near_miss" => "near miss",
        _ => "?",
    }
}

fn sev_rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(3)
}

/// Which findings (file index, finding index) get a picture.
fn drawn(files: &[FileView]) -> Vec<Vec<bool>> {
    let mut all: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut turn: std::collections::BTreeMap<(usize, &str), usize> = Default::default();
    for (fi, f) in files.iter().enumerate() {
        for (xi, x) in f.findings.iter().enumerate() {
            let rank = sev_rank(x.severity);
            let n = turn.entry((rank, x.rule)).or_default();
            all.push((rank, *n, fi, xi));
            *n += 1;
        }
    }
    all.sort_unstable();
    let mut out: Vec<Vec<bool>> = files
        .iter()
        .map(|f| vec![false; f.findings.len()])
        .collect();
    for (_, _, fi, xi) in all.into_iter().take(DRAW_LIMIT) {
        out[fi][xi] = true;
    }
    out
}

fn finding_id(fi: usize, xi: usize) -> String {
    format!("f{fi}-{xi}")
}

fn task_label(pid: u32, tgid: u32, comm: &str, kthread: bool) -> String {
    let ids = if pid == tgid {
        format!("{pid}")
    } else {
        format!("{pid}/{tgid}")
    };
    format!(
        "{}[{ids}]{}",
        esc(comm),
        if kthread { " kthread" } else { "" }
    )
}

/// Renders the report. `generator` names the program (shown in the footer).
pub fn render(files: &[FileView], generator: &str) -> String {
    let drawn = drawn(files);
    let total: usize = files.iter().map(|f| f.findings.len()).sum();
    let n_drawn: usize = drawn.iter().flatten().filter(|d| **d).count();
    let count = |sev: &str| {
        files
            .iter()
            .flat_map(|f| &f.findings)
            .filter(|x| x.severity == sev)
            .count()
    };
    let mut s = String::with_capacity(64 * 1024);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    s.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n",
    );
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        s,
        "<title>mm race monitor: {total} finding(s) in {} file(s)</title>",
        files.len()
    );
    s.push_str(STYLE);
    s.push_str("</head>\n<body>\n");
    s.push_str(DEFS);
    let _ = writeln!(
        s,
        "<header><h1>mm race monitor report</h1>\n<p class=\"counts\">\
         <span class=\"badge sev-violation\">{} violation</span> \
         <span class=\"badge sev-uncertain\">{} uncertain</span> \
         <span class=\"badge sev-near_miss\">{} near miss</span> \
         in {} file(s); {} error(s)</p>",
        count("violation"),
        count("uncertain"),
        count("near_miss"),
        files.len(),
        files.iter().filter(|f| f.error.is_some()).count()
    );
    if n_drawn < total {
        let _ = writeln!(
            s,
            "<p class=\"note\" id=\"draw-limit\">{total} findings: the first {n_drawn} are drawn \
             (violations first, then uncertain, then near misses, taking turns between rules); \
             every finding is listed in its file's index. <code>monitor analyze --format json</code> \
             prints all of them with their evidence.</p>"
        );
    }
    s.push_str("</header>\n");
    summary(&mut s, files);
    for (fi, f) in files.iter().enumerate() {
        file_section(&mut s, fi, f, &drawn[fi]);
    }
    let _ = writeln!(
        s,
        "<footer><p>Generated by {} from {} trace file(s). Times are the kernel's monotonic \
         clock as recorded, shown relative to a finding's first evidence event and as UTC wall \
         clock through the recording's header. Rule links point to <code>docs/detection.md</code> \
         in the monitor's repository; offline, open the same file in a source checkout.</p></footer>",
        esc(generator),
        files.len()
    );
    s.push_str(SCRIPT);
    s.push_str("</body></html>\n");
    s
}

fn docs_link(rule: &str) -> String {
    format!(
        "<a class=\"docs\" href=\"{DOCS_URL}#{}\" title=\"docs/detection.md, section Rule {}\">docs/detection.md § {}</a>",
        rule_anchor(rule),
        esc(rule),
        esc(rule)
    )
}

fn summary(s: &mut String, files: &[FileView]) {
    let mut rules: Vec<&str> = Vec::new();
    for f in files {
        for c in &f.coverage {
            if !rules.contains(&c.rule) {
                rules.push(c.rule);
            }
        }
        for x in &f.findings {
            if !rules.contains(&x.rule) {
                rules.push(x.rule);
            }
        }
    }
    s.push_str(
        "<section id=\"summary\"><h2>Findings by rule</h2>\n<table class=\"by-rule\"><thead><tr>\
         <th>rule</th><th>violation</th><th>uncertain</th><th>near miss</th><th>coverage</th>\
         <th>documentation</th></tr></thead><tbody>\n",
    );
    for rule in rules {
        let n = |sev: &str| {
            files
                .iter()
                .flat_map(|f| &f.findings)
                .filter(|x| x.rule == rule && x.severity == sev)
                .count()
        };
        // Coverage of the rule per file, grouped by state.
        let mut states: Vec<(&str, Vec<String>)> = Vec::new();
        for f in files {
            if let Some(c) = f.coverage.iter().find(|c| c.rule == rule) {
                let why = format!("{}: {}", f.file, c.reason);
                match states.iter_mut().find(|(s, _)| *s == c.state) {
                    Some((_, w)) => w.push(why),
                    None => states.push((c.state, vec![why])),
                }
            }
        }
        let cov: Vec<String> = states
            .iter()
            .map(|(state, why)| {
                format!(
                    "<span class=\"cov cov-{state}\" title=\"{}\">{state}{}</span>",
                    esc(&why.join("\n")),
                    if files.len() > 1 {
                        format!(" in {} file(s)", why.len())
                    } else {
                        String::new()
                    }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "<tr data-rule=\"{r}\"><td><code>{r}</code></td><td class=\"n sev-violation\">{}</td>\
             <td class=\"n sev-uncertain\">{}</td><td class=\"n sev-near_miss\">{}</td><td>{}</td><td>{}</td></tr>",
            n("violation"),
            n("uncertain"),
            n("near_miss"),
            cov.join(" "),
            docs_link(rule),
            r = esc(rule)
        );
    }
    s.push_str("</tbody></table></section>\n");
}

fn file_section(s: &mut String, fi: usize, f: &FileView, drawn: &[bool]) {
    let _ = writeln!(
        s,
        "<section class=\"file\" id=\"file-{fi}\"><h2>{}</h2>",
        esc(&f.file)
    );
    s.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(s, "<dt>{k}</dt><dd>{v}</dd>");
    };
    if let Some(k) = &f.kernel_release {
        fact("kernel", esc(k));
    }
    if let Some(e) = &f.era {
        fact("judged as", esc(e));
    }
    if let Some(h) = &f.hostname {
        fact("host", esc(h));
    }
    if let Some((k0, _)) = f.clock {
        fact("recorded", esc(&wall(f.clock, k0)));
    }
    if let Some(ms) = f.duration_ms {
        fact("duration", format!("{:.1} s", ms as f64 / 1000.0));
    }
    if let Some((p, d, l)) = f.records {
        fact(
            "records",
            format!("{p} produced, {d} delivered, <span class=\"lost\">{l} lost</span>"),
        );
    }
    if let Some(b) = &f.bpf_object {
        fact("BPF object", esc(b));
    }
    if let Some(v) = &f.monitor_version {
        fact("monitor", esc(v));
    }
    if !f.filters.is_empty() {
        let v: Vec<String> = f
            .filters
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect();
        fact("filters", v.join(", "));
    }
    s.push_str("</dl>\n");
    if let Some(e) = &f.error {
        let _ = writeln!(s, "<p class=\"error\">error: {}</p>", esc(e));
    }
    if !f.notes.is_empty() || !f.warnings.is_empty() || !f.losses.is_empty() {
        s.push_str("<ul class=\"notes\">");
        for n in &f.notes {
            let _ = write!(s, "<li class=\"note\">{}</li>", esc(n));
        }
        for w in &f.warnings {
            let _ = write!(s, "<li class=\"warning\">warning: {}</li>", esc(w));
        }
        if !f.losses.is_empty() {
            let lost: u64 = f.losses.iter().map(|l| l.1).sum();
            let at: Vec<String> = f
                .losses
                .iter()
                .take(20)
                .map(|(t, n)| format!("{n} at {}", esc(&wall(f.clock, *t))))
                .collect();
            let _ = write!(
                s,
                "<li class=\"loss\">{} loss line(s), {lost} record(s) lost: {}{}</li>",
                f.losses.len(),
                at.join("; "),
                if f.losses.len() > 20 { "; …" } else { "" }
            );
        }
        s.push_str("</ul>\n");
    }
    if !f.coverage.is_empty() {
        s.push_str(
            "<table class=\"coverage\"><thead><tr><th>rule</th><th>coverage</th><th>why</th></tr></thead><tbody>",
        );
        for c in &f.coverage {
            let _ = write!(
                s,
                "<tr><td><code>{}</code></td><td class=\"cov cov-{}\">{}</td><td>{}</td></tr>",
                esc(c.rule),
                c.state,
                c.state,
                esc(&c.reason)
            );
        }
        s.push_str("</tbody></table>\n");
    }
    if !f.hooks.is_empty() {
        let _ = write!(
            s,
            "<details class=\"hooks\"><summary>Hook plan: {} hooks ({})</summary><table><thead><tr>\
             <th>hook</th><th>rung</th><th>target</th><th>better rungs refused</th></tr></thead><tbody>",
            f.hooks.len(),
            rung_counts(f)
        );
        for h in &f.hooks {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&h.hook),
                esc(&h.rung),
                esc(h.target.as_deref().unwrap_or("-")),
                h.refused
                    .iter()
                    .map(|r| esc(r))
                    .collect::<Vec<_>>()
                    .join("<br>")
            );
        }
        s.push_str("</tbody></table></details>\n");
    }
    index(s, fi, f, drawn);
    for (xi, x) in f.findings.iter().enumerate() {
        if drawn[xi] {
            article(s, fi, xi, f, x);
        }
    }
    s.push_str("</section>\n");
}

fn rung_counts(f: &FileView) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for h in &f.hooks {
        match counts.iter_mut().find(|(r, _)| *r == h.rung) {
            Some(c) => c.1 += 1,
            None => counts.push((h.rung.clone(), 1)),
        }
    }
    counts
        .iter()
        .map(|(r, n)| format!("{n} {}", esc(r)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rungs_of(x: &FindingView) -> String {
    let mut r: Vec<&str> = Vec::new();
    for e in &x.evidence {
        if !r.contains(&e.rung) {
            r.push(e.rung);
        }
    }
    r.join("+")
}

fn tasks_text(x: &FindingView) -> String {
    x.tasks
        .iter()
        .map(|t| task_label(t.pid, t.tgid, &t.comm, t.kthread))
        .collect::<Vec<_>>()
        .join(", ")
}

fn index(s: &mut String, fi: usize, f: &FileView, drawn: &[bool]) {
    if f.findings.is_empty() {
        s.push_str("<p class=\"none\">No findings.</p>\n");
        return;
    }
    let mut rules: Vec<&str> = Vec::new();
    for x in &f.findings {
        if !rules.contains(&x.rule) {
            rules.push(x.rule);
        }
    }
    for rule in rules {
        let of_rule: Vec<(usize, &FindingView)> = f
            .findings
            .iter()
            .enumerate()
            .filter(|(_, x)| x.rule == rule)
            .collect();
        let by: Vec<String> = SEVERITIES
            .iter()
            .filter_map(|sev| {
                let n = of_rule.iter().filter(|(_, x)| x.severity == *sev).count();
                (n > 0).then(|| format!("{n} {}", sev_label(sev)))
            })
            .collect();
        let cov = f.coverage.iter().find(|c| c.rule == rule);
        let _ = writeln!(
            s,
            "<details class=\"group\" open data-rule=\"{r}\"><summary><code>{r}</code>: {} finding(s) ({})</summary>\n\
             <table class=\"findings\" data-page-rows=\"{PAGE_ROWS}\"><thead><tr><th>severity</th><th>rule</th>\
             <th>mm / generation</th><th>tasks</th><th>time</th><th>kernel</th><th>rungs / coverage</th>\
             <th>picture</th></tr></thead><tbody>",
            of_rule.len(),
            by.join(", "),
            r = esc(rule)
        );
        for (xi, x) in of_rule {
            let picture = if drawn[xi] {
                format!("<a href=\"#{}\">show</a>", finding_id(fi, xi))
            } else {
                "<span class=\"muted\">not drawn (limit)</span>".to_owned()
            };
            let _ = writeln!(
                s,
                "<tr class=\"sev-row-{sev}\" data-severity=\"{sev}\"><td><span class=\"badge sev-{sev}\">{}</span></td>\
                 <td><code>{}</code></td><td><code>{:#x}</code> / {}</td><td>{}</td><td>{}<br><span class=\"muted\">{} long</span></td>\
                 <td>{}</td><td>{}<br><span class=\"cov cov-{}\" title=\"{}\">{}</span></td><td>{picture}</td></tr>",
                sev_label(x.severity),
                esc(x.rule),
                x.mm,
                x.mm_gen,
                tasks_text(x),
                esc(&wall(f.clock, x.start_t)),
                esc(rel(x.end_t.saturating_sub(x.start_t)).trim_start_matches('+')),
                esc(f.kernel_release.as_deref().unwrap_or("?")),
                rungs_of(x),
                cov.map_or("?", |c| c.state),
                esc(&cov.map_or_else(String::new, |c| c.reason.clone())),
                cov.map_or("?", |c| c.state),
                sev = x.severity,
            );
        }
        s.push_str("</tbody></table></details>\n");
    }
}

/// One-line caveats of a finding: loss, capped severity, truncated
/// evidence, the window closing for another reason than its own end, the
/// rule's coverage.
fn caveats(f: &FileView, x: &FindingView) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(lost) = x.details.get("records_lost").and_then(|v| v.as_array()) {
        let why: Vec<String> = lost.iter().filter_map(|v| v.as_str()).map(esc).collect();
        out.push(format!(
            "<li class=\"loss\">records were lost while the window was open: {}</li>",
            why.join("; ")
        ));
    }
    if let Some(w) = x.detail_str("would_be") {
        out.push(format!(
            "<li class=\"capped\">would be a {} on a recognised kernel release (the release is not recognised)</li>",
            esc(w)
        ));
    }
    if let Some(n) = x.detail_u64("evidence_omitted") {
        out.push(format!(
            "<li class=\"omitted\">{n} evidence event(s) omitted: the first and last ones are shown</li>"
        ));
    }
    match x.detail_str("closed_by") {
        Some("window_end") | None => {}
        Some(c) => out.push(format!(
            "<li class=\"closed\">window closed by {}</li>",
            esc(&c.replace('_', " "))
        )),
    }
    if let Some(c) = f.coverage.iter().find(|c| c.rule == x.rule)
        && c.state != "full"
    {
        out.push(format!(
            "<li class=\"coverage\">rule coverage {}: {}</li>",
            c.state,
            esc(&c.reason)
        ));
    }
    if let Some(c) = x.detail_str("caveat") {
        out.push(format!("<li class=\"caveat\">{}</li>", esc(c)));
    }
    out
}

fn article(s: &mut String, fi: usize, xi: usize, f: &FileView, x: &FindingView) {
    let story = story::tell(x);
    let _ = writeln!(
        s,
        "<details class=\"finding sev-{sev}\" id=\"{id}\" data-rule=\"{r}\" data-severity=\"{sev}\" \
         data-lanes=\"{}\" data-events=\"{}\"{}>",
        story.lanes.len(),
        x.evidence.len(),
        if xi < 20 { " open" } else { "" },
        id = finding_id(fi, xi),
        r = esc(x.rule),
        sev = x.severity,
    );
    let _ = writeln!(
        s,
        "<summary><span class=\"badge sev-{sev}\">{}</span> <code>{}</code> on mm <code>{:#x}</code> \
         generation {} at {}</summary>",
        sev_label(x.severity),
        esc(x.rule),
        x.mm,
        x.mm_gen,
        esc(&wall(f.clock, x.start_t)),
        sev = x.severity
    );
    let pattern = x
        .detail_str("pattern")
        .or_else(|| x.detail_str("fault_result"))
        .unwrap_or("");
    let _ = writeln!(
        s,
        "<p class=\"verdict\" data-severity=\"{sev}\"><b>Verdict: {}</b>{}. {}</p>",
        sev_label(x.severity),
        if pattern.is_empty() {
            String::new()
        } else {
            format!(" (<code>{}</code>)", esc(pattern))
        },
        esc(&x.explanation),
        sev = x.severity
    );
    let _ = writeln!(
        s,
        "<p class=\"meta\">{} · kernel {} · evidence rungs {} · {}</p>",
        tasks_text(x),
        esc(f.kernel_release.as_deref().unwrap_or("?")),
        rungs_of(x),
        docs_link(x.rule)
    );
    let cav = caveats(f, x);
    if !cav.is_empty() {
        let _ = writeln!(s, "<ul class=\"caveats\">{}</ul>", cav.join(""));
    }
    svg(s, f, x, &story);
    match story.deciding {
        Some(d) => {
            let e = &x.evidence[d];
            let _ = writeln!(
                s,
                "<p class=\"deciding\">Deciding event: <b>seq {} <code>{}</code></b> by {} at {}: {}.</p>",
                e.seq,
                e.kind,
                task_label(e.pid, e.tgid, &e.comm, e.kthread),
                esc(&wall(f.clock, e.t)),
                esc(&story.deciding_why)
            );
        }
        None if !x.evidence.is_empty() => {
            s.push_str(
                "<p class=\"deciding muted\">No single evidence event decides this verdict \
                 (its deciding event is not among the evidence kept).</p>\n",
            );
        }
        None => {}
    }
    evidence_table(s, f, x, &story);
    if !x.details.is_empty() {
        s.push_str("<details class=\"details\"><summary>Details</summary><table>");
        for (k, v) in &x.details {
            let v = match v {
                serde_json::Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
        }
        s.push_str("</table></details>\n");
    }
    s.push_str("</details>\n");
}

fn evidence_table(s: &mut String, f: &FileView, x: &FindingView, story: &Story) {
    let t0 = x.evidence.first().map_or(0, |e| e.t);
    let _ = writeln!(
        s,
        "<details class=\"evidence\"><summary>Evidence: {} event(s) in per-mm sequence order</summary>\
         <table><thead><tr><th>seq</th><th>time</th><th>wall clock</th><th>cpu</th><th>task</th>\
         <th>event</th><th>rung</th><th>details</th></tr></thead><tbody>",
        x.evidence.len()
    );
    for (i, e) in x.evidence.iter().enumerate() {
        let class = if story.deciding == Some(i) {
            " class=\"deciding-row\""
        } else {
            ""
        };
        let seq = if e.mm_gen == x.mm_gen {
            e.seq.to_string()
        } else {
            format!("{} (gen {})", e.seq, e.mm_gen)
        };
        let _ = writeln!(
            s,
            "<tr{class}><td>{seq}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&rel(e.t.saturating_sub(t0))),
            esc(&wall(f.clock, e.t)),
            e.cpu,
            task_label(e.pid, e.tgid, &e.comm, e.kthread),
            e.kind,
            esc(&e.probe),
            esc(&e.detail)
        );
    }
    s.push_str("</tbody></table></details>\n");
}

const LEFT: usize = 260;
const COL: usize = 36;
const TOP: usize = 160;
const LANE_H: usize = 46;
const BOTTOM: usize = 100;

fn x_of(i: usize) -> usize {
    LEFT + i * COL + COL / 2
}

fn lane_mid(l: usize) -> usize {
    TOP + l * LANE_H + LANE_H / 2
}

fn category(e: &Ev) -> &'static str {
    match e.kind {
        k if k.starts_with("reap") || k.starts_with("mrelease") => "reaper",
        k if k.starts_with("exit_mmap") || k.starts_with("unmap_vmas") || k == "mmdrop" => "exit",
        "fault" | "kernel_fault" | "kthread_use_mm" | "kthread_unuse_mm" => "fault",
        k if k.starts_with("uffd") || k.starts_with("mfill") || k == "fork" => "uffd",
        "mark_victim" => "victim",
        _ => "migration",
    }
}

fn svg(s: &mut String, f: &FileView, x: &FindingView, story: &Story) {
    let n = x.evidence.len();
    if n == 0 {
        s.push_str("<p class=\"muted\">No evidence events.</p>\n");
        return;
    }
    let lanes = story.lanes.len().max(1);
    let width = LEFT + n * COL + 160;
    let lanes_bottom = TOP + lanes * LANE_H;
    let height = lanes_bottom + BOTTOM;
    let _ = writeln!(
        s,
        "<div class=\"timeline\"><svg class=\"lanes\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{} evidence events of \
         {} tasks in per-mm sequence order\">",
        n,
        story.lanes.len()
    );
    // Window (under everything else).
    if let Some(w) = &story.window {
        let x0 = x_of(w.from) - COL / 2;
        let x1 = x_of(w.to) + COL / 2;
        let _ = writeln!(
            s,
            "<rect class=\"window sev-{}\" data-from=\"{}\" data-to=\"{}\" x=\"{x0}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>race window: {}</title></rect>\
             <text class=\"window-label\" x=\"{}\" y=\"{}\">window: {}</text>",
            x.severity,
            w.from,
            w.to,
            TOP - 6,
            x1 - x0,
            lanes * LANE_H + 12,
            esc(&w.label),
            x0 + 3,
            lanes_bottom + 18,
            esc(&w.label)
        );
    }
    // Lanes.
    for (li, l) in story.lanes.iter().enumerate() {
        let y = TOP + li * LANE_H;
        let _ = writeln!(
            s,
            "<g class=\"lane\" data-lane=\"{li}\" data-pid=\"{}\" data-tgid=\"{}\" data-role=\"{}\">\
             <rect class=\"lane-bg{}\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{LANE_H}\"/>\
             <text class=\"role\" x=\"8\" y=\"{}\">{}<title>{}</title></text>\
             <text class=\"task\" x=\"8\" y=\"{}\">{}</text></g>",
            l.pid,
            l.tgid,
            esc(&l.role),
            if li % 2 == 1 { " odd" } else { "" },
            y + 18,
            esc(&truncate(&l.role, 38)),
            esc(&l.role),
            y + 35,
            task_label(l.pid, l.tgid, &l.comm, l.kthread)
        );
    }
    // Column guides, headers, sequence gaps, times.
    let t0 = x.evidence[0].t;
    for (i, e) in x.evidence.iter().enumerate() {
        let cx = x_of(i);
        let _ = write!(
            s,
            "<line class=\"guide\" x1=\"{cx}\" y1=\"{}\" x2=\"{cx}\" y2=\"{lanes_bottom}\"/>\
             <text class=\"kind\" transform=\"translate({},{}) rotate(-55)\">{}</text>\
             <text class=\"seq\" x=\"{cx}\" y=\"{}\">{}</text>\
             <text class=\"time\" transform=\"translate({},{}) rotate(-55)\">{}</text>",
            TOP - 6,
            cx + 4,
            TOP - 22,
            e.kind,
            TOP - 10,
            e.seq,
            cx + 4,
            lanes_bottom + 34,
            esc(&rel(e.t - t0.min(e.t)))
        );
        if i > 0 {
            let p = &x.evidence[i - 1];
            let gx = cx - COL / 2;
            if p.mm_gen != e.mm_gen {
                let _ = write!(
                    s,
                    "<line class=\"gen-break\" x1=\"{gx}\" y1=\"{}\" x2=\"{gx}\" y2=\"{lanes_bottom}\"/>\
                     <text class=\"gap\" x=\"{gx}\" y=\"{}\">new gen<title>mm generation {} starts: the \
                     address was reused or the generation ended</title></text>",
                    TOP - 6,
                    TOP - 2,
                    e.mm_gen
                );
            } else if e.seq > p.seq + 1 {
                let _ = write!(
                    s,
                    "<text class=\"gap\" x=\"{gx}\" y=\"{}\">⋯<title>{} record(s) of this mm between seq {} \
                     and {} are not part of the evidence</title></text>",
                    TOP + 10,
                    e.seq - p.seq - 1,
                    p.seq,
                    e.seq
                );
            }
        }
    }
    s.push('\n');
    // Brackets.
    let depth = |bi: usize| {
        let b = &story.bars[bi];
        story
            .bars
            .iter()
            .enumerate()
            .filter(|(j, o)| {
                *j != bi
                    && o.lane == b.lane
                    && o.span.0 <= b.span.0
                    && o.span.1 >= b.span.1
                    && (o.span != b.span || *j < bi)
            })
            .count()
    };
    for (bi, b) in story.bars.iter().enumerate() {
        let d = depth(bi).min(2);
        let x0 = b.from.map_or(x_of(b.span.0) - COL / 2 + 2, x_of);
        let x1 = b.to.map_or(x_of(b.span.1) + COL / 2 - 2, x_of);
        let y = TOP + b.lane * LANE_H + 7 + d * 6;
        let h = (LANE_H - 14).saturating_sub(d * 12).max(6);
        let open = match (b.from, b.to) {
            (None, _) => " open-start",
            (_, None) => " open-end",
            _ => "",
        };
        let what = match (b.from, b.to) {
            (None, _) => " (its start is not in the evidence)",
            (_, None) => " (its end is not in the evidence)",
            _ => "",
        };
        let _ = writeln!(
            s,
            "<rect class=\"bar d{d}{open}\" data-lane=\"{}\" x=\"{x0}\" y=\"{y}\" width=\"{}\" height=\"{h}\" rx=\"4\">\
             <title>{}{what}</title></rect>",
            b.lane,
            x1.saturating_sub(x0).max(2),
            b.bracket.label()
        );
        if d == 0 && x1.saturating_sub(x0) > 70 {
            let _ = writeln!(
                s,
                "<text class=\"bar-label\" x=\"{}\" y=\"{}\">{}</text>",
                x0 + 14,
                y + h - 3,
                b.bracket.label()
            );
        }
    }
    // Deciding order.
    for w in story.order.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (ax, ay) = (x_of(a), lane_mid(story.lane_of[a]));
        let (bx, by) = (x_of(b), lane_mid(story.lane_of[b]));
        let lift = 18 + (bx - ax) / 8;
        let cy = ay.min(by).saturating_sub(lift).max(TOP - 4);
        let _ = writeln!(
            s,
            "<path class=\"order sev-{}\" data-from=\"{a}\" data-to=\"{b}\" d=\"M{ax},{} Q{},{cy} {},{}\" marker-end=\"url(#arrow-{})\"/>",
            x.severity,
            ay.saturating_sub(8),
            (ax + bx) / 2,
            bx.saturating_sub(2),
            by.saturating_sub(9),
            x.severity
        );
    }
    // Events.
    for (i, e) in x.evidence.iter().enumerate() {
        let cx = x_of(i);
        let cy = lane_mid(story.lane_of[i]);
        let deciding = story.deciding == Some(i);
        let glyph = match e.shape {
            Shape::Open(_) => format!(
                "<path class=\"mark\" d=\"M{},{} l10,-7 v14 z\"/>",
                cx - 5,
                cy
            ),
            Shape::Close(_) => format!(
                "<path class=\"mark\" d=\"M{},{} l-10,-7 v14 z\"/>",
                cx + 5,
                cy
            ),
            Shape::Point => format!("<circle class=\"mark\" cx=\"{cx}\" cy=\"{cy}\" r=\"6\"/>"),
        };
        let mut tip = format!(
            "seq {} · {} · {} · cpu {} · {} · {}",
            e.seq,
            e.kind,
            task_label(e.pid, e.tgid, &e.comm, e.kthread),
            e.cpu,
            esc(&wall(f.clock, e.t)),
            esc(&e.detail)
        );
        if let Some((pid, _, comm)) = &e.victim {
            let _ = write!(tip, " · victim {}[{pid}]", esc(comm));
        }
        let _ = writeln!(
            s,
            "<g class=\"ev cat-{}{}\" data-col=\"{i}\" data-seq=\"{}\" data-gen=\"{}\" data-kind=\"{}\" \
             data-lane=\"{}\" data-pid=\"{}\">{}{glyph}<title>{tip}</title></g>",
            category(e),
            if deciding { " deciding" } else { "" },
            e.seq,
            e.mm_gen,
            e.kind,
            story.lane_of[i],
            e.pid,
            if deciding {
                format!(
                    "<circle class=\"ring sev-{}\" cx=\"{cx}\" cy=\"{cy}\" r=\"12\"/>\
                     <text class=\"deciding-label sev-{}\" x=\"{cx}\" y=\"{}\">deciding</text>",
                    x.severity,
                    x.severity,
                    cy + 22
                )
            } else {
                String::new()
            },
        );
    }
    s.push_str("</svg></div>\n");
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

const DEFS: &str = "<svg width=\"0\" height=\"0\" style=\"position:absolute\" aria-hidden=\"true\"><defs>\
<marker id=\"arrow-violation\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
<path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c62828\"/></marker>\
<marker id=\"arrow-uncertain\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
<path d=\"M0,0 L10,5 L0,10 z\" fill=\"#b26a00\"/></marker>\
<marker id=\"arrow-near_miss\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
<path d=\"M0,0 L10,5 L0,10 z\" fill=\"#1565c0\"/></marker></defs></svg>\n";

const STYLE: &str = r#"<style>
:root{--violation:#c62828;--uncertain:#b26a00;--near_miss:#1565c0;--ink:#1f2328;--muted:#6e7781;--line:#d0d7de}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);margin:0 auto;padding:0 24px 48px;max-width:1600px;background:#fff}
h1{font-size:22px;margin:18px 0 6px}h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:0 8px;color:#fff;font-size:12px;font-weight:600}
.badge.sev-violation{background:var(--violation)}.badge.sev-uncertain{background:var(--uncertain)}.badge.sev-near_miss{background:var(--near_miss)}
td.sev-violation{color:var(--violation)}td.sev-uncertain{color:var(--uncertain)}td.sev-near_miss{color:var(--near_miss)}
.cov{font-weight:600}.cov-full{color:#1a7f37}.cov-partial{color:var(--uncertain)}.cov-disabled{color:var(--violation)}
.muted{color:var(--muted)}.error{color:var(--violation);font-weight:600}.lost{color:var(--uncertain)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}dt{color:var(--muted)}dd{margin:0}
ul.notes li.loss,ul.caveats li.loss{color:var(--uncertain)}ul.notes li.warning{color:var(--uncertain)}
details.group>summary,details.hooks>summary{cursor:pointer;font-weight:600;margin:8px 0}
details.finding{border:1px solid var(--line);border-left:6px solid var(--near_miss);border-radius:6px;margin:14px 0;padding:4px 14px 10px}
details.finding.sev-violation{border-left-color:var(--violation)}details.finding.sev-uncertain{border-left-color:var(--uncertain)}
details.finding>summary{cursor:pointer;font-size:15px;padding:6px 0}
p.verdict{font-size:15px;margin:6px 0}p.deciding{margin:4px 0}
.timeline{overflow-x:auto;border:1px solid var(--line);border-radius:4px;margin:8px 0;background:#fff}
svg.lanes text{font:11px system-ui,sans-serif;fill:var(--ink)}svg.lanes text.role{font-weight:600}
svg.lanes text.task{fill:var(--muted)}svg.lanes text.kind{font:11px ui-monospace,monospace}
svg.lanes text.seq,svg.lanes text.gap{text-anchor:middle;fill:var(--muted);font-size:10px}
svg.lanes text.time{fill:var(--muted);font-size:10px;text-anchor:end}
svg.lanes text.window-label{font-weight:600;fill:var(--muted)}
.lane-bg{fill:#fbfcfd}.lane-bg.odd{fill:#f3f5f7}.guide{stroke:#e3e7eb}.gen-break{stroke:#888;stroke-dasharray:4 3}
rect.window{fill:rgba(21,101,192,.10);stroke:rgba(21,101,192,.45);stroke-dasharray:5 3}
rect.window.sev-violation{fill:rgba(198,40,40,.10);stroke:rgba(198,40,40,.5)}rect.window.sev-uncertain{fill:rgba(178,106,0,.10);stroke:rgba(178,106,0,.5)}
rect.bar{fill:#cfd8dc;stroke:#90a4ae}rect.bar.d1{fill:#b0bec5}rect.bar.d2{fill:#90a4ae}
rect.bar.open-start,rect.bar.open-end{stroke-dasharray:4 3;fill-opacity:.6}svg.lanes text.bar-label{font-size:10px;fill:#37474f}
.ev .mark{stroke:#fff;stroke-width:1.5}.cat-reaper .mark{fill:#7b1fa2}.cat-exit .mark{fill:#2e7d32}.cat-fault .mark{fill:#ef6c00}
.cat-uffd .mark{fill:#00838f}.cat-victim .mark{fill:#455a64}.cat-migration .mark{fill:#6d4c41}
circle.ring{fill:none;stroke-width:3}circle.ring.sev-violation{stroke:var(--violation)}circle.ring.sev-uncertain{stroke:var(--uncertain)}circle.ring.sev-near_miss{stroke:var(--near_miss)}
svg.lanes text.deciding-label{text-anchor:middle;font-weight:700;font-size:10px}
text.deciding-label.sev-violation{fill:var(--violation)}text.deciding-label.sev-uncertain{fill:var(--uncertain)}text.deciding-label.sev-near_miss{fill:var(--near_miss)}
path.order{fill:none;stroke-width:2;stroke:var(--near_miss)}path.order.sev-violation{stroke:var(--violation)}path.order.sev-uncertain{stroke:var(--uncertain)}
tr.deciding-row td{background:#fff4d6}.pager{margin:4px 0 10px}.pager button{margin-right:6px}
footer{margin-top:30px;color:var(--muted);font-size:12px}
</style>
"#;

/// Paginates long findings indexes; everything else works without script.
const SCRIPT: &str = r#"<script>
"use strict";
for (const table of document.querySelectorAll("table.findings")) {
  const rows = Array.from(table.tBodies[0].rows);
  const size = Number(table.dataset.pageRows) || 100;
  if (rows.length <= size) continue;
  const pages = Math.ceil(rows.length / size);
  const pager = document.createElement("div");
  pager.className = "pager";
  const label = document.createElement("span");
  const show = (p) => {
    rows.forEach((r, i) => { r.hidden = Math.floor(i / size) !== p; });
    label.textContent = "page " + (p + 1) + " of " + pages + " (" + rows.length + " findings)";
    pager.dataset.page = String(p);
  };
  for (const [text, step] of [["previous", -1], ["next", 1]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.addEventListener("click", () => {
      const p = Number(pager.dataset.page) + step;
      if (p >= 0 && p < pages) show(p);
    });
    pager.appendChild(b);
  }
  pager.appendChild(label);
  table.before(pager);
  show(0);
}
</script>
"#;
