//! `uffd_copy_vs_mm_change`: `UFFDIO_COPY` overlapping a non-cooperative
//! change of the same mm (fork, mremap, munmap, `MADV_DONTNEED`/`REMOVE`)
//! (df2cc96e7701; `docs/kernel.md`, "The four races").
//!
//! The kernel's protection: each change raises `ctx->mmap_changing` (
//! `uffd_change_begin`) until the monitor has read the event
//! (`uffd_change_end`, the return of `userfaultfd_event_wait_completion`);
//! `UFFDIO_COPY` returns `-EAGAIN` while it is non-zero.
//!
//! * Every `-EAGAIN` comes from an `mmap_changing` check, so a copy returning
//!   `-EAGAIN` proves the window was open: **near miss**. They are aggregated
//!   per window: the change window when its begin was seen (function rung),
//!   otherwise an *observed* window that runs from the first `-EAGAIN` to the
//!   first successful copy of the mm, the `fork` of the mm (on the tracepoint
//!   rung `sched_process_fork` fires after the fork handshake, closing a fork
//!   window), or the end of the generation.
//! * A copy whose whole `mfill` bracket (`mfill_start`..`mfill_end`, the
//!   worker's entry and return) lies inside one change window and that still
//!   succeeded (`ret > 0`) took its `mmap_changing` check while the counter was
//!   raised: **violation**. Only with the function-rung hooks, and only when
//!   `mmap_changing` read at `mfill_start` was non-zero (zero means the copy went
//!   through another userfaultfd context of the same mm).
//! * A successful copy whose bracket *started before* the change began passed
//!   its check first; fork/mremap/munmap increment under `mmap_write_lock`
//!   after the copy's read-locked section, `MADV_DONTNEED` (before 6.9) under
//!   the read lock in parallel with it: legal either way: near miss.
//! * A copy with no change around it: nothing.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    Close, Ctx, Globals, Grade, MmRule, Noted, RaceWindow, Taint, Verdict, Window,
    coverage::{Builder, RuleCoverage, Seen, names, seen},
    details, emit, mm_rule_common, reuse_keeping,
};
use monitor_common::EAGAIN;

use monitor_common::catalogue::HookId;

use crate::{
    event::{Data, Event, UffdCopyDone, UffdEventKind},
    finding::FindingKind,
    sequencer::MmKey,
    tracefile::HookStatus,
};

const KIND: FindingKind = FindingKind::UffdCopyVsMmChange;
const MAX_MFILLS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Opened by `uffd_change_begin`.
    Change,
    /// Opened by an `-EAGAIN` with no change begin seen.
    Observed,
}

#[derive(Clone, Debug)]
struct UffdWindow {
    w: Window,
    source: Source,
    kinds: BTreeSet<&'static str>,
    /// Seen at the ioctl return (every copy) and at the worker's return (only
    /// copies that reached it): the same copy can be seen by both.
    eagain: u64,
    mfill_eagain: u64,
    copied: u64,
    mfill_copied: u64,
    overlapping: u64,
    contained: u64,
    other_ctx: u64,
}

#[derive(Clone, Debug)]
struct Mfill {
    pid: u32,
    start: Noted,
    /// The window epoch if a change window was open at the start.
    epoch: Option<u64>,
    mmap_changing: i32,
}

pub(crate) struct State {
    key: MmKey,
    /// Open change begins (the counter can be raised by several changes).
    changes: Vec<Noted>,
    window: Option<UffdWindow>,
    /// Incremented each time a change window opens.
    epoch: u64,
    mfills: Vec<Mfill>,
    taint: Taint,
}

impl State {
    pub(crate) fn new(key: MmKey) -> Self {
        State {
            key,
            changes: Vec::new(),
            window: None,
            epoch: 0,
            mfills: Vec::new(),
            taint: Taint::for_key(key),
        }
    }

    pub(crate) fn open_windows(&self) -> u64 {
        u64::from(self.window.is_some())
    }

    fn anything_open(&self) -> bool {
        self.window.is_some() || !self.changes.is_empty() || !self.mfills.is_empty()
    }

    pub(crate) fn on_loss(&mut self, note: &str) {
        if self.anything_open() {
            self.taint.set(note);
        }
        if let Some(w) = &mut self.window {
            w.w.lose(note);
        }
    }

    fn window(&mut self, source: Source, ctx: &Ctx<'_>) -> &mut UffdWindow {
        let (taint, changes) = (&self.taint, &self.changes);
        let w = self.window.get_or_insert_with(|| {
            let mut w = Window::new(ctx, taint);
            w.evidence.extend(changes);
            UffdWindow {
                w,
                source,
                kinds: BTreeSet::new(),
                eagain: 0,
                mfill_eagain: 0,
                copied: 0,
                mfill_copied: 0,
                overlapping: 0,
                contained: 0,
                other_ctx: 0,
            }
        });
        if source == Source::Change {
            w.source = Source::Change;
        }
        w
    }

    pub(crate) fn on_event(&mut self, ev: &Event, ctx: &mut Ctx<'_>) {
        // The event is noted (copied) only where it is kept: most copies
        // are kept nowhere.
        match &ev.data {
            Data::UffdChangeBegin(c) => {
                let n = ctx.note(ev);
                let opening = !matches!(
                    self.window,
                    Some(UffdWindow {
                        source: Source::Change,
                        ..
                    })
                );
                if opening {
                    self.epoch += 1;
                }
                self.changes.push(n.clone());
                let w = self.window(Source::Change, ctx);
                w.kinds.insert(UffdEventKind::of(c).name());
                w.w.push(n);
            }
            Data::UffdChangeEnd(c) => {
                let same_kind = self.changes.iter().position(
                    |b| matches!(&b.ev.data, Data::UffdChangeBegin(x) if x.kind == c.kind),
                );
                match same_kind {
                    Some(i) => {
                        self.changes.remove(i);
                    }
                    None if !self.changes.is_empty() => {
                        self.changes.remove(0);
                    }
                    None => {}
                }
                if let Some(w) = &mut self.window {
                    if UffdEventKind::of(c) != UffdEventKind::Unknown {
                        w.kinds.insert(UffdEventKind::of(c).name());
                    }
                    w.w.push(ctx.note(ev));
                }
                if self.changes.is_empty() {
                    self.close(Close::WindowEnd, ctx);
                }
            }
            Data::MfillStart(c) => {
                let epoch = match &self.window {
                    Some(w) if w.source == Source::Change && !self.changes.is_empty() => {
                        Some(self.epoch)
                    }
                    _ => None,
                };
                if self.mfills.iter().any(|m| m.pid == ev.pid) {
                    self.mfills.retain(|m| m.pid != ev.pid);
                }
                if self.mfills.len() >= MAX_MFILLS {
                    self.mfills.remove(0);
                }
                self.mfills.push(Mfill {
                    pid: ev.pid,
                    start: ctx.note(ev),
                    epoch,
                    mmap_changing: c.mmap_changing,
                });
            }
            Data::MfillEnd(c) => {
                let start = self
                    .mfills
                    .iter()
                    .position(|m| m.pid == ev.pid)
                    .map(|i| self.mfills.remove(i));
                if let Some(m) = &start {
                    ctx.window_closed(RaceWindow::UffdioCopy, &m.start.ev, ev);
                }
                if c.ret == EAGAIN {
                    let w = self.window(Source::Observed, ctx);
                    w.mfill_eagain += 1;
                    if let Some(m) = &start {
                        w.w.push(m.start.clone());
                    }
                    w.w.push(ctx.note(ev));
                } else if c.ret > 0 {
                    self.mfill_success(start, ev, ctx);
                }
            }
            Data::UffdCopy(c) => {
                if c.ret == EAGAIN {
                    let w = self.window(Source::Observed, ctx);
                    w.eagain += 1;
                    w.w.push(ctx.note(ev));
                } else if c.ret >= 0 {
                    match &mut self.window {
                        Some(w) if w.source == Source::Change => {
                            w.copied += 1;
                            w.w.push(ctx.note(ev));
                        }
                        Some(w) => {
                            // The check passed: the counter was back to zero.
                            w.copied += 1;
                            w.w.push(ctx.note(ev));
                            self.close(Close::WindowEnd, ctx);
                        }
                        None => {}
                    }
                }
            }
            Data::UffdCopyDone(c) => self.copy_done(ev, c, ctx),
            Data::Fork(_) => {
                if let Some(w) = &mut self.window
                    && w.source == Source::Observed
                {
                    // sched_process_fork fires after the fork handshake:
                    // the fork's window is over.
                    w.kinds.insert("fork");
                    w.w.push(ctx.note(ev));
                    self.close(Close::WindowEnd, ctx);
                }
            }
            _ => {}
        }
        let open = self.anything_open();
        self.taint.settle(open);
    }

    /// One copy of the in-kernel filter: the `uffd_copy` and `mfill_*`
    /// logic of one record, with the start state the kernel folded in.
    fn copy_done(&mut self, ev: &Event, c: &UffdCopyDone, ctx: &mut Ctx<'_>) {
        use monitor_common::event::copy_window::{MFILL_HOOKED, OPEN_AT_START, SAME_WINDOW};
        if c.mfill_start_ns != 0 && ev.t >= c.mfill_start_ns {
            ctx.windows
                .push((RaceWindow::UffdioCopy, ev.t - c.mfill_start_ns));
        }
        if c.ret == EAGAIN {
            let n = ctx.note(ev);
            let w = self.window(Source::Observed, ctx);
            w.eagain += 1;
            w.w.push(n);
            return;
        }
        if c.ret < 0 {
            return;
        }
        let n = ctx.note(ev);
        let changing_now = !self.changes.is_empty();
        match &mut self.window {
            Some(w) if w.source == Source::Change => {
                w.copied += 1;
                if changing_now && c.window & MFILL_HOOKED != 0 {
                    if c.window & OPEN_AT_START != 0 && c.window & SAME_WINDOW != 0 {
                        if c.mfill_changing == 0 {
                            // mmap_changing already down at the check: the
                            // kernel closed the window before its hook said so.
                            w.other_ctx += 1;
                            return;
                        }
                        w.contained += 1;
                    } else {
                        w.overlapping += 1;
                    }
                }
                w.w.push(n);
            }
            Some(w) => {
                // Observed window: the check passed, the counter was zero.
                w.copied += 1;
                w.w.push(n);
                self.close(Close::WindowEnd, ctx);
            }
            None => {}
        }
    }

    /// `end` is noted (copied) only if a window keeps it.
    fn mfill_success(&mut self, start: Option<Mfill>, end: &Event, ctx: &mut Ctx<'_>) {
        let changing_now = !self.changes.is_empty();
        let epoch = self.epoch;
        let Some(w) = self.window.as_mut().filter(|w| w.source == Source::Change) else {
            if let Some(w) = self.window.as_mut() {
                // Observed window: the check passed, the counter was zero.
                w.mfill_copied += 1;
                w.w.push(ctx.note(end));
                self.close(Close::WindowEnd, ctx);
            }
            return;
        };
        let Some(m) = start else {
            // The copy's start is unknown: it may have passed its check before
            // the change began. Count it only.
            w.mfill_copied += 1;
            w.w.push(ctx.note(end));
            return;
        };
        if !changing_now {
            return;
        }
        if m.epoch == Some(epoch) {
            if m.mmap_changing == 0 {
                // Another userfaultfd context of the same mm.
                w.other_ctx += 1;
                return;
            }
            w.contained += 1;
        } else {
            w.overlapping += 1;
        }
        w.mfill_copied += 1;
        w.w.push(m.start);
        w.w.push(ctx.note(end));
    }

    fn close(&mut self, close: Close, ctx: &mut Ctx<'_>) {
        let Some(w) = self.window.take() else {
            return;
        };
        self.judge(w, close, ctx);
    }

    pub(crate) fn end(&mut self, close: Close, ctx: &mut Ctx<'_>) {
        self.changes.clear();
        self.mfills.clear();
        self.close(close, ctx);
    }

    fn judge(&self, w: UffdWindow, close: Close, ctx: &mut Ctx<'_>) {
        let kinds: Vec<&str> = w
            .kinds
            .iter()
            .copied()
            .filter(|k| *k != "unknown")
            .collect();
        let change = if kinds.is_empty() {
            "unknown".to_owned()
        } else {
            kinds.join("+")
        };
        let what = if kinds.is_empty() {
            "a change of the mm (fork, mremap, munmap or madvise)".to_owned()
        } else {
            format!("a {change} of the mm")
        };
        // Both hooks may see the same copy: the ioctl return sees every one.
        let refused = w.eagain.max(w.mfill_eagain);
        let copied = w.copied.max(w.mfill_copied);
        let (grade, pattern, explanation) = if w.contained > 0 {
            (
                Grade::Violation,
                "copy_inside_window",
                format!(
                    "{} UFFDIO_COPY call(s) began after {what} raised mmap_changing and \
                     succeeded before the monitor read the event: their mmap_changing check \
                     ran while the counter was raised and must have returned -EAGAIN, so the \
                     copy may have filled memory the monitor's view no longer matches.",
                    w.contained
                ),
            )
        } else if refused > 0 {
            (
                Grade::NearMissObserved,
                "eagain",
                format!(
                    "{refused} UFFDIO_COPY call(s) were refused with -EAGAIN while {what} \
                     was pending (mmap_changing raised) and {copied} copied: the protection held."
                ),
            )
        } else if w.overlapping > 0 {
            let remove_note = if kinds.contains(&"remove") && !ctx.era.uffd_remove_serialized() {
                " (before 6.9 userfaultfd_remove raises the counter under the read lock, so a \
                 copy that passed its check just before may finish just after: legal)"
            } else {
                ""
            };
            (
                Grade::NearMissObserved,
                "copy_overlapping_change",
                format!(
                    "{} UFFDIO_COPY call(s) that had passed their mmap_changing check finished \
                     after {what} raised the counter{remove_note}: the copy's locked section \
                     came first, the protection held.",
                    w.overlapping
                ),
            )
        } else {
            if w.other_ctx > 0 {
                ctx.stats.windows_without_verdict += 1;
            }
            return;
        };
        let verdict = Verdict::new(
            KIND,
            self.key,
            grade,
            explanation,
            details([
                ("pattern", Value::from(pattern)),
                ("change_kind", Value::from(change)),
                ("eagain_count", Value::from(refused)),
                ("copied_count", Value::from(copied)),
                ("contained_copies", Value::from(w.contained)),
                ("overlapping_copies", Value::from(w.overlapping)),
                (
                    "window",
                    Value::from(match w.source {
                        Source::Change => "uffd_change_begin..uffd_change_end",
                        Source::Observed => "observed_eagain",
                    }),
                ),
            ]),
            close,
        );
        emit(ctx, w.w, verdict);
    }
}

impl MmRule for State {
    const RULE: FindingKind = KIND;
    mm_rule_common!();
    // Keeps the capacity of the brackets' lists (copies come in bursts).
    reuse_keeping!(changes, mfills);
    /// Without a window or an open change or copy, only these events
    /// change anything: a change begins, a copy begins, `-EAGAIN` opens an
    /// observed window, and `uffd_copy_done` also reports its copy's
    /// duration. A successful copy, a change's end or a fork then find
    /// nothing to close or count.
    fn wants(ev: &Event, _: &Globals) -> bool {
        match &ev.data {
            Data::UffdCopy(c) | Data::MfillEnd(c) => c.ret == EAGAIN,
            Data::UffdChangeEnd(_) | Data::Fork(_) => false,
            _ => true,
        }
    }
    fn on_event(&mut self, ev: &Event, _: &mut Globals, ctx: &mut Ctx<'_>) {
        State::on_event(self, ev, ctx);
    }
    fn end(&mut self, close: Close, _: Option<&Event>, _: &mut Globals, ctx: &mut Ctx<'_>) {
        State::end(self, close, ctx);
    }
}

/// What this rule can see under the hook plan.
pub(crate) fn coverage(hooks: &[HookStatus]) -> RuleCoverage {
    let mut b = Builder::new(FindingKind::UffdCopyVsMmChange);
    let ioctl = seen(hooks, HookId::UffdIoctl);
    let mfill = seen(hooks, HookId::MfillCopy) == Seen::Function;
    if ioctl == Seen::Unavailable && !mfill {
        b.missing(HookId::UffdIoctl);
        b.missing(HookId::MfillCopy);
        b.disable("neither uffd_ioctl nor mfill_copy is attached: UFFDIO_COPY is invisible");
        return b.build();
    }
    if ioctl == Seen::Unavailable {
        b.missing(HookId::UffdIoctl);
        b.degrade(
            "uffd_ioctl is unavailable: -EAGAIN from the early mmap_changing check in \
             userfaultfd_copy (where every measured -EAGAIN came from) is invisible",
        );
    }
    let changes = [
        HookId::UffdFork,
        HookId::UffdRemap,
        HookId::UffdUnmap,
        HookId::UffdRemove,
    ];
    let missing_changes: Vec<HookId> = changes
        .iter()
        .copied()
        .filter(|h| seen(hooks, *h) != Seen::Function)
        .collect();
    let wait = seen(hooks, HookId::UffdEventWait) == Seen::Function;
    if !mfill || missing_changes.len() == changes.len() || !wait {
        let mut lacking = Vec::new();
        if !mfill {
            lacking.push(HookId::MfillCopy);
        }
        if missing_changes.len() == changes.len() {
            lacking.extend(changes);
        }
        if !wait {
            lacking.push(HookId::UffdEventWait);
        }
        for h in &lacking {
            b.missing(*h);
        }
        b.degrade(format!(
            "{} unavailable: only -EAGAIN near misses are seen; a copy that succeeded inside \
             an mmap_changing window (violation) cannot be proven",
            names(&lacking)
        ));
    } else if !missing_changes.is_empty() {
        for h in &missing_changes {
            b.missing(*h);
        }
        b.degrade(format!(
            "{} unavailable: windows opened by those changes are invisible",
            names(&missing_changes)
        ));
    }
    if ioctl == Seen::Tracepoint && seen(hooks, HookId::Fork) == Seen::Unavailable {
        b.missing(HookId::Fork);
    }
    b.build()
}
