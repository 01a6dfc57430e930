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
//! int migrate_pages(from, new, free, private, mode, reason, …)    (5.x: no start tracepoint)
//! ```
//!
//! Per-PTE work stays in the kernel: only events touching an mm whose stack is
//! moving, a temporary stack, or a migration-entry wait while no migration
//! batch is in flight become records.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, kretprobe},
    programs::{BtfTracePointContext, FEntryContext, ProbeContext, RetProbeContext},
};
use monitor_common::{
    event::{EventId, Migrate, VmaRange},
    maps::{Stat, slot},
    probes::ProbeId,
};

use crate::{
    emit::{Seq, current_tid, emit, hit, stat, task_scratch, task_scratch_existing},
    kernel,
    maps::STACK_MOVES,
    stash::{self, inflight},
};

#[btf_tracepoint(function = "mm_migrate_pages_start")]
pub fn tp_mm_migrate_pages_start(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpMigrateStart);
    let mode: u32 = ctx.arg(0);
    let reason: u32 = ctx.arg(1);
    migrate_start(ProbeId::TpMigrateStart, mode, reason);
    0
}

/// A batch starts in the current task: reset its counters, count it in flight.
#[inline(always)]
fn migrate_start(probe: ProbeId, mode: u32, reason: u32) {
    let s = task_scratch(current_tid());
    if !s.is_null() {
        // SAFETY: valid map value pointer; only this task writes its entry.
        unsafe {
            if (*s).in_migrate == 0 {
                stash::enter(inflight::MIGRATIONS);
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
                stash::leave(inflight::MIGRATIONS);
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

#[btf_tracepoint(function = "mm_migrate_pages")]
pub fn tp_mm_migrate_pages_7(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpMigrateEnd7);
    let counts = [ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3), ctx.arg(4), 0];
    migrate_end(ProbeId::TpMigrateEnd7, counts, ctx.arg(5), ctx.arg(6));
    0
}

#[btf_tracepoint(function = "mm_migrate_pages")]
pub fn tp_mm_migrate_pages_8(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpMigrateEnd8);
    let counts = [ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3), ctx.arg(4), ctx.arg(5)];
    migrate_end(ProbeId::TpMigrateEnd8, counts, ctx.arg(6), ctx.arg(7));
    0
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

#[btf_tracepoint(function = "set_migration_pte")]
pub fn tp_set_migration_pte(_ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpSetMigrationPte);
    pte_event(false);
    0
}

#[btf_tracepoint(function = "remove_migration_pte")]
pub fn tp_remove_migration_pte(_ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpRemoveMigrationPte);
    pte_event(true);
    0
}

// Function rung ---------------------------------------------------------------

#[fentry]
pub fn fentry_remove_migration_ptes(_ctx: FEntryContext) -> u32 {
    // Counted only (HITS): on the migrate path the kernel inlines it, so the
    // per-VMA callback below is what sees every removal.
    hit(ProbeId::FentryRemoveMigrationPtes);
    0
}

#[kprobe]
pub fn kprobe_remove_migration_ptes(_ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeRemoveMigrationPtes);
    0
}

/// Reports `id` for `vma`'s mm if its stack is being moved.
#[inline(always)]
fn during_stack_move(probe: ProbeId, id: EventId, vma: u64, address: u64) {
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
fn removed(probe: ProbeId, vma: u64, address: u64) {
    pte_event(true);
    during_stack_move(probe, EventId::MigrationPteRemoved, vma, address);
}

#[fentry]
pub fn fentry_remove_migration_pte(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryRemoveMigrationPte);
    removed(ProbeId::FentryRemoveMigrationPte, ctx.arg(1), ctx.arg(2));
    0
}

#[kprobe]
pub fn kprobe_remove_migration_pte(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeRemoveMigrationPte);
    removed(
        ProbeId::KprobeRemoveMigrationPte,
        ctx.arg::<u64>(1).unwrap_or(0),
        ctx.arg::<u64>(2).unwrap_or(0),
    );
    0
}

/// A migration entry about to be installed into a temporary exec stack: the
/// rmap walk should have skipped this VMA (`invalid_migration_vma`).
#[inline(always)]
fn try_to_migrate_one(probe: ProbeId, vma: u64, address: u64) {
    if !kernel::is_temporary_stack(kernel::vma_flags(vma)) {
        return;
    }
    let mm = kernel::vma_mm(vma);
    if mm != 0 {
        super::exec::open_window_late(probe, mm, vma);
        vma_event(probe, EventId::MigrationEntryInTempStack, mm, vma, address);
    }
}

#[fentry]
pub fn fentry_try_to_migrate_one(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryTryToMigrateOne);
    try_to_migrate_one(ProbeId::FentryTryToMigrateOne, ctx.arg(1), ctx.arg(2));
    0
}

#[kprobe]
pub fn kprobe_try_to_migrate_one(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeTryToMigrateOne);
    try_to_migrate_one(
        ProbeId::KprobeTryToMigrateOne,
        ctx.arg::<u64>(1).unwrap_or(0),
        ctx.arg::<u64>(2).unwrap_or(0),
    );
    0
}

/// `invalid_migration_vma(vma, arg)` returns `vma_is_temporary_stack(vma)`;
/// the same predicate here names the VMAs the rmap walk skips.
#[kprobe]
pub fn kprobe_invalid_migration_vma(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeInvalidMigrationVma);
    let vma = ctx.arg::<u64>(0).unwrap_or(0);
    if kernel::is_temporary_stack(kernel::vma_flags(vma)) {
        let mm = kernel::vma_mm(vma);
        if mm != 0 {
            super::exec::open_window_late(ProbeId::KprobeInvalidMigrationVma, mm, vma);
            vma_event(ProbeId::KprobeInvalidMigrationVma, EventId::MigrationSkipTempStack, mm, vma, 0);
        }
    }
    0
}

/// A fault found a migration entry. Reported when no migration batch is in
/// flight (an entry nobody is about to remove); counted otherwise.
#[inline(always)]
fn entry_wait(probe: ProbeId, mm: u64, address: u64) {
    if stash::any(inflight::MIGRATIONS) {
        stat(Stat::MigrationPteOutsideBatch);
        return;
    }
    emit::<VmaRange>(probe, EventId::MigrationEntryWait, mm, Seq::Track, |p| {
        p.address = address;
        true
    });
}

#[fentry]
pub fn fentry_migration_entry_wait(ctx: FEntryContext) -> u32 {
    hit(ProbeId::FentryMigrationEntryWait);
    entry_wait(ProbeId::FentryMigrationEntryWait, ctx.arg(0), ctx.arg(2));
    0
}

#[kprobe]
pub fn kprobe_migration_entry_wait(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeMigrationEntryWait);
    entry_wait(
        ProbeId::KprobeMigrationEntryWait,
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(2).unwrap_or(0),
    );
    0
}

/// `migrate_pages()` itself, for kernels without `mm_migrate_pages_start`
/// (5.x): mode and reason are its 5th and 6th arguments on every version.
#[kprobe]
pub fn kprobe_migrate_pages(ctx: ProbeContext) -> u32 {
    hit(ProbeId::KprobeMigratePages);
    let mode = ctx.arg::<u64>(4).unwrap_or(0) as u32;
    let reason = ctx.arg::<u64>(5).unwrap_or(0) as u32;
    stash::put(slot::MIGRATE, [u64::from(mode), u64::from(reason), 0, 0]);
    migrate_start(ProbeId::KprobeMigratePages, mode, reason);
    0
}

#[kretprobe]
pub fn kretprobe_migrate_pages(ctx: RetProbeContext) -> u32 {
    hit(ProbeId::KretprobeMigratePages);
    let a = stash::take(slot::MIGRATE);
    if !a.found {
        return 0;
    }
    // Returns the number of pages not migrated, or -errno.
    let ret = ctx.ret::<u64>() as i32;
    let failed = if ret > 0 { ret as u64 } else { 0 };
    migrate_end(
        ProbeId::KretprobeMigratePages,
        [0, failed, 0, 0, 0, 0],
        a.args[0] as u32,
        a.args[1] as u32,
    );
    0
}
