//! `monitor analyze FILE...`: run the detector over recorded trace files
//! (plain, or gzip/zstd compressed: `crate::compress`).
//! Exit status: 0 no findings, 1 findings, 2 error (unreadable or malformed
//! input; errors win). A closed stdout (`monitor analyze F | head -1`) is not
//! an error: the status is the analysis's.

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read as _},
    process::ExitCode,
};

use monitor_common::maps::WIRE_VERSION;
use monitor_detector::{
    AnalysisError, FileAnalyzer, FileReport, Report,
    tracefile::{Line, parse_line},
};

use super::args::{AnalyzeArgs, AnalyzeFormat};
use crate::{
    compress::{self, Codec},
    output, say,
};

/// The longest line accepted. A finding line with its 32 evidence events is
/// about 20 KB, an event line well under 1 KB: a longer line is not a trace
/// file's, and reading it whole would cost its size in memory.
pub const MAX_LINE_BYTES: usize = 4 << 20;

fn analyze_file(path: &std::path::Path) -> FileReport {
    analyze_file_with(path, &mut |_| {})
}

/// Analyses one file, line by line with bounded lines, handing every line
/// the analyzer saw to `also` (the HTML report and the Perfetto export keep
/// the header, loss lines and events from it).
pub fn analyze_file_with(path: &std::path::Path, also: &mut dyn FnMut(&str)) -> FileReport {
    let name = path.display().to_string();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return FileReport::io_error(name, format!("cannot read: {e}")),
    };
    // .gz / .zst traces are decoded on the fly (recognised by their magic).
    let (codec, mut reader) = match compress::reader(BufReader::new(file)) {
        Ok(r) => r,
        Err(e) => return FileReport::io_error(name, format!("cannot read: {e}")),
    };
    let mut analyzer = FileAnalyzer::new(name.clone());
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut header_seen = false;
    loop {
        buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        match reader.by_ref().take(limit).read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                line_no += 1;
                if buf.len() > MAX_LINE_BYTES {
                    return FileReport::io_error(
                        name,
                        format!(
                            "line {line_no} is longer than {} MiB: not a trace file line",
                            MAX_LINE_BYTES >> 20
                        ),
                    );
                }
                // A line that is not UTF-8 is malformed; the analyzer reports it.
                // (`from_utf8` first: its ASCII fast path is several times
                // faster than `from_utf8_lossy`'s, and almost every line is valid.)
                let text = match std::str::from_utf8(&buf) {
                    Ok(s) => std::borrow::Cow::Borrowed(s),
                    Err(_) => String::from_utf8_lossy(&buf),
                };
                let text = text.strip_suffix('\n').unwrap_or(&text);
                if !header_seen && !text.trim().is_empty() {
                    header_seen = true;
                    warn_about_header(&name, text);
                }
                analyzer.feed_line(text);
                also(text);
            }
            Err(e) if codec != Codec::Plain => {
                // Keep what the readable members hold; the error says why the rest is missing.
                let mut report = analyzer.finish();
                report.error = Some(AnalysisError {
                    file: name,
                    line: None,
                    message: format!("after line {line_no}: {e}"),
                });
                return report;
            }
            Err(e) => return FileReport::io_error(name, format!("read error: {e}")),
        }
    }
    analyzer.finish()
}

/// Files written by another build still parse as JSON; say so when their
/// BPF record layout is newer than this build's (older layouts are read in
/// full: each layout change only added fields, which older files lack).
fn warn_about_header(file: &str, first_line: &str) {
    if let Ok(Line::Header(h)) = parse_line(first_line.trim_end_matches('\r'))
        && h.wire_version > WIRE_VERSION
    {
        say!(
            "monitor: warning: {file}: recorded with BPF record layout (wire_version) {}, this \
             build has {WIRE_VERSION} (monitor {}): the events are read as recorded",
            h.wire_version,
            h.monitor_version
        );
    }
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let (report, perfetto) = if super::report::wanted(&args) {
        super::report::run(&args)?
    } else {
        let files = args.files.iter().map(|p| analyze_file(p)).collect();
        (Report::new(files), None)
    };
    let text = match args.format {
        AnalyzeFormat::Table => report.render_table(),
        AnalyzeFormat::Json => report.render_json(),
        AnalyzeFormat::Perfetto => perfetto.unwrap_or_default(),
    };
    output::STDOUT.bytes(text.into_bytes());
    for e in report.errors() {
        say!("monitor: error: {e}");
    }
    Ok(ExitCode::from(report.exit_status().code()))
}
