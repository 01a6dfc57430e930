//! `monitor analyze`: the detector over recorded trace files.
//!
//! The `monitor` binary does the IO (reading files, printing, the exit code);
//! everything else is here, pure:
//!
//! ```text
//! let mut file = FileAnalyzer::new("trace.jsonl");
//! for line in text.lines() { file.feed_line(line); }   // or line by line from a reader
//! let report = Report::new(vec![file.finish()]);
//! print!("{}", report.render_table());                // or report.render_json()
//! std::process::exit(report.exit_status().code());
//! ```
//!
//! Each file is analysed by its own [`Detector`] (its header names its kernel
//! and hook plan; sequence numbers are per recording). Error handling:
//! * the first non-empty line must be a compatible [`crate::tracefile::Header`] — otherwise an
//!   error naming `file:line`;
//! * a malformed line anywhere is an error naming `file:line`, and the rest of
//!   that file is not analysed;
//! * a *last* line that is cut short (the recorder was killed mid-write) is a
//!   warning ("interrupted recording"), not an error;
//! * IO errors found by the caller are recorded with [`FileReport::io_error`].
//!
//! Exit status: 0 = no findings, 1 = findings, 2 = any error (errors win).

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    detector::{Detector, DetectorConfig, DetectorStats},
    era::Era,
    finding::{Finding, Severity},
    rules::{CoverageState, RuleCoverage},
    tracefile::{Line, LineError, Summary, parse_line},
    workload::CgroupTable,
};

/// An error that stops the analysis of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnalysisError {
    pub file: String,
    /// 1-based line number, `None` for file-level errors (IO, empty file).
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for AnalysisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for AnalysisError {}

/// The result of analysing one file.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub file: String,
    /// From the header, if one was read.
    pub kernel_release: Option<String>,
    pub era: Option<Era>,
    pub coverage: Vec<RuleCoverage>,
    pub findings: Vec<Finding>,
    /// Loss, uncertainty and input-quality notes, one sentence each.
    pub notes: Vec<String>,
    /// Problems that did not stop the analysis (an interrupted recording).
    pub warnings: Vec<String>,
    pub error: Option<AnalysisError>,
    pub stats: DetectorStats,
    /// Lines read (including the header).
    pub lines: usize,
}

impl FileReport {
    /// A file that could not be read at all.
    pub fn io_error(file: impl Into<String>, message: impl Into<String>) -> FileReport {
        let mut r = FileReport::empty(file.into());
        r.error = Some(AnalysisError {
            file: r.file.clone(),
            line: None,
            message: message.into(),
        });
        r
    }

    fn empty(file: String) -> FileReport {
        FileReport {
            error: None,
            file,
            kernel_release: None,
            era: None,
            coverage: Vec::new(),
            findings: Vec::new(),
            notes: Vec::new(),
            warnings: Vec::new(),
            stats: DetectorStats::default(),
            lines: 0,
        }
    }
}

/// Analyses one trace file, fed line by line.
pub struct FileAnalyzer {
    report: FileReport,
    detector: Option<Detector>,
    /// A cut-short line waiting to learn whether it is the last one.
    truncated_at: Option<usize>,
    summary: Option<Summary>,
    /// The file's `cgroup` lines: findings name their tasks' workloads.
    cgroups: CgroupTable,
    failed: bool,
}

impl FileAnalyzer {
    pub fn new(file: impl Into<String>) -> FileAnalyzer {
        FileAnalyzer {
            report: FileReport::empty(file.into()),
            detector: None,
            truncated_at: None,
            summary: None,
            cgroups: CgroupTable::default(),
            failed: false,
        }
    }

    fn fail(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.failed = true;
        self.report.error = Some(AnalysisError {
            file: self.report.file.clone(),
            line,
            message: message.into(),
        });
    }

    /// Feeds the next line (without its newline; a trailing `\r` is ignored).
    pub fn feed_line(&mut self, line: &str) {
        if self.failed {
            return;
        }
        self.report.lines += 1;
        let no = self.report.lines;
        let text = line.trim_end_matches('\r');
        if text.trim().is_empty() {
            return;
        }
        if let Some(at) = self.truncated_at {
            // The cut-short line was not the last one.
            return self.fail(
                Some(at),
                "line is cut short (interrupted write) but more lines follow",
            );
        }
        // Almost every line: an event, once the header is read, goes
        // straight to the detector (what `parse_line` makes of it, without
        // the `Line` around it).
        if let Some(detector) = &mut self.detector
            && let Some(ev) = crate::json::parse_event_line(text)
        {
            let found = detector.push_event(ev);
            detector.discard_windows();
            if !found.is_empty() {
                self.report.findings.extend(found);
            }
            return;
        }
        let parsed = match parse_line(text) {
            Ok(l) => l,
            Err(LineError::Truncated) => {
                self.truncated_at = Some(no);
                return;
            }
            Err(e @ LineError::Malformed { .. }) => {
                return self.fail(Some(no), format!("malformed line: {e}"));
            }
        };
        let Some(detector) = &mut self.detector else {
            let Line::Header(h) = parsed else {
                return self.fail(
                    Some(no),
                    "missing header: the first line of a trace file must be its header",
                );
            };
            if let Err(e) = h.check_compatible() {
                return self.fail(Some(no), format!("incompatible header: {e}"));
            }
            let d = Detector::new(DetectorConfig::from_header(&h));
            self.report.kernel_release = Some(h.kernel_release.clone());
            self.report.era = Some(d.era().clone());
            self.report.coverage = d.coverage().to_vec();
            if !h.filters.is_empty() {
                let f: Vec<String> = h.filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.report.notes.push(format!(
                    "the recording was filtered ({}): sequence gaps are not treated as loss, \
                     and races involving filtered-out tasks are invisible",
                    f.join(", ")
                ));
            }
            self.detector = Some(d);
            return;
        };
        match parsed {
            Line::Header(_) => self.fail(Some(no), "unexpected second header line"),
            Line::Event(ev) => {
                let found = detector.push_event(ev);
                detector.discard_windows();
                self.report.findings.extend(found);
            }
            Line::Loss(loss) => {
                let found = detector.push_loss(&loss);
                self.report.findings.extend(found);
            }
            // Findings recorded live are not re-read: the analysis recomputes them.
            Line::Finding(_) => {}
            Line::Summary(s) => self.summary = Some(s),
            Line::Cgroup(c) => self.cgroups.insert(c),
        }
    }

    /// Feeds a whole text (e.g. a file read into memory).
    pub fn feed_text(&mut self, text: &str) {
        for line in text.split('\n') {
            self.feed_line(line);
        }
    }

    pub fn finish(mut self) -> FileReport {
        if let Some(at) = self.truncated_at
            && !self.failed
            && self.detector.is_some()
        {
            self.report.warnings.push(format!(
                "{}:{at}: last line is cut short: interrupted recording, analysed up to line {}",
                self.report.file,
                at - 1
            ));
        }
        if self.detector.is_none() && !self.failed {
            // Only blank lines (or none) were read, or the header itself was
            // cut short.
            match self.truncated_at {
                Some(at) => self.fail(Some(at), "the header line is cut short"),
                None => self.fail(None, "empty file: no header"),
            }
        }
        if let Some(mut d) = self.detector.take() {
            if !self.failed {
                let found = d.finish();
                self.report.findings.extend(found);
            }
            self.report.stats = d.stats().clone();
        }
        let table = &self.cgroups;
        for f in &mut self.report.findings {
            crate::workload::annotate(&mut f.tasks, |h, id| table.get(h, id));
        }
        self.add_notes();
        self.report
    }

    fn add_notes(&mut self) {
        let s = &self.report.stats;
        let mut notes = Vec::new();
        if s.loss_lines > 0 {
            notes.push(format!(
                "{} record(s) were lost in the ring buffer ({} loss line(s)): windows open at \
                 those moments are reported as uncertain, never as violations",
                s.lost_records, s.loss_lines
            ));
        }
        if s.gaps > 0 {
            notes.push(format!(
                "{} sequence gap(s), {} record(s) of individual mms missing: windows open \
                 across them are reported as uncertain",
                s.gaps, s.records_missing
            ));
        }
        if s.generations_end_lost > 0 {
            notes.push(format!(
                "{} mm generation(s) ended without their end record (lost)",
                s.generations_end_lost
            ));
        }
        if s.unsequenced > 0 {
            notes.push(format!(
                "{} event(s) without sequence numbers (BPF sequence map full): verdicts \
                 built on them are uncertain",
                s.unsequenced
            ));
        }
        if s.mms_evicted > 0 || s.windows_dropped > 0 {
            notes.push(format!(
                "memory bound reached: {} mm generation(s) forgotten, {} open window(s) dropped",
                s.mms_evicted, s.windows_dropped
            ));
        }
        if s.late_records > 0 || s.late_after_end > 0 {
            notes.push(format!(
                "{} record(s) arrived after their place in the sequence had passed, {} after \
                 their generation ended",
                s.late_records, s.late_after_end
            ));
        }
        if s.unbalanced_migrate_batches > 0 {
            notes.push(format!(
                "{} migration batch(es) installed more or fewer migration PTEs than they \
                 removed (tracepoint counts): not a provable violation (entries of torn-down \
                 mms are zapped, THP splits use migration entries outside batches)",
                s.unbalanced_migrate_batches
            ));
        }
        if let Some(sum) = &self.summary {
            if sum.lost > 0 && s.loss_lines == 0 {
                notes.push(format!(
                    "the recording's summary reports {} lost record(s) but the file has no \
                     loss lines: verdicts may rest on incomplete data",
                    sum.lost
                ));
            }
            if sum.decode_errors > 0 {
                notes.push(format!(
                    "{} record(s) could not be decoded during the recording",
                    sum.decode_errors
                ));
            }
        } else if self.detector_seen() && self.truncated_at.is_none() && !self.failed {
            notes.push("the recording has no summary line: it did not end cleanly".to_owned());
        }
        if let Some(era) = &self.report.era
            && !era.is_known()
        {
            notes.push(format!(
                "kernel release {:?} not recognised: no finding is reported as more than \
                     a near miss",
                era.release
            ));
        }
        for c in &self.report.coverage {
            if c.state == CoverageState::Disabled {
                notes.push(format!(
                    "rule {} is disabled: {}",
                    c.rule.name(),
                    c.reason()
                ));
            }
        }
        self.report.notes.extend(notes);
    }

    fn detector_seen(&self) -> bool {
        self.report.kernel_release.is_some()
    }
}

/// Analyses whole texts: `(file name, contents)` pairs.
pub fn analyze_texts<'a>(inputs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Report {
    let files = inputs
        .into_iter()
        .map(|(name, text)| {
            let mut a = FileAnalyzer::new(name);
            a.feed_text(text);
            a.finish()
        })
        .collect();
    Report::new(files)
}

/// The process exit status of `monitor analyze`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    NoFindings,
    Findings,
    Error,
}

impl ExitStatus {
    pub const fn code(self) -> u8 {
        match self {
            ExitStatus::NoFindings => 0,
            ExitStatus::Findings => 1,
            ExitStatus::Error => 2,
        }
    }
}

/// The analysis of one or more files.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
}

#[derive(Serialize)]
struct FindingLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    file: &'a str,
    #[serde(flatten)]
    finding: &'a Finding,
}

#[derive(Serialize)]
struct FileLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    file: &'a str,
    kernel_release: &'a Option<String>,
    coverage: &'a [RuleCoverage],
    findings: usize,
    notes: &'a [String],
    warnings: &'a [String],
    error: Option<String>,
    stats: &'a DetectorStats,
}

#[derive(Serialize)]
struct SummaryLine {
    #[serde(rename = "type")]
    kind: &'static str,
    files: usize,
    findings: usize,
    errors: usize,
    exit_status: u8,
}

impl Report {
    pub fn new(files: Vec<FileReport>) -> Report {
        Report { files }
    }

    pub fn findings(&self) -> impl Iterator<Item = (&str, &Finding)> {
        self.files
            .iter()
            .flat_map(|f| f.findings.iter().map(move |x| (f.file.as_str(), x)))
    }

    pub fn errors(&self) -> impl Iterator<Item = &AnalysisError> {
        self.files.iter().filter_map(|f| f.error.as_ref())
    }

    /// 2 if any file had an error, else 1 if anything was found, else 0.
    pub fn exit_status(&self) -> ExitStatus {
        if self.errors().next().is_some() {
            ExitStatus::Error
        } else if self.findings().next().is_some() {
            ExitStatus::Findings
        } else {
            ExitStatus::NoFindings
        }
    }

    /// JSON Lines: one `{"type":"finding","file":…, <Finding fields>}` line per
    /// finding (parseable as a trace-file finding line), then one
    /// `{"type":"file",…}` line per file (coverage, notes, warnings, error,
    /// statistics) and a final `{"type":"summary",…}` line.
    pub fn render_json(&self) -> String {
        let mut s = String::new();
        let line = |v: serde_json::Result<String>| {
            v.unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":{:?}}}", e.to_string()))
        };
        for (file, finding) in self.findings() {
            s.push_str(&line(serde_json::to_string(&FindingLine {
                kind: "finding",
                file,
                finding,
            })));
            s.push('\n');
        }
        for f in &self.files {
            s.push_str(&line(serde_json::to_string(&FileLine {
                kind: "file",
                file: &f.file,
                kernel_release: &f.kernel_release,
                coverage: &f.coverage,
                findings: f.findings.len(),
                notes: &f.notes,
                warnings: &f.warnings,
                error: f.error.as_ref().map(ToString::to_string),
                stats: &f.stats,
            })));
            s.push('\n');
        }
        s.push_str(&line(serde_json::to_string(&SummaryLine {
            kind: "summary",
            files: self.files.len(),
            findings: self.findings().count(),
            errors: self.errors().count(),
            exit_status: self.exit_status().code(),
        })));
        s.push('\n');
        s
    }

    /// A human-readable report.
    pub fn render_table(&self) -> String {
        let mut s = String::new();
        for f in &self.files {
            render_file(&mut s, f);
        }
        let n = self.findings().count();
        let by_sev = |sev: Severity| self.findings().filter(|(_, x)| x.severity == sev).count();
        let _ = writeln!(
            s,
            "{} file(s), {} finding(s) ({} violation, {} near miss, {} uncertain), {} error(s)",
            self.files.len(),
            n,
            by_sev(Severity::Violation),
            by_sev(Severity::NearMiss),
            by_sev(Severity::Uncertain),
            self.errors().count()
        );
        s
    }
}

fn secs(t: u64) -> String {
    format!("{}.{:06}", t / 1_000_000_000, (t % 1_000_000_000) / 1000)
}

fn render_file(s: &mut String, f: &FileReport) {
    let kernel = f.era.as_ref().map_or_else(|| "?".to_owned(), Era::label);
    let _ = writeln!(s, "== {} (kernel {kernel})", f.file);
    if !f.coverage.is_empty() {
        let _ = writeln!(s, "rules:");
        for c in &f.coverage {
            let _ = writeln!(
                s,
                "  {:<26} {:<9} {}",
                c.rule.name(),
                c.state.name(),
                c.reason()
            );
        }
    }
    if f.findings.is_empty() {
        let _ = match f.error.as_ref().map(|e| e.line) {
            None => writeln!(s, "findings: none"),
            Some(None) => writeln!(s, "findings: not analysed (see the error)"),
            Some(Some(l)) => writeln!(s, "findings: none before line {l} (not analysed further)"),
        };
    } else {
        let _ = writeln!(s, "findings:");
        let _ = writeln!(
            s,
            "  {:<10} {:<25} {:<20} {:<22} {:<27} TASKS",
            "SEVERITY", "KIND", "MM", "GEN", "TIME (s)"
        );
        for x in &f.findings {
            let tasks: Vec<String> = x
                .tasks
                .iter()
                .map(|t| {
                    format!(
                        "{}[{}]{}",
                        t.comm,
                        t.pid,
                        if t.kthread { "(kthread)" } else { "" }
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "  {:<10} {:<25} {:<20} {:<22} {:<27} {}",
                x.severity.name(),
                x.kind.name(),
                format!("{:#x}", x.mm),
                x.mm_gen,
                format!("{}..{}", secs(x.start_t), secs(x.end_t)),
                tasks.join(" ")
            );
            let _ = writeln!(s, "    why: {}", x.explanation);
            for who in x.tasks.iter().filter_map(crate::workload::describe) {
                let _ = writeln!(s, "    who: {who}");
            }
            let d: Vec<String> = x.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(s, "    details: {}", d.join(" "));
            let _ = writeln!(s, "    evidence: {} event(s)", x.evidence.len());
        }
    }
    for n in &f.notes {
        let _ = writeln!(s, "note: {n}");
    }
    for w in &f.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    if let Some(e) = &f.error {
        let _ = writeln!(s, "error: {e}");
    }
    s.push('\n');
}
