//! Stable ids of the BPF programs ("probes"). Each program counts its own
//! invocations in the [`crate::maps::HITS`] per-CPU array at this index and
//! stamps it into every record it emits ([`crate::event::EventHeader::probe`]),
//! so userspace can tell which hook and which rung saw what.
//!
//! Ids 1–63 are tracepoint-rung programs, 64–159 function-rung programs
//! (fentry/fexit and kprobe/kretprobe). Ids are never reused.

/// Number of entries of the hit-count array.
pub const MAX_PROBES: u32 = 160;

macro_rules! probes {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal => $program:literal, )*) => {
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ProbeId {
            $( $(#[$doc])* $variant = $id, )*
        }

        impl ProbeId {
            pub const ALL: &'static [ProbeId] = &[$(ProbeId::$variant,)*];

            /// The program's symbol name in the BPF object.
            pub const fn program(self) -> &'static str {
                match self {
                    $(ProbeId::$variant => $program,)*
                }
            }

            pub const fn from_u32(v: u32) -> Option<ProbeId> {
                match v {
                    $($id => Some(ProbeId::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

probes! {
    // Tracepoint rung (tp_btf: typed TP_PROTO arguments, no tracefs needed).
    /// `tp_btf/mark_victim` with `TP_PROTO(struct task_struct *task, uid_t uid)` (6.x).
    TpMarkVictim = 1 => "tp_mark_victim",
    TpStartReaping = 2 => "tp_start_task_reaping",
    TpFinishReaping = 3 => "tp_finish_task_reaping",
    TpSkipReaping = 4 => "tp_skip_task_reaping",
    /// `tp_btf/exit_mmap` (6.1+: the tracepoint came with the maple tree).
    TpExitMmap = 5 => "tp_exit_mmap",
    TpSchedExec = 6 => "tp_sched_process_exec",
    TpTaskRename = 7 => "tp_task_rename",
    TpMigrateStart = 8 => "tp_mm_migrate_pages_start",
    /// `mm_migrate_pages` with 7 arguments (before 6.12 added `large_folio_split`).
    TpMigrateEnd7 = 9 => "tp_mm_migrate_pages_7",
    /// `mm_migrate_pages` with 8 arguments (6.12+).
    TpMigrateEnd8 = 10 => "tp_mm_migrate_pages_8",
    TpSetMigrationPte = 11 => "tp_set_migration_pte",
    TpRemoveMigrationPte = 12 => "tp_remove_migration_pte",
    TpPageFaultKernel = 13 => "tp_page_fault_kernel",
    TpSchedFork = 14 => "tp_sched_process_fork",
    /// Classic tracepoint `syscalls/sys_enter_ioctl` (fires for ioctl only).
    TpSysEnterIoctl = 15 => "tp_sys_enter_ioctl",
    TpSysExitIoctl = 16 => "tp_sys_exit_ioctl",
    TpSysEnterMrelease = 17 => "tp_sys_enter_process_mrelease",
    TpSysExitMrelease = 18 => "tp_sys_exit_process_mrelease",

    // Function rung: fentry/fexit, then kprobe/kretprobe, per target.
    /// `__oom_reap_task_mm(struct mm_struct *mm)` → bool.
    FentryOomReap = 64 => "fentry_oom_reap",
    FexitOomReap = 65 => "fexit_oom_reap",
    KprobeOomReap = 66 => "kprobe_oom_reap",
    KretprobeOomReap = 67 => "kretprobe_oom_reap",
    /// `exit_mmap(struct mm_struct *mm)`.
    FentryExitMmap = 68 => "fentry_exit_mmap",
    FexitExitMmap = 69 => "fexit_exit_mmap",
    KprobeExitMmap = 70 => "kprobe_exit_mmap",
    KretprobeExitMmap = 71 => "kretprobe_exit_mmap",
    /// `unmap_page_range(tlb, vma, addr, end, details)`, filtered to the reaper.
    FentryUnmapPageRange = 72 => "fentry_unmap_page_range",
    FexitUnmapPageRange = 73 => "fexit_unmap_page_range",
    KprobeUnmapPageRange = 74 => "kprobe_unmap_page_range",
    KretprobeUnmapPageRange = 75 => "kretprobe_unmap_page_range",
    /// `shift_arg_pages(vma, shift)` / `relocate_vma_down(vma, shift)` → int.
    FentryStackMove = 76 => "fentry_stack_move",
    FexitStackMove = 77 => "fexit_stack_move",
    KprobeStackMove = 78 => "kprobe_stack_move",
    KretprobeStackMove = 79 => "kretprobe_stack_move",
    /// `mcopy_atomic(dst_mm, dst, src, len, mmap_changing, mode)` (≤ 6.3; also
    /// `mfill_atomic_copy` with that signature in 6.4–6.8) → ssize_t.
    FentryMfillMm = 80 => "fentry_mfill_mm",
    FexitMfillMm = 81 => "fexit_mfill_mm",
    KprobeMfillMm = 82 => "kprobe_mfill_mm",
    KretprobeMfillMm = 83 => "kretprobe_mfill_mm",
    /// `mfill_atomic_copy(ctx, dst, src, len, flags)` (6.9+) → ssize_t.
    FentryMfillCtx = 84 => "fentry_mfill_ctx",
    FexitMfillCtx = 85 => "fexit_mfill_ctx",
    KprobeMfillCtx = 86 => "kprobe_mfill_ctx",
    KretprobeMfillCtx = 87 => "kretprobe_mfill_ctx",
    /// `remove_migration_ptes(src, dst, locked|flags)`: counted (partly inlined).
    FentryRemoveMigrationPtes = 88 => "fentry_remove_migration_ptes",
    KprobeRemoveMigrationPtes = 89 => "kprobe_remove_migration_ptes",
    /// `remove_migration_pte(folio, vma, addr, arg)`: the rmap callback, with the mm.
    FentryRemoveMigrationPte = 90 => "fentry_remove_migration_pte",
    KprobeRemoveMigrationPte = 91 => "kprobe_remove_migration_pte",
    /// `handle_mm_fault(vma, address, flags, regs)` → vm_fault_t, filtered.
    FentryFault = 92 => "fentry_fault",
    FexitFault = 93 => "fexit_fault",
    KprobeFault = 94 => "kprobe_fault",
    KretprobeFault = 95 => "kretprobe_fault",
    /// `kthread_use_mm(mm)` / `kthread_unuse_mm(mm)`.
    FentryKthreadUseMm = 96 => "fentry_kthread_use_mm",
    KprobeKthreadUseMm = 97 => "kprobe_kthread_use_mm",
    FentryKthreadUnuseMm = 98 => "fentry_kthread_unuse_mm",
    KprobeKthreadUnuseMm = 99 => "kprobe_kthread_unuse_mm",
    /// `unmap_vmas(tlb, …)` inside `exit_mmap` of a tracked mm.
    FentryUnmapVmas = 100 => "fentry_unmap_vmas",
    FexitUnmapVmas = 101 => "fexit_unmap_vmas",
    KprobeUnmapVmas = 102 => "kprobe_unmap_vmas",
    KretprobeUnmapVmas = 103 => "kretprobe_unmap_vmas",
    /// `__mmdrop(mm)`: the mm_struct is freed.
    FentryMmdrop = 104 => "fentry_mmdrop",
    KprobeMmdrop = 105 => "kprobe_mmdrop",
    /// `try_to_migrate_one(folio, vma, address, arg)`: flags a temporary stack.
    FentryTryToMigrateOne = 106 => "fentry_try_to_migrate_one",
    KprobeTryToMigrateOne = 107 => "kprobe_try_to_migrate_one",
    /// `invalid_migration_vma(vma, arg)` (no BTF: kprobe only).
    KprobeInvalidMigrationVma = 108 => "kprobe_invalid_migration_vma",
    /// `migration_entry_wait(mm, pmd, address)`.
    FentryMigrationEntryWait = 109 => "fentry_migration_entry_wait",
    KprobeMigrationEntryWait = 110 => "kprobe_migration_entry_wait",
    /// `dup_userfaultfd(vma, fcs)` → int: raises the parent ctx's mmap_changing.
    FentryDupUffd = 111 => "fentry_dup_uffd",
    FexitDupUffd = 112 => "fexit_dup_uffd",
    KprobeDupUffd = 113 => "kprobe_dup_uffd",
    KretprobeDupUffd = 114 => "kretprobe_dup_uffd",
    /// `userfaultfd_event_wait_completion(ctx, ewq)`: the window closes.
    FexitUffdWait = 115 => "fexit_uffd_wait",
    KprobeUffdWait = 116 => "kprobe_uffd_wait",
    KretprobeUffdWait = 117 => "kretprobe_uffd_wait",
    /// `mremap_userfaultfd_prep(vma, vm_ctx)`.
    FexitMremapUffdPrep = 118 => "fexit_mremap_uffd_prep",
    KprobeMremapUffdPrep = 119 => "kprobe_mremap_uffd_prep",
    KretprobeMremapUffdPrep = 120 => "kretprobe_mremap_uffd_prep",
    /// `userfaultfd_unmap_prep(mm|vma, start, end, unmaps)` → int.
    FexitUnmapUffdPrep = 122 => "fexit_unmap_uffd_prep",
    KprobeUnmapUffdPrep = 123 => "kprobe_unmap_uffd_prep",
    KretprobeUnmapUffdPrep = 124 => "kretprobe_unmap_uffd_prep",
    /// `userfaultfd_remove(vma, start, end)`: MADV_DONTNEED/REMOVE on a registered range.
    FentryUffdRemove = 125 => "fentry_uffd_remove",
    KprobeUffdRemove = 126 => "kprobe_uffd_remove",
    /// `userfaultfd_ioctl(file, cmd, arg)` → long (every UFFDIO_COPY result).
    FexitUffdIoctl = 127 => "fexit_uffd_ioctl",
    KprobeUffdIoctl = 128 => "kprobe_uffd_ioctl",
    KretprobeUffdIoctl = 129 => "kretprobe_uffd_ioctl",
    /// `mark_oom_victim(tsk)` (5.x: the tracepoint has no task pointer).
    FexitMarkOomVictim = 130 => "fexit_mark_oom_victim",
    KprobeMarkOomVictim = 131 => "kprobe_mark_oom_victim",
    KretprobeMarkOomVictim = 132 => "kretprobe_mark_oom_victim",
    /// `migrate_pages(…, mode, reason, …)` → int (before 6.x tracepoints).
    KprobeMigratePages = 133 => "kprobe_migrate_pages",
    KretprobeMigratePages = 134 => "kretprobe_migrate_pages",
}

const _: () = {
    let mut i = 0;
    while i < ProbeId::ALL.len() {
        assert!((ProbeId::ALL[i] as u32) < MAX_PROBES);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_unique() {
        let mut ids = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::new();
        for p in ProbeId::ALL {
            assert!(ids.insert(*p as u32));
            assert!(names.insert(p.program()));
            assert_eq!(ProbeId::from_u32(*p as u32), Some(*p));
        }
    }
}
