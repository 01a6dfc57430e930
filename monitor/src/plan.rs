//! The hook plan, declared as data.
//!
//! Each [`HookSpec`] lists candidate ways to observe one kernel code path in
//! order of preference: for the function hooks, fentry/fexit first, then
//! kprobe/kretprobe (each under every name and signature the function has
//! had), then a tracepoint substitute. The loader tries them in order and keeps
//! the first whose programs all load and attach; every better candidate that
//! was refused is recorded with the reason. The choice is made by trying,
//! never by kernel version.

pub use monitor_common::catalogue::Rung;
use monitor_common::{
    catalogue::{HookId, ProbeId},
    config::Field,
};

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
    /// fentry/fexit on the candidate's function (needs BTF and ftrace).
    FEntry,
    FExit,
    /// kprobe/kretprobe on the candidate's function or a compiler clone of it.
    KProbe,
    KRetProbe,
}

#[derive(Clone, Copy, Debug)]
pub struct Prog {
    pub probe: ProbeId,
    pub attach: Attach,
    /// For function rungs: attach to this symbol instead of the candidate's.
    pub symbol: Option<&'static str>,
}

/// The function a function-rung candidate attaches to, and the prototype its
/// programs assume (checked against BTF when the kernel describes it).
#[derive(Clone, Copy, Debug)]
pub struct Func {
    pub symbol: &'static str,
    /// Parameter types at given positions (BTF spellings, typedef names kept).
    pub params: &'static [(usize, &'static str)],
    /// Exact parameter count, if the programs read the return value with fexit
    /// (whose position follows the arguments) or depend on it.
    pub arity: Option<usize>,
}

/// One way to cover a hook: a set of programs that must all attach.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub rung: Rung,
    /// What is attached to, for humans (`oom:start_task_reaping`, a symbol, …).
    pub target: &'static str,
    /// For function rungs: the function and its expected prototype.
    pub func: Option<Func>,
    pub programs: &'static [Prog],
    /// Kernel fields the programs read; a missing one refuses the candidate.
    pub fields: &'static [Field],
}

#[derive(Clone, Copy, Debug)]
pub struct HookSpec {
    /// The hook (its name is in the catalogue).
    pub id: HookId,
    /// The kernel path it observes.
    pub what: &'static str,
    /// One of the six function hooks the product is built around (their best
    /// rung is a function hook; `monitor check --strict` insists on it).
    pub primary: bool,
    pub candidates: &'static [Candidate],
}

const fn tp(probe: ProbeId, tracepoint: &'static str, proto: Proto) -> Prog {
    p(probe, Attach::TpBtf { tracepoint, proto })
}

const fn syscall_tp(probe: ProbeId, name: &'static str) -> Prog {
    p(
        probe,
        Attach::Tracepoint {
            category: "syscalls",
            name,
        },
    )
}

const fn p(probe: ProbeId, attach: Attach) -> Prog {
    Prog {
        probe,
        attach,
        symbol: None,
    }
}

/// A function-rung program attached to another symbol than its candidate's.
const fn p_at(probe: ProbeId, attach: Attach, symbol: &'static str) -> Prog {
    Prog {
        probe,
        attach,
        symbol: Some(symbol),
    }
}

const fn func(
    symbol: &'static str,
    params: &'static [(usize, &'static str)],
    arity: Option<usize>,
) -> Func {
    Func {
        symbol,
        params,
        arity,
    }
}

/// fentry(+fexit) and kprobe(+kretprobe) candidates for one function.
macro_rules! fn_rungs {
    ($symbol:literal, $params:expr, $arity:expr, fields: $fields:expr,
     fentry: [$($fe:expr),*], kprobe: [$($kp:expr),*]) => {
        [
            Candidate {
                rung: Rung::Fentry,
                target: $symbol,
                func: Some(func($symbol, $params, $arity)),
                programs: &[$($fe),*],
                fields: $fields,
            },
            Candidate {
                rung: Rung::Kprobe,
                target: $symbol,
                func: Some(func($symbol, $params, $arity)),
                programs: &[$($kp),*],
                fields: $fields,
            },
        ]
    };
}

use Attach::{FEntry, FExit, KProbe, KRetProbe};
use ProbeId as P;

const INT: Proto = Proto::Leading(&["int"]);
const MM: &[(usize, &str)] = &[(0, "struct mm_struct *")];
const VMA: &str = "struct vm_area_struct *";

const OOM_REAP: [Candidate; 2] = fn_rungs!("__oom_reap_task_mm", MM, Some(1), fields: &[],
    fentry: [p(P::FentryOomReap, FEntry), p(P::FexitOomReap, FExit)],
    kprobe: [p(P::KprobeOomReap, KProbe), p(P::KretprobeOomReap, KRetProbe)]);
const EXIT_MMAP: [Candidate; 2] = fn_rungs!("exit_mmap", MM, Some(1), fields: &[],
    fentry: [p(P::FentryExitMmap, FEntry), p(P::FexitExitMmap, FExit)],
    kprobe: [p(P::KprobeExitMmap, KProbe), p(P::KretprobeExitMmap, KRetProbe)]);
const UNMAP_PAGE_RANGE: [Candidate; 2] = fn_rungs!("unmap_page_range",
    &[(0, "struct mmu_gather *"), (1, VMA), (2, "unsigned long")], None,
    fields: &[Field::VmaVmStart, Field::VmaVmEnd, Field::VmaVmFlags],
    fentry: [p(P::FentryUnmapPageRange, FEntry), p(P::FexitUnmapPageRange, FExit)],
    kprobe: [p(P::KprobeUnmapPageRange, KProbe), p(P::KretprobeUnmapPageRange, KRetProbe)]);
const UNMAP_VMAS: [Candidate; 2] = fn_rungs!("unmap_vmas", &[(0, "struct mmu_gather *")], None,
    fields: &[Field::MmuGatherMm],
    fentry: [p(P::FentryUnmapVmas, FEntry), p(P::FexitUnmapVmas, FExit)],
    kprobe: [p(P::KprobeUnmapVmas, KProbe), p(P::KretprobeUnmapVmas, KRetProbe)]);
const MMDROP: [Candidate; 2] = fn_rungs!("__mmdrop", MM, Some(1), fields: &[],
    fentry: [p(P::FentryMmdrop, FEntry)],
    kprobe: [p(P::KprobeMmdrop, KProbe)]);
const STACK_FIELDS: &[Field] = &[Field::VmaVmStart, Field::VmaVmEnd, Field::VmaVmFlags];
const RELOCATE_VMA_DOWN: [Candidate; 2] = fn_rungs!("relocate_vma_down",
    &[(0, VMA), (1, "unsigned long")], Some(2), fields: STACK_FIELDS,
    fentry: [p(P::FentryStackMove, FEntry), p(P::FexitStackMove, FExit)],
    kprobe: [p(P::KprobeStackMove, KProbe), p(P::KretprobeStackMove, KRetProbe)]);
const SHIFT_ARG_PAGES: [Candidate; 2] = fn_rungs!("shift_arg_pages",
    &[(0, VMA), (1, "unsigned long")], Some(2), fields: STACK_FIELDS,
    fentry: [p(P::FentryStackMove, FEntry), p(P::FexitStackMove, FExit)],
    kprobe: [p(P::KprobeStackMove, KProbe), p(P::KretprobeStackMove, KRetProbe)]);
const REMOVE_MIGRATION_PTES: [Candidate; 2] = fn_rungs!("remove_migration_ptes", &[], None,
    fields: &[],
    fentry: [p(P::FentryRemoveMigrationPtes, FEntry)],
    kprobe: [p(P::KprobeRemoveMigrationPtes, KProbe)]);
const REMOVE_MIGRATION_PTE: [Candidate; 2] = fn_rungs!("remove_migration_pte",
    &[(1, VMA), (2, "unsigned long")], None,
    fields: &[Field::VmaVmStart, Field::VmaVmEnd, Field::VmaVmFlags],
    fentry: [p(P::FentryRemoveMigrationPte, FEntry)],
    kprobe: [p(P::KprobeRemoveMigrationPte, KProbe)]);
const TRY_TO_MIGRATE_ONE: [Candidate; 2] = fn_rungs!("try_to_migrate_one",
    &[(1, VMA), (2, "unsigned long")], None, fields: &[Field::VmaVmFlags],
    fentry: [p(P::FentryTryToMigrateOne, FEntry)],
    kprobe: [p(P::KprobeTryToMigrateOne, KProbe)]);
const MIGRATION_ENTRY_WAIT: [Candidate; 2] = fn_rungs!("migration_entry_wait",
    &[(0, "struct mm_struct *"), (2, "unsigned long")], None, fields: &[],
    fentry: [p(P::FentryMigrationEntryWait, FEntry)],
    kprobe: [p(P::KprobeMigrationEntryWait, KProbe)]);
const PMD_MIGRATION_WAIT: [Candidate; 2] = fn_rungs!("pmd_migration_entry_wait",
    &[(0, "struct mm_struct *"), (1, "pmd_t *")], Some(2), fields: &[Field::PmdVal],
    fentry: [p(P::FentryPmdWait, FEntry), p(P::FexitPmdWait, FExit)],
    kprobe: [p(P::KprobePmdWait, KProbe), p(P::KretprobePmdWait, KRetProbe)]);
const HUGE_WAIT_2: [Candidate; 2] = fn_rungs!("migration_entry_wait_huge",
    &[(0, VMA), (1, "pte_t *")], Some(2), fields: &[Field::PteVal, Field::VmaVmStart],
    fentry: [p(P::FentryHugeWait2, FEntry), p(P::FexitHugeWait2, FExit)],
    kprobe: [p(P::KprobeHugeWait2, KProbe), p(P::KretprobeHugeWait2, KRetProbe)]);
const HUGE_WAIT_3: [Candidate; 2] = fn_rungs!("migration_entry_wait_huge",
    &[(0, VMA), (2, "pte_t *")], Some(3), fields: &[Field::PteVal, Field::VmaVmStart],
    fentry: [p(P::FentryHugeWait3, FEntry), p(P::FexitHugeWait3, FExit)],
    kprobe: [p(P::KprobeHugeWait3, KProbe), p(P::KretprobeHugeWait3, KRetProbe)]);
const HANDLE_MM_FAULT: [Candidate; 2] = fn_rungs!("handle_mm_fault",
    &[(0, VMA), (1, "unsigned long"), (2, "unsigned int")], Some(4), fields: &[],
    fentry: [p(P::FentryFault, FEntry), p(P::FexitFault, FExit)],
    kprobe: [p(P::KprobeFault, KProbe), p(P::KretprobeFault, KRetProbe)]);
const KTHREAD_USE_MM: [Candidate; 2] = fn_rungs!("kthread_use_mm", MM, Some(1), fields: &[],
    fentry: [p(P::FentryKthreadUseMm, FEntry)],
    kprobe: [p(P::KprobeKthreadUseMm, KProbe)]);
const UFFD_FIELDS: &[Field] = &[Field::UffdCtxMm, Field::UffdCtxMmapChanging];
const MFILL_CTX: [Candidate; 2] = fn_rungs!("mfill_atomic_copy",
    &[(0, "struct userfaultfd_ctx *"), (1, "unsigned long"), (3, "unsigned long")], Some(5),
    fields: UFFD_FIELDS,
    fentry: [p(P::FentryMfillCtx, FEntry), p(P::FexitMfillCtx, FExit)],
    kprobe: [p(P::KprobeMfillCtx, KProbe), p(P::KretprobeMfillCtx, KRetProbe)]);
const MFILL_MM: [Candidate; 2] = fn_rungs!("mfill_atomic_copy",
    &[(0, "struct mm_struct *"), (1, "unsigned long"), (3, "unsigned long")], Some(6),
    fields: &[],
    fentry: [p(P::FentryMfillMm, FEntry), p(P::FexitMfillMm, FExit)],
    kprobe: [p(P::KprobeMfillMm, KProbe), p(P::KretprobeMfillMm, KRetProbe)]);
const MCOPY_ATOMIC: [Candidate; 2] = fn_rungs!("mcopy_atomic",
    &[(0, "struct mm_struct *"), (1, "unsigned long"), (3, "unsigned long")], Some(6),
    fields: &[],
    fentry: [p(P::FentryMfillMm, FEntry), p(P::FexitMfillMm, FExit)],
    kprobe: [p(P::KprobeMfillMm, KProbe), p(P::KretprobeMfillMm, KRetProbe)]);
const UFFD_IOCTL: [Candidate; 2] = fn_rungs!("userfaultfd_ioctl",
    &[(0, "struct file *"), (1, "unsigned int"), (2, "unsigned long")], Some(3),
    fields: &[Field::FilePrivateData, Field::UffdCtxMm, Field::UffdCtxMmapChanging],
    fentry: [p(P::FexitUffdIoctl, FExit)],
    kprobe: [p(P::KprobeUffdIoctl, KProbe), p(P::KretprobeUffdIoctl, KRetProbe)]);
const DUP_UFFD: [Candidate; 2] = fn_rungs!("dup_userfaultfd",
    &[(0, VMA), (1, "struct list_head *")], Some(2),
    fields: &[Field::VmaUffdCtx, Field::UffdCtxMm, Field::UffdCtxMmapChanging],
    fentry: [p(P::FentryDupUffd, FEntry), p(P::FexitDupUffd, FExit)],
    kprobe: [p(P::KprobeDupUffd, KProbe), p(P::KretprobeDupUffd, KRetProbe)]);
const UFFD_WAIT: [Candidate; 2] = fn_rungs!("userfaultfd_event_wait_completion",
    &[(0, "struct userfaultfd_ctx *"), (1, "struct userfaultfd_wait_queue *")], Some(2),
    fields: &[Field::UffdCtxMm, Field::UffdCtxMmapChanging, Field::UffdWqMsgEvent],
    fentry: [p(P::FentryUffdWait, FEntry), p(P::FexitUffdWait, FExit)],
    kprobe: [p(P::KprobeUffdWait, KProbe), p(P::KretprobeUffdWait, KRetProbe)]);
const UFFD_REMAP: [Candidate; 2] = fn_rungs!("mremap_userfaultfd_prep",
    &[(0, VMA), (1, "struct vm_userfaultfd_ctx *")], Some(2),
    fields: &[Field::VmUffdCtxCtx, Field::VmaUffdCtx, Field::UffdCtxMm],
    fentry: [p(P::FexitMremapUffdPrep, FExit)],
    kprobe: [p(P::KprobeMremapUffdPrep, KProbe), p(P::KretprobeMremapUffdPrep, KRetProbe)]);
const UFFD_UNMAP: [Candidate; 2] = fn_rungs!("userfaultfd_unmap_prep",
    &[(1, "unsigned long"), (2, "unsigned long"), (3, "struct list_head *")], Some(4),
    fields: &[
        Field::ListHeadNext,
        Field::ListHeadPrev,
        Field::UnmapCtxCtx,
        Field::UnmapCtxList,
        Field::UnmapCtxStart,
        Field::UnmapCtxEnd,
        Field::UffdCtxMm,
    ],
    fentry: [p(P::FexitUnmapUffdPrep, FExit)],
    kprobe: [p(P::KprobeUnmapUffdPrep, KProbe), p(P::KretprobeUnmapUffdPrep, KRetProbe)]);
const UFFD_RELEASE: [Candidate; 2] = fn_rungs!("userfaultfd_release",
    &[(0, "struct inode *"), (1, "struct file *")], None,
    fields: &[Field::FileFop, Field::FopsUnlockedIoctl, Field::FilePrivateData],
    fentry: [p(P::FentryUffdRelease, FEntry)],
    kprobe: [p(P::KprobeUffdRelease, KProbe)]);
const UFFD_REMOVE: [Candidate; 2] = fn_rungs!("userfaultfd_remove",
    &[(0, VMA), (1, "unsigned long"), (2, "unsigned long")], None,
    fields: &[Field::VmaUffdCtx, Field::UffdCtxFeatures, Field::UffdCtxMm],
    fentry: [p(P::FentryUffdRemove, FEntry)],
    kprobe: [p(P::KprobeUffdRemove, KProbe)]);
const MARK_OOM_VICTIM: [Candidate; 2] = fn_rungs!("mark_oom_victim",
    &[(0, "struct task_struct *")], Some(1),
    fields: &[Field::TaskSignal, Field::SignalOomMm, Field::TaskPid, Field::TaskTgid],
    fentry: [p(P::FexitMarkOomVictim, FExit)],
    kprobe: [p(P::KprobeMarkOomVictim, KProbe), p(P::KretprobeMarkOomVictim, KRetProbe)]);

/// Concatenates candidate arrays at compile time.
macro_rules! cands {
    ($($c:expr),* $(,)?) => {{
        const PARTS: &[&[Candidate]] = &[$(&$c),*];
        const N: usize = {
            let mut n = 0;
            let mut i = 0;
            while i < PARTS.len() {
                n += PARTS[i].len();
                i += 1;
            }
            n
        };
        const ALL: [Candidate; N] = {
            let mut out = [TP_PLACEHOLDER; N];
            let (mut k, mut i) = (0, 0);
            while i < PARTS.len() {
                let mut j = 0;
                while j < PARTS[i].len() {
                    out[k] = PARTS[i][j];
                    k += 1;
                    j += 1;
                }
                i += 1;
            }
            out
        };
        &ALL
    }};
}

const TP_PLACEHOLDER: Candidate = Candidate {
    rung: Rung::Tracepoint,
    target: "",
    func: None,
    programs: &[],
    fields: &[],
};

const fn tp_cand(
    target: &'static str,
    programs: &'static [Prog],
    fields: &'static [Field],
) -> [Candidate; 1] {
    [Candidate {
        rung: Rung::Tracepoint,
        target,
        func: None,
        programs,
        fields,
    }]
}

const VICTIM_FIELDS: &[Field] = &[
    Field::TaskSignal,
    Field::SignalOomMm,
    Field::TaskPid,
    Field::TaskTgid,
];
const UFFD_TP_FIELDS: &[Field] = &[
    Field::TaskFiles,
    Field::FilesFdt,
    Field::FdtableFd,
    Field::FdtableMaxFds,
    Field::FileFop,
    Field::FopsUnlockedIoctl,
    Field::FilePrivateData,
    Field::UffdCtxMm,
    Field::UffdCtxMmapChanging,
];

/// Every hook, in the order `monitor check` prints them.
pub const HOOKS: &[HookSpec] = &[
    HookSpec {
        id: HookId::OomReap,
        what: "__oom_reap_task_mm(): the reaper (or process_mrelease) unmaps a victim's mm",
        primary: true,
        candidates: cands!(
            OOM_REAP,
            tp_cand(
                "oom:start_task_reaping/finish_task_reaping (the oom_reaper kthread only)",
                &[
                    tp(P::TpStartReaping, "start_task_reaping", INT),
                    tp(P::TpFinishReaping, "finish_task_reaping", INT),
                ],
                &[],
            ),
        ),
    },
    HookSpec {
        id: HookId::ExitMmap,
        what: "exit_mmap(): the last mm_users reference tears the address space down",
        primary: true,
        candidates: cands!(
            EXIT_MMAP,
            tp_cand(
                "mmap:exit_mmap (end of exit_mmap only)",
                &[tp(
                    P::TpExitMmap,
                    "exit_mmap",
                    Proto::Leading(&["struct mm_struct *"])
                )],
                &[],
            ),
        ),
    },
    HookSpec {
        id: HookId::UnmapPageRange,
        what: "unmap_page_range() called by the reaper: the zap that can race exit_mmap",
        primary: true,
        candidates: cands!(UNMAP_PAGE_RANGE),
    },
    HookSpec {
        id: HookId::RemoveMigrationPtes,
        what: "remove_migration_ptes(): migration entries are replaced by the new page",
        primary: true,
        candidates: cands!(
            REMOVE_MIGRATION_PTES,
            tp_cand(
                "migrate:remove_migration_pte (per PTE, no mm)",
                &[tp(
                    P::TpRemoveMigrationPte,
                    "remove_migration_pte",
                    Proto::Arity(3)
                )],
                &[],
            ),
        ),
    },
    HookSpec {
        id: HookId::StackMove,
        what: "shift_arg_pages()/relocate_vma_down(): exec moves its temporary stack",
        primary: true,
        candidates: cands!(
            [
                RELOCATE_VMA_DOWN[0],
                SHIFT_ARG_PAGES[0],
                RELOCATE_VMA_DOWN[1],
                SHIFT_ARG_PAGES[1]
            ],
            tp_cand(
                "task:task_rename (window start; the window ends at sched:sched_process_exec)",
                &[tp(
                    P::TpTaskRename,
                    "task_rename",
                    Proto::Leading(&["struct task_struct *"])
                )],
                &[],
            ),
        ),
    },
    HookSpec {
        id: HookId::MfillCopy,
        what: "mcopy_atomic()/mfill_atomic_copy(): UFFDIO_COPY fills pages",
        primary: true,
        candidates: cands!([
            MFILL_CTX[0],
            MFILL_MM[0],
            MCOPY_ATOMIC[0],
            MFILL_CTX[1],
            MFILL_MM[1],
            MCOPY_ATOMIC[1],
        ]),
    },
    HookSpec {
        id: HookId::MarkVictim,
        what: "mark_oom_victim(): the OOM killer picked a victim (signal->oom_mm)",
        primary: false,
        candidates: cands!(
            tp_cand(
                "oom:mark_victim",
                &[tp(
                    P::TpMarkVictim,
                    "mark_victim",
                    Proto::Leading(&["struct task_struct *"])
                )],
                VICTIM_FIELDS,
            ),
            MARK_OOM_VICTIM,
        ),
    },
    HookSpec {
        id: HookId::ReapSkip,
        what: "oom_reap_task_mm(): the reaper skipped a victim (lock busy or MMF_OOM_SKIP)",
        primary: false,
        candidates: cands!(tp_cand(
            "oom:skip_task_reaping",
            &[tp(P::TpSkipReaping, "skip_task_reaping", INT)],
            &[],
        )),
    },
    HookSpec {
        id: HookId::UnmapVmas,
        what: "unmap_vmas() inside exit_mmap: the read-locked zap phase",
        primary: false,
        candidates: cands!(UNMAP_VMAS),
    },
    HookSpec {
        id: HookId::Mmdrop,
        what: "__mmdrop(): the mm_struct is freed (its address may be reused)",
        primary: false,
        candidates: cands!(MMDROP),
    },
    HookSpec {
        id: HookId::ProcessMrelease,
        what: "process_mrelease(2): a reap driven by userspace (lmkd, systemd-oomd)",
        primary: false,
        candidates: cands!(tp_cand(
            "syscalls:sys_enter_process_mrelease/sys_exit_process_mrelease",
            &[
                syscall_tp(P::TpSysEnterMrelease, "sys_enter_process_mrelease"),
                syscall_tp(P::TpSysExitMrelease, "sys_exit_process_mrelease"),
            ],
            &[],
        )),
    },
    HookSpec {
        id: HookId::Exec,
        what: "exec_binprm(): exec succeeded (after the stack was relocated)",
        primary: false,
        candidates: cands!(tp_cand(
            "sched:sched_process_exec",
            &[tp(
                P::TpSchedExec,
                "sched_process_exec",
                Proto::Leading(&["struct task_struct *", "pid_t", "struct linux_binprm *"]),
            )],
            &[Field::BprmFilename],
        )),
    },
    HookSpec {
        id: HookId::MigratePages,
        what: "migrate_pages(): a migration batch (compaction, NUMA, migrate_pages(2))",
        primary: false,
        candidates: cands!(
            tp_cand(
                "migrate:mm_migrate_pages_start/mm_migrate_pages (8 args, 6.12+)",
                &[
                    tp(P::TpMigrateStart, "mm_migrate_pages_start", Proto::Arity(2)),
                    tp(P::TpMigrateEnd8, "mm_migrate_pages", Proto::Arity(8)),
                ],
                &[],
            ),
            tp_cand(
                "migrate:mm_migrate_pages_start/mm_migrate_pages (7 args)",
                &[
                    tp(P::TpMigrateStart, "mm_migrate_pages_start", Proto::Arity(2)),
                    tp(P::TpMigrateEnd7, "mm_migrate_pages", Proto::Arity(7)),
                ],
                &[],
            ),
            [Candidate {
                rung: Rung::Kprobe,
                target: "migrate_pages (bracket only: no success counts)",
                func: Some(func(
                    "migrate_pages",
                    &[(4, "enum migrate_mode"), (5, "int")],
                    None
                )),
                programs: &[
                    p(P::KprobeMigratePages, KProbe),
                    p(P::KretprobeMigratePages, KRetProbe)
                ],
                fields: &[],
            }],
        ),
    },
    HookSpec {
        id: HookId::SetMigrationPte,
        what: "try_to_migrate_one(): a migration entry is installed (counted per batch)",
        primary: false,
        candidates: cands!(tp_cand(
            "migrate:set_migration_pte",
            &[tp(
                P::TpSetMigrationPte,
                "set_migration_pte",
                Proto::Arity(3)
            )],
            &[],
        )),
    },
    HookSpec {
        id: HookId::RemoveMigrationPte,
        what: "remove_migration_pte(): the per-VMA rmap callback, with the mm",
        primary: false,
        candidates: cands!(REMOVE_MIGRATION_PTE),
    },
    HookSpec {
        id: HookId::TryToMigrateOne,
        what: "try_to_migrate_one(): a migration entry going into a temporary exec stack",
        primary: false,
        candidates: cands!(TRY_TO_MIGRATE_ONE),
    },
    HookSpec {
        id: HookId::InvalidMigrationVma,
        what: "invalid_migration_vma(): the rmap walk skips a temporary exec stack",
        primary: false,
        candidates: cands!([Candidate {
            rung: Rung::Kprobe,
            target: "invalid_migration_vma",
            func: Some(func("invalid_migration_vma", &[(0, VMA)], None)),
            programs: &[p(P::KprobeInvalidMigrationVma, KProbe)],
            fields: &[Field::VmaVmFlags],
        }]),
    },
    HookSpec {
        id: HookId::MigrationEntryWait,
        what: "migration_entry_wait(): a fault found a migration entry",
        primary: false,
        candidates: cands!(MIGRATION_ENTRY_WAIT),
    },
    HookSpec {
        id: HookId::PmdMigrationEntryWait,
        what: "pmd_migration_entry_wait(): a fault waits on a PMD-level (THP) migration entry",
        primary: false,
        candidates: cands!(PMD_MIGRATION_WAIT),
    },
    HookSpec {
        id: HookId::MigrationEntryWaitHuge,
        what: "migration_entry_wait_huge(): a fault waits on a hugetlb migration entry",
        primary: false,
        candidates: cands!([
            HUGE_WAIT_2[0],
            HUGE_WAIT_3[0],
            HUGE_WAIT_2[1],
            HUGE_WAIT_3[1]
        ]),
    },
    HookSpec {
        id: HookId::HandleMmFault,
        what: "handle_mm_fault(): faults on MMF_UNSTABLE mms, by kernel threads or remote tasks",
        primary: false,
        candidates: cands!(
            HANDLE_MM_FAULT,
            tp_cand(
                "exceptions:page_fault_kernel (entry only, no result, no remote faults)",
                &[tp(
                    P::TpPageFaultKernel,
                    "page_fault_kernel",
                    Proto::Leading(&["unsigned long", "struct pt_regs *", "unsigned long"]),
                )],
                &[],
            ),
        ),
    },
    HookSpec {
        id: HookId::KthreadUseMm,
        what: "kthread_use_mm()/kthread_unuse_mm(): a kernel thread borrows a user mm",
        primary: false,
        candidates: cands!([
            Candidate {
                programs: &[
                    p(P::FentryKthreadUseMm, FEntry),
                    p_at(P::FentryKthreadUnuseMm, FEntry, "kthread_unuse_mm"),
                ],
                ..KTHREAD_USE_MM[0]
            },
            Candidate {
                programs: &[
                    p(P::KprobeKthreadUseMm, KProbe),
                    p_at(P::KprobeKthreadUnuseMm, KProbe, "kthread_unuse_mm"),
                ],
                ..KTHREAD_USE_MM[1]
            },
        ]),
    },
    HookSpec {
        id: HookId::Fork,
        what: "kernel_clone(): fork of a tracked mm (after the userfaultfd fork handshake)",
        primary: false,
        candidates: cands!(tp_cand(
            "sched:sched_process_fork",
            &[tp(
                P::TpSchedFork,
                "sched_process_fork",
                Proto::Leading(&["struct task_struct *", "struct task_struct *"]),
            )],
            &[],
        )),
    },
    HookSpec {
        id: HookId::UffdIoctl,
        what: "userfaultfd_ioctl(UFFDIO_COPY): the result of every copy (-EAGAIN while the mm changes)",
        primary: false,
        candidates: cands!(
            UFFD_IOCTL,
            tp_cand(
                "syscalls:sys_enter_ioctl/sys_exit_ioctl",
                &[
                    syscall_tp(P::TpSysEnterIoctl, "sys_enter_ioctl"),
                    syscall_tp(P::TpSysExitIoctl, "sys_exit_ioctl"),
                ],
                UFFD_TP_FIELDS,
            ),
        ),
    },
    HookSpec {
        id: HookId::UffdFork,
        what: "dup_userfaultfd(): fork raises the parent ctx's mmap_changing",
        primary: false,
        candidates: cands!(DUP_UFFD),
    },
    HookSpec {
        id: HookId::UffdRemap,
        what: "mremap_userfaultfd_prep(): mremap raises mmap_changing (EVENT_REMAP)",
        primary: false,
        candidates: cands!(UFFD_REMAP),
    },
    HookSpec {
        id: HookId::UffdUnmap,
        what: "userfaultfd_unmap_prep(): munmap raises mmap_changing (EVENT_UNMAP)",
        primary: false,
        candidates: cands!(UFFD_UNMAP),
    },
    HookSpec {
        id: HookId::UffdRemove,
        what: "userfaultfd_remove(): MADV_DONTNEED/REMOVE raises mmap_changing (EVENT_REMOVE)",
        primary: false,
        candidates: cands!(UFFD_REMOVE),
    },
    HookSpec {
        id: HookId::UffdEventWait,
        what: "userfaultfd_event_wait_completion(): the monitor read the event; the window closes",
        primary: false,
        candidates: cands!(UFFD_WAIT),
    },
    HookSpec {
        id: HookId::UffdRelease,
        what: "userfaultfd_release(): a context's file is closed; the window state kept for it is dropped",
        primary: false,
        candidates: cands!(UFFD_RELEASE),
    },
    HookSpec {
        id: HookId::TaskFree,
        what: "delayed_put_task_struct(): a task is freed; its per-task map entries are removed",
        primary: false,
        candidates: cands!(tp_cand(
            "sched:sched_process_free",
            &[tp(
                P::TpSchedProcessFree,
                "sched_process_free",
                Proto::Leading(&["struct task_struct *"]),
            )],
            &[Field::TaskPid],
        )),
    },
];

/// Finds a hook's plan by name (command-line and configuration input).
pub fn hook(name: &str) -> Option<&'static HookSpec> {
    HookId::from_name(name).and_then(spec)
}

/// The plan of hook `id` (every hook has one: see the tests).
pub fn spec(id: HookId) -> Option<&'static HookSpec> {
    HOOKS.iter().find(|h| h.id == id)
}

/// The rung of a hook's most preferred candidate.
pub fn best_rung(id: HookId) -> Rung {
    spec(id).map_or(Rung::Unavailable, |h| h.candidates[0].rung)
}

/// Every function symbol any candidate may attach to.
pub fn function_symbols() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = HOOKS
        .iter()
        .flat_map(|h| h.candidates.iter())
        .flat_map(|c| {
            let base = c.func.map(|f| f.symbol);
            c.programs.iter().filter_map(move |p| p.symbol.or(base))
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use monitor_common::catalogue::ProbeKind;

    use super::*;

    /// The plan agrees with the catalogue: one spec per hook, in catalogue
    /// order; every program is planned under the hook the catalogue gives
    /// it, with an attach mode of its kind, at a candidate of its rung.
    #[test]
    fn hooks_are_well_formed_and_match_the_catalogue() {
        let planned: Vec<HookId> = HOOKS.iter().map(|h| h.id).collect();
        assert_eq!(
            planned,
            HookId::ALL,
            "one spec per catalogue hook, in its order"
        );
        for h in HOOKS {
            assert!(!h.candidates.is_empty(), "{} has no candidate", h.id);
            for c in h.candidates {
                assert!(
                    !c.programs.is_empty(),
                    "{}: empty candidate {}",
                    h.id,
                    c.target
                );
                assert_eq!(
                    c.rung.is_function(),
                    c.func.is_some(),
                    "{}: {} func",
                    h.id,
                    c.target
                );
                for p in c.programs {
                    assert_eq!(
                        p.probe.hook(),
                        h.id,
                        "{:?} belongs to another hook",
                        p.probe
                    );
                    assert_eq!(p.probe.rung(), c.rung, "{:?} at rung {}", p.probe, c.rung);
                    let kind = match p.attach {
                        Attach::TpBtf { .. } => ProbeKind::TpBtf,
                        Attach::Tracepoint { .. } => ProbeKind::Tracepoint,
                        FEntry => ProbeKind::FEntry,
                        FExit => ProbeKind::FExit,
                        KProbe => ProbeKind::KProbe,
                        KRetProbe => ProbeKind::KRetProbe,
                    };
                    assert_eq!(p.probe.kind(), kind, "{:?} attach mode", p.probe);
                }
            }
            if h.primary {
                assert_eq!(
                    h.candidates[0].rung,
                    Rung::Fentry,
                    "{}: primary hooks start at fentry",
                    h.id
                );
            }
        }
        assert_eq!(
            HOOKS.iter().filter(|h| h.primary).count(),
            6,
            "the six function hooks"
        );
    }

    /// Every program in the catalogue is used by some candidate, so nothing
    /// is built that the loader can never attach.
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
