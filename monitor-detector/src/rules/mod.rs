//! The four seed rules and what they share: evidence windows, loss handling
//! and the translation of a rule's verdict into a [`Finding`].
//!
//! Each rule keeps a small state per mm generation (`MmRules`) plus, where a
//! race spans generations or is not about one mm, a global part
//! (`Globals`). Rules only ever see events in per-mm sequence order (the
//! [`crate::sequencer`] runs first), one at a time, and emit a finding when a
//! window closes, when the generation ends, or at the end of input.
//!
//! **Loss principle.** A verdict that is proved by events that *were* seen
//! (a `-EAGAIN`, a `SIGBUS`, `invalid_migration_vma` returning true) stands
//! when records were lost around it. A verdict that relies on events *not*
//! having happened (a bracket still open, an end not yet seen) cannot be
//! proved across lost records: if records relevant to the rule were lost while
//! the window was open, or while a bracket it was built from was open, the
//! finding is `uncertain`, never a violation.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use serde_json::Value;

use crate::{
    detector::{DetectorStats, Limits},
    era::Era,
    event::{Data, Event},
    finding::{Finding, FindingKind, Severity, TaskRef},
    sequencer::MmKey,
};

pub mod coverage;
pub(crate) mod migration;
pub(crate) mod reaper;
pub(crate) mod uffd;
pub(crate) mod unstable;

pub use coverage::{CoverageState, RuleCoverage, coverage};

/// An event together with its release index (its position in the ordered
/// stream the rules see), so evidence collected from several places can be put
/// back in order.
#[derive(Clone, Debug)]
pub(crate) struct Noted {
    pub(crate) at: u64,
    /// Shared: an event is often evidence of several windows, and noting it
    /// must not copy its strings.
    pub(crate) ev: Arc<Event>,
}

/// What every rule handler gets besides the event.
pub(crate) struct Ctx<'a> {
    pub(crate) era: &'a Era,
    pub(crate) limits: &'a Limits,
    pub(crate) out: &'a mut Vec<Finding>,
    pub(crate) stats: &'a mut DetectorStats,
    /// Release index of the current event.
    pub(crate) at: u64,
}

impl Ctx<'_> {
    pub(crate) fn note(&self, ev: &Arc<Event>) -> Noted {
        Noted {
            at: self.at,
            ev: Arc::clone(ev),
        }
    }
}

/// A bounded list of evidence events: the first and the last ones are kept,
/// the middle is counted.
#[derive(Clone, Debug)]
pub(crate) struct Evidence {
    head: Vec<Noted>,
    tail: VecDeque<Noted>,
    omitted: u64,
    cap: usize,
}

impl Evidence {
    pub(crate) fn new(cap: usize) -> Self {
        Evidence {
            head: Vec::new(),
            tail: VecDeque::new(),
            omitted: 0,
            cap: cap.max(4),
        }
    }

    fn contains(&self, n: &Noted) -> bool {
        self.head
            .iter()
            .chain(self.tail.iter())
            .any(|x| x.at == n.at)
    }

    pub(crate) fn push(&mut self, n: Noted) {
        if self.contains(&n) {
            return;
        }
        if self.head.len() < self.cap / 2 {
            self.head.push(n);
            return;
        }
        self.tail.push_back(n);
        if self.tail.len() > self.cap - self.cap / 2 {
            self.tail.pop_front();
            self.omitted += 1;
        }
    }

    pub(crate) fn extend<'a>(&mut self, ns: impl IntoIterator<Item = &'a Noted>) {
        for n in ns {
            self.push(n.clone());
        }
    }

    fn into_sorted(self) -> (Vec<Event>, u64) {
        let mut all: Vec<Noted> = self.head.into_iter().chain(self.tail).collect();
        all.sort_by_key(|n| n.at);
        (
            all.into_iter()
                .map(|n| Arc::unwrap_or_clone(n.ev))
                .collect(),
            self.omitted,
        )
    }
}

/// An open window of one rule in one mm generation.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    pub(crate) evidence: Evidence,
    /// Loss that happened while the window (or a bracket it was built from)
    /// was open: one note per cause.
    pub(crate) losses: Vec<String>,
}

impl Window {
    pub(crate) fn new(ctx: &Ctx<'_>, taint: &Taint) -> Self {
        let mut w = Window {
            evidence: Evidence::new(ctx.limits.max_evidence),
            losses: Vec::new(),
        };
        if let Some(note) = &taint.note {
            w.lose(note);
        }
        w
    }

    pub(crate) fn lose(&mut self, note: &str) {
        if self.losses.len() < 4 && !self.losses.iter().any(|l| l == note) {
            self.losses.push(note.to_owned());
        }
    }

    pub(crate) fn push(&mut self, n: Noted) {
        self.evidence.push(n);
    }
}

/// Loss that touched a rule's open brackets: windows built from them later
/// inherit it. Cleared once nothing of the rule is open any more (then the lost
/// records can no longer be part of anything the rule will conclude).
#[derive(Clone, Debug, Default)]
pub(crate) struct Taint {
    pub(crate) note: Option<String>,
    /// Set for the pseudo-generation of unsequenced events: never cleared.
    pub(crate) permanent: bool,
}

impl Taint {
    pub(crate) fn for_key(key: MmKey) -> Taint {
        if key.1 == 0 {
            Taint {
                note: Some(UNSEQUENCED_NOTE.to_owned()),
                permanent: true,
            }
        } else {
            Taint::default()
        }
    }

    pub(crate) fn set(&mut self, note: &str) {
        if self.note.is_none() {
            self.note = Some(note.to_owned());
        }
    }

    pub(crate) fn settle(&mut self, anything_open: bool) {
        if !anything_open && !self.permanent {
            self.note = None;
        }
    }
}

pub(crate) const UNSEQUENCED_NOTE: &str = "events without sequence numbers (the BPF sequence map was full): their order and generation are not known";

/// How strong a rule's conclusion is, before loss and era caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Grade {
    /// An interleaving that must be impossible on this kernel.
    Violation,
    /// Proved by events that were seen (a `-EAGAIN`, a `SIGBUS`, …).
    NearMissObserved,
    /// Inferred from the order of events (brackets overlapping).
    NearMissInferred,
    /// The outcome is not visible at all (e.g. tracepoint rung, no result).
    Uncertain,
}

/// Why a window closed (recorded as the `closed_by` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// The window's own closing event was seen.
    WindowEnd,
    /// The mm generation ended (`exit_mmap` end on the tracepoint rung, `mmdrop`).
    GenerationEnd,
    /// A new generation appeared at the address: the end record was lost.
    EndLost,
    /// End of input with the window still open.
    EndOfInput,
}

impl Close {
    const fn name(self) -> &'static str {
        match self {
            Close::WindowEnd => "window_end",
            Close::GenerationEnd => "generation_end",
            Close::EndLost => "generation_end_record_lost",
            Close::EndOfInput => "end_of_input",
        }
    }
}

pub(crate) const END_LOST_NOTE: &str =
    "the generation's end record was lost (a new generation appeared at the same address)";

/// A rule's conclusion about one window.
pub(crate) struct Verdict {
    pub(crate) kind: FindingKind,
    pub(crate) grade: Grade,
    pub(crate) key: MmKey,
    /// One sentence, without the loss/era qualifiers (added here).
    pub(crate) explanation: String,
    pub(crate) details: BTreeMap<String, Value>,
    pub(crate) close: Close,
}

/// Turns a verdict and its window into a finding, applying the loss principle
/// and the unknown-kernel cap, and appends it to the output.
pub(crate) fn emit(ctx: &mut Ctx<'_>, mut window: Window, v: Verdict) {
    if v.close == Close::EndLost {
        window.lose(END_LOST_NOTE);
    }
    let mut explanation = v.explanation;
    let mut details = v.details;
    let lossy = !window.losses.is_empty();
    let loss_text = window.losses.join("; ");
    let mut severity = match (v.grade, lossy) {
        (Grade::Violation, false) => Severity::Violation,
        (Grade::Violation, true) => {
            explanation.push_str(&format!(
                " Records were lost while this window was open ({loss_text}), so the \
                 violation cannot be proven: reported as uncertain."
            ));
            Severity::Uncertain
        }
        (Grade::NearMissInferred, true) => {
            explanation.push_str(&format!(
                " This is inferred from the order of events and records were lost while \
                 the window was open ({loss_text}): reported as uncertain."
            ));
            Severity::Uncertain
        }
        (Grade::NearMissObserved, true) => {
            explanation.push_str(&format!(
                " Records were lost while the window was open ({loss_text}); the near miss \
                 itself was observed, but a violation in the same window could have gone unseen."
            ));
            Severity::NearMiss
        }
        (Grade::NearMissObserved | Grade::NearMissInferred, false) => Severity::NearMiss,
        (Grade::Uncertain, _) => Severity::Uncertain,
    };
    if severity == Severity::Violation && !ctx.era.is_known() {
        explanation.push_str(&format!(
            " The kernel release {:?} is not recognised, so this is reported as a near miss \
             at most (it would be a violation on every kernel release the rule knows).",
            ctx.era.release
        ));
        details.insert("would_be".into(), Value::from("violation"));
        severity = Severity::NearMiss;
    }
    if lossy {
        details.insert("records_lost".into(), Value::from(window.losses.clone()));
    }
    details.insert("closed_by".into(), Value::from(v.close.name()));
    let (evidence, omitted) = window.evidence.into_sorted();
    if omitted > 0 {
        details.insert("evidence_omitted".into(), Value::from(omitted));
        ctx.stats.evidence_omitted += omitted;
    }
    let tasks = tasks_of(&evidence);
    let start_t = evidence.iter().map(|e| e.t).min().unwrap_or(0);
    let end_t = evidence.iter().map(|e| e.t).max().unwrap_or(0);
    ctx.stats.count_finding(v.kind, severity);
    ctx.out.push(Finding {
        kind: v.kind,
        severity,
        mm: v.key.0,
        mm_gen: v.key.1,
        tasks,
        start_t,
        end_t,
        explanation,
        details,
        evidence,
    });
}

/// Tasks in order of first appearance. A `mark_victim` event stands for its
/// victim, not for the task that happened to trigger the OOM kill.
fn tasks_of(evidence: &[Event]) -> Vec<TaskRef> {
    let mut tasks: Vec<TaskRef> = Vec::new();
    for ev in evidence {
        let t = match &ev.data {
            Data::MarkVictim(v) => TaskRef {
                pid: v.victim_pid,
                tgid: v.victim_tgid,
                comm: v.victim_comm.clone(),
                kthread: false,
            },
            _ => TaskRef {
                pid: ev.pid,
                tgid: ev.tgid,
                comm: ev.comm.clone(),
                kthread: ev.is_kthread(),
            },
        };
        if !tasks.iter().any(|x| x.pid == t.pid) {
            tasks.push(t);
        }
    }
    tasks
}

/// Which rules an event kind (by its snake_case name, as in `Loss` lines)
/// matters to. Unknown names matter to every rule.
pub(crate) fn relevant_rules(kind: &str) -> &'static [FindingKind] {
    use FindingKind::*;
    match kind {
        "mark_victim" | "reap_start" => &[ReaperExitOverlap, UnstableMmFault],
        "reap_end" | "reap_skip" | "reaper_unmap_start" | "reaper_unmap_end"
        | "exit_mmap_start" | "exit_mmap_end" | "unmap_vmas_start" | "unmap_vmas_end"
        | "mmdrop" | "mrelease_enter" | "mrelease_exit" => &[ReaperExitOverlap],
        "fault" | "kernel_fault" | "kthread_use_mm" | "kthread_unuse_mm" => &[UnstableMmFault],
        "exec"
        | "exec_mm_switch"
        | "stack_move_start"
        | "stack_move_end"
        | "migrate_start"
        | "migrate_end"
        | "migration_skip_temp_stack"
        | "migration_entry_in_temp_stack"
        | "migration_pte_removed"
        | "migration_entry_wait" => &[LeftoverMigrationEntry],
        "uffd_copy" | "mfill_start" | "mfill_end" | "uffd_change_begin" | "uffd_change_end"
        | "fork" => &[UffdCopyVsMmChange],
        _ => &FindingKind::ALL,
    }
}

/// The rules' global state (not per mm generation).
pub(crate) struct Globals {
    pub(crate) reaper: reaper::Global,
    pub(crate) migration: migration::Global,
}

impl Globals {
    pub(crate) fn new(limits: &Limits) -> Self {
        Globals {
            reaper: reaper::Global::new(limits),
            migration: migration::Global::new(limits),
        }
    }
}

/// All rules' state for one mm generation. Each rule's part is created on
/// the first event that concerns it (most mms only ever meet one or two
/// rules), so an idle mm costs a few words.
pub(crate) struct MmRules {
    key: MmKey,
    reaper: Option<Box<reaper::State>>,
    unstable: Option<Box<unstable::State>>,
    migration: Option<Box<migration::State>>,
    uffd: Option<Box<uffd::State>>,
}

fn part<T>(slot: &mut Option<Box<T>>, make: impl FnOnce() -> T) -> &mut T {
    slot.get_or_insert_with(|| Box::new(make()))
}

impl MmRules {
    pub(crate) fn new(key: MmKey) -> Self {
        MmRules {
            key,
            reaper: None,
            unstable: None,
            migration: None,
            uffd: None,
        }
    }

    fn reaper(&mut self) -> &mut reaper::State {
        let key = self.key;
        part(&mut self.reaper, || reaper::State::new(key))
    }

    fn unstable(&mut self) -> &mut unstable::State {
        let key = self.key;
        part(&mut self.unstable, || unstable::State::new(key))
    }

    fn migration(&mut self) -> &mut migration::State {
        let key = self.key;
        part(&mut self.migration, || migration::State::new(key))
    }

    fn uffd(&mut self) -> &mut uffd::State {
        let key = self.key;
        part(&mut self.uffd, || uffd::State::new(key))
    }

    pub(crate) fn on_event(&mut self, ev: &Arc<Event>, g: &mut Globals, ctx: &mut Ctx<'_>) {
        match &ev.data {
            Data::MarkVictim(_) | Data::ReapStart(_) => {
                self.reaper().on_event(ev, &mut g.reaper, ctx);
                self.unstable().on_event(ev, ctx);
            }
            Data::ReapEnd(_)
            | Data::ReapSkip(_)
            | Data::ReaperUnmapStart(_)
            | Data::ReaperUnmapEnd(_)
            | Data::ExitMmapStart(_)
            | Data::ExitMmapEnd(_)
            | Data::UnmapVmasStart(_)
            | Data::UnmapVmasEnd(_)
            | Data::Mmdrop(_) => {
                self.reaper().on_event(ev, &mut g.reaper, ctx);
                // The fault rule needs to learn that MMF_UNSTABLE is set (for
                // faults whose own flags cannot be read).
                if self.unstable.is_some() || unstable::shows_unstable(ev) {
                    self.unstable().observe_flags(ev, ctx);
                }
            }
            Data::Fault(_)
            | Data::KernelFault(_)
            | Data::KthreadUseMm(_)
            | Data::KthreadUnuseMm(_) => {
                self.unstable().on_event(ev, ctx);
            }
            Data::Exec(_)
            | Data::ExecMmSwitch(_)
            | Data::StackMoveStart(_)
            | Data::StackMoveEnd(_)
            | Data::MigrationSkipTempStack(_)
            | Data::MigrationEntryInTempStack(_)
            | Data::MigrationPteRemoved(_)
            | Data::MigrationEntryWait(_) => {
                self.migration().on_event(ev, &mut g.migration, ctx);
            }
            Data::UffdCopy(_)
            | Data::MfillStart(_)
            | Data::MfillEnd(_)
            | Data::UffdChangeBegin(_)
            | Data::UffdChangeEnd(_)
            | Data::Fork(_) => {
                self.uffd().on_event(ev, ctx);
            }
            // Batches and process_mrelease(2) are not about one mm; the detector
            // routes them to the globals. Seen here only if a record carried
            // an mm anyway: ignored.
            Data::MigrateStart(_)
            | Data::MigrateEnd(_)
            | Data::MreleaseEnter(_)
            | Data::MreleaseExit(_) => {}
        }
    }

    /// Records of this generation (or of the kinds in `rules`) were lost.
    pub(crate) fn on_loss(&mut self, rules: &[FindingKind], note: &str) {
        for rule in rules {
            match rule {
                FindingKind::ReaperExitOverlap => {
                    if let Some(s) = &mut self.reaper {
                        s.on_loss(note);
                    }
                }
                FindingKind::UnstableMmFault => {
                    if let Some(s) = &mut self.unstable {
                        s.on_loss(note);
                    }
                }
                FindingKind::LeftoverMigrationEntry => {
                    if let Some(s) = &mut self.migration {
                        s.on_loss(note);
                    }
                }
                FindingKind::UffdCopyVsMmChange => {
                    if let Some(s) = &mut self.uffd {
                        s.on_loss(note);
                    }
                }
            }
        }
    }

    /// The generation is over: every open window is closed and judged.
    pub(crate) fn end(
        self,
        close: Close,
        end_event: Option<&Event>,
        g: &mut Globals,
        ctx: &mut Ctx<'_>,
    ) {
        if let Some(mut s) = self.reaper {
            s.end(close, end_event, &mut g.reaper, ctx);
        }
        if let Some(mut s) = self.unstable {
            s.end(close, ctx);
        }
        if let Some(mut s) = self.migration {
            s.end(close, ctx);
        }
        if let Some(mut s) = self.uffd {
            s.end(close, ctx);
        }
    }

    /// Number of open windows (for the eviction count).
    pub(crate) fn open_windows(&self) -> u64 {
        self.reaper.as_ref().map_or(0, |s| s.open_windows())
            + self.unstable.as_ref().map_or(0, |s| s.open_windows())
            + self.migration.as_ref().map_or(0, |s| s.open_windows())
            + self.uffd.as_ref().map_or(0, |s| s.open_windows())
    }
}

/// Small helpers for details maps.
pub(crate) fn details<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub(crate) fn hex(v: u64) -> Value {
    Value::from(format!("{v:#x}"))
}
