//! `leftover_migration_entry`: page migration racing exec's relocation of its
//! temporary stack, which can leave migration entries behind (the 2.6.34 fix
//! "not migrating temporary stacks"; `docs/kernel.md`, "The four races").
//!
//! The exec window of an mm `M` is `stack_move_start`..`stack_move_end`
//! (`shift_arg_pages`/`relocate_vma_down`, function rung) or, on the
//! tracepoint rung, `exec_mm_switch`..`exec` of the exec'ing task (the move
//! happens somewhere inside). Migration events about `M` (function rung only:
//! the tracepoints carry no mm):
//! * `migration_entry_in_temp_stack` (`try_to_migrate_one` on a VMA still
//!   flagged `VM_STACK_INCOMPLETE_SETUP`): a migration entry installed into a
//!   temporary stack, which the 2010 fix forbids: **violation**, wherever it is;
//! * `migration_skip_temp_stack` (`invalid_migration_vma` returned true): the
//!   rmap walk met the temporary stack and skipped it, the fix at work: near
//!   miss (proved by the event itself, also outside an observed window);
//! * `migration_pte_removed` on `M` inside the window, or shortly before it
//!   (within `Limits::near_window_records` released records): the migration's
//!   undo walk touched the moving stack: near miss (inferred from the order);
//! * `migration_entry_wait` repeated by the same task on the same page of `M`
//!   while no `migrate_pages()` batch is open and none started since its first
//!   wait: consistent with a left-behind entry, but THP splits and device
//!   migration install migration entries outside batches, so this is only
//!   ever `uncertain` (`candidate = violation` in the details). The same
//!   holds for waits on PMD-level (THP) and hugetlb migration entries
//!   (`huge_migration_wait_start`, keyed by the entry itself: their hooks
//!   see no address), whose `huge_migration_wait_end` shows what the entry
//!   held after the wait.
//!
//! Not judged (documented in `docs/detection.md`): `migrate_end` with
//! `ptes_set != ptes_removed` on the tracepoint rung (entries of torn-down mms
//! are zapped, not removed; THP splits) is only counted in the statistics
//! (and not at all where the two count different units:
//! [`pte_counts_comparable`]), and
//! an exec window overlapping a batch on that rung cannot be attributed to an mm.

use serde_json::Value;

use super::{
    Close, Ctx, Globals, Grade, MmRule, Noted, RaceWindow, Taint, Verdict, Window,
    coverage::{Builder, RuleCoverage, Seen, seen},
    details, emit, hex, mm_rule_common, reuse_keeping,
};
use monitor_common::catalogue::{HookId, ProbeId};

use crate::{
    bounded::DetMap,
    event::{Data, Event, c_str},
    finding::FindingKind,
    limits::Limits,
    sequencer::MmKey,
    tracefile::HookStatus,
};

const KIND: FindingKind = FindingKind::LeftoverMigrationEntry;
const PAGE_MASK: u64 = !0xfff;
const MAX_PRE: usize = 64;
const MAX_WAIT_TRACKS: usize = 8;
const MAX_WAIT_EVENTS: usize = 8;

/// Migration batches in flight (not about one mm).
pub(crate) struct Global {
    open: DetMap<u32, Noted>,
    cap: usize,
    /// Number of batch starts seen so far.
    epoch: u64,
    last_end: Option<Noted>,
    /// Loss of batch events: waits can no longer be compared with batches.
    losses: Vec<String>,
    /// Whether a batch's `ptes_set` and `ptes_removed` count the same unit
    /// ([`pte_counts_comparable`]).
    comparable: bool,
}

/// Whether `migrate_end`'s `ptes_set` and `ptes_removed` count the same
/// thing under this plan: both from the per-PTE tracepoints
/// (`migrate:set_migration_pte`, `migrate:remove_migration_pte`: the
/// tracepoint rung of `remove_migration_ptes`) and no function-rung
/// `remove_migration_pte` also counting removals. On the function rung
/// removals are counted per rmap callback (`remove_migration_pte`, one per
/// VMA mapping the folio, however many PTEs it restores) while installs stay
/// per PTE: the two differ on most batches and mean nothing compared.
/// (Plans written before `set_migration_pte` was a hook of its own list its
/// program under `remove_migration_ptes`; 5.10 has no such tracepoint, so
/// its batches install nothing countable.)
pub(crate) fn pte_counts_comparable(hooks: &[HookStatus]) -> bool {
    let set_counted = seen(hooks, HookId::SetMigrationPte) == Seen::Tracepoint
        || hooks.iter().any(|h| {
            h.programs
                .contains(&crate::event::ProbeRef::known(ProbeId::TpSetMigrationPte))
        });
    set_counted
        && seen(hooks, HookId::RemoveMigrationPtes) == Seen::Tracepoint
        && seen(hooks, HookId::RemoveMigrationPte) == Seen::Unavailable
}

impl Global {
    pub(crate) fn new(limits: &Limits, hooks: &[HookStatus]) -> Self {
        Global {
            open: DetMap::default(),
            cap: limits.max_open_batches.max(1),
            epoch: 0,
            last_end: None,
            losses: Vec::new(),
            comparable: pte_counts_comparable(hooks),
        }
    }

    pub(crate) fn on_event(&mut self, ev: &Event, ctx: &mut Ctx<'_>) {
        match &ev.data {
            Data::MigrateStart(_) => {
                self.epoch += 1;
                if self.open.len() < self.cap || self.open.contains_key(&ev.pid) {
                    self.open.insert(ev.pid, ctx.note(ev));
                } else {
                    ctx.stats.batches_dropped += 1;
                }
            }
            Data::MigrateEnd(m) => {
                if let Some(start) = self.open.remove(&ev.pid) {
                    ctx.window_closed(RaceWindow::Migration, &start.ev, ev);
                }
                if self.comparable && m.start_seen != 0 && m.ptes_set != m.ptes_removed {
                    ctx.stats.unbalanced_migrate_batches += 1;
                }
                self.last_end = Some(ctx.note(ev));
                if self.open.is_empty() {
                    self.losses.clear();
                }
            }
            _ => {}
        }
    }

    pub(crate) fn on_loss(&mut self, note: &str) {
        if self.losses.len() < 4 && !self.losses.iter().any(|l| l == note) {
            self.losses.push(note.to_owned());
        }
    }
}

#[derive(Clone, Debug, Default)]
struct ExecWindow {
    /// `exec_mm_switch` (tracepoint rung substitute).
    tp_start: Option<Noted>,
    /// `stack_move_start` (function rung).
    fn_start: Option<Noted>,
    fn_open: bool,
}

#[derive(Clone, Debug)]
struct Episode {
    w: Window,
    skips: u64,
    removed: u64,
    in_temp: u64,
    in_window: bool,
    window_kind: &'static str,
    exec: Option<String>,
}

#[derive(Clone, Debug)]
struct WaitTrack {
    pid: u32,
    /// 0 for a PTE-level wait (then `page` is the page address), else the
    /// `HugeMigrationWait::level` (then `page` is the entry).
    level: u32,
    page: u64,
    epoch: u64,
    count: u32,
    events: Vec<Noted>,
    reported: bool,
}

pub(crate) struct State {
    key: MmKey,
    win: Option<ExecWindow>,
    /// Migration events about this mm seen outside any exec window.
    pre: Vec<Noted>,
    episode: Option<Episode>,
    waits: Vec<WaitTrack>,
    taint: Taint,
}

impl State {
    pub(crate) fn new(key: MmKey) -> Self {
        State {
            key,
            win: None,
            pre: Vec::new(),
            episode: None,
            waits: Vec::new(),
            taint: Taint::for_key(key),
        }
    }

    pub(crate) fn open_windows(&self) -> u64 {
        u64::from(self.episode.is_some())
    }

    pub(crate) fn on_loss(&mut self, note: &str) {
        if self.win.is_some() || self.episode.is_some() {
            self.taint.set(note);
        }
        if let Some(e) = &mut self.episode {
            e.w.lose(note);
        }
    }

    fn episode(&mut self, ctx: &Ctx<'_>) -> &mut Episode {
        let (win, taint) = (&self.win, &self.taint);
        self.episode.get_or_insert_with(|| {
            let in_window = win.is_some();
            let window_kind = match win {
                Some(w) if w.fn_start.is_some() => "stack_move",
                Some(_) => "exec_mm_switch..exec",
                None => "none",
            };
            let mut w = Window::new(ctx, taint);
            w.evidence.extend(
                win.iter()
                    .flat_map(|w| w.tp_start.iter().chain(w.fn_start.iter())),
            );
            Episode {
                w,
                skips: 0,
                removed: 0,
                in_temp: 0,
                in_window,
                window_kind,
                exec: None,
            }
        })
    }

    fn add(&mut self, n: Noted, ctx: &Ctx<'_>) {
        let e = self.episode(ctx);
        match n.ev.data {
            Data::MigrationSkipTempStack(_) => e.skips += 1,
            Data::MigrationPteRemoved(_) => e.removed += 1,
            Data::MigrationEntryInTempStack(_) => e.in_temp += 1,
            _ => {}
        }
        e.w.push(n);
    }

    /// An exec window opened: migration events seen just before it belong to it.
    fn attach_pre(&mut self, ctx: &mut Ctx<'_>) {
        let pre = std::mem::take(&mut self.pre);
        for n in pre {
            let near = ctx.at.saturating_sub(n.at) <= ctx.limits.near_window_records;
            let keep = match n.ev.data {
                Data::MigrationPteRemoved(_) => near,
                _ => true,
            };
            if keep {
                self.add(n, ctx);
            } else {
                ctx.stats.unplaced_pte_removals += 1;
            }
        }
        if let (Some(e), Some(w)) = (&mut self.episode, &self.win) {
            e.in_window = true;
            e.window_kind = if w.fn_start.is_some() {
                "stack_move"
            } else {
                "exec_mm_switch..exec"
            };
            e.w.evidence
                .extend(w.tp_start.iter().chain(w.fn_start.iter()));
        }
    }

    /// Events are noted (copied) only where they are kept.
    pub(crate) fn on_event(&mut self, ev: &Event, g: &mut Global, ctx: &mut Ctx<'_>) {
        match &ev.data {
            Data::ExecMmSwitch(_) => {
                self.win.get_or_insert_with(ExecWindow::default).tp_start = Some(ctx.note(ev));
                self.attach_pre(ctx);
            }
            Data::StackMoveStart(_) => {
                let w = self.win.get_or_insert_with(ExecWindow::default);
                w.fn_start = Some(ctx.note(ev));
                w.fn_open = true;
                self.attach_pre(ctx);
            }
            Data::StackMoveEnd(_) => {
                if let Some(e) = &mut self.episode {
                    e.w.push(ctx.note(ev));
                }
                let tp_open = match &mut self.win {
                    Some(w) => {
                        w.fn_open = false;
                        w.tp_start.is_some()
                    }
                    None => false,
                };
                if !tp_open {
                    self.close_window(Close::WindowEnd, ctx);
                }
            }
            Data::Exec(x) => {
                if let Some(e) = &mut self.episode {
                    e.exec = Some(c_str(&x.filename).into_owned());
                    e.w.push(ctx.note(ev));
                }
                self.close_window(Close::WindowEnd, ctx);
            }
            Data::MigrationEntryInTempStack(_) => self.add(ctx.note(ev), ctx),
            Data::MigrationSkipTempStack(_) | Data::MigrationPteRemoved(_) => {
                if self.win.is_some() {
                    self.add(ctx.note(ev), ctx);
                } else if self.pre.len() < MAX_PRE {
                    self.pre.push(ctx.note(ev));
                } else {
                    ctx.stats.evidence_omitted += 1;
                }
            }
            Data::MigrationEntryWait(r) => self.on_wait(ev, 0, r.address & PAGE_MASK, g, ctx),
            Data::HugeMigrationWaitStart(w) => self.on_wait(ev, w.level, w.entry, g, ctx),
            Data::HugeMigrationWaitEnd(w) => {
                if let Some(t) = self
                    .waits
                    .iter_mut()
                    .find(|t| t.pid == ev.pid && t.level == w.level && !t.reported)
                    && t.events.len() < MAX_WAIT_EVENTS
                {
                    t.events.push(ctx.note(ev));
                }
            }
            _ => {}
        }
        let open = self.win.is_some() || self.episode.is_some();
        self.taint.settle(open);
    }

    fn on_wait(&mut self, ev: &Event, level: u32, page: u64, g: &Global, ctx: &mut Ctx<'_>) {
        let same = |t: &WaitTrack| t.pid == ev.pid && t.level == level && t.page == page;
        if !g.open.is_empty() {
            // A batch is in flight: the entry is explained.
            self.waits.retain(|t| !same(t));
            return;
        }
        let threshold = ctx.limits.wait_repeat_threshold.max(2);
        let i = match self.waits.iter().position(same) {
            Some(i) => i,
            None => {
                if self.waits.len() >= MAX_WAIT_TRACKS {
                    self.waits.remove(0);
                }
                self.waits.push(WaitTrack {
                    pid: ev.pid,
                    level,
                    page,
                    epoch: g.epoch,
                    count: 0,
                    events: Vec::new(),
                    reported: false,
                });
                self.waits.len() - 1
            }
        };
        let Some(t) = self.waits.get_mut(i) else {
            return;
        };
        if t.epoch != g.epoch {
            // A batch started since the first wait: start over.
            *t = WaitTrack {
                pid: ev.pid,
                level,
                page,
                epoch: g.epoch,
                count: 0,
                events: Vec::new(),
                reported: false,
            };
        }
        if t.reported {
            return;
        }
        t.count += 1;
        if t.events.len() < MAX_WAIT_EVENTS {
            t.events.push(ctx.note(ev));
        }
        if t.count < threshold {
            return;
        }
        t.reported = true;
        let mut w = Window::new(ctx, &self.taint);
        for l in &g.losses {
            w.lose(l);
        }
        if let Some(end) = &g.last_end {
            w.evidence.push(end.clone());
        }
        w.evidence.extend(&t.events);
        let verdict = Verdict {
            kind: KIND,
            grade: Grade::Uncertain,
            key: self.key,
            explanation: format!(
                "Task {} (pid {}) waited {} times on {} with no \
                 migrate_pages() batch in flight and none started since its first wait: \
                 consistent with a migration entry left behind (the symptom the 2.6.34 temporary-stack fix removed), but \
                 THP splits and device migration install migration entries outside \
                 migrate_pages() batches, so it cannot be proven.",
                ev.comm(),
                ev.pid,
                t.count,
                match level {
                    0 => format!("a migration entry at {page:#x}"),
                    1 => format!("the PMD-level (THP) migration entry {page:#x}"),
                    _ => format!("the hugetlb migration entry {page:#x}"),
                }
            ),
            details: details([
                ("pattern", Value::from("repeated_migration_entry_wait")),
                ("candidate", Value::from("violation")),
                ("wait_count", Value::from(t.count)),
                (if level == 0 { "address" } else { "entry" }, hex(page)),
            ]),
            close: Close::WindowEnd,
        };
        emit(ctx, w, verdict);
    }

    fn close_window(&mut self, close: Close, ctx: &mut Ctx<'_>) {
        self.win = None;
        if let Some(e) = self.episode.take() {
            self.judge(e, close, ctx);
        }
    }

    pub(crate) fn end(&mut self, close: Close, ctx: &mut Ctx<'_>) {
        self.close_window(close, ctx);
        // Events never followed by a window of this mm: skips and entries in a
        // temporary stack prove themselves; a removal alone proves nothing.
        let pre = std::mem::take(&mut self.pre);
        for n in pre {
            if matches!(n.ev.data, Data::MigrationPteRemoved(_)) {
                ctx.stats.unplaced_pte_removals += 1;
            } else {
                self.add(n, ctx);
            }
        }
        if let Some(e) = self.episode.take() {
            self.judge(e, close, ctx);
        }
    }

    fn judge(&self, e: Episode, close: Close, ctx: &mut Ctx<'_>) {
        let place = if e.in_window {
            format!("during exec's temporary-stack window ({})", e.window_kind)
        } else {
            "outside any observed exec window (the temporary stack exists from \
             bprm_mm_init until setup_arg_pages finishes)"
                .to_owned()
        };
        let (grade, pattern, explanation) = if e.in_temp > 0 {
            (
                Grade::Violation,
                "migration_entry_in_temp_stack",
                format!(
                    "A migration installed {} migration entr{} into a VMA still \
                     flagged VM_STACK_INCOMPLETE_SETUP (exec's temporary stack) {place} \
                     (try_to_migrate_one): \
                     migration must skip temporary stacks since 2.6.34, because \
                     exec moves their page tables without the rmap locks and the entry can \
                     be left behind.",
                    e.in_temp,
                    if e.in_temp == 1 { "y" } else { "ies" }
                ),
            )
        } else if e.skips > 0 {
            (
                Grade::NearMissObserved,
                "migration_skip_temp_stack",
                format!(
                    "Migration's rmap walk reached exec's temporary stack {} time(s) {place} \
                     and skipped it (invalid_migration_vma returned true): the 2010 fix \
                     did its job.",
                    e.skips
                ),
            )
        } else if e.removed > 0 {
            (
                Grade::NearMissInferred,
                "migration_pte_removed_in_window",
                format!(
                    "remove_migration_pte walked this mm {} time(s) {place}: a migration \
                     raced exec's stack move and undid its attempt; no entry was left.",
                    e.removed
                ),
            )
        } else {
            return;
        };
        let mut d = details([
            ("pattern", Value::from(pattern)),
            ("skip_count", Value::from(e.skips)),
            ("pte_removed_count", Value::from(e.removed)),
            ("entry_in_temp_stack_count", Value::from(e.in_temp)),
            (
                "window",
                Value::from(if e.in_window { e.window_kind } else { "none" }),
            ),
        ]);
        if let Some(f) = e.exec {
            d.insert("exec_filename".into(), Value::from(f));
        }
        let verdict = Verdict::new(KIND, self.key, grade, explanation, d, close);
        emit(ctx, e.w, verdict);
    }
}

impl MmRule for State {
    const RULE: FindingKind = KIND;
    mm_rule_common!();
    reuse_keeping!(pre, waits);
    /// A fresh state has no window, episode or wait to end, join or count:
    /// only the events that open one, or are kept until one opens, make
    /// it; a wait on a migration entry only while no batch is in flight
    /// (a wait during a batch is explained and forgets earlier waits).
    fn wants(ev: &Event, g: &Globals) -> bool {
        match ev.data {
            Data::ExecMmSwitch(_)
            | Data::StackMoveStart(_)
            | Data::MigrationEntryInTempStack(_)
            | Data::MigrationSkipTempStack(_)
            | Data::MigrationPteRemoved(_) => true,
            Data::MigrationEntryWait(_) | Data::HugeMigrationWaitStart(_) => {
                g.migration.open.is_empty()
            }
            _ => false,
        }
    }
    fn on_event(&mut self, ev: &Event, g: &mut Globals, ctx: &mut Ctx<'_>) {
        State::on_event(self, ev, &mut g.migration, ctx);
    }
    fn end(&mut self, close: Close, _: Option<&Event>, _: &mut Globals, ctx: &mut Ctx<'_>) {
        State::end(self, close, ctx);
    }
}

/// What this rule can see under the hook plan.
pub(crate) fn coverage(hooks: &[HookStatus]) -> RuleCoverage {
    let mut b = Builder::new(FindingKind::LeftoverMigrationEntry);
    let try_one = seen(hooks, HookId::TryToMigrateOne) == Seen::Function;
    let invalid = seen(hooks, HookId::InvalidMigrationVma) == Seen::Function;
    let removed = seen(hooks, HookId::RemoveMigrationPtes) == Seen::Function;
    let wait = seen(hooks, HookId::MigrationEntryWait) == Seen::Function;
    let stack = seen(hooks, HookId::StackMove);
    let batches = seen(hooks, HookId::MigratePages) != Seen::Unavailable;
    if !(try_one || invalid || removed || wait) {
        for h in [
            HookId::TryToMigrateOne,
            HookId::InvalidMigrationVma,
            HookId::RemoveMigrationPtes,
            HookId::MigrationEntryWait,
        ] {
            b.missing(h);
        }
        b.disable(
            "no function-rung migration hook is attached (try_to_migrate_one, \
             invalid_migration_vma, remove_migration_ptes, migration_entry_wait): on the \
             tracepoint rung migration cannot be attributed to an mm",
        );
        return b.build();
    }
    if !try_one {
        b.missing(HookId::TryToMigrateOne);
        b.degrade("try_to_migrate_one is unavailable: a migration entry installed into a temporary exec stack (violation) is invisible");
    }
    if !invalid {
        b.missing(HookId::InvalidMigrationVma);
        b.degrade("invalid_migration_vma is unavailable: migration skipping a temporary stack (near miss) is invisible");
    }
    if !removed {
        b.missing(HookId::RemoveMigrationPtes);
        b.degrade("remove_migration_ptes is not on the function rung: migration PTE removals cannot be attributed to an mm");
    } else if stack == Seen::Unavailable {
        b.missing(HookId::StackMove);
        b.degrade("stack_move is unavailable: a migration PTE removal cannot be placed inside an exec stack move");
    }
    for huge in [
        HookId::PmdMigrationEntryWait,
        HookId::MigrationEntryWaitHuge,
    ] {
        if seen(hooks, huge) != Seen::Function {
            // Detail only: waits on PTE-level entries are the common case.
            b.missing(huge);
        }
    }
    if !wait {
        b.missing(HookId::MigrationEntryWait);
        b.degrade("migration_entry_wait is unavailable: repeated waits on a left-behind entry are invisible");
    } else if !batches {
        b.missing(HookId::MigratePages);
        b.degrade("migrate_pages is unavailable: migration-entry waits cannot be compared with migration batches");
    }
    b.build()
}
