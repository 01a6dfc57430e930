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

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use monitor_common::{
    event::{EventId, Migrate},
    maps::Stat,
    probes::ProbeId,
};

use crate::emit::{Seq, current_tid, emit, hit, stat, task_scratch, task_scratch_existing};

#[btf_tracepoint(function = "mm_migrate_pages_start")]
pub fn tp_mm_migrate_pages_start(ctx: BtfTracePointContext) -> u32 {
    hit(ProbeId::TpMigrateStart);
    let mode: u32 = ctx.arg(0);
    let reason: u32 = ctx.arg(1);
    if let Some(s) = task_scratch(current_tid()) {
        // SAFETY: valid map value pointer.
        unsafe {
            (*s).in_migrate = 1;
            (*s).ptes_set = 0;
            (*s).ptes_removed = 0;
        }
    }
    emit::<Migrate>(ProbeId::TpMigrateStart, EventId::MigrateStart, 0, Seq::None, |p| {
        p.mode = mode;
        p.reason = reason;
        p.start_seen = 1;
        true
    });
    0
}

#[inline(always)]
fn migrate_end(probe: ProbeId, counts: [u64; 6], mode: u32, reason: u32) {
    let (mut set, mut removed, mut start_seen) = (0, 0, 0);
    if let Some(s) = task_scratch_existing(current_tid()) {
        // SAFETY: valid map value pointer.
        unsafe {
            if (*s).in_migrate != 0 {
                start_seen = 1;
                set = (*s).ptes_set;
                removed = (*s).ptes_removed;
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
    match task_scratch_existing(current_tid()) {
        // SAFETY: valid map value pointer; only this task writes its entry.
        Some(s) if unsafe { (*s).in_migrate } != 0 => unsafe {
            if removed {
                (*s).ptes_removed += 1;
            } else {
                (*s).ptes_set += 1;
            }
        },
        _ => stat(Stat::MigrationPteOutsideBatch),
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
