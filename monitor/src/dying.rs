//! Processes already dying when the monitor starts: the fault gate's blind
//! spot (`gate.rs`).
//!
//! The BPF programs open the fault gate when they *see* an OOM victim marked,
//! a reap start or a `process_mrelease` call. A victim marked before the
//! monitor attached opened nothing, so faults on its mm (a vhost worker, a
//! `/proc/PID/mem` reader, its own threads in exit) would go unexamined while
//! it is still dying. At start the session therefore looks for processes
//! that were sent `SIGKILL` and are not gone yet, and opens the gate for
//! them through the same store the session uses to reopen it; the gate stays
//! open while any of them is still alive (then the usual 60 s hold applies).
//!
//! ```text
//! mm/oom_kill.c __oom_kill_process():
//!     mark_oom_victim(victim);    ... do_send_sig_info(SIGKILL, SEND_SIG_PRIV, victim, PIDTYPE_TGID)
//! kernel/signal.c __send_signal_locked(): a group signal goes to signal->shared_pending;
//!     complete_signal(): fatal -> SIGNAL_GROUP_EXIT, SIGKILL added to every thread
//!     (the shared bit stays until the last thread's __exit_signal flushes it)
//! fs/proc/array.c: /proc/PID/status "ShdPnd:" = signal->shared_pending (hex mask)
//! mm/oom_kill.c process_mrelease(): only reaps a process whose group is exiting
//! ```
//!
//! Every OOM victim is sent `SIGKILL` to its thread group right after it is
//! marked, and `process_mrelease(2)` only reaps a killed group, so "`SIGKILL`
//! in `ShdPnd`" finds every pre-existing victim that can still fault
//! (a superset: any process killed and not yet gone). A BPF task iterator
//! reading `signal->oom_mm` would name only OOM victims, but needs a program
//! type (`iter/task`) the loader and the hook plan do not have yet.

use std::path::Path;

/// `SIGKILL`'s bit in a `/proc` signal mask.
const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);

/// A process found dying at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dying {
    pub pid: u32,
    pub comm: String,
    /// `starttime` of `/proc/PID/stat` (clock ticks since boot): tells the
    /// process from a later one that reuses its pid.
    pub start_ticks: u64,
}

/// Fields of `/proc/PID/stat`: (comm, state, starttime). `comm` may hold
/// spaces and parentheses, so the fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<(String, char, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    // Field 3 is the state; starttime is field 22.
    let start = rest.nth(22 - 4)?.parse().ok()?;
    Some((comm, state, start))
}

/// Whether `/proc/PID/status` says the thread group was sent `SIGKILL`, and
/// how many threads it has.
pub fn parse_status(text: &str) -> Option<(bool, u64)> {
    let mut killed = None;
    let mut threads = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ShdPnd:") {
            killed = Some(u64::from_str_radix(v.trim(), 16).ok()? & SIGKILL_BIT != 0);
        } else if let Some(v) = line.strip_prefix("Threads:") {
            threads = v.trim().parse().ok();
        }
    }
    Some((killed?, threads?))
}

fn read(proc_root: &Path, pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join(file)).ok()
}

/// `pid`'s state if it is a killed process that still has a live thread.
fn dying(proc_root: &Path, pid: u32) -> Option<Dying> {
    let (comm, state, start_ticks) = parse_stat(&read(proc_root, pid, "stat")?)?;
    let (killed, threads) = parse_status(&read(proc_root, pid, "status")?)?;
    // A zombie leader whose threads are all gone has no mm any more.
    let live = state != 'Z' || threads > 1;
    (killed && live).then_some(Dying {
        pid,
        comm,
        start_ticks,
    })
}

/// Every process under `proc_root` (`/proc`) that was sent `SIGKILL` and is
/// not gone. Unreadable entries (raced exits) are skipped.
pub fn scan(proc_root: &Path) -> Vec<Dying> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut found: Vec<Dying> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| dying(proc_root, pid))
        .collect();
    found.sort_by_key(|d| d.pid);
    found
}

/// Whether `d` is still the same dying process.
pub fn still_dying(proc_root: &Path, d: &Dying) -> bool {
    dying(proc_root, d.pid).is_some_and(|now| now.start_ticks == d.start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (we (ird) name) D 1 4242 4242 0 -1 4194560 100 0 0 0 \
                        5 6 0 0 20 0 3 0 987654 1000000 200 18446744073709551615";

    #[test]
    fn stat_fields_after_the_last_paren() {
        assert_eq!(
            parse_stat(STAT),
            Some(("we (ird) name".to_owned(), 'D', 987_654))
        );
        assert_eq!(parse_stat("1 (x) S 0"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn status_shared_sigkill_and_threads() {
        let s = "Name:\tv\nThreads:\t3\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n";
        assert_eq!(parse_status(s), Some((true, 3)));
        let s = "Threads:\t1\nShdPnd:\t0000000000004000\n";
        assert_eq!(parse_status(s), Some((false, 1)));
        assert_eq!(parse_status("Threads:\t1\n"), None);
        assert_eq!(parse_status("ShdPnd:\tzz\nThreads:\t1\n"), None);
    }

    /// A real process of this machine: a stopped child sent SIGKILL is gone
    /// at once, so the scan must not report it afterwards; a living child
    /// that was not killed is never reported.
    #[test]
    fn scan_reports_no_live_unkilled_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let root = Path::new("/proc");
        assert!(scan(root).iter().all(|d| d.pid != pid));
        let _ = child.kill();
        let _ = child.wait();
        assert!(scan(root).iter().all(|d| d.pid != pid));
    }
}
