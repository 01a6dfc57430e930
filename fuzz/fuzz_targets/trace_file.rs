//! The trace-file reader and the detector behind `monitor analyze`: any text
//! gives a report (findings, notes or an error naming a line), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_detector::{FileAnalyzer, Report};

fuzz_target!(|data: &[u8]| {
    // What `monitor analyze` does with a file: lines as lossy UTF-8.
    let text = String::from_utf8_lossy(data);
    let mut a = FileAnalyzer::new("fuzz.jsonl");
    a.feed_text(&text);
    let report = Report::new(vec![a.finish()]);
    let _ = report.render_table();
    let _ = report.exit_status();
});
