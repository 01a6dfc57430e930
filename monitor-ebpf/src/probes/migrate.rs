//! Page migration, tracepoint rung. Per-PTE events are aggregated per task and
//! reported once per `migrate_pages()` batch.
//!
//! ```text
//! mm/migrate.c migrate_pages():
//!   trace_mm_migrate_pages_start(mode, reason)
//!   ... try_to_migrate() -> try_to_migrate_one(): trace_set_migration_pte(addr, pte, order)
//!   ... remove_migration_ptes() -> remove_migration_pte(): trace_remove_migration_pte(...)
//!   trace_mm_migrate_pages(stats.nr_succeeded, stats.nr_failed_pages, stats.nr_thp_succeeded,
//!                          stats.nr_thp_failed, stats.nr_thp_split, [stats.nr_split,] mode, reason)
//!
//! TP_PROTO(enum migrate_mode mode, int reason)                    mm_migrate_pages_start
//! TP_PROTO(ulong succ, ulong fail, ulong thp_succ, ulong thp_fail, ulong thp_split,
//!          enum migrate_mode mode, int reason)                    mm_migrate_pages (< 6.12)
//! TP_PROTO(ulong succ, ulong fail, ulong thp_succ, ulong thp_fail, ulong thp_split,
//!          ulong large_folio_split, enum migrate_mode mode, int reason)   (6.12+)
//! TP_PROTO(unsigned long addr, unsigned long pte, int order)      set/remove_migration_pte
//! ```
//!
//! The PTE tracepoints carry no mm (the VMA is a local of the caller), so on this
//! rung migration is attributed to the migrating task's batch, not to an mm.
//!
//! Function rung:
//!
//! ```text
//! void remove_migration_ptes(src, dst, bool locked | int flags)   partly inlined: counted
//! static bool remove_migration_pte(folio|page, vma, addr, arg)    rmap callback: has the mm
//! static bool try_to_migrate_one(folio, vma, address, arg)        installs migration entries
//! static bool invalid_migration_vma(vma, arg)                     true = temporary exec stack,
//!                                                                 skipped (the 2010 fix); no BTF
//! void migration_entry_wait(struct mm_struct *mm, pmd_t *pmd, unsigned long address)
//! void pmd_migration_entry_wait(struct mm_struct *mm, pmd_t *pmd)   THP migration entry
//! void migration_entry_wait_huge(struct vm_area_struct *vma, [mm | addr,] pte_t *ptep)
//!                                                                 hugetlb migration entry
//! int migrate_pages(from, new, free, private, mode, reason, …)    (5.x: no start tracepoint)
//! ```
//!
//! The PMD and hugetlb waits are reported at entry and return with the entry
//! as the hook reads it (`pmd_t`/`pte_t`, resolved from BTF): an entry still
//! there after the wait is what a left-behind migration entry looks like.
//!
//! Per-PTE work stays in the kernel: only events touching an mm whose stack is
//! moving, a temporary stack, or a migration-entry wait while no migration
//! batch is in flight become records.

use monitor_common::{
    catalogue::{EventId, HugeMigrationWait, Migrate, ProbeId, VmaRange},
    maps::{Stat, state},
};

use crate::{
    emit::{Seq, current_tid, emit, stat, task_scratch, task_scratch_existing},
    kernel,
    maps::STACK_MOVES,
    stamp::{function, programs},
    stash,
};

programs! {
    tp_btf tp_mm_migrate_pages_start(ctx) {
        let mode: u32 = ctx.arg(0);
        let reason: u32 = ctx.arg(1);
        migrate_start(P, mode, reason);
    }
    /// `mm_migrate_pages` with 7 arguments (before 6.12 added `large_folio_split`).
    tp_btf tp_mm_migrate_pages_7(ctx) {
        let counts = [ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3), ctx.arg(4), 0];
        migrate_end(P, counts, ctx.arg(5), ctx.arg(6));
    }
    /// `mm_migrate_pages` with 8 arguments (6.12+).
    tp_btf tp_mm_migrate_pages_8(ctx) {
        let counts = [ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3), ctx.arg(4), ctx.arg(5)];
        migrate_end(P, counts, ctx.arg(6), ctx.arg(7));
    }
    tp_btf tp_set_migration_pte(_ctx) {
        pte_event(false);
    }
    tp_btf tp_remove_migration_pte(_ctx) {
        pte_event(true);
    }
}

/// A batch starts in the current task: reset its counters, count it in flight.
#[inline(always)]
fn migrate_start(probe: ProbeId, mode: u32, reason: u32) {
    let s = task_scratch(current_tid());
    if !s.is_null() {
        // SAFETY: valid map value pointer; only this task writes its entry.
        unsafe {
            if (*s).in_migrate == 0 {
                stash::enter(state::MIGRATIONS);
            }
            (*s).in_migrate = 1;
            (*s).ptes_set = 0;
            (*s).ptes_removed = 0;
        }
    }
    emit::<Migrate>(probe, EventId::MigrateStart, 0, Seq::None, |p| {
        p.mode = mode;
        p.reason = reason;
        p.start_seen = 1;
        true
    });
}

#[inline(always)]
fn migrate_end(probe: ProbeId, counts: [u64; 6], mode: u32, reason: u32) {
    let (mut set, mut removed, mut start_seen) = (0, 0, 0);
    let s = task_scratch_existing(current_tid());
    if !s.is_null() {
        // SAFETY: valid map value pointer.
        unsafe {
            if (*s).in_migrate != 0 {
                start_seen = 1;
                set = (*s).ptes_set;
                removed = (*s).ptes_removed;
                stash::leave(state::MIGRATIONS);
            }
            (*s).in_migrate = 0;
            (*s).ptes_set = 0;
            (*s).ptes_removed = 0;
        }
    }
    emit::<Migrate>(probe, EventId::MigrateEnd, 0, Seq::None, |p| {
        p.succeeded = counts[0];
        p.failed = counts[1];
        p.thp_succeeded = counts[2];
        p.thp_failed = counts[3];
        p.thp_split = counts[4];
        p.large_folio_split = counts[5];
        p.mode = mode;
        p.reason = reason;
        p.ptes_set = set;
        p.ptes_removed = removed;
        p.start_seen = start_seen;
        true
    });
}

/// Counts one migration PTE event for the current task's batch.
#[inline(always)]
fn pte_event(removed: bool) {
    stat(if removed { Stat::MigrationPteRemoved } else { Stat::MigrationPteSet });
    let s = task_scratch_existing(current_tid());
    // SAFETY: valid map value pointer; only this task writes its entry.
    if !s.is_null() && unsafe { (*s).in_migrate } != 0 {
        unsafe {
            if removed {
                (*s).ptes_removed += 1;
            } else {
                (*s).ptes_set += 1;
            }
        }
    } else {
        stat(Stat::MigrationPteOutsideBatch);
    }
}

// Function rung ---------------------------------------------------------------

/// Counted only (HITS): on the migrate path the kernel inlines it, so the
/// per-VMA callback below is what sees every removal.
#[inline(always)]
fn counted(_probe: ProbeId, _a: &mut NoArgs) -> bool {
    false
}

function! {
    /// `void remove_migration_ptes(struct folio *src, struct folio *dst, bool|int)`
    RemoveMigrationPtes: NoArgs {};
    entry: fentry fentry_remove_migration_ptes, kprobe kprobe_remove_migration_ptes => counted;
}

/// Reports `id` for `vma`'s mm if its stack is being moved. While no exec
/// moves a stack anywhere this is one array read: no kernel read of the
/// VMA's mm, no `STACK_MOVES` lookup (the per-PTE storm's common case).
#[inline(always)]
fn during_stack_move(probe: ProbeId, id: EventId, vma: u64, address: u64) {
    if !stash::any(state::STACK_MOVES_IN_FLIGHT) {
        return;
    }
    let mm = kernel::vma_mm(vma);
    if mm == 0 {
        return;
    }
    // SAFETY: plain value lookup.
    if unsafe { STACK_MOVES.get(mm) }.is_none() {
        return;
    }
    super::exec::open_window_late(probe, mm, vma);
    vma_event(probe, id, mm, vma, address);
}

#[inline(always)]
fn vma_event(probe: ProbeId, id: EventId, mm: u64, vma: u64, address: u64) {
    emit::<VmaRange>(probe, id, mm, Seq::Track, |p| {
        p.address = address;
        p.vm_start = kernel::vma_start(vma);
        p.vm_end = kernel::vma_end(vma);
        p.vm_flags = kernel::vma_flags(vma);
        p.vm_end != 0
    });
}

#[inline(always)]
fn removed(probe: ProbeId, a: &mut PteArgs) -> bool {
    pte_event(true);
    during_stack_move(probe, EventId::MigrationPteRemoved, a.vma, a.addr);
    false
}

function! {
    /// `static bool remove_migration_pte(struct folio *, struct vm_area_struct *vma,
    /// unsigned long addr, void *arg)`: the rmap callback, with the mm.
    RemoveMigrationPte: PteArgs { vma: 1, addr: 2 };
    entry: fentry fentry_remove_migration_pte, kprobe kprobe_remove_migration_pte => removed;
}

/// Reports `id` if `vma` is exec's temporary stack (`vma_is_temporary_stack`).
#[inline(always)]
fn temp_stack_event(probe: ProbeId, id: EventId, vma: u64, address: u64) -> bool {
    if kernel::is_temporary_stack(kernel::vma_flags(vma)) {
        let mm = kernel::vma_mm(vma);
        if mm != 0 {
            super::exec::open_window_late(probe, mm, vma);
            vma_event(probe, id, mm, vma, address);
        }
    }
    false
}

/// A migration entry about to be installed into a temporary exec stack: the
/// rmap walk should have skipped this VMA (`invalid_migration_vma`).
#[inline(always)]
fn try_to_migrate_one(probe: ProbeId, a: &mut TryArgs) -> bool {
    temp_stack_event(probe, EventId::MigrationEntryInTempStack, a.vma, a.addr)
}

function! {
    /// `static bool try_to_migrate_one(struct folio *, struct vm_area_struct *vma,
    /// unsigned long address, void *arg)`: installs migration entries.
    TryToMigrateOne: TryArgs { vma: 1, addr: 2 };
    entry: fentry fentry_try_to_migrate_one, kprobe kprobe_try_to_migrate_one => try_to_migrate_one;
}

/// `invalid_migration_vma(vma, arg)` returns `vma_is_temporary_stack(vma)`;
/// the same predicate here names the VMAs the rmap walk skips.
#[inline(always)]
fn invalid_vma(probe: ProbeId, a: &mut InvalidArgs) -> bool {
    temp_stack_event(probe, EventId::MigrationSkipTempStack, a.vma, 0)
}

function! {
    /// `static bool invalid_migration_vma(struct vm_area_struct *vma, void *arg)`
    /// (no BTF: kprobe only).
    InvalidMigrationVma: InvalidArgs { vma: 0 };
    entry: kprobe kprobe_invalid_migration_vma => invalid_vma;
}

/// A fault found a migration entry. Reported when no migration batch is in
/// flight (an entry nobody is about to remove); counted otherwise.
#[inline(always)]
fn entry_wait(probe: ProbeId, a: &mut WaitArgs) -> bool {
    if stash::any(state::MIGRATIONS) {
        stat(Stat::MigrationWaitInBatch);
        return false;
    }
    let address = a.address;
    emit::<VmaRange>(probe, EventId::MigrationEntryWait, a.mm, Seq::Track, |p| {
        p.address = address;
        true
    });
    false
}

function! {
    /// `void migration_entry_wait(struct mm_struct *mm, pmd_t *pmd, unsigned long address)`
    MigrationEntryWait: WaitArgs { mm: 0, address: 2 };
    entry: fentry fentry_migration_entry_wait, kprobe kprobe_migration_entry_wait => entry_wait;
}

/// Page-table levels of [`HugeMigrationWait::level`].
const LEVEL_PMD: u32 = 1;
const LEVEL_HUGETLB: u32 = 2;

/// A PMD-level or hugetlb wait on a migration entry, reported (start, or end
/// on a tracked mm) like the PTE-level one: when no batch is in flight.
#[inline(always)]
fn huge_wait(probe: ProbeId, id: EventId, mm: u64, entry: u64, vma: u64, level: u32) -> bool {
    if stash::any(state::MIGRATIONS) {
        stat(Stat::MigrationWaitInBatch);
        return false;
    }
    let policy = if id == EventId::HugeMigrationWaitStart {
        Seq::Track
    } else {
        Seq::IfTracked
    };
    emit::<HugeMigrationWait>(probe, id, mm, policy, |p| {
        p.entry = entry;
        p.vm_start = kernel::vma_start(vma);
        p.level = level;
        mm != 0
    });
    true
}

#[inline(always)]
fn pmd_wait_start(probe: ProbeId, a: &mut PmdWaitArgs) -> bool {
    let entry = kernel::pmd_val(a.pmd);
    huge_wait(probe, EventId::HugeMigrationWaitStart, a.mm, entry, 0, LEVEL_PMD)
}

#[inline(always)]
fn pmd_wait_end(probe: ProbeId, a: &PmdWaitArgs, _ret: u64) {
    let entry = kernel::pmd_val(a.pmd);
    huge_wait(probe, EventId::HugeMigrationWaitEnd, a.mm, entry, 0, LEVEL_PMD);
}

function! {
    /// `void pmd_migration_entry_wait(struct mm_struct *mm, pmd_t *pmd)`
    /// (mm/migrate.c, `CONFIG_ARCH_ENABLE_THP_MIGRATION`).
    PmdMigrationEntryWait: PmdWaitArgs { mm: 0, pmd: 1 };
    entry: fentry fentry_pmd_wait, kprobe kprobe_pmd_wait => pmd_wait_start;
    exit: fexit fexit_pmd_wait, kretprobe kretprobe_pmd_wait => pmd_wait_end;
}

#[inline(always)]
fn hugetlb_wait(probe: ProbeId, id: EventId, vma: u64, pte: u64) -> bool {
    let entry = kernel::pte_val(pte);
    huge_wait(probe, id, kernel::vma_mm(vma), entry, vma, LEVEL_HUGETLB)
}

/// The programs of one signature of `migration_entry_wait_huge`: its pte
/// pointer is argument `$pte`.
macro_rules! huge_wait {
    ($(#[$doc:meta])* $args:ident { pte: $pte:literal }, $start:ident, $end:ident,
     $fentry:ident, $fexit:ident, $kprobe:ident, $kretprobe:ident) => {
        #[inline(always)]
        fn $start(probe: ProbeId, a: &mut $args) -> bool {
            hugetlb_wait(probe, EventId::HugeMigrationWaitStart, a.vma, a.pte)
        }

        #[inline(always)]
        fn $end(probe: ProbeId, a: &$args, _ret: u64) {
            hugetlb_wait(probe, EventId::HugeMigrationWaitEnd, a.vma, a.pte);
        }

        function! {
            $(#[$doc])*
            MigrationEntryWaitHuge: $args { vma: 0, pte: $pte };
            entry: fentry $fentry, kprobe $kprobe => $start;
            exit: fexit $fexit, kretprobe $kretprobe => $end;
        }
    };
}

huge_wait!(
    /// `void migration_entry_wait_huge(struct vm_area_struct *vma, pte_t *ptep)` (5.19–6.9).
    HugeWait2Args { pte: 1 }, huge2_start, huge2_end,
    fentry_huge_wait_2, fexit_huge_wait_2, kprobe_huge_wait_2, kretprobe_huge_wait_2
);
huge_wait!(
    /// `void migration_entry_wait_huge(struct vm_area_struct *vma, struct mm_struct *mm,
    /// pte_t *pte)` (≤ 5.18) / `(vma, unsigned long addr, pte_t *ptep)` (6.10+).
    HugeWait3Args { pte: 2 }, huge3_start, huge3_end,
    fentry_huge_wait_3, fexit_huge_wait_3, kprobe_huge_wait_3, kretprobe_huge_wait_3
);

/// `migrate_pages()` itself, for kernels without `mm_migrate_pages_start`
/// (5.x): mode and reason are its 5th and 6th arguments on every version.
#[inline(always)]
fn batch_start(probe: ProbeId, a: &mut BatchArgs) -> bool {
    migrate_start(probe, a.mode as u32, a.reason as u32);
    true
}

/// Returns the number of pages not migrated, or -errno.
#[inline(always)]
fn batch_end(probe: ProbeId, a: &BatchArgs, ret: u64) {
    let ret = ret as i32;
    let failed = if ret > 0 { ret as u64 } else { 0 };
    migrate_end(probe, [0, failed, 0, 0, 0, 0], a.mode as u32, a.reason as u32);
}

function! {
    /// `int migrate_pages(from, get_new, put_new, private, enum migrate_mode mode,
    /// int reason, unsigned int *ret_succeeded)`
    MigratePages: BatchArgs { mode: 4, reason: 5 };
    entry: kprobe kprobe_migrate_pages => batch_start;
    exit: kretprobe kretprobe_migrate_pages => batch_end;
}
