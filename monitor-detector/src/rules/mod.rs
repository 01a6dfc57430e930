//! The four rules and what they share: evidence windows, loss handling
//! and the translation of a rule's verdict into a [`Finding`].
//!
//! Each rule implements [`MmRule`]: a small state per mm generation (held in
//! `MmRules`) plus, where a race spans generations or is not about one mm, a
//! global part (`Globals`), and its coverage under a hook plan. Events reach
//! a rule when the catalogue routes their kind to it
//! (`monitor_common::catalogue::EventId::rules`); nothing here lists event
//! kinds. Rules only ever see events in per-mm sequence order (the
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

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use monitor_common::catalogue::{EventId, MAX_EVENT_ID};

use crate::{
    era::Era,
    event::{Data, Event, c_str},
    finding::{Finding, FindingKind, Severity, TaskRef},
    limits::{DetectorStats, Limits},
    sequencer::MmKey,
    tracefile::HookStatus,
};

pub(crate) use crate::windows::Window as RaceWindow;

pub mod coverage;
pub(crate) mod migration;
pub(crate) mod reaper;
pub(crate) mod uffd;
pub(crate) mod unstable;

pub use coverage::{CoverageState, KernelPath, MissingPath, Needs, RuleCoverage, paths};
pub use unstable::Accessor;

/// An event together with its release index (its position in the ordered
/// stream the rules see), so evidence collected from several places can be put
/// back in order.
#[derive(Clone, Debug)]
pub(crate) struct Noted {
    pub(crate) at: u64,
    /// A copy: events are plain data (no heap), so noting one costs a
    /// memcpy, and only events that become evidence are noted.
    pub(crate) ev: Event,
}

/// What every rule handler gets besides the event.
pub(crate) struct Ctx<'a> {
    pub(crate) era: &'a Era,
    pub(crate) limits: &'a Limits,
    pub(crate) out: &'a mut Vec<Finding>,
    pub(crate) stats: &'a mut DetectorStats,
    /// Race windows that closed, with their duration (for the daemon's
    /// histograms).
    pub(crate) windows: &'a mut Vec<(RaceWindow, u64)>,
    /// Release index of the current event.
    pub(crate) at: u64,
}

impl Ctx<'_> {
    pub(crate) fn note(&self, ev: &Event) -> Noted {
        Noted {
            at: self.at,
            ev: *ev,
        }
    }

    /// A race window opened at `start` closed at `end`.
    pub(crate) fn window_closed(&mut self, w: RaceWindow, start: &Event, end: &Event) {
        if end.t >= start.t {
            self.windows.push((w, end.t - start.t));
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
        (all.into_iter().map(|n| n.ev).collect(), self.omitted)
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

impl Verdict {
    pub(crate) fn new(
        kind: FindingKind,
        key: MmKey,
        grade: Grade,
        explanation: String,
        details: BTreeMap<String, Value>,
        close: Close,
    ) -> Verdict {
        Verdict {
            kind,
            grade,
            key,
            explanation,
            details,
            close,
        }
    }
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
                comm: c_str(&v.victim_comm).into_owned(),
                kthread: false,
                cgroup_id: v.victim_cgroup_id,
                memcg_id: v.victim_memcg_id,
                ..TaskRef::default()
            },
            _ => TaskRef {
                pid: ev.pid,
                tgid: ev.tgid,
                comm: ev.comm().into_owned(),
                kthread: ev.is_kthread(),
                cgroup_id: ev.cgroup_id,
                memcg_id: ev.memcg_id,
                ..TaskRef::default()
            },
        };
        if !tasks.iter().any(|x| x.pid == t.pid) {
            tasks.push(t);
        }
    }
    tasks
}

/// One rule: its state for one mm generation, and what it does with events,
/// loss and the end of the generation. The detector routes to it every event
/// the catalogue routes to [`MmRule::RULE`].
pub(crate) trait MmRule: Sized {
    const RULE: FindingKind;
    fn new(key: MmKey) -> Self;
    /// Whether `ev` needs this rule's state created (most mms only ever meet
    /// one or two rules, so state is made on demand). Default: yes.
    ///
    /// A rule may say no only for an event that would leave a fresh state
    /// ([`MmRule::new`]) exactly as it was: then not making the state is
    /// the same as making it, and the rule's verdicts cannot change. What
    /// such an event does outside the state is [`MmRule::without_state`].
    fn wants(_ev: &Event, _g: &Globals) -> bool {
        true
    }
    /// What an event routed to this rule does when the generation has no
    /// state of the rule and [`MmRule::wants`] said no: the effects on the
    /// rule's global part that [`MmRule::on_event`] would have had on a
    /// fresh state. Default: none.
    fn without_state(_key: MmKey, _ev: &Event, _g: &mut Globals) {}
    /// Makes `self` (a finished generation's state, from the pool) the fresh
    /// state of `key`, as [`MmRule::new`] would. A rule may override it to
    /// keep its buffers' capacity.
    fn reuse(&mut self, key: MmKey) {
        *self = Self::new(key);
    }
    fn on_event(&mut self, ev: &Event, g: &mut Globals, ctx: &mut Ctx<'_>);
    /// Records this rule cares about were lost while it held this state.
    fn on_loss(&mut self, note: &str);
    /// The generation is over: close and judge every open window.
    fn end(&mut self, close: Close, end_event: Option<&Event>, g: &mut Globals, ctx: &mut Ctx<'_>);
    /// Open windows (for the eviction count).
    fn open_windows(&self) -> u64;
    /// How well this rule is covered under a hook plan.
    fn coverage(hooks: &[HookStatus]) -> RuleCoverage;
}

/// The [`MmRule`] items every rule's `State` provides the same way (its
/// inherent `new`, `on_loss`, `open_windows` and the module's `coverage`).
macro_rules! mm_rule_common {
    () => {
        fn new(key: MmKey) -> Self {
            State::new(key)
        }
        fn on_loss(&mut self, note: &str) {
            State::on_loss(self, note);
        }
        fn open_windows(&self) -> u64 {
            State::open_windows(self)
        }
        fn coverage(hooks: &[HookStatus]) -> RuleCoverage {
            coverage(hooks)
        }
    };
}

pub(crate) use mm_rule_common;

/// [`MmRule::reuse`] for a `State` whose listed `Vec` fields keep their
/// capacity (up to [`KEPT_CAPACITY`]): the state is `State::new(key)`'s, the
/// buffers are not freed and allocated again for every generation.
macro_rules! reuse_keeping {
    ($($vec:ident),*) => {
        fn reuse(&mut self, key: MmKey) {
            $(
                let mut $vec = std::mem::take(&mut self.$vec);
                $vec.clear();
                $vec.shrink_to($crate::rules::KEPT_CAPACITY);
            )*
            *self = State {
                $($vec,)*
                ..State::new(key)
            };
        }
    };
}

pub(crate) use reuse_keeping;

/// The most elements a pooled state's buffer keeps room for (an mm that
/// needed more does not pin that memory in the pool).
pub(crate) const KEPT_CAPACITY: usize = 16;

/// The rules' global state (not per mm generation).
pub(crate) struct Globals {
    pub(crate) reaper: reaper::Global,
    pub(crate) migration: migration::Global,
}

impl Globals {
    pub(crate) fn new(limits: &Limits, hooks: &[HookStatus]) -> Self {
        Globals {
            reaper: reaper::Global::new(limits),
            migration: migration::Global::new(limits, hooks),
        }
    }
}

/// The rules each event kind is routed to, as bits by [`FindingKind`]
/// number, indexed by event id.
static ROUTES: [u8; MAX_EVENT_ID as usize] = {
    let mut t = [0u8; MAX_EVENT_ID as usize];
    let mut i = 0;
    while i < EventId::ALL.len() {
        let id = EventId::ALL[i];
        let rules = id.rules();
        let mut j = 0;
        while j < rules.len() {
            t[id as usize] |= 1 << rules[j] as u8;
            j += 1;
        }
        i += 1;
    }
    t
};

/// Spare boxes of rule state kept per rule for reuse: most mm generations
/// live for a handful of records, so their state is made and dropped at the
/// rate of process lives.
const SPARE_STATES: usize = 256;

/// Declares `MmRules` (every rule's optional state for one mm generation),
/// the pool its boxes are reused from, and the coverage of all rules, from
/// one list of the rule types.
macro_rules! mm_rules {
    ($($field:ident: $rule:ty,)*) => {
        /// All rules' state for one mm generation. Each rule's part is created
        /// on the first event that concerns it, so an idle mm costs a few words.
        pub(crate) struct MmRules {
            key: MmKey,
            $($field: Option<Box<$rule>>,)*
        }

        /// Boxes of rule state whose generation ended, reused for the next
        /// ones (at most [`SPARE_STATES`] per rule).
        #[derive(Default)]
        pub(crate) struct RulePool {
            $($field: Vec<Box<$rule>>,)*
        }

        impl MmRules {
            pub(crate) fn new(key: MmKey) -> Self {
                MmRules { key, $($field: None,)* }
            }

            pub(crate) fn on_event(
                &mut self,
                ev: &Event,
                g: &mut Globals,
                ctx: &mut Ctx<'_>,
                pool: &mut RulePool,
            ) {
                // In `Rule` order, which is the order of every catalogue
                // row's rule list (a test checks it).
                let routed = ROUTES[ev.id() as usize];
                $(
                    if routed & (1 << <$rule as MmRule>::RULE as u8) != 0 {
                        let part = match &mut self.$field {
                            Some(p) => Some(p),
                            slot if <$rule as MmRule>::wants(ev, g) => {
                                Some(slot.insert(match pool.$field.pop() {
                                    Some(mut b) => {
                                        b.reuse(self.key);
                                        b
                                    }
                                    None => Box::new(<$rule as MmRule>::new(self.key)),
                                }))
                            }
                            _ => None,
                        };
                        match part {
                            Some(part) => <$rule as MmRule>::on_event(part, ev, g, ctx),
                            None => <$rule as MmRule>::without_state(self.key, ev, g),
                        }
                    }
                )*
            }

            /// Records of this generation (or of kinds that matter to `rules`)
            /// were lost.
            pub(crate) fn on_loss(&mut self, rules: &[FindingKind], note: &str) {
                $(
                    if rules.contains(&<$rule as MmRule>::RULE)
                        && let Some(s) = &mut self.$field
                    {
                        <$rule as MmRule>::on_loss(s, note);
                    }
                )*
            }

            /// The generation is over: every open window is closed and judged.
            pub(crate) fn end(
                self,
                close: Close,
                end_event: Option<&Event>,
                g: &mut Globals,
                ctx: &mut Ctx<'_>,
                pool: &mut RulePool,
            ) {
                $(
                    if let Some(mut s) = self.$field {
                        <$rule as MmRule>::end(&mut s, close, end_event, g, ctx);
                        if pool.$field.len() < SPARE_STATES {
                            pool.$field.push(s);
                        }
                    }
                )*
            }

            /// Number of open windows (for the eviction count).
            pub(crate) fn open_windows(&self) -> u64 {
                0 $(+ self.$field.as_ref().map_or(0, |s| <$rule as MmRule>::open_windows(s)))*
            }
        }

        /// The rules in field order (routing calls them in this order).
        #[cfg(test)]
        const FIELD_ORDER: &[FindingKind] = &[$(<$rule as MmRule>::RULE),*];

        /// The coverage of every rule, in [`FindingKind::ALL`] order. Pure:
        /// `monitor check`, the metrics and the analyzer all call this.
        pub fn coverage(hooks: &[HookStatus]) -> Vec<RuleCoverage> {
            let mut all = vec![$(coverage::finish(<$rule as MmRule>::coverage(hooks), hooks)),*];
            all.sort_by_key(|c| c.rule);
            all
        }
    };
}

mm_rules! {
    reaper: reaper::State,
    unstable: unstable::State,
    migration: migration::State,
    uffd: uffd::State,
}

/// Small helpers for details maps.
pub(crate) fn details<const N: usize>(pairs: [(&str, Value); N]) -> BTreeMap<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub(crate) fn hex(v: u64) -> Value {
    Value::from(format!("{v:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event routed to several rules reaches them in the order its
    /// catalogue row lists them, as it did when routing walked that list:
    /// the rows list rules in `FindingKind` order and so do the fields.
    #[test]
    fn routing_order_is_the_catalogue_order() {
        assert!(FIELD_ORDER.is_sorted(), "{FIELD_ORDER:?}");
        assert_eq!(FIELD_ORDER.len(), FindingKind::ALL.len());
        for id in EventId::ALL {
            assert!(id.rules().is_sorted(), "{id:?}: {:?}", id.rules());
            let bits = ROUTES[*id as usize];
            let want = id.rules().iter().fold(0u8, |b, r| b | 1 << *r as u8);
            assert_eq!(bits, want, "{id:?}");
        }
    }
}
