//! The hook plan, declared as data.
//!
//! Each [`HookSpec`] lists candidate ways to observe one kernel code path, best
//! first: function hooks (fentry/fexit, then kprobe/kretprobe, each under every
//! name the function has had) and then a tracepoint substitute. The loader
//! tries them in order and keeps the first whose programs all load and attach;
//! every better candidate that was refused is recorded with the reason. The
//! choice is made by trying, never by kernel version.

use monitor_common::{config::Field, probes::ProbeId};

/// Rungs of the ladder, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rung {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl Rung {
    pub const fn name(self) -> &'static str {
        match self {
            Rung::Fentry => "fentry",
            Rung::Kprobe => "kprobe",
            Rung::Tracepoint => "tracepoint",
        }
    }

    pub fn parse(s: &str) -> Option<Rung> {
        match s {
            "fentry" => Some(Rung::Fentry),
            "kprobe" => Some(Rung::Kprobe),
            "tracepoint" => Some(Rung::Tracepoint),
            _ => None,
        }
    }
}

/// What a tp_btf program expects of its tracepoint's `TP_PROTO`.
#[derive(Clone, Copy, Debug)]
pub enum Proto {
    /// The leading argument types must be exactly these (BTF spellings).
    Leading(&'static [&'static str]),
    /// The tracepoint must have exactly this many arguments.
    Arity(usize),
}

/// How one BPF program attaches.
#[derive(Clone, Copy, Debug)]
pub enum Attach {
    /// `tp_btf` on a raw tracepoint (typed arguments; needs BTF, not tracefs).
    TpBtf {
        tracepoint: &'static str,
        proto: Proto,
    },
    /// Classic tracepoint (needs tracefs for the id).
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Prog {
    pub probe: ProbeId,
    pub attach: Attach,
}

/// One way to cover a hook: a set of programs that must all attach.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub rung: Rung,
    /// What is attached to, for humans (`oom:start_task_reaping`, a symbol, …).
    pub target: &'static str,
    pub programs: &'static [Prog],
    /// Kernel fields the programs read; a missing one refuses the candidate.
    pub fields: &'static [Field],
}

#[derive(Clone, Copy, Debug)]
pub struct HookSpec {
    /// Stable hook name (trace headers, `monitor check`, metric labels).
    pub name: &'static str,
    /// The kernel path it observes.
    pub what: &'static str,
    pub candidates: &'static [Candidate],
}

const fn tp(probe: ProbeId, tracepoint: &'static str, proto: Proto) -> Prog {
    Prog {
        probe,
        attach: Attach::TpBtf { tracepoint, proto },
    }
}

const fn syscall_tp(probe: ProbeId, name: &'static str) -> Prog {
    Prog {
        probe,
        attach: Attach::Tracepoint {
            category: "syscalls",
            name,
        },
    }
}

const INT: Proto = Proto::Leading(&["int"]);

/// Every hook, in the order `monitor check` prints them.
pub const HOOKS: &[HookSpec] = &[
    HookSpec {
        name: "mark_victim",
        what: "mark_oom_victim(): the OOM killer picked a victim (signal->oom_mm)",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "oom:mark_victim",
            programs: &[tp(
                ProbeId::TpMarkVictim,
                "mark_victim",
                Proto::Leading(&["struct task_struct *"]),
            )],
            fields: &[
                Field::TaskSignal,
                Field::SignalOomMm,
                Field::TaskPid,
                Field::TaskTgid,
            ],
        }],
    },
    HookSpec {
        name: "oom_reap",
        what: "__oom_reap_task_mm(): the reaper unmaps a victim's mm",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "oom:start_task_reaping/finish_task_reaping/skip_task_reaping",
            programs: &[
                tp(ProbeId::TpStartReaping, "start_task_reaping", INT),
                tp(ProbeId::TpFinishReaping, "finish_task_reaping", INT),
                tp(ProbeId::TpSkipReaping, "skip_task_reaping", INT),
            ],
            fields: &[],
        }],
    },
    HookSpec {
        name: "exit_mmap",
        what: "exit_mmap(): the last mm_users reference tears the address space down",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "mmap:exit_mmap",
            programs: &[tp(
                ProbeId::TpExitMmap,
                "exit_mmap",
                Proto::Leading(&["struct mm_struct *"]),
            )],
            fields: &[],
        }],
    },
    HookSpec {
        name: "exec",
        what: "exec_binprm(): exec succeeded (after the stack was relocated)",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "sched:sched_process_exec",
            programs: &[tp(
                ProbeId::TpSchedExec,
                "sched_process_exec",
                Proto::Leading(&["struct task_struct *", "pid_t", "struct linux_binprm *"]),
            )],
            fields: &[Field::BprmFilename],
        }],
    },
    HookSpec {
        name: "stack_move",
        what: "shift_arg_pages()/relocate_vma_down(): exec moves its temporary stack",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "task:task_rename (window start; the window ends at sched:sched_process_exec)",
            programs: &[tp(
                ProbeId::TpTaskRename,
                "task_rename",
                Proto::Leading(&["struct task_struct *"]),
            )],
            fields: &[],
        }],
    },
    HookSpec {
        name: "migrate_pages",
        what: "migrate_pages(): a migration batch (compaction, NUMA, migrate_pages(2))",
        candidates: &[
            Candidate {
                rung: Rung::Tracepoint,
                target: "migrate:mm_migrate_pages_start/mm_migrate_pages (8 args, 6.12+)",
                programs: &[
                    tp(
                        ProbeId::TpMigrateStart,
                        "mm_migrate_pages_start",
                        Proto::Arity(2),
                    ),
                    tp(ProbeId::TpMigrateEnd8, "mm_migrate_pages", Proto::Arity(8)),
                ],
                fields: &[],
            },
            Candidate {
                rung: Rung::Tracepoint,
                target: "migrate:mm_migrate_pages_start/mm_migrate_pages (7 args)",
                programs: &[
                    tp(
                        ProbeId::TpMigrateStart,
                        "mm_migrate_pages_start",
                        Proto::Arity(2),
                    ),
                    tp(ProbeId::TpMigrateEnd7, "mm_migrate_pages", Proto::Arity(7)),
                ],
                fields: &[],
            },
        ],
    },
    HookSpec {
        name: "set_migration_pte",
        what: "try_to_migrate_one(): a migration entry is installed (counted per batch)",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "migrate:set_migration_pte",
            programs: &[tp(
                ProbeId::TpSetMigrationPte,
                "set_migration_pte",
                Proto::Arity(3),
            )],
            fields: &[],
        }],
    },
    HookSpec {
        name: "remove_migration_ptes",
        what: "remove_migration_ptes()/remove_migration_pte(): migration entries are removed",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "migrate:remove_migration_pte",
            programs: &[tp(
                ProbeId::TpRemoveMigrationPte,
                "remove_migration_pte",
                Proto::Arity(3),
            )],
            fields: &[],
        }],
    },
    HookSpec {
        name: "handle_mm_fault",
        what: "handle_mm_fault(): faults on MMF_UNSTABLE mms or by kernel threads",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "exceptions:page_fault_kernel",
            programs: &[tp(
                ProbeId::TpPageFaultKernel,
                "page_fault_kernel",
                Proto::Leading(&["unsigned long", "struct pt_regs *", "unsigned long"]),
            )],
            fields: &[],
        }],
    },
    HookSpec {
        name: "fork",
        what: "kernel_clone(): fork of a tracked mm (after the userfaultfd fork handshake)",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "sched:sched_process_fork",
            programs: &[tp(
                ProbeId::TpSchedFork,
                "sched_process_fork",
                Proto::Leading(&["struct task_struct *", "struct task_struct *"]),
            )],
            fields: &[],
        }],
    },
    HookSpec {
        name: "uffd_ioctl",
        what: "userfaultfd_ioctl(UFFDIO_COPY): result of every copy (-EAGAIN while the mm changes)",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "syscalls:sys_enter_ioctl/sys_exit_ioctl",
            programs: &[
                syscall_tp(ProbeId::TpSysEnterIoctl, "sys_enter_ioctl"),
                syscall_tp(ProbeId::TpSysExitIoctl, "sys_exit_ioctl"),
            ],
            fields: &[
                Field::TaskFiles,
                Field::FilesFdt,
                Field::FdtableFd,
                Field::FdtableMaxFds,
                Field::FileFop,
                Field::FopsUnlockedIoctl,
                Field::FilePrivateData,
                Field::UffdCtxMm,
                Field::UffdCtxMmapChanging,
            ],
        }],
    },
    HookSpec {
        name: "process_mrelease",
        what: "process_mrelease(2): a reap driven by userspace (lmkd, systemd-oomd)",
        candidates: &[Candidate {
            rung: Rung::Tracepoint,
            target: "syscalls:sys_enter_process_mrelease/sys_exit_process_mrelease",
            programs: &[
                syscall_tp(ProbeId::TpSysEnterMrelease, "sys_enter_process_mrelease"),
                syscall_tp(ProbeId::TpSysExitMrelease, "sys_exit_process_mrelease"),
            ],
            fields: &[],
        }],
    },
];

/// Finds a hook by name.
pub fn hook(name: &str) -> Option<&'static HookSpec> {
    HOOKS.iter().find(|h| h.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn hooks_are_well_formed() {
        let mut names = BTreeSet::new();
        for h in HOOKS {
            assert!(names.insert(h.name), "duplicate hook {}", h.name);
            assert!(!h.candidates.is_empty(), "{} has no candidate", h.name);
            let rungs: Vec<Rung> = h.candidates.iter().map(|c| c.rung).collect();
            let mut sorted = rungs.clone();
            sorted.sort();
            assert_eq!(
                rungs, sorted,
                "{}: candidates must be best rung first",
                h.name
            );
            for c in h.candidates {
                assert!(!c.programs.is_empty());
            }
        }
    }

    /// Every tracepoint-rung program in the BPF object is used by some hook,
    /// so nothing is built that the loader can never attach.
    #[test]
    fn every_probe_is_planned() {
        let planned: BTreeSet<ProbeId> = HOOKS
            .iter()
            .flat_map(|h| h.candidates.iter())
            .flat_map(|c| c.programs.iter().map(|p| p.probe))
            .collect();
        for p in ProbeId::ALL {
            assert!(planned.contains(p), "{p:?} is in no hook's plan");
        }
    }
}
