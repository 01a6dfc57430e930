//! Race windows whose duration the daemon exports
//! (`mmrace_window_duration_seconds`): how long the kernel keeps each window
//! open on this machine, which is what makes a race more or less likely.
//!
//! The rules open and close these windows anyway (with the sequencer's
//! reordering applied); they report each one that closes through
//! [`crate::Detector::drain_windows`], so the daemon has one window model.

/// The windows measured. Label values are [`Window::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    /// The OOM reaper unmapping a victim: `reap_start` → `reap_end` of one
    /// reaping task (tracepoint and function rungs).
    Reaping,
    /// `exit_mmap` tearing an address space down: `exit_mmap_start` →
    /// `exit_mmap_end` (function rung only: the tracepoint rung sees the end).
    ExitMmap,
    /// A `migrate_pages()` batch: `migrate_start` → `migrate_end` of the same task.
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
