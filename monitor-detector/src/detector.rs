//! The streaming detector: events in ring-buffer order in, findings out.
//!
//! ```text
//! Line::Event ──► Sequencer (per-mm reorder, gaps, generations) ──► rules ──► Finding
//! Line::Loss  ──────────────────────────────────────────────────► rules (windows → uncertain)
//! ```
//!
//! [`Detector::push`] (or [`Detector::push_event`] / [`Detector::push_loss`])
//! returns the findings whose windows closed because of that input;
//! [`Detector::finish`] closes everything still open at the end of input.
//! Findings come out once per window, in a deterministic order: the order in
//! which their windows closed, and at [`Detector::finish`] by (mm, generation).

pub use crate::limits::{DetectorStats, FindingCounts, Limits};
use crate::{
    era::Era,
    event::{Data, Event},
    finding::{Finding, FindingKind},
    rules::{self, Close, Ctx, Globals, MmRules, RuleCoverage, RulePool},
    sequencer::{MmKey, Push, Released, Sequencer, Stream, ends_generation},
    slots::{Idx, Slots},
    tracefile::{Header, HookStatus, Line, Loss},
    windows::Window,
};

/// What the detector is told about the traced system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectorConfig {
    /// `uname -r` of the traced kernel (the era decides near miss vs violation).
    pub kernel_release: String,
    /// The hook plan: which hooks are attached at which rung. An empty plan
    /// means nothing is known to be attached: every rule reports itself
    /// disabled (it still runs on whatever events arrive).
    pub hooks: Vec<HookStatus>,
    /// Whether a gap in an mm's sequence numbers means lost records. False for
    /// traces recorded with `--pid`/`--comm` filters (filtered records leave
    /// gaps); ring-buffer loss is then only known from `Loss` lines.
    pub seq_gaps_are_loss: bool,
    pub limits: Limits,
}

impl DetectorConfig {
    pub fn new(kernel_release: impl Into<String>, hooks: Vec<HookStatus>) -> Self {
        DetectorConfig {
            kernel_release: kernel_release.into(),
            hooks,
            seq_gaps_are_loss: true,
            limits: Limits::default(),
        }
    }

    /// The configuration a trace file's header implies.
    pub fn from_header(header: &Header) -> Self {
        DetectorConfig {
            kernel_release: header.kernel_release.clone(),
            hooks: header.hooks.clone(),
            seq_gaps_are_loss: header.filters.is_empty(),
            limits: Limits::default(),
        }
    }
}

/// The race detector. Pure: no IO, no clock, deterministic.
pub struct Detector {
    config: DetectorConfig,
    era: Era,
    coverage: Vec<RuleCoverage>,
    sequencer: Sequencer,
    /// Per mm generation, in one slot: the sequencer's stream and the rules'
    /// state (each bounded by `Limits::max_mms`).
    slots: Slots<Stream, MmRules>,
    pool: RulePool,
    globals: Globals,
    stats: DetectorStats,
    /// Release index of the last event handed to the rules.
    released: u64,
    scratch: Vec<Released>,
    /// Race windows closed since the last [`Detector::drain_windows`].
    windows: Vec<(Window, u64)>,
    finished: bool,
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Detector {
        let era = Era::from_release(&config.kernel_release);
        let coverage = rules::coverage(&config.hooks);
        let limits = &config.limits;
        Detector {
            sequencer: Sequencer::new(limits.reorder_window, limits.max_mms),
            slots: Slots::new(limits.max_mms, limits.max_mms),
            pool: RulePool::default(),
            globals: Globals::new(limits, &config.hooks),
            era,
            coverage,
            stats: DetectorStats::default(),
            released: 0,
            scratch: Vec::new(),
            windows: Vec::new(),
            finished: false,
            config,
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The kernel era the verdicts are based on.
    pub fn era(&self) -> &Era {
        &self.era
    }

    /// Coverage of every rule under the configured hook plan.
    pub fn coverage(&self) -> &[RuleCoverage] {
        &self.coverage
    }

    pub fn stats(&self) -> &DetectorStats {
        &self.stats
    }

    /// Number of mm generations currently tracked.
    pub fn tracked_mms(&self) -> usize {
        self.slots.rules_len()
    }

    /// The race windows that closed since the last call, with their duration
    /// in nanoseconds (kernel timestamps): what the daemon's
    /// `mmrace_window_duration_seconds` histograms observe.
    pub fn drain_windows(&mut self, mut f: impl FnMut(Window, u64)) {
        for (w, ns) in self.windows.drain(..) {
            f(w, ns);
        }
    }

    /// Forgets the race windows closed since the last call, for a caller
    /// that does not observe their durations (`analyze`): without it or
    /// [`Detector::drain_windows`] they pile up for the whole input.
    pub fn discard_windows(&mut self) {
        self.windows.clear();
    }

    /// Feeds one trace line. Header, finding and summary lines are ignored
    /// (the caller configures the detector from the header).
    pub fn push(&mut self, line: &Line) -> Vec<Finding> {
        match line {
            Line::Event(ev) => self.push_event(*ev),
            Line::Loss(loss) => self.push_loss(loss),
            Line::Header(_) | Line::Finding(_) | Line::Summary(_) | Line::Cgroup(_) => Vec::new(),
        }
    }

    /// Feeds one event, in ring-buffer order.
    pub fn push_event(&mut self, ev: Event) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.stats.events += 1;
        if let Push::First(slot) =
            self.sequencer
                .push(&mut self.slots, &ev, &mut self.scratch, &mut self.stats)
        {
            self.on_event(&ev, slot, &mut out);
        }
        if !self.scratch.is_empty() {
            let mut scratch = std::mem::take(&mut self.scratch);
            for r in scratch.drain(..) {
                self.dispatch(r, &mut out);
            }
            self.scratch = scratch;
        }
        out
    }

    /// Records were lost (ring buffer full) somewhere before this point: every
    /// window open now, of a rule that uses the lost kinds, becomes uncertain.
    pub fn push_loss(&mut self, loss: &Loss) -> Vec<Finding> {
        self.stats.loss_lines += 1;
        // Not `Loss::total()`: a corrupt line could make that sum overflow.
        let total = loss.lost.values().fold(0u64, |a, n| a.saturating_add(*n));
        self.stats.lost_records = self.stats.lost_records.saturating_add(total);
        let mut rules: Vec<FindingKind> = Vec::new();
        let mut kinds: Vec<&str> = Vec::new();
        for (id, n) in &loss.lost {
            if *n == 0 {
                continue;
            }
            kinds.push(id.name());
            for r in id.rules() {
                if !rules.contains(r) {
                    rules.push(*r);
                }
            }
        }
        // Kinds unknown to this build, or no kinds at all: every rule.
        if loss.unknown_kinds > 0 || loss.lost.is_empty() {
            rules = FindingKind::ALL.to_vec();
        }
        // By name, as loss lines spell them.
        kinds.sort_unstable();
        if loss.unknown_kinds > 0 {
            kinds.push("kinds unknown to this build");
        }
        if rules.is_empty() {
            return Vec::new();
        }
        let note = format!(
            "{total} record(s) lost in the ring buffer ({})",
            if kinds.is_empty() {
                "kinds unknown".to_owned()
            } else {
                kinds.join(", ")
            }
        );
        for mm in self.slots.rules_mut() {
            mm.on_loss(&rules, &note);
        }
        if rules.contains(&FindingKind::ReaperExitOverlap) {
            self.globals.reaper.on_loss(&note);
        }
        if rules.contains(&FindingKind::LeftoverMigrationEntry) {
            self.globals.migration.on_loss(&note);
        }
        Vec::new()
    }

    /// End of input: releases held events, then closes every open window
    /// (in (mm, generation) order).
    pub fn finish(&mut self) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        self.sequencer
            .flush(&mut self.slots, &mut scratch, &mut self.stats);
        for r in scratch.drain(..) {
            self.dispatch(r, &mut out);
        }
        self.scratch = scratch;
        for key in self.slots.rules_keys() {
            self.end_generation(key, None, Close::EndOfInput, None, &mut out);
        }
        self.finished = true;
        out
    }

    fn dispatch(&mut self, r: Released, out: &mut Vec<Finding>) {
        match r {
            Released::Event(ev) => self.on_event(&ev, None, out),
            Released::Gap { key, missing } => {
                if !self.config.seq_gaps_are_loss {
                    return;
                }
                let note = format!("{missing} record(s) of this mm missing from its sequence");
                if let Some(mm) = self.slots.find(key).and_then(|i| self.slots.rules(i)) {
                    mm.on_loss(FindingKind::ALL, &note);
                }
            }
            Released::Replaced { old } => {
                if self.config.seq_gaps_are_loss {
                    self.stats.generations_end_lost += 1;
                    self.end_generation(old, None, Close::EndLost, None, out);
                } else {
                    // Filtered trace: the end record may simply have been
                    // filtered out.
                    self.end_generation(old, None, Close::GenerationEnd, None, out);
                }
            }
        }
    }

    /// Hands a released event to the rules. `slot` is its stream's slot
    /// when the sequencer just found it (then the rules' state is reached
    /// without hashing the key again).
    #[inline(always)]
    fn on_event(&mut self, ev: &Event, slot: Option<Idx>, out: &mut Vec<Finding>) {
        self.released += 1;
        let Detector {
            era,
            config,
            slots,
            pool,
            globals,
            stats,
            released,
            windows,
            ..
        } = self;
        let mut ctx = Ctx {
            era,
            limits: &config.limits,
            out,
            stats,
            windows,
            at: *released,
        };
        if ev.mm == 0 {
            match &ev.data {
                Data::MigrateStart(_) | Data::MigrateEnd(_) => {
                    globals.migration.on_event(ev, &mut ctx);
                }
                // process_mrelease(2) on the tracepoint rung carries no mm: the
                // reaping it does is not attributable (coverage says so).
                Data::MreleaseEnter(_) | Data::MreleaseExit(_) => {}
                _ => ctx.stats.unattributed += 1,
            }
            return;
        }
        let key: MmKey = (ev.mm, if ev.is_sequenced() { ev.mm_gen } else { 0 });
        let idx = match slots.find_rules(key, slot) {
            Ok((i, mm)) => {
                mm.on_event(ev, globals, &mut ctx, pool);
                i
            }
            Err(idx) => {
                let (i, evicted) = slots.insert_rules(key, idx, MmRules::new(key));
                if let Some(mm) = slots.rules(i) {
                    mm.on_event(ev, globals, &mut ctx, pool);
                }
                if let Some((_, dropped)) = evicted {
                    ctx.stats.mms_evicted += 1;
                    ctx.stats.windows_dropped += dropped.open_windows();
                }
                ctx.stats.peak_mms = ctx.stats.peak_mms.max(slots.rules_len() as u64);
                i
            }
        };
        if key.1 != 0 && ends_generation(ev) {
            self.end_generation(key, Some(idx), Close::GenerationEnd, Some(ev), out);
        }
    }

    fn end_generation(
        &mut self,
        key: MmKey,
        slot: Option<Idx>,
        close: Close,
        end: Option<&Event>,
        out: &mut Vec<Finding>,
    ) {
        let idx = match slot {
            Some(i) if self.slots.is(i, key) => Some(i),
            _ => self.slots.find(key),
        };
        let Some(mm) = idx.and_then(|i| self.slots.take_rules(i)) else {
            return;
        };
        let mut ctx = Ctx {
            era: &self.era,
            limits: &self.config.limits,
            out,
            stats: &mut self.stats,
            windows: &mut self.windows,
            at: self.released,
        };
        mm.end(close, end, &mut self.globals, &mut ctx, &mut self.pool);
    }
}
