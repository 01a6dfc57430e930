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

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    bounded::BoundedMap,
    era::Era,
    event::{Data, Event},
    finding::{Finding, FindingKind, Severity},
    rules::{self, Close, Ctx, Globals, MmRules, RuleCoverage},
    sequencer::{MmKey, Released, Sequencer, ends_generation},
    tracefile::{Header, HookStatus, Line, Loss},
};

/// Resource bounds. Every limit that forces the detector to forget something
/// is counted in [`DetectorStats`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// How many records (of any mm) an out-of-order event is held while the
    /// missing sequence numbers of its mm may still arrive.
    pub reorder_window: u64,
    /// Mm generations with rule state (and sequence streams) kept at once; the
    /// least recently used one is forgotten beyond that.
    pub max_mms: usize,
    /// Evidence events kept per finding (first and last halves).
    pub max_evidence: usize,
    /// Ended generations remembered to recognise a reaper after `exit_mmap`.
    pub max_tombstones: usize,
    /// Concurrent migration batches tracked.
    pub max_open_batches: usize,
    /// Waits by one task on one page, with no batch in flight, before the
    /// migration rule reports a possible left-behind entry.
    pub wait_repeat_threshold: u32,
    /// How many released records before an exec window a migration PTE
    /// removal may be and still count as "just before" it.
    pub near_window_records: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reorder_window: 256,
            max_mms: 65_536,
            max_evidence: 32,
            max_tombstones: 4096,
            max_open_batches: 1024,
            wait_repeat_threshold: 3,
            near_window_records: 4096,
        }
    }
}

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

/// Counters about what the detector saw and what it had to give up on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorStats {
    /// Event records pushed.
    pub events: u64,
    /// `Loss` lines pushed, and the records they reported lost.
    pub loss_lines: u64,
    pub lost_records: u64,
    /// Per-mm sequence gaps declared (after the reorder window), and the
    /// number of records missing in them.
    pub gaps: u64,
    pub records_missing: u64,
    /// Events held back because they arrived ahead of their sequence number.
    pub held: u64,
    /// Events released after their place had passed (late after a declared
    /// gap, or duplicates not explained by non-atomic sequencing).
    pub late_records: u64,
    /// Events of a generation that had already ended (dropped).
    pub late_after_end: u64,
    /// Streams whose first records were never seen (joined mid-stream).
    pub streams_joined: u64,
    /// Events about an mm but without a sequence number (`SEQ_MAP_FULL`).
    pub unsequenced: u64,
    /// Events that need an mm but carry none (attribution failed in the kernel).
    pub unattributed: u64,
    /// Generations that ended without their end record (a new generation
    /// appeared at the same address).
    pub generations_end_lost: u64,
    /// Mm generations forgotten because of `Limits::max_mms`, and the open
    /// windows dropped with them.
    pub mms_evicted: u64,
    pub streams_evicted: u64,
    pub windows_dropped: u64,
    /// Evidence events left out of findings (`Limits::max_evidence`).
    pub evidence_omitted: u64,
    /// Migration batches not tracked because of `Limits::max_open_batches`.
    pub batches_dropped: u64,
    /// Tracepoint-rung batches whose migration PTE set/removed counts differ
    /// (not provable as a violation; see `docs/detection.md`).
    pub unbalanced_migrate_batches: u64,
    /// Migration PTE removals that could not be placed in an exec window.
    pub unplaced_pte_removals: u64,
    /// Faults on an unstable mm by its own (dying) threads: excluded.
    pub owner_faults_ignored: u64,
    /// Windows that closed with nothing to report (e.g. only retried faults).
    pub windows_without_verdict: u64,
    /// Largest number of mm generations tracked at once.
    pub peak_mms: u64,
    /// Findings emitted, by `kind/severity`.
    pub findings: BTreeMap<String, u64>,
}

impl DetectorStats {
    pub(crate) fn count_finding(&mut self, kind: FindingKind, severity: Severity) {
        *self
            .findings
            .entry(format!("{}/{}", kind.name(), severity.name()))
            .or_insert(0) += 1;
    }
}

/// The race detector. Pure: no IO, no clock, deterministic.
pub struct Detector {
    config: DetectorConfig,
    era: Era,
    coverage: Vec<RuleCoverage>,
    sequencer: Sequencer,
    mms: BoundedMap<MmKey, MmRules>,
    globals: Globals,
    stats: DetectorStats,
    /// Release index of the last event handed to the rules.
    released: u64,
    scratch: Vec<Released>,
    finished: bool,
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Detector {
        let era = Era::from_release(&config.kernel_release);
        let coverage = rules::coverage(&config.hooks);
        let limits = &config.limits;
        Detector {
            sequencer: Sequencer::new(limits.reorder_window, limits.max_mms),
            mms: BoundedMap::new(limits.max_mms),
            globals: Globals::new(limits),
            era,
            coverage,
            stats: DetectorStats::default(),
            released: 0,
            scratch: Vec::new(),
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
        self.mms.len()
    }

    /// Feeds one trace line. Header, finding and summary lines are ignored
    /// (the caller configures the detector from the header).
    pub fn push(&mut self, line: &Line) -> Vec<Finding> {
        match line {
            Line::Event(ev) => self.push_event(ev.clone()),
            Line::Loss(loss) => self.push_loss(loss),
            Line::Header(_) | Line::Finding(_) | Line::Summary(_) => Vec::new(),
        }
    }

    /// Feeds one event, in ring-buffer order.
    pub fn push_event(&mut self, ev: Event) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.stats.events += 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        self.sequencer.push(ev, &mut scratch, &mut self.stats);
        for r in scratch.drain(..) {
            self.dispatch(r, &mut out);
        }
        self.scratch = scratch;
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
        for (kind, n) in &loss.lost {
            if *n == 0 {
                continue;
            }
            kinds.push(kind);
            for r in rules::relevant_rules(kind) {
                if !rules.contains(r) {
                    rules.push(*r);
                }
            }
        }
        if loss.lost.is_empty() {
            rules = FindingKind::ALL.to_vec();
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
        for mm in self.mms.values_mut() {
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
        self.sequencer.flush(&mut scratch, &mut self.stats);
        for r in scratch.drain(..) {
            self.dispatch(r, &mut out);
        }
        self.scratch = scratch;
        for key in self.mms.sorted_keys() {
            self.end_generation(key, Close::EndOfInput, None, &mut out);
        }
        self.finished = true;
        out
    }

    fn dispatch(&mut self, r: Released, out: &mut Vec<Finding>) {
        match r {
            Released::Event(ev) => self.on_event(ev, out),
            Released::Gap { key, missing } => {
                if !self.config.seq_gaps_are_loss {
                    return;
                }
                let note = format!("{missing} record(s) of this mm missing from its sequence");
                if let Some(mm) = self.mms.peek_mut(&key) {
                    mm.on_loss(&FindingKind::ALL, &note);
                }
            }
            Released::Replaced { old } => {
                if self.config.seq_gaps_are_loss {
                    self.stats.generations_end_lost += 1;
                    self.end_generation(old, Close::EndLost, None, out);
                } else {
                    // Filtered trace: the end record may simply have been
                    // filtered out.
                    self.end_generation(old, Close::GenerationEnd, None, out);
                }
            }
        }
    }

    fn on_event(&mut self, ev: Event, out: &mut Vec<Finding>) {
        self.released += 1;
        let ev = Arc::new(ev);
        let Detector {
            era,
            config,
            mms,
            globals,
            stats,
            released,
            ..
        } = self;
        let mut ctx = Ctx {
            era,
            limits: &config.limits,
            out,
            stats,
            at: *released,
        };
        if ev.mm == 0 {
            match &ev.data {
                Data::MigrateStart(_) | Data::MigrateEnd(_) => {
                    globals.migration.on_event(&ev, &mut ctx);
                }
                // process_mrelease(2) on the tracepoint rung carries no mm: the
                // reaping it does is not attributable (coverage says so).
                Data::MreleaseEnter(_) | Data::MreleaseExit(_) => {}
                _ => ctx.stats.unattributed += 1,
            }
            return;
        }
        let key: MmKey = (ev.mm, if ev.is_sequenced() { ev.mm_gen } else { 0 });
        let (mm, evicted) = mms.get_or_insert_with(key, || MmRules::new(key));
        mm.on_event(&ev, globals, &mut ctx);
        if let Some((_, dropped)) = evicted {
            ctx.stats.mms_evicted += 1;
            ctx.stats.windows_dropped += dropped.open_windows();
        }
        ctx.stats.peak_mms = ctx.stats.peak_mms.max(mms.len() as u64);
        if key.1 != 0 && ends_generation(&ev) {
            self.end_generation(key, Close::GenerationEnd, Some(&ev), out);
        }
    }

    fn end_generation(
        &mut self,
        key: MmKey,
        close: Close,
        end: Option<&Event>,
        out: &mut Vec<Finding>,
    ) {
        let Some(mm) = self.mms.remove(&key) else {
            return;
        };
        let mut ctx = Ctx {
            era: &self.era,
            limits: &self.config.limits,
            out,
            stats: &mut self.stats,
            at: self.released,
        };
        mm.end(close, end, &mut self.globals, &mut ctx);
    }
}
