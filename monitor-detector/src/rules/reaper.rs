//! `reaper_exit_overlap`: the OOM reaper unmapping an mm while `exit_mmap`
//! tears the same mm generation down (27ae357fa82b, bf3980c85212; `docs/kernel.md`, "The four races").
//!
//! Brackets, per mm generation:
//! * reaper: `reap_start`..`reap_end` (`__oom_reap_task_mm` entry/return, or
//!   `oom:start/finish_task_reaping`), and `reaper_unmap_start`..`_end`
//!   (`unmap_page_range` inside it), per reaping task;
//! * exit: `exit_mmap_start`..`exit_mmap_end`, with `unmap_vmas_start`..`_end`
//!   inside it. On the tracepoint rung only `exit_mmap_end` exists.
//!
//! Verdicts (the era comes from [`OomEra`]):
//! * `exit_mmap_end` while a reaper bracket is open, a reaper bracket starting
//!   after `exit_mmap_end` of the same mm, or `mmdrop` while a reaper bracket is
//!   open: **violation** on every era (the end of `exit_mmap` runs under the
//!   write lock / after the `MMF_OOM_SKIP` barrier; the reaper holds the read
//!   lock; `mmdrop` frees the mm the reaper is using).
//! * A reaper bracket overlapping the exit bracket: near miss on 6.0+; on
//!   4.14–5.19 a near miss if it did not overlap `unmap_vmas` and a violation
//!   if it did; a violation on 4.6–4.13.
//! * A reaper bracket of the exiting task itself inside its own `exit_mmap`
//!   (4.17–5.19: `exit_mmap` of a victim calls `__oom_reap_task_mm`) is the
//!   kernel's own path, not a race: ignored.
//!
//! On the tracepoint rung `exit_mmap`'s end also ends the generation, so a
//! reaper start after it shows up in a *new* generation at the same address.
//! A [`Tombstone`] of the ended generation recognises it: same address, the
//! reaping tracepoint names a victim pid of the ended generation, and the new
//! generation has no `mark_victim` of its own.

use std::collections::VecDeque;

use serde_json::Value;

use super::{
    Close, Ctx, Globals, Grade, MmRule, Noted, RaceWindow, Taint, Verdict, Window,
    coverage::{Builder, RuleCoverage, Seen, seen},
    details, emit, mm_rule_common, reuse_keeping,
};
use monitor_common::catalogue::HookId;

use crate::{
    bounded::DetMap,
    era::OomEra,
    event::{Data, Event, ReapSource},
    finding::FindingKind,
    limits::Limits,
    sequencer::MmKey,
    tracefile::HookStatus,
};

const KIND: FindingKind = FindingKind::ReaperExitOverlap;

/// A reaper bracket of one task.
#[derive(Clone, Debug)]
struct Bracket {
    pid: u32,
    start: Noted,
    unmap: Option<Noted>,
}

impl Bracket {
    fn who(&self) -> (u32, String, ReapSource) {
        let source = match &self.start.ev.data {
            Data::ReapStart(r) => ReapSource::of(r),
            _ => ReapSource::Function,
        };
        (self.pid, self.start.ev.comm().into_owned(), source)
    }
}

#[derive(Clone, Debug)]
struct Exit {
    pid: u32,
    start: Noted,
    unmap_vmas: Option<Noted>,
    unmap_vmas_seen: bool,
}

#[derive(Clone, Debug)]
struct ReapWindow {
    w: Window,
    overlap: bool,
    overlap_unmap_vmas: bool,
    unmap_vmas_seen: bool,
    exit_end_inside: bool,
    reap_after_end: bool,
    freed_inside: bool,
    /// The first violation pattern established, in event order.
    first_violation: Option<&'static str>,
    reaper: Option<(u32, String, ReapSource)>,
}

impl ReapWindow {
    fn violation(&mut self, pattern: &'static str) {
        match pattern {
            "exit_mmap_end_inside_reap" => self.exit_end_inside = true,
            "reap_after_exit_mmap_end" => self.reap_after_end = true,
            _ => self.freed_inside = true,
        }
        self.first_violation.get_or_insert(pattern);
    }
}

pub(crate) struct State {
    key: MmKey,
    victims: Vec<Noted>,
    reaps: Vec<Bracket>,
    /// Tasks inside their own exit_mmap's nested reap (4.17–5.19).
    nested: Vec<u32>,
    exit: Option<Exit>,
    exit_ended: Option<Noted>,
    window: Option<ReapWindow>,
    taint: Taint,
}

/// The ended generation at an address, kept to recognise a reaper that runs
/// after `exit_mmap` on the tracepoint rung.
struct Tombstone {
    generation: u64,
    victims: Vec<Noted>,
    exit_end: Noted,
    losses: Vec<String>,
}

pub(crate) struct Global {
    tombstones: DetMap<u64, Tombstone>,
    fifo: VecDeque<(u64, u64)>,
    cap: usize,
}

impl Global {
    pub(crate) fn new(limits: &Limits) -> Self {
        Global {
            tombstones: DetMap::default(),
            fifo: VecDeque::new(),
            cap: limits.max_tombstones.max(1),
        }
    }

    fn bury(&mut self, mm: u64, t: Tombstone) {
        self.fifo.push_back((mm, t.generation));
        self.tombstones.insert(mm, t);
        while self.fifo.len() > self.cap {
            if let Some((old_mm, old_gen)) = self.fifo.pop_front()
                && self
                    .tombstones
                    .get(&old_mm)
                    .is_some_and(|t| t.generation == old_gen)
            {
                self.tombstones.remove(&old_mm);
            }
        }
    }

    /// The mm at `mm` was freed: a tombstone there is not the generation a
    /// later reaper could be reaping.
    fn forget(&mut self, mm: u64) {
        if !self.tombstones.is_empty() {
            self.tombstones.remove(&mm);
        }
    }

    /// Records relevant to this rule were lost somewhere.
    pub(crate) fn on_loss(&mut self, note: &str) {
        for t in self.tombstones.values_mut() {
            if t.losses.len() < 4 && !t.losses.iter().any(|l| l == note) {
                t.losses.push(note.to_owned());
            }
        }
    }
}

fn mark_pid(ev: &Event) -> Option<u32> {
    match &ev.data {
        Data::MarkVictim(v) => Some(v.victim_pid),
        _ => None,
    }
}

fn mark_tgid(ev: &Event) -> Option<u32> {
    match &ev.data {
        Data::MarkVictim(v) => Some(v.victim_tgid),
        _ => None,
    }
}

impl State {
    pub(crate) fn new(key: MmKey) -> Self {
        State {
            key,
            victims: Vec::new(),
            reaps: Vec::new(),
            nested: Vec::new(),
            exit: None,
            exit_ended: None,
            window: None,
            taint: Taint::for_key(key),
        }
    }

    fn anything_open(&self) -> bool {
        !self.reaps.is_empty() || self.exit.is_some() || self.window.is_some()
    }

    pub(crate) fn open_windows(&self) -> u64 {
        u64::from(self.window.is_some())
    }

    pub(crate) fn on_loss(&mut self, note: &str) {
        if self.anything_open() {
            self.taint.set(note);
        }
        if let Some(w) = &mut self.window {
            w.w.lose(note);
        }
    }

    /// Opens the window if needed, seeding it with everything that explains it.
    fn window(&mut self, ctx: &Ctx<'_>) -> &mut ReapWindow {
        let (victims, exit_ended, exit, reaps, taint) = (
            &self.victims,
            &self.exit_ended,
            &self.exit,
            &self.reaps,
            &self.taint,
        );
        (self.window.get_or_insert_with(|| {
            let mut w = Window::new(ctx, taint);
            w.evidence.extend(
                victims
                    .iter()
                    .chain(exit_ended.iter())
                    .chain(
                        exit.iter()
                            .flat_map(|e| std::iter::once(&e.start).chain(e.unmap_vmas.iter())),
                    )
                    .chain(
                        reaps
                            .iter()
                            .flat_map(|b| std::iter::once(&b.start).chain(b.unmap.iter())),
                    ),
            );
            let unmap_vmas_seen = exit.as_ref().is_some_and(|e| e.unmap_vmas_seen);
            let reaper = reaps.first().map(Bracket::who);
            ReapWindow {
                w,
                overlap: false,
                overlap_unmap_vmas: false,
                unmap_vmas_seen,
                exit_end_inside: false,
                reap_after_end: false,
                freed_inside: false,
                first_violation: None,
                reaper,
            }
        })) as _
    }

    fn note_reaper(&mut self) {
        if let Some(w) = &mut self.window
            && w.reaper.is_none()
        {
            w.reaper = self.reaps.last().map(Bracket::who);
        }
    }

    /// Events are noted (copied, 176 bytes) only where they are kept: in a
    /// bracket, as a victim, or in an open window.
    pub(crate) fn on_event(&mut self, ev: &Event, g: &mut Global, ctx: &mut Ctx<'_>) {
        match &ev.data {
            Data::MarkVictim(_) => {
                if self.victims.len() < 4 {
                    self.victims.push(ctx.note(ev));
                }
                // A new victim at this address: the buried generation is not
                // the one being reaped any more.
                if !g.tombstones.is_empty()
                    && g.tombstones
                        .get(&self.key.0)
                        .is_some_and(|t| t.generation != self.key.1)
                {
                    g.tombstones.remove(&self.key.0);
                }
                self.push_if_open(ev, ctx);
            }
            Data::ReapStart(r) => {
                if self.is_own_exit(ev.pid) {
                    self.nested.push(ev.pid);
                    self.push_if_open(ev, ctx);
                } else if self.continuation(ev, r.victim_pid, ReapSource::of(r), g, ctx) {
                    // Reported against the buried generation.
                } else {
                    self.open_reap(ev, ctx);
                }
            }
            Data::ReaperUnmapStart(_) => {
                if self.nested.contains(&ev.pid) {
                    self.push_if_open(ev, ctx);
                    return self.settle();
                }
                match self.reaps.iter_mut().find(|b| b.pid == ev.pid) {
                    Some(b) => {
                        let n = ctx.note(ev);
                        if let Some(w) = &mut self.window {
                            w.w.push(n.clone());
                        }
                        b.unmap = Some(n);
                    }
                    // The reaping bracket's start was not seen (lost, or the
                    // entry hook is missing): this zap is reaper activity anyway.
                    None => self.open_reap(ev, ctx),
                }
            }
            Data::ReaperUnmapEnd(_) => {
                if let Some(b) = self.reaps.iter_mut().find(|b| b.pid == ev.pid) {
                    b.unmap = None;
                }
                self.push_if_open(ev, ctx);
            }
            Data::ReapEnd(_) => {
                if let Some(i) = self.nested.iter().position(|p| *p == ev.pid) {
                    self.nested.remove(i);
                } else if let Some(i) = self.reaps.iter().position(|b| b.pid == ev.pid) {
                    let b = self.reaps.remove(i);
                    if matches!(b.start.ev.data, Data::ReapStart(_)) {
                        ctx.window_closed(RaceWindow::Reaping, &b.start.ev, ev);
                    }
                }
                self.push_if_open(ev, ctx);
                self.maybe_close(ctx);
            }
            Data::ReapSkip(_) => self.push_if_open(ev, ctx),
            // The same exit's start twice (the BPF side replays a start that
            // the exiting thread may also emit in a narrow race): keep the first.
            Data::ExitMmapStart(_) if self.exit.as_ref().is_some_and(|e| e.pid == ev.pid) => {
                self.push_if_open(ev, ctx);
            }
            Data::ExitMmapStart(_) => {
                self.exit = Some(Exit {
                    pid: ev.pid,
                    start: ctx.note(ev),
                    unmap_vmas: None,
                    unmap_vmas_seen: false,
                });
                if !self.reaps.is_empty() {
                    let n = ctx.note(ev);
                    let w = self.window(ctx);
                    w.overlap = true;
                    w.w.push(n);
                }
            }
            Data::UnmapVmasStart(_) => {
                if let Some(e) = &mut self.exit {
                    e.unmap_vmas = Some(ctx.note(ev));
                    e.unmap_vmas_seen = true;
                }
                if let Some(w) = &mut self.window {
                    w.unmap_vmas_seen = true;
                }
                if self.reaps.is_empty() {
                    self.push_if_open(ev, ctx);
                } else {
                    let n = ctx.note(ev);
                    let w = self.window(ctx);
                    w.overlap = true;
                    w.overlap_unmap_vmas = true;
                    w.unmap_vmas_seen = true;
                    w.w.push(n);
                }
            }
            Data::UnmapVmasEnd(_) => {
                if let Some(e) = &mut self.exit {
                    e.unmap_vmas = None;
                }
                self.push_if_open(ev, ctx);
            }
            Data::ExitMmapEnd(_) => {
                if let Some(e) = &self.exit {
                    ctx.window_closed(RaceWindow::ExitMmap, &e.start.ev, ev);
                }
                let n = ctx.note(ev);
                if !self.reaps.is_empty() {
                    let w = self.window(ctx);
                    w.violation("exit_mmap_end_inside_reap");
                    w.w.push(n.clone());
                } else if let Some(w) = &mut self.window {
                    w.w.push(n.clone());
                }
                self.exit = None;
                self.nested.clear();
                self.exit_ended = Some(n);
                self.maybe_close(ctx);
            }
            Data::MmDrop(_) => {
                g.forget(self.key.0);
                if !self.reaps.is_empty() {
                    let n = ctx.note(ev);
                    let w = self.window(ctx);
                    w.violation("mmdrop_inside_reap");
                    w.w.push(n);
                } else {
                    self.push_if_open(ev, ctx);
                }
            }
            _ => {}
        }
        self.settle();
    }

    fn settle(&mut self) {
        let open = self.anything_open();
        self.taint.settle(open);
    }

    fn push_if_open(&mut self, ev: &Event, ctx: &Ctx<'_>) {
        if let Some(w) = &mut self.window {
            w.w.push(ctx.note(ev));
        }
    }

    /// Whether `pid` is the task running this mm's `exit_mmap` (its own
    /// nested `__oom_reap_task_mm` on 4.17–5.19).
    fn is_own_exit(&self, pid: u32) -> bool {
        self.exit.as_ref().is_some_and(|e| e.pid == pid)
    }

    fn open_reap(&mut self, ev: &Event, ctx: &mut Ctx<'_>) {
        let n = ctx.note(ev);
        let unmap = matches!(ev.data, Data::ReaperUnmapStart(_)).then(|| n.clone());
        self.reaps.push(Bracket {
            pid: ev.pid,
            start: n.clone(),
            unmap,
        });
        if self.exit_ended.is_some() {
            let w = self.window(ctx);
            w.violation("reap_after_exit_mmap_end");
            w.w.push(n);
        } else if let Some(e) = &self.exit {
            let in_unmap_vmas = e.unmap_vmas.is_some();
            let w = self.window(ctx);
            w.overlap = true;
            w.overlap_unmap_vmas |= in_unmap_vmas;
            w.w.push(n);
        } else if let Some(w) = &mut self.window {
            w.w.push(n);
        }
        self.note_reaper();
    }

    /// A reaping tracepoint in a fresh generation naming a victim of the
    /// generation that ended at this address: the reaper ran after
    /// `exit_mmap` ended. Returns whether it was handled that way.
    fn continuation(
        &mut self,
        ev: &Event,
        victim_pid: u32,
        source: ReapSource,
        g: &mut Global,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        if source != ReapSource::Tracepoint || victim_pid == 0 || !self.victims.is_empty() {
            return false;
        }
        let Some(t) = g.tombstones.get(&self.key.0) else {
            return false;
        };
        let named = t
            .victims
            .iter()
            .any(|v| mark_pid(&v.ev) == Some(victim_pid) || mark_tgid(&v.ev) == Some(victim_pid));
        if t.generation == self.key.1 || !named {
            return false;
        }
        let Some(t) = g.tombstones.remove(&self.key.0) else {
            return false;
        };
        let mut w = Window::new(ctx, &Taint::default());
        for l in &t.losses {
            w.lose(l);
        }
        if let Some(note) = &self.taint.note {
            w.lose(note);
        }
        w.evidence.extend(&t.victims);
        w.evidence.push(t.exit_end.clone());
        w.evidence.push(ctx.note(ev));
        let verdict = Verdict {
            kind: KIND,
            grade: Grade::Violation,
            key: (self.key.0, t.generation),
            explanation: format!(
                "The OOM reaper ({} pid {}) started reaping victim pid {victim_pid} after \
                 exit_mmap of its mm had finished: exit_mmap sets MMF_OOM_SKIP before it \
                 takes mmap_lock for write, so a reaper that takes the read lock afterwards \
                 must skip the mm.",
                ev.comm(),
                ev.pid
            ),
            details: details([
                ("pattern", Value::from("reap_after_exit_mmap_end")),
                ("victim_pid", Value::from(victim_pid)),
                ("reaper_generation", Value::from(self.key.1)),
                ("era", Value::from(ctx.era.oom.describe())),
            ]),
            close: Close::WindowEnd,
        };
        emit(ctx, w, verdict);
        true
    }

    fn maybe_close(&mut self, ctx: &mut Ctx<'_>) {
        if self.window.is_some()
            && self.reaps.is_empty()
            && self.exit.is_none()
            && let Some(w) = self.window.take()
        {
            self.judge(w, Close::WindowEnd, ctx);
        }
    }

    pub(crate) fn end(
        &mut self,
        close: Close,
        end_event: Option<&Event>,
        g: &mut Global,
        ctx: &mut Ctx<'_>,
    ) {
        if let Some(w) = self.window.take() {
            self.judge(w, close, ctx);
        }
        // Tracepoint rung: exit_mmap's end also ended the generation. Keep
        // what is needed to recognise a reaper that comes after it.
        if let (Some(end), Some(exit_end)) = (end_event, &self.exit_ended)
            && matches!(end.data, Data::ExitMmapEnd(_))
            && !self.victims.is_empty()
        {
            let losses = self.taint.note.iter().cloned().collect();
            g.bury(
                self.key.0,
                Tombstone {
                    generation: self.key.1,
                    victims: self.victims.clone(),
                    exit_end: exit_end.clone(),
                    losses,
                },
            );
        }
    }

    fn judge(&self, w: ReapWindow, close: Close, ctx: &mut Ctx<'_>) {
        let era = ctx.era.oom;
        let (reaper_pid, reaper_comm, source) =
            w.reaper
                .clone()
                .unwrap_or((0, "?".to_owned(), ReapSource::Unknown));
        let who = format!("the reaper ({reaper_comm} pid {reaper_pid})");
        let whom = format!("The reaper ({reaper_comm} pid {reaper_pid})");
        let first = w.first_violation;
        let (pattern, grade, explanation) = if first == Some("mmdrop_inside_reap") {
            (
                "mmdrop_inside_reap",
                Grade::Violation,
                format!(
                    "The mm was freed (__mmdrop) while {who} was still inside \
                     __oom_reap_task_mm: the reaper only holds mm_count through \
                     signal->oom_mm or process_mrelease's mmgrab, so it used a freed mm."
                ),
            )
        } else if first == Some("exit_mmap_end_inside_reap") {
            (
                "exit_mmap_end_inside_reap",
                Grade::Violation,
                format!(
                    "exit_mmap finished while {who} was still inside its mmap_read_lock \
                     section: exit_mmap's end runs under mmap_write_lock (after the \
                     MMF_OOM_SKIP barrier on 4.14-5.19), which cannot be taken while the \
                     reaper holds the read lock."
                ),
            )
        } else if first == Some("reap_after_exit_mmap_end") {
            (
                "reap_after_exit_mmap_end",
                Grade::Violation,
                format!(
                    "{whom} started unmapping after exit_mmap of the same mm had finished: \
                     MMF_OOM_SKIP is set before exit_mmap's write-locked teardown, so the \
                     reaper must have skipped the mm (page tables and VMAs were already freed)."
                ),
            )
        } else if w.overlap {
            match era {
                OomEra::SharedReadLock => (
                    "overlap",
                    Grade::NearMissInferred,
                    format!(
                        "{whom} unmapped the mm while exit_mmap was tearing it down; on 6.0+ \
                         both unmap under mmap_read_lock (page-table locks serialize the \
                         zaps) and the destructive teardown waits for mmap_write_lock: legal \
                         concurrency, the protection held."
                    ),
                ),
                OomEra::ExitBarrier if w.overlap_unmap_vmas => (
                    "overlap_unmap_vmas",
                    Grade::Violation,
                    format!(
                        "{whom} was unmapping while exit_mmap ran unmap_vmas: on 4.14-5.19 \
                         exit_mmap sets MMF_OOM_SKIP and takes mmap_sem for write once \
                         before unmap_vmas, so the two zaps cannot overlap (the double \
                         unmap fixed by 27ae357fa82b)."
                    ),
                ),
                OomEra::ExitBarrier if !w.unmap_vmas_seen => (
                    "overlap",
                    Grade::Uncertain,
                    format!(
                        "{whom} overlapped exit_mmap, but exit_mmap's unmap_vmas was not \
                         observed: on 4.14-5.19 an overlap with its start is legal and an \
                         overlap with unmap_vmas is a violation, and the two cannot be told \
                         apart here."
                    ),
                ),
                OomEra::ExitBarrier => (
                    "overlap",
                    Grade::NearMissInferred,
                    format!(
                        "{whom} overlapped the start of exit_mmap, before its MMF_OOM_SKIP \
                         write-lock barrier, and was done before unmap_vmas: legal on \
                         4.14-5.19, the barrier held."
                    ),
                ),
                OomEra::ReaperPinsMm => (
                    "overlap",
                    Grade::Violation,
                    format!(
                        "{whom} overlapped exit_mmap: on 4.6-4.13 the reaper pins mm_users, so \
                         exit_mmap cannot start while it reaps."
                    ),
                ),
                OomEra::NoReaper => (
                    "overlap",
                    Grade::Uncertain,
                    format!(
                        "{whom} overlapped exit_mmap, but this kernel predates the OOM reaper \
                         (4.6): the events cannot be interpreted."
                    ),
                ),
                OomEra::Unknown => (
                    "overlap",
                    Grade::NearMissInferred,
                    format!(
                        "{whom} overlapped exit_mmap. The kernel release {:?} is not \
                         recognised: legal on 6.0+ (and before unmap_vmas on 4.14-5.19), a \
                         violation on 4.6-4.13; reported as a near miss at most.",
                        ctx.era.release
                    ),
                ),
            }
        } else {
            // Opened but no fact established (cannot happen: every opener sets
            // one). Nothing to report.
            return;
        };
        // Every other fact established in the window, for the reader.
        let also: Vec<&str> = [
            (w.exit_end_inside, "exit_mmap_end_inside_reap"),
            (w.reap_after_end, "reap_after_exit_mmap_end"),
            (w.freed_inside, "mmdrop_inside_reap"),
            (w.overlap, "overlap"),
        ]
        .into_iter()
        .filter(|(set, p)| *set && *p != pattern)
        .map(|(_, p)| p)
        .collect();
        let source = match source {
            ReapSource::Tracepoint => "tracepoint",
            ReapSource::Function => "function",
            ReapSource::Unknown => "unknown",
        };
        let verdict = Verdict::new(
            KIND,
            self.key,
            grade,
            explanation,
            details([
                ("pattern", Value::from(pattern)),
                ("overlapped_unmap_vmas", Value::from(w.overlap_unmap_vmas)),
                ("reap_source", Value::from(source)),
                ("era", Value::from(era.describe())),
            ]),
            close,
        );
        let mut verdict = verdict;
        if !also.is_empty() {
            verdict.details.insert("also".into(), Value::from(also));
        }
        emit(ctx, w.w, verdict);
    }
}

impl MmRule for State {
    const RULE: FindingKind = KIND;
    mm_rule_common!();
    reuse_keeping!(victims, reaps, nested);
    /// The other events routed here change nothing in a fresh state (no
    /// bracket, exit or window is open for them to close or join); of
    /// them only `mmdrop` does something outside it.
    fn wants(ev: &Event, _: &Globals) -> bool {
        matches!(
            ev.data,
            Data::MarkVictim(_)
                | Data::ReapStart(_)
                | Data::ReaperUnmapStart(_)
                | Data::ExitMmapStart(_)
                | Data::ExitMmapEnd(_)
        )
    }
    fn without_state(key: MmKey, ev: &Event, g: &mut Globals) {
        if matches!(ev.data, Data::MmDrop(_)) {
            g.reaper.forget(key.0);
        }
    }
    fn on_event(&mut self, ev: &Event, g: &mut Globals, ctx: &mut Ctx<'_>) {
        State::on_event(self, ev, &mut g.reaper, ctx);
    }
    fn end(&mut self, close: Close, end_event: Option<&Event>, g: &mut Globals, ctx: &mut Ctx<'_>) {
        State::end(self, close, end_event, &mut g.reaper, ctx);
    }
}

/// What this rule can see under the hook plan.
pub(crate) fn coverage(hooks: &[HookStatus]) -> RuleCoverage {
    let mut b = Builder::new(FindingKind::ReaperExitOverlap);
    match seen(hooks, HookId::OomReap) {
        Seen::Unavailable => {
            b.missing(HookId::OomReap);
            b.disable("oom_reap is unavailable: reaping is invisible");
        }
        Seen::Tracepoint => {
            if seen(hooks, HookId::MarkVictim) == Seen::Unavailable {
                b.missing(HookId::MarkVictim);
                b.disable(
                    "oom_reap is on the tracepoint rung and mark_victim is unavailable: \
                     oom:*_task_reaping carry only a pid, which cannot be attributed to an mm",
                );
            } else {
                b.degrade(
                    "oom_reap is on the tracepoint rung: only the oom_reaper kthread's \
                     start/finish bracket is seen; process_mrelease(2) reaping and the \
                     reaper's per-VMA unmap_page_range are invisible",
                );
            }
        }
        Seen::Function => {
            if seen(hooks, HookId::UnmapPageRange) == Seen::Unavailable {
                // Detail only: the __oom_reap_task_mm bracket encloses it.
                b.missing(HookId::UnmapPageRange);
            }
        }
    }
    match seen(hooks, HookId::ExitMmap) {
        Seen::Unavailable => {
            b.missing(HookId::ExitMmap);
            b.disable("exit_mmap is unavailable: the victim's teardown is invisible");
        }
        Seen::Tracepoint => b.degrade(
            "exit_mmap is on the tracepoint rung (mmap:exit_mmap = its end only): \
             overlaps (near misses) cannot be seen; exit_mmap ending inside a reaping \
             bracket and reaping after exit_mmap ended (violations) still are",
        ),
        Seen::Function => {}
    }
    if seen(hooks, HookId::UnmapVmas) != Seen::Function {
        b.missing(HookId::UnmapVmas);
        b.degrade(
            "unmap_vmas is unavailable: on 4.14-5.19 kernels an overlap with exit_mmap's \
             unmap_vmas (a violation) cannot be told from an overlap with its start (a near miss)",
        );
    }
    if seen(hooks, HookId::Mmdrop) != Seen::Function {
        b.missing(HookId::Mmdrop);
        b.degrade("mmdrop is unavailable: the mm being freed under the reaper is invisible");
    }
    b.build()
}
