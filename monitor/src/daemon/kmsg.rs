//! Violations also go to the kernel log (`/dev/kmsg`), so that the evidence
//! survives the crash it may announce: a kernel that let a race through can
//! oops or panic moments later, before journald or the recorder flushed.
//! The kernel log is what pstore, kdump (`dmesg` of the vmcore) and
//! netconsole keep; the serial console shows it too.
//!
//! One line per violation finding, at `LOG_CRIT` (level 2, shown on the
//! console even under `quiet`, whose console log level is 4):
//!
//! ```text
//! mm-race-monitor: violation rule=uffd_copy_vs_mm_change pattern=copy_inside_window mm=0xffff8880045a1c00 gen=7 tasks=231/229:scenario,12/12:oom_reaper[k] t=5012331..5098812
//! ```
//!
//! When a task's cgroup names a container or pod (`monitor_detector::workload`),
//! ` container=<first 12 hex digits> pod=<uid>` follow the tasks.
//!
//! The file is opened once, write-only and `O_NONBLOCK`; a write never
//! blocks the daemon and a failure (no `/dev/kmsg` in the sandbox, `EAGAIN`)
//! is counted by the caller (`mmrace_kmsg_write_failures_total`) and warned
//! about once, never fatal. The kernel rate-limits `/dev/kmsg` writers
//! (`printk.devkmsg=ratelimit`: a burst of 10 lines per 5 s per open file)
//! and drops the excess silently; violations are rare enough for that.
//! Near misses and uncertain findings are not written: they are expected on
//! a healthy kernel and would only flood the log.

use std::{fmt::Write as _, fs::File, io::Write as _, os::unix::fs::OpenOptionsExt as _};

use monitor_detector::{Finding, Severity};

/// The kernel log device.
pub const KMSG: &str = "/dev/kmsg";

/// `LOG_CRIT`, as a `/dev/kmsg` line prefix (the facility stays `user`).
const PRIORITY: &str = "<2>";

/// The kernel keeps at most ~1 KiB per record; stay below it.
const MAX_LINE: usize = 900;

/// Every line starts with this, so harnesses and log searches find it.
pub const TAG: &str = "mm-race-monitor: violation";

pub struct Kmsg {
    file: Option<File>,
    warned: bool,
}

impl Kmsg {
    /// Opens `path` for writing (`O_NONBLOCK`); an open that fails is
    /// reported once here and each later violation counts as a failure.
    pub fn open(path: &str) -> Kmsg {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path);
        let warned = file.is_err();
        if let Err(e) = &file {
            log::warn!("{path}: {e}: violations will not reach the kernel log");
        }
        Kmsg {
            file: file.ok(),
            warned,
        }
    }

    /// Writes `f` if it is a violation. `false` means a violation did not
    /// reach the kernel log (count it).
    pub fn write(&mut self, f: &Finding) -> bool {
        if f.severity != Severity::Violation {
            return true;
        }
        let Some(file) = &mut self.file else {
            return false;
        };
        // One write(2) is one kernel log record: never split it.
        let text = line(f);
        let err = match file.write(text.as_bytes()) {
            Ok(n) if n == text.len() => return true,
            Ok(n) => format!("short write ({n} of {} bytes)", text.len()),
            Err(e) => e.to_string(),
        };
        if !std::mem::replace(&mut self.warned, true) {
            log::warn!("writing a violation to {KMSG}: {err} (counted; not retried)");
        }
        false
    }
}

/// Keeps a kernel-supplied name on one line and in one field.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != ',' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The record for `f`, with its priority prefix and the newline.
pub fn line(f: &Finding) -> String {
    // `unstable_mm_fault` names no pattern: its fault result stands in.
    let detail = |k: &str| f.details.get(k).and_then(|v| v.as_str());
    let pattern = detail("pattern")
        .or_else(|| detail("fault_result").and_then(|r| r.split([' ', ';']).next()))
        .map_or_else(|| "-".to_owned(), clean);
    let mut s = format!(
        "{PRIORITY}{TAG} rule={} pattern={pattern} mm={:#x} gen={} tasks=",
        f.kind.name(),
        f.mm,
        f.mm_gen
    );
    for (i, t) in f.tasks.iter().enumerate() {
        let _ = write!(
            s,
            "{}{}/{}:{}{}",
            if i == 0 { "" } else { "," },
            t.pid,
            t.tgid,
            clean(&t.comm),
            if t.kthread { "[k]" } else { "" }
        );
    }
    if f.tasks.is_empty() {
        s.push('-');
    }
    // The workload of the first task whose cgroup names one.
    if let Some(w) = f.tasks.iter().map(|t| &t.workload).find(|w| !w.is_empty()) {
        if let Some(id) = &w.container_id {
            let _ = write!(s, " container={}", clean(id.get(..12).unwrap_or(id)));
        }
        if let Some(uid) = &w.pod_uid {
            let _ = write!(s, " pod={}", clean(uid));
        }
    }
    let _ = write!(s, " t={}..{}", f.start_t, f.end_t);
    if s.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use monitor_detector::{FindingKind, finding::TaskRef};

    use super::*;

    fn finding(severity: Severity, comm: &str) -> Finding {
        Finding {
            kind: FindingKind::UffdCopyVsMmChange,
            severity,
            mm: 0xffff_8880_045a_1c00,
            mm_gen: 7,
            tasks: vec![
                TaskRef {
                    pid: 231,
                    tgid: 229,
                    comm: comm.to_owned(),
                    kthread: false,
                    ..TaskRef::default()
                },
                TaskRef {
                    pid: 12,
                    tgid: 12,
                    comm: "oom_reaper".to_owned(),
                    kthread: true,
                    ..TaskRef::default()
                },
            ],
            start_t: 5_012_331,
            end_t: 5_098_812,
            explanation: String::new(),
            details: BTreeMap::from([("pattern".to_owned(), "copy_inside_window".into())]),
            evidence: Vec::new(),
        }
    }

    #[test]
    fn one_line_with_rule_pattern_mm_and_tasks() {
        assert_eq!(
            line(&finding(Severity::Violation, "scenario")),
            "<2>mm-race-monitor: violation rule=uffd_copy_vs_mm_change pattern=copy_inside_window \
             mm=0xffff8880045a1c00 gen=7 tasks=231/229:scenario,12/12:oom_reaper[k] t=5012331..5098812\n"
        );
    }

    #[test]
    fn the_container_and_pod_follow_the_tasks() {
        let mut f = finding(Severity::Violation, "scenario");
        f.tasks[0].workload = monitor_detector::workload::parse_path(
            "/kubepods/burstable/pod1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9/\
             0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        );
        let l = line(&f);
        assert!(
            l.contains(
                ":oom_reaper[k] container=0123456789ab pod=1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9 t="
            ),
            "{l}"
        );
    }

    #[test]
    fn task_names_cannot_break_the_line() {
        let l = line(&finding(Severity::Violation, "a b\n<0>,x"));
        assert_eq!(l.matches('\n').count(), 1);
        assert!(l.contains("231/229:a_b_<0>_x,"), "{l}");
        let long = line(&finding(Severity::Violation, &"é".repeat(2000)));
        assert!(long.len() <= MAX_LINE + 1 && long.ends_with('\n'));
    }

    #[test]
    fn only_violations_are_written_and_failures_are_reported() {
        let dir = std::env::temp_dir().join(format!("kmsg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("kmsg");
        std::fs::write(&path, "").expect("file");
        let mut k = Kmsg::open(path.to_str().expect("utf-8"));
        assert!(k.write(&finding(Severity::NearMiss, "x")));
        assert!(k.write(&finding(Severity::Violation, "x")));
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.starts_with("<2>mm-race-monitor: violation rule="));
        let mut missing = Kmsg::open(dir.join("absent/kmsg").to_str().expect("utf-8"));
        assert!(!missing.write(&finding(Severity::Violation, "x")));
        assert!(missing.write(&finding(Severity::NearMiss, "x")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
