//! Durations of the race windows, for the `mmrace_window_duration_seconds`
//! histograms: how long the kernel keeps each window open on this machine,
//! which is what makes a race more or less likely.
//!
//! A window opens at one event and closes at its partner, matched by the mm
//! generation (reaping, `exit_mmap`) or by the task (a migration batch and a
//! UFFDIO_COPY are per task). Pure and bounded: at most [`MAX_OPEN`] windows
//! are remembered; when full, the oldest is forgotten (its end was lost).

use std::collections::HashMap;

use monitor_common::event::{EventId, hdr};
use monitor_detector::Event;

/// The windows measured. Label values are [`Window::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// The OOM reaper unmapping a victim: `reap_start` → `reap_end`
    /// (tracepoint and function rungs).
    Reaping,
    /// `exit_mmap` tearing an address space down: `exit_mmap_start` →
    /// `exit_mmap_end` (function rung only: the tracepoint rung sees the end).
    ExitMmap,
    /// A `migrate_pages()` batch with migration entries installed:
    /// `migrate_start` → `migrate_end` of the same task.
    Migration,
    /// A UFFDIO_COPY in the kernel: `mfill_start` → `mfill_end` of the same
    /// task (function rung only: the tracepoint rung sees the result).
    UffdioCopy,
}

impl Window {
    pub const ALL: [Window; 4] = [
        Window::Reaping,
        Window::ExitMmap,
        Window::Migration,
        Window::UffdioCopy,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Window::Reaping => "reaping",
            Window::ExitMmap => "exit_mmap",
            Window::Migration => "migration",
            Window::UffdioCopy => "uffdio_copy",
        }
    }
}

/// Open windows remembered at most.
pub const MAX_OPEN: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Mm { mm: u64, mm_gen: u64 },
    Task(u32),
}

#[derive(Default)]
pub struct WindowTracker {
    open: HashMap<(Window, Key), u64>,
    /// Windows forgotten because [`MAX_OPEN`] were open.
    pub evicted: u64,
}

impl WindowTracker {
    /// Feeds one event; returns a window it closed and its duration in ns.
    pub fn observe(&mut self, ev: &Event) -> Option<(Window, u64)> {
        let mm = Key::Mm {
            mm: ev.mm,
            mm_gen: ev.mm_gen,
        };
        let task = Key::Task(ev.pid);
        let closed = match ev.id() {
            EventId::ReapStart if ev.mm != 0 => self.open(Window::Reaping, mm, ev.t),
            EventId::ReapEnd if ev.mm != 0 => self.close(Window::Reaping, mm, ev.t),
            EventId::ExitMmapStart if ev.mm != 0 => self.open(Window::ExitMmap, mm, ev.t),
            EventId::ExitMmapEnd if ev.mm != 0 => self.close(Window::ExitMmap, mm, ev.t),
            EventId::MigrateStart => self.open(Window::Migration, task, ev.t),
            EventId::MigrateEnd => self.close(Window::Migration, task, ev.t),
            EventId::MfillStart => self.open(Window::UffdioCopy, task, ev.t),
            EventId::MfillEnd => self.close(Window::UffdioCopy, task, ev.t),
            _ => None,
        };
        if ev.hdr_flags & hdr::END_GENERATION != 0 {
            // The mm generation is over: windows on it can no longer close.
            self.open.retain(|(_, k), _| *k != mm);
        }
        closed
    }

    fn open(&mut self, w: Window, key: Key, t: u64) -> Option<(Window, u64)> {
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(&(w, key)) {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, start)| **start)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.open.remove(&k);
                self.evicted += 1;
            }
        }
        self.open.insert((w, key), t);
        None
    }

    fn close(&mut self, w: Window, key: Key, t: u64) -> Option<(Window, u64)> {
        let start = self.open.remove(&(w, key))?;
        (t >= start).then(|| (w, t - start))
    }

    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use monitor_detector::event::{Data, Migrate, MmState, Reap, ReapSource};

    use super::*;

    fn ev(t: u64, pid: u32, mm: u64, data: Data) -> Event {
        Event {
            t,
            cpu: 0,
            pid,
            tgid: pid,
            comm: "x".into(),
            task_flags: 0,
            mm,
            mm_gen: 7,
            seq: 1,
            hdr_flags: 0,
            probe: "p".into(),
            data,
        }
    }

    fn reap(t: u64, mm: u64, end: bool) -> Event {
        let r = Reap {
            victim_pid: 1,
            source: ReapSource::Tracepoint,
            ret: -1,
            mm_flags: 0,
        };
        ev(
            t,
            33,
            mm,
            if end {
                Data::ReapEnd(r)
            } else {
                Data::ReapStart(r)
            },
        )
    }

    #[test]
    fn pairs_by_mm_and_by_task() {
        let mut w = WindowTracker::default();
        assert_eq!(w.observe(&reap(100, 0xa, false)), None);
        assert_eq!(w.observe(&reap(150, 0xb, false)), None);
        assert_eq!(
            w.observe(&reap(400, 0xa, true)),
            Some((Window::Reaping, 300))
        );
        // An end without a start is not a window.
        assert_eq!(w.observe(&reap(500, 0xc, true)), None);
        let m = Migrate {
            succeeded: 1,
            failed: 0,
            thp_succeeded: 0,
            thp_failed: 0,
            thp_split: 0,
            large_folio_split: 0,
            mode: 0,
            reason: 0,
            ptes_set: 1,
            ptes_removed: 1,
            start_seen: true,
        };
        assert_eq!(
            w.observe(&ev(10, 5, 0, Data::MigrateStart(m.clone()))),
            None
        );
        assert_eq!(w.observe(&ev(11, 6, 0, Data::MigrateEnd(m.clone()))), None);
        assert_eq!(
            w.observe(&ev(30, 5, 0, Data::MigrateEnd(m))),
            Some((Window::Migration, 20))
        );
        assert_eq!(w.open_windows(), 1);
    }

    #[test]
    fn generation_end_forgets_its_windows_and_memory_is_bounded() {
        let mut w = WindowTracker::default();
        w.observe(&reap(1, 0xa, false));
        let mut end = ev(2, 1, 0xa, Data::ExitMmapEnd(MmState { mm_flags: 0 }));
        end.hdr_flags = hdr::END_GENERATION;
        assert_eq!(w.observe(&end), None);
        assert_eq!(w.open_windows(), 0);
        for i in 0..(MAX_OPEN as u64 + 10) {
            w.observe(&reap(1000 + i, 0x1000 + i, false));
        }
        assert_eq!(w.open_windows(), MAX_OPEN);
        assert_eq!(w.evicted, 10);
        // The oldest ones were forgotten, the newest still close.
        assert_eq!(w.observe(&reap(5000, 0x1000, true)), None);
        let last = 0x1000 + MAX_OPEN as u64 + 9;
        assert!(w.observe(&reap(99_999, last, true)).is_some());
    }
}
