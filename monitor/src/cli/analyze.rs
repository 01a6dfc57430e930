//! `monitor analyze FILE...`: run the detector over recorded trace files
//! (plain, or gzip/zstd compressed: `crate::compress`).
//! Exit status: 0 no findings, 1 findings, 2 error (unreadable or malformed
//! input; errors win). A closed stdout (`monitor analyze F | head -1`) is not
//! an error: the status is the analysis's.

use std::{
    fs::File,
    io::{self, BufRead, BufReader},
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
    let (codec, mut reader) = match compress::reader(BufReader::with_capacity(64 * 1024, file)) {
        Ok(r) => r,
        Err(e) => return FileReport::io_error(name, format!("cannot read: {e}")),
    };
    let mut analyzer = FileAnalyzer::new(name.clone());
    let mut line_no = 0usize;
    let mut header_seen = false;
    let read = each_line(&mut *reader, MAX_LINE_BYTES, |bytes| {
        line_no += 1;
        let text = match std::str::from_utf8(bytes) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        let text: &str = &text;
        if !header_seen && !text.trim().is_empty() {
            header_seen = true;
            warn_about_header(&name, text);
        }
        analyzer.feed_line(text);
        also(text);
    });
    match read {
        Ok(()) => analyzer.finish(),
        Err(LinesEnd::TooLong) => FileReport::io_error(
            name,
            format!(
                "line {} is longer than {} MiB: not a trace file line",
                line_no + 1,
                MAX_LINE_BYTES >> 20
            ),
        ),
        Err(LinesEnd::Io(e)) if codec != Codec::Plain => {
            let mut report = analyzer.finish();
            report.error = Some(AnalysisError {
                file: name,
                line: None,
                message: format!("after line {line_no}: {e}"),
            });
            report
        }
        Err(LinesEnd::Io(e)) => FileReport::io_error(name, format!("read error: {e}")),
    }
}

/// Why [`each_line`] stopped before the end of its input.
#[derive(Debug)]
enum LinesEnd {
    /// The next line (newline included) is longer than the limit.
    TooLong,
    Io(io::Error),
}

/// Calls `f` with every line of `reader`, without its `\n` (the last line
/// may have none), until the end of the input, a read error or a line
/// longer than `max` bytes with its newline. A line that lies whole in the
/// reader's buffer is handed over from there; only a line that spans two
/// refills is copied, so reading costs one search for the newline per
/// line (`memchr`) and no copy.
fn each_line(
    reader: &mut dyn BufRead,
    max: usize,
    mut f: impl FnMut(&[u8]),
) -> Result<(), LinesEnd> {
    // The start of a line that continues in the next refill.
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LinesEnd::Io(e)),
        };
        if chunk.is_empty() {
            if !pending.is_empty() {
                f(&pending);
            }
            return Ok(());
        }
        match memchr::memchr(b'\n', chunk) {
            Some(i) => {
                if pending.len() + i + 1 > max {
                    return Err(LinesEnd::TooLong);
                }
                if pending.is_empty() {
                    f(&chunk[..i]);
                } else {
                    pending.extend_from_slice(&chunk[..i]);
                    f(&pending);
                    pending.clear();
                }
                reader.consume(i + 1);
            }
            None => {
                if pending.len() + chunk.len() > max {
                    return Err(LinesEnd::TooLong);
                }
                pending.extend_from_slice(chunk);
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `each_line` hands over, read through a buffer of `cap`
    /// bytes, and how it ended.
    fn lines(input: &[u8], cap: usize, max: usize) -> (Vec<String>, Option<String>) {
        let mut reader = BufReader::with_capacity(cap, input);
        let mut out = Vec::new();
        let end = each_line(&mut reader, max, |l| {
            out.push(String::from_utf8_lossy(l).into_owned())
        });
        (out, end.err().map(|e| format!("{e:?}")))
    }

    #[test]
    fn lines_are_the_same_whatever_the_buffer_size() {
        let input = b"{\"a\":1}\n\nsecond line\r\nlast without newline";
        let want = ["{\"a\":1}", "", "second line\r", "last without newline"];
        for cap in [1, 2, 3, 7, 8, 64, 4096] {
            assert_eq!(
                lines(input, cap, 1 << 20),
                (want.map(String::from).to_vec(), None),
                "{cap}"
            );
        }
        assert_eq!(lines(b"", 8, 16), (Vec::new(), None));
        assert_eq!(lines(b"a\n", 8, 16), (vec!["a".to_owned()], None));
    }

    #[test]
    fn a_line_longer_than_the_limit_stops_the_reading() {
        // The limit counts the newline, as `read_until` with `take` did.
        for cap in [2, 5, 64] {
            let (got, end) = lines(b"abc\nabcd\nx\n", cap, 4);
            assert_eq!(got, ["abc"], "{cap}");
            assert_eq!(end.as_deref(), Some("TooLong"), "{cap}");
            // Without a newline, a last line of exactly the limit is whole.
            assert_eq!(
                lines(b"abc\nabcd", cap, 4),
                (vec!["abc".to_owned(), "abcd".to_owned()], None)
            );
            let (got, end) = lines(b"abc\nabcde", cap, 4);
            assert_eq!(
                (got, end.as_deref()),
                (vec!["abc".to_owned()], Some("TooLong"))
            );
        }
    }
}
