//! Pictures of findings: a self-contained HTML report
//! (`monitor analyze --html FILE`) and a Chrome trace-event JSON export for
//! Perfetto UI and `chrome://tracing` (`monitor analyze --format perfetto`).
//!
//! **Invariant:** pure. Input is what `monitor analyze` read (the files'
//! analyses, headers, loss lines and events, through [`adapter`]); output is
//! a `String`. Nothing here reads a file, the clock or the environment.
//!
//! **Invariant:** everything taken from a trace (task names, file names,
//! paths, explanations) is untrusted and reaches HTML only through
//! [`esc`]; the report loads nothing (no network, no external script, style
//! or font) and its Content-Security-Policy forbids it.
//!
//! - [`adapter`]: the one place that reads `monitor_detector`'s types.
//! - [`story`]: per finding, lanes per task, brackets, window, deciding event.
//! - [`html`]: the report. [`perfetto`]: the trace-event export.

pub mod adapter;
pub mod html;
pub mod perfetto;
pub mod story;

pub use adapter::FileView;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (a comm can hold any byte): visible, inert.
            c if c.is_control() && c != '\n' && c != '\t' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// `+1.234 ms`-style duration between two kernel times.
pub fn rel(ns: u64) -> String {
    if ns < 1_000 {
        format!("+{ns} ns")
    } else if ns < 1_000_000 {
        format!("+{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("+{:.3} ms", ns as f64 / 1e6)
    } else {
        format!("+{:.3} s", ns as f64 / 1e9)
    }
}

/// Wall-clock time (UTC, µs) of kernel time `t`, given the header's clock
/// pair (kernel monotonic ns, Unix ms at the same moment).
pub fn wall(clock: Option<(u64, u64)>, t: u64) -> String {
    let Some((k0, unix_ms)) = clock else {
        return format!(
            "{}.{:06} s since boot",
            t / 1_000_000_000,
            (t % 1_000_000_000) / 1000
        );
    };
    let unix_ns = i128::from(unix_ms) * 1_000_000 + i128::from(t) - i128::from(k0);
    if unix_ns < 0 {
        return format!(
            "{}.{:06} s since boot",
            t / 1_000_000_000,
            (t % 1_000_000_000) / 1000
        );
    }
    let secs = (unix_ns / 1_000_000_000) as i64;
    let micros = ((unix_ns % 1_000_000_000) / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            esc(r#"<img src=x onerror="a('b')">&"#),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
        assert_eq!(esc("a\u{1b}[31m"), "a\\x1b[31m");
    }

    #[test]
    fn wall_clock_from_the_header_pair() {
        // 1795000000000 ms = 2026-11-18 11:06:40 UTC (date -u -d @1795000000).
        let clock = Some((12_000_000_000, 1_795_000_000_000));
        assert_eq!(
            wall(clock, 12_000_001_000),
            "2026-11-18 11:06:40.000001 UTC"
        );
        assert_eq!(wall(None, 1_500_000_000), "1.500000 s since boot");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn relative_times() {
        assert_eq!(rel(999), "+999 ns");
        assert_eq!(rel(1_500), "+1.5 µs");
        assert_eq!(rel(2_034_000_000), "+2.034 s");
    }
}
