//! `monitor analyze FILE...`: run the detector over recorded trace files.
//! Exit status: 0 no findings, 1 findings, 2 error (unreadable or malformed
//! input; errors win).

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    process::ExitCode,
};

use monitor_detector::{FileAnalyzer, FileReport, Report};

use super::args::{AnalyzeArgs, AnalyzeFormat};

fn analyze_file(path: &std::path::Path) -> FileReport {
    let name = path.display().to_string();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return FileReport::io_error(name, format!("cannot read: {e}")),
    };
    let mut analyzer = FileAnalyzer::new(name.clone());
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                // A line that is not UTF-8 is malformed; the analyzer reports it.
                let text = String::from_utf8_lossy(&buf);
                analyzer.feed_line(text.strip_suffix('\n').unwrap_or(&text));
            }
            Err(e) => return FileReport::io_error(name, format!("read error: {e}")),
        }
    }
    analyzer.finish()
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let (report, perfetto) = if super::report::wanted(&args) {
        super::report::run(&args)?
    } else {
        let files = args.files.iter().map(|p| analyze_file(p)).collect();
        (Report::new(files), None)
    };
    match args.format {
        AnalyzeFormat::Table => print!("{}", report.render_table()),
        AnalyzeFormat::Json => print!("{}", report.render_json()),
        AnalyzeFormat::Perfetto => print!("{}", perfetto.unwrap_or_default()),
    }
    for e in report.errors() {
        eprintln!("monitor: error: {e}");
    }
    Ok(ExitCode::from(report.exit_status().code()))
}
