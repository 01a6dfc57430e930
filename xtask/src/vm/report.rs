//! Judging a guest run from its machine-readable output (second serial port):
//! libtest lines from the test binary plus `VMH` markers from `/init`.

use std::fmt;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub kernel_seen: Option<String>,
    /// (test name, outcome) in order.
    pub tests: Vec<(String, String)>,
    pub summary_line: Option<String>,
    pub exit_code: Option<i32>,
    /// `VMH note …` lines printed by tests (e.g. a scenario the kernel lacks).
    pub notes: Vec<String>,
    /// `VMH insmod failed …` and similar.
    pub problems: Vec<String>,
}

impl Report {
    pub fn parse(text: &str) -> Report {
        let mut r = Report::default();
        // With --nocapture a test's own output comes between libtest's
        // "test NAME ... " and its outcome, which then stands on a line of its own.
        let mut pending: Option<String> = None;
        for raw in text.lines() {
            let line = raw.trim_end_matches('\r');
            if let Some(name) = &pending
                && matches!(line.trim(), "ok" | "FAILED" | "ignored")
            {
                r.tests.push((name.clone(), line.trim().to_owned()));
                pending = None;
                continue;
            }
            if let Some(rest) = line.strip_prefix("VMH kernel ") {
                r.kernel_seen = Some(rest.to_owned());
            } else if let Some(rest) = line.strip_prefix("VMH exit ") {
                r.exit_code = rest.trim().parse().ok();
            } else if let Some(rest) = line.strip_prefix("VMH note ") {
                r.notes.push(rest.to_owned());
            } else if let Some(rest) = line.strip_prefix("VMH insmod failed") {
                r.problems.push(format!("insmod failed{rest}"));
            } else if line.starts_with("test result: ") {
                r.summary_line = Some(line.to_owned());
            } else if let Some(rest) = line.strip_prefix("test ")
                && let Some((name, tail)) = rest.split_once(" ... ")
            {
                let outcome = tail.split_whitespace().next().unwrap_or("").to_owned();
                if matches!(outcome.as_str(), "ok" | "FAILED" | "ignored") {
                    r.tests.push((name.to_owned(), outcome));
                } else {
                    // The test's first output line continues libtest's.
                    if let Some(note) = tail.strip_prefix("VMH note ") {
                        r.notes.push(note.to_owned());
                    }
                    pending = Some(name.to_owned());
                }
            }
        }
        r
    }

    pub fn passed(&self) -> usize {
        self.tests.iter().filter(|(_, o)| o == "ok").count()
    }

    /// `N passed` and `M failed` from libtest's summary line.
    fn summary_counts(&self) -> Option<(usize, usize)> {
        let line = self.summary_line.as_deref()?;
        let count = |what: &str| {
            line.split(';')
                .find_map(|part| part.trim().strip_suffix(what))
                .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
        };
        Some((count("passed")?, count("failed")?))
    }

    pub fn failed(&self) -> Vec<&str> {
        self.tests
            .iter()
            .filter(|(_, o)| o == "FAILED")
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Why this run must not count as a pass (`None` = it passed). A run
    /// without evidence is a failure: no tests, no summary, no exit marker.
    pub fn verdict(&self) -> Option<String> {
        if self.kernel_seen.is_none() {
            return Some("the guest never reported booting (no VMH kernel marker)".into());
        }
        if !self.failed().is_empty() {
            return Some(format!("tests failed: {}", self.failed().join(", ")));
        }
        let Some(code) = self.exit_code else {
            return Some("the test binary never finished (no VMH exit marker)".into());
        };
        if self.summary_line.is_none() {
            return Some("no libtest summary line in the guest output".into());
        }
        if self.passed() == 0 {
            return Some("no test passed (empty filter or nothing ran)".into());
        }
        match self.summary_counts() {
            Some((passed, failed)) if passed == self.passed() && failed == 0 => {}
            Some((passed, failed)) => {
                return Some(format!(
                    "libtest reports {passed} passed and {failed} failed, but {} outcomes were seen",
                    self.tests.len()
                ));
            }
            None => return Some("unreadable libtest summary line".into()),
        }
        if code != 0 {
            return Some(format!("the test binary exited with {code}"));
        }
        None
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, outcome) in &self.tests {
            writeln!(f, "    {outcome:<7} {name}")?;
        }
        for n in &self.notes {
            writeln!(f, "    note    {n}")?;
        }
        for p in &self.problems {
            writeln!(f, "    problem {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "VMH kernel 6.1 6.1.0-50-cloud-amd64\n\
        running 2 tests\n\
        test vm::a ... ok\n\
        VMH note vm::b: process_mrelease not available\n\
        test vm::b ... ok\n\
        \n\
        test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 5 filtered out; finished in 9.12s\n\
        VMH exit 0\n";

    #[test]
    fn a_clean_run_passes() {
        let r = Report::parse(GOOD);
        assert_eq!(r.passed(), 2);
        assert_eq!(r.notes.len(), 1);
        assert_eq!(r.verdict(), None);
    }

    #[test]
    fn missing_evidence_fails() {
        assert!(Report::parse("").verdict().is_some());
        let cut = GOOD.replace("VMH exit 0\n", "");
        assert!(
            Report::parse(&cut)
                .verdict()
                .expect("fails")
                .contains("never finished")
        );
        let none = "VMH kernel x\ntest result: ok. 0 passed; 0 failed\nVMH exit 0\n";
        assert!(
            Report::parse(none)
                .verdict()
                .expect("fails")
                .contains("no test passed")
        );
        let failed = GOOD.replace("test vm::b ... ok", "test vm::b ... FAILED");
        assert!(
            Report::parse(&failed)
                .verdict()
                .expect("fails")
                .contains("vm::b")
        );
        let code = GOOD.replace("VMH exit 0", "VMH exit 101");
        assert!(
            Report::parse(&code)
                .verdict()
                .expect("fails")
                .contains("101")
        );
        let lost = GOOD.replace("test vm::a ... ok\n", "");
        assert!(
            Report::parse(&lost)
                .verdict()
                .expect("fails")
                .contains("outcomes were seen")
        );
    }

    #[test]
    fn outcome_after_interleaved_output_is_found() {
        let text = GOOD.replace(
            "test vm::a ... ok\n",
            "test vm::a ... compaction: {\"x\":1}\nmore output\nok\n",
        );
        let r = Report::parse(&text);
        assert_eq!(r.tests[0], ("vm::a".to_owned(), "ok".to_owned()));
        assert_eq!(r.verdict(), None);
        // A note printed first stands on libtest's line.
        let text = GOOD.replace(
            "test vm::a ... ok\n",
            "test vm::a ... VMH note first\nVMH note second\nok\n",
        );
        let r = Report::parse(&text);
        assert_eq!(r.notes[..2], ["first".to_owned(), "second".to_owned()]);
        assert_eq!(r.verdict(), None);
    }
}
