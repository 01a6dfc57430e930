//! `monitor analyze --html OUT.html` and `--format perfetto`: the IO around
//! the pure renderers in `crate::report`. Each file is read once; every line
//! goes to the detector (as for the plain analysis) and the header, summary,
//! loss lines and, for Perfetto, every event are kept for the pictures.

use std::path::Path;

use anyhow::Context as _;
use monitor_detector::{
    Event, FileAnalyzer, FileReport, Report,
    tracefile::{Header, Line, Loss, Summary, parse_line},
};

use super::args::{AnalyzeArgs, AnalyzeFormat};
use crate::report::{FileView, adapter, html, perfetto};

/// Whether `analyze` has to keep more than its findings.
pub fn wanted(args: &AnalyzeArgs) -> bool {
    args.html.is_some() || args.format == AnalyzeFormat::Perfetto
}

fn read(path: &Path, keep_events: bool) -> (FileReport, FileView) {
    let name = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            let r = FileReport::io_error(name, format!("cannot read: {e}"));
            let view = adapter::file(&r, None, None, &[], &[]);
            return (r, view);
        }
    };
    let mut analyzer = FileAnalyzer::new(name);
    let (mut header, mut summary): (Option<Header>, Option<Summary>) = (None, None);
    let mut losses: Vec<Loss> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut chunks = bytes.split(|b| *b == b'\n').peekable();
    while let Some(chunk) = chunks.next() {
        if chunk.is_empty() && chunks.peek().is_none() {
            break; // the newline ending the last line
        }
        let text = String::from_utf8_lossy(chunk);
        analyzer.feed_line(&text);
        // The analyzer judges the line (and stops at an error); the pictures
        // only keep what parses.
        match parse_line(text.trim_end_matches('\r')) {
            Ok(Line::Header(h)) if header.is_none() => header = Some(h),
            Ok(Line::Summary(s)) => summary = Some(s),
            Ok(Line::Loss(l)) => losses.push(l),
            Ok(Line::Event(e)) if keep_events => events.push(e),
            _ => {}
        }
    }
    let report = analyzer.finish();
    let view = adapter::file(&report, header.as_ref(), summary.as_ref(), &losses, &events);
    (report, view)
}

/// Analyses the files, writes the HTML report if asked, and returns the
/// analysis and (for `--format perfetto`) the trace-event JSON.
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<(Report, Option<String>)> {
    let perfetto_wanted = args.format == AnalyzeFormat::Perfetto;
    let (reports, views): (Vec<FileReport>, Vec<FileView>) =
        args.files.iter().map(|p| read(p, perfetto_wanted)).unzip();
    let generator = format!("monitor {}", env!("CARGO_PKG_VERSION"));
    if let Some(out) = &args.html {
        let page = html::render(&views, &generator);
        write_whole(out, page.as_bytes())
            .with_context(|| format!("cannot write the HTML report {}", out.display()))?;
        let findings: usize = views.iter().map(|v| v.findings.len()).sum();
        eprintln!(
            "monitor: wrote {} ({findings} finding(s), {} drawn)",
            out.display(),
            findings.min(html::DRAW_LIMIT)
        );
    }
    let trace = perfetto_wanted.then(|| perfetto::render(&views, &generator));
    Ok((Report::new(reports), trace))
}

/// Writes next to the target and renames, so a reader never sees half a
/// report.
fn write_whole(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, out).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
