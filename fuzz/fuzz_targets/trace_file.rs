//! The trace-file reader and the detector behind `monitor analyze`: any text
//! gives a report (findings, notes or an error naming a line), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_detector::{FileAnalyzer, Report, tracefile::parse_line};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split('\n') {
        let _ = parse_line(line);
    }
    let mut a = FileAnalyzer::new("fuzz.jsonl");
    a.feed_text(&text);
    let report = Report::new(vec![a.finish()]);
    let _ = report.render_table();
    let _ = report.render_json();
    let _ = report.exit_status();
});
