//! Stable ids of the BPF programs ("probes"). Each program counts its own
//! invocations in the [`crate::maps::HITS`] per-CPU array at this index and
//! stamps it into every record it emits ([`crate::event::EventHeader::probe`]),
//! so userspace can tell which hook and which rung saw what.
//!
//! Ids 1–63 are tracepoint-rung programs, 64–127 function-rung programs
//! (fentry/fexit and kprobe/kretprobe). Ids are never reused.

/// Number of entries of the hit-count array.
pub const MAX_PROBES: u32 = 128;

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
