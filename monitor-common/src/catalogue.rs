//! The catalogue: every event kind, payload, hook and BPF program, and how
//! they relate, declared once.
//!
//! Three tables, each row on one line:
//! * [`events!`]: an [`EventId`] with its stable number, name, payload struct
//!   and the detector [`Rule`]s it is routed to;
//! * [`HookId`]: the kernel code paths the monitor observes (their attach
//!   ladders are in `monitor/src/plan.rs`);
//! * [`probes!`]: every BPF program: its [`ProbeId`], its symbol in the BPF
//!   object (the Rust function name in `monitor-ebpf`, derived from the row),
//!   the hook it serves, its [`ProbeKind`] and the events it emits.
//!
//! Everything else is derived: the BPF entry points take their names and
//! ids from [`program`], the daemon its bounded `hook` labels, the detector
//! its routing and the loss it cares about, the trace files their names.
//!
//! Ids are stable and never reused. Event ids sit in ranges per hook family
//! so a new event finds its place without renumbering:
//!
//! | range | family |
//! |---|---|
//! | 1–99 | OOM killer and reaper |
//! | 100–199 | mm lifetime (exit, teardown, free) |
//! | 200–299 | exec stack relocation and page migration |
//! | 300–399 | faults and kernel threads borrowing an mm |
//! | 400–499 | userfaultfd |
//!
//! Probe ids 1–63 are tracepoint-rung programs, 64–159 function-rung programs.

use crate::{
    event::{
        Fields,
        kind::{CStr, Code, Dec, Flag, Hex, Opt, Pad, Tri},
        payloads, read, reap_source, uffd_event,
    },
    named::{named, named_impls},
};

named! {
    /// The detector's rules, named like the findings they produce.
    pub enum Rule: "rule" {
        /// The OOM reaper unmapping an mm while `exit_mmap` tears it down.
        ReaperExitOverlap = 0 => "reaper_exit_overlap",
        /// A fault on an mm after `MMF_UNSTABLE` by a kernel thread or a task
        /// other than the dying owner.
        UnstableMmFault = 1 => "unstable_mm_fault",
        /// Migration entries left behind, or an exec stack move inside a
        /// migration window.
        LeftoverMigrationEntry = 2 => "leftover_migration_entry",
        /// UFFDIO_COPY overlapping fork/mremap/munmap/madvise on the same mm.
        UffdCopyVsMmChange = 3 => "uffd_copy_vs_mm_change",
    }
}

named! {
    /// Rungs of the attach ladder, best first; `unavailable` when no rung attached.
    pub enum Rung: "rung" {
        /// fentry/fexit: arguments and return values, cheapest.
        Fentry = 0 => "fentry",
        /// kprobe/kretprobe: the same data, dearer (no arguments at return).
        Kprobe = 1 => "kprobe",
        /// A tracepoint substitute that sees less.
        Tracepoint = 2 => "tracepoint",
        Unavailable = 3 => "unavailable",
    }
}

impl Rung {
    /// The rungs a hook can be attached at.
    pub const ATTACHABLE: [Rung; 3] = [Rung::Fentry, Rung::Kprobe, Rung::Tracepoint];

    /// A rung a hook can be attached at, by name (`--max-rung`, the daemon's
    /// `bpf.max_rung`).
    pub fn parse(name: &str) -> Option<Rung> {
        Rung::from_name(name).filter(|r| *r != Rung::Unavailable)
    }

    /// fentry/fexit or kprobe/kretprobe: the rung sees arguments and return values.
    pub const fn is_function(self) -> bool {
        matches!(self, Rung::Fentry | Rung::Kprobe)
    }
}

named! {
    /// How a BPF program attaches.
    pub enum ProbeKind: "program kind" {
        /// `tp_btf` on a raw tracepoint (typed `TP_PROTO` arguments).
        TpBtf = 0 => "tp_btf",
        /// A classic (tracefs) tracepoint.
        Tracepoint = 1 => "tracepoint",
        FEntry = 2 => "fentry",
        FExit = 3 => "fexit",
        KProbe = 4 => "kprobe",
        KRetProbe = 5 => "kretprobe",
    }
}

impl ProbeKind {
    pub const fn rung(self) -> Rung {
        match self {
            ProbeKind::TpBtf | ProbeKind::Tracepoint => Rung::Tracepoint,
            ProbeKind::FEntry | ProbeKind::FExit => Rung::Fentry,
            ProbeKind::KProbe | ProbeKind::KRetProbe => Rung::Kprobe,
        }
    }
}

/// One past the largest event id; counter arrays are indexed by id.
pub const MAX_EVENT_ID: u32 = 512;

/// Number of entries of the hit-count array (one past the largest probe id).
pub const MAX_PROBES: u32 = 160;

macro_rules! events {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $id:literal => $name:literal, $payload:ident, [$($rule:ident),*];
    )*) => {
        named! {
            /// Stable event ids. The snake_case name is the value used in trace
            /// files, JSON output and metric labels.
            pub enum EventId: "event kind" {
                $( $(#[$doc])* $variant = $id => $name, )*
            }
        }

        impl EventId {
            /// Size in bytes of the payload that follows the header.
            pub const fn payload_size(self) -> usize {
                match self {
                    $(EventId::$variant => size_of::<$payload>(),)*
                }
            }

            /// The rules this event is routed to; its loss makes their open
            /// windows uncertain.
            pub const fn rules(self) -> &'static [Rule] {
                match self {
                    $(EventId::$variant => &[$(Rule::$rule),*],)*
                }
            }
        }

        /// An event's kind and payload.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Data {
            $( $(#[$doc])* $variant($payload), )*
        }

        impl Data {
            pub const fn id(&self) -> EventId {
                match self {
                    $(Data::$variant(_) => EventId::$variant,)*
                }
            }

            /// The payload of an `id` record from its bytes after the header.
            pub fn read(id: EventId, body: &[u8]) -> Option<Data> {
                Some(match id {
                    $(EventId::$variant => Data::$variant(read::<$payload>(body)?),)*
                })
            }

            /// An `id` payload with every field zero.
            pub fn zeroed(id: EventId) -> Data {
                match id {
                    $(EventId::$variant => Data::$variant($payload::default()),)*
                }
            }

            pub fn fields(&self) -> &dyn Fields {
                match self {
                    $(Data::$variant(p) => p,)*
                }
            }

            pub fn fields_mut(&mut self) -> &mut dyn Fields {
                match self {
                    $(Data::$variant(p) => p,)*
                }
            }
        }
    };
}

events! {
    // OOM killer and reaper.
    /// `oom:mark_victim`: the OOM killer chose a victim; `mm` is `signal->oom_mm`.
    MarkVictim = 1 => "mark_victim", MarkVictim, [ReaperExitOverlap, UnstableMmFault];
    /// The reaper starts unmapping `mm` (`oom:start_task_reaping`, or
    /// `__oom_reap_task_mm` entry, which also covers `process_mrelease(2)`).
    ReapStart = 2 => "reap_start", Reap, [ReaperExitOverlap, UnstableMmFault];
    /// The reaper finished (`oom:finish_task_reaping` or `__oom_reap_task_mm` return).
    ReapEnd = 3 => "reap_end", Reap, [ReaperExitOverlap, UnstableMmFault];
    /// `oom:skip_task_reaping`: trylock failed or `MMF_OOM_SKIP` was already set.
    ReapSkip = 4 => "reap_skip", Reap, [ReaperExitOverlap, UnstableMmFault];
    /// `unmap_page_range` entry inside `__oom_reap_task_mm` (the reaper's zap).
    ReaperUnmapStart = 5 => "reaper_unmap_start", VmaRange, [ReaperExitOverlap, UnstableMmFault];
    /// `unmap_page_range` return inside `__oom_reap_task_mm`.
    ReaperUnmapEnd = 6 => "reaper_unmap_end", VmaRange, [ReaperExitOverlap, UnstableMmFault];
    /// `process_mrelease(2)` entry (syscall tracepoint; `mm` unknown).
    MreleaseEnter = 7 => "mrelease_enter", Mrelease, [ReaperExitOverlap];
    /// `process_mrelease(2)` return.
    MreleaseExit = 8 => "mrelease_exit", Mrelease, [ReaperExitOverlap];

    // mm lifetime.
    /// `exit_mmap` entry (function rung only).
    ExitMmapStart = 100 => "exit_mmap_start", MmState, [ReaperExitOverlap, UnstableMmFault];
    /// `exit_mmap` end: `mmap:exit_mmap` (fires before the maple tree is destroyed,
    /// still under the write lock) or `exit_mmap` return.
    ExitMmapEnd = 101 => "exit_mmap_end", MmState, [ReaperExitOverlap, UnstableMmFault];
    /// `unmap_vmas` entry inside `exit_mmap` (the read-locked zap phase).
    UnmapVmasStart = 102 => "unmap_vmas_start", VmaRange, [ReaperExitOverlap, UnstableMmFault];
    /// `unmap_vmas` return inside `exit_mmap`.
    UnmapVmasEnd = 103 => "unmap_vmas_end", VmaRange, [ReaperExitOverlap, UnstableMmFault];
    /// `__mmdrop`: the `mm_struct` is freed; its address may be reused.
    MmDrop = 104 => "mmdrop", MmState, [ReaperExitOverlap, UnstableMmFault];

    // Exec stack relocation and migration.
    /// `sched:sched_process_exec`: exec succeeded; `mm` is `bprm->mm`.
    Exec = 200 => "exec", Exec, [LeftoverMigrationEntry];
    /// `task:task_rename` during exec (after `exec_mmap` switched to the new mm,
    /// before `setup_arg_pages`): opens the tracepoint-rung stack-move window.
    ExecMmSwitch = 201 => "exec_mm_switch", ExecMmSwitch, [LeftoverMigrationEntry];
    /// `shift_arg_pages`/`relocate_vma_down` entry: the temporary stack moves.
    StackMoveStart = 202 => "stack_move_start", StackMove, [LeftoverMigrationEntry];
    /// `shift_arg_pages`/`relocate_vma_down` return.
    StackMoveEnd = 203 => "stack_move_end", StackMove, [LeftoverMigrationEntry];
    /// `migrate:mm_migrate_pages_start`: a `migrate_pages()` batch starts.
    MigrateStart = 210 => "migrate_start", Migrate, [LeftoverMigrationEntry];
    /// `migrate:mm_migrate_pages`: the batch ended; carries the per-task counts of
    /// migration PTEs installed and removed during it (aggregated in the kernel).
    MigrateEnd = 211 => "migrate_end", Migrate, [LeftoverMigrationEntry];
    /// `invalid_migration_vma` returned true: the rmap walk skipped a temporary
    /// exec stack (the 2010 fix doing its job: a near miss).
    MigrationSkipTempStack = 212 => "migration_skip_temp_stack", VmaRange, [LeftoverMigrationEntry];
    /// `try_to_migrate_one` on a VMA that still carries `VM_STACK_INCOMPLETE_SETUP`:
    /// a migration entry installed into a temporary stack (must be impossible).
    MigrationEntryInTempStack = 213 => "migration_entry_in_temp_stack", VmaRange, [LeftoverMigrationEntry];
    /// `remove_migration_pte` on an mm whose temporary stack is being moved.
    MigrationPteRemoved = 214 => "migration_pte_removed", VmaRange, [LeftoverMigrationEntry];
    /// `migration_entry_wait`: a fault found a migration entry.
    MigrationEntryWait = 215 => "migration_entry_wait", VmaRange, [LeftoverMigrationEntry];
    /// `pmd_migration_entry_wait` / `migration_entry_wait_huge` entry: a fault
    /// found a PMD-level (THP) or hugetlb migration entry and waits on it.
    HugeMigrationWaitStart = 216 => "huge_migration_wait_start", HugeMigrationWait, [LeftoverMigrationEntry];
    /// Its return: what the entry holds after the wait.
    HugeMigrationWaitEnd = 217 => "huge_migration_wait_end", HugeMigrationWait, [LeftoverMigrationEntry];

    // Faults and kernel threads.
    /// `handle_mm_fault` return on an `MMF_UNSTABLE` mm, or by a kernel thread or
    /// a foreign task (remote access); carries the `vm_fault_t` result.
    Fault = 300 => "fault", Fault, [UnstableMmFault];
    /// `exceptions:page_fault_kernel` by a task whose mm has `MMF_UNSTABLE`
    /// (tracepoint rung; entry only, no result).
    KernelFault = 301 => "kernel_fault", Fault, [UnstableMmFault];
    /// `kthread_use_mm`: a kernel thread adopts `mm`.
    KthreadUseMm = 302 => "kthread_use_mm", MmState, [UnstableMmFault];
    /// `kthread_unuse_mm`.
    KthreadUnuseMm = 303 => "kthread_unuse_mm", MmState, [UnstableMmFault];

    // userfaultfd.
    /// `UFFDIO_COPY` result (`userfaultfd_ioctl` return or
    /// `syscalls:sys_exit_ioctl`). Legacy: written by builds before the
    /// in-kernel copy filter; read from older traces.
    UffdCopy = 400 => "uffd_copy", UffdCopy, [UffdCopyVsMmChange];
    /// `mcopy_atomic`/`mfill_atomic_copy` entry (legacy, see [`EventId::UffdCopy`]).
    MfillStart = 401 => "mfill_start", UffdCopy, [UffdCopyVsMmChange];
    /// `mcopy_atomic`/`mfill_atomic_copy` return (legacy).
    MfillEnd = 402 => "mfill_end", UffdCopy, [UffdCopyVsMmChange];
    /// A non-cooperative event raised `ctx->mmap_changing` (`dup_userfaultfd`,
    /// `mremap_userfaultfd_prep`, `userfaultfd_unmap_prep`, `userfaultfd_remove`).
    UffdChangeBegin = 403 => "uffd_change_begin", UffdChange, [UffdCopyVsMmChange];
    /// `userfaultfd_event_wait_completion` returned: the monitor read the event and
    /// `mmap_changing` dropped.
    UffdChangeEnd = 404 => "uffd_change_end", UffdChange, [UffdCopyVsMmChange];
    /// `sched:sched_process_fork` of a tracked mm (after the uffd fork handshake).
    Fork = 405 => "fork", Fork, [UffdCopyVsMmChange];
    /// One `UFFDIO_COPY` that needed a record (an `-EAGAIN`, a change window
    /// open on its context at its start or end, or an observed window to
    /// close), at the ioctl's return, with its `mfill` bracket folded in.
    /// Copies that need none are counted in the kernel by result.
    UffdCopyDone = 406 => "uffd_copy_done", UffdCopyDone, [UffdCopyVsMmChange];
}

/// Event kinds this build no longer emits, kept so that older trace files
/// keep their meaning (`monitor analyze` judges them as before).
pub const LEGACY_EVENTS: [EventId; 3] = [EventId::UffdCopy, EventId::MfillStart, EventId::MfillEnd];

const _: () = {
    let mut i = 0;
    while i < EventId::ALL.len() {
        assert!((EventId::ALL[i] as u32) < MAX_EVENT_ID);
        i += 1;
    }
};

payloads! {
    /// [`EventId::MarkVictim`].
    pub struct MarkVictim {
        victim_pid: u32 = Dec, victim_tgid: u32 = Dec, uid: u32 = Dec, _pad0: u32 = Pad,
        /// `mm->flags` word 0 when the victim was marked.
        mm_flags: u64 = Hex,
        victim_comm: [u8; 16] = CStr,
        /// The victim's cgroup v2 id and memory cgroup id (as the header's
        /// `cgroup_id` and `memcg_id` are the current task's): the workload
        /// the OOM killer chose, whoever triggered it.
        victim_cgroup_id: u64 = Dec, victim_memcg_id: u64 = Dec,
    }

    /// [`EventId::ReapStart`], [`EventId::ReapEnd`], [`EventId::ReapSkip`].
    pub struct Reap {
        /// The victim's pid as the `oom:*` tracepoints report it (0 from the function rung).
        victim_pid: u32 = Dec,
        /// [`reap_source`].
        source: u32 = Code<reap_source::Names>,
        /// `__oom_reap_task_mm`'s `bool` result on [`EventId::ReapEnd`] from the function
        /// rung (1 = all VMAs unmapped, 0 = retry later), -1 when unknown.
        ret: i32 = Dec,
        _pad0: u32 = Pad,
        /// `mm->flags` word 0 (`MMF_UNSTABLE` is set once reaping started).
        mm_flags: u64 = Hex,
    }

    /// [`EventId::MreleaseEnter`], [`EventId::MreleaseExit`].
    pub struct Mrelease {
        pidfd: i32 = Dec, flags: u32 = Dec,
        /// Return value on exit, 0 on enter.
        ret: i64 = Dec,
    }

    /// Events that only carry the mm state: [`EventId::ExitMmapStart`],
    /// [`EventId::ExitMmapEnd`], [`EventId::MmDrop`], [`EventId::KthreadUseMm`],
    /// [`EventId::KthreadUnuseMm`].
    pub struct MmState {
        /// `mm->flags` word 0.
        mm_flags: u64 = Hex,
    }

    /// Events about one VMA or address range: reaper and exit zaps, migration
    /// entries touching a temporary stack, migration-entry waits.
    pub struct VmaRange {
        vm_start: u64 = Hex, vm_end: u64 = Hex, vm_flags: u64 = Hex,
        /// The address (or range start) the operation was about; 0 if none.
        address: u64 = Hex,
    }

    /// [`EventId::HugeMigrationWaitStart`], [`EventId::HugeMigrationWaitEnd`].
    pub struct HugeMigrationWait {
        /// The page-table entry (`pmd_t` or hugetlb `pte_t`) as the hook read
        /// it: while it is a migration entry, a swap entry naming the folio
        /// being migrated; 0 if unreadable.
        entry: u64 = Hex,
        /// The VMA's start (hugetlb; 0 at the PMD level, whose hook has no VMA).
        vm_start: u64 = Hex,
        /// 1 = PMD (THP migration), 2 = hugetlb.
        level: u32 = Dec,
        _pad0: u32 = Pad,
    }

    /// [`EventId::Exec`].
    pub struct Exec {
        old_pid: u32 = Dec,
        _pad0: u32 = Pad,
        /// `bprm->filename`, NUL-terminated (truncated).
        filename: [u8; 64] = CStr,
    }

    /// [`EventId::ExecMmSwitch`].
    pub struct ExecMmSwitch {
        /// The comm the task is renamed to.
        new_comm: [u8; 16] = CStr,
    }

    /// [`EventId::StackMoveStart`], [`EventId::StackMoveEnd`].
    pub struct StackMove {
        vm_start: u64 = Hex, vm_end: u64 = Hex, vm_flags: u64 = Hex, shift: u64 = Dec,
        /// Return value on [`EventId::StackMoveEnd`] (0 or -errno), 0 on start.
        ret: i64 = Dec,
    }

    /// [`EventId::MigrateStart`], [`EventId::MigrateEnd`].
    pub struct Migrate {
        succeeded: u64 = Dec, failed: u64 = Dec,
        thp_succeeded: u64 = Dec, thp_failed: u64 = Dec, thp_split: u64 = Dec,
        /// Only reported by 6.12+ kernels; 0 before.
        large_folio_split: u64 = Dec,
        /// `enum migrate_mode`.
        mode: u32 = Dec,
        /// `enum migrate_reason` (compaction, syscall_or_cpuset, numa_misplaced, …).
        reason: u32 = Dec,
        /// Migration PTEs installed (`migrate:set_migration_pte`) by this task since
        /// the matching start (aggregated in the kernel).
        ptes_set: u64 = Dec,
        /// Migration PTEs replaced by the new page (`migrate:remove_migration_pte`).
        ptes_removed: u64 = Dec,
        /// 1 when the batch's start was seen (the counters cover the whole batch).
        start_seen: u32 = Flag,
        _pad0: u32 = Pad,
    }

    /// [`EventId::Fault`], [`EventId::KernelFault`].
    pub struct Fault {
        address: u64 = Hex,
        /// `mm->flags` word 0 of the faulting mm.
        mm_flags: u64 = Hex,
        /// `current->mm`: differs from the header's mm for a remote (GUP) access;
        /// non-zero for a kernel thread only between `kthread_use_mm`/`unuse`.
        current_mm: u64 = Hex,
        /// `vma->vm_flags` of the faulting VMA (function rung; 0 on the tracepoint
        /// rung). The reaper skips `VM_SHARED` file mappings, so a handled fault
        /// there is not data loss.
        vm_flags: u64 = Hex,
        /// `vm_fault_t` returned by `handle_mm_fault`, `u64::MAX` when the hook
        /// cannot see it (tracepoint rung).
        ret: u64 = Opt,
        /// `FAULT_FLAG_*` (function rung) or the x86 page-fault error code (tracepoint rung).
        fault_flags: u32 = Dec,
        /// [`crate::event::fault_entry`] bits: what the hook saw when the fault began.
        entry_flags: u32 = Tri as "unstable_at_entry",
    }

    /// [`EventId::UffdCopy`], [`EventId::MfillStart`], [`EventId::MfillEnd`].
    pub struct UffdCopy {
        dst: u64 = Hex, len: u64 = Dec,
        /// Bytes copied (>0) or -errno (`-EAGAIN` = refused because the mm is changing);
        /// 0 on [`EventId::MfillStart`].
        ret: i64 = Dec,
        /// `ctx->mmap_changing` as read by the hook (-1 if unknown). For
        /// [`EventId::UffdCopy`] on the tracepoint and kprobe rungs, the larger of
        /// the values at the ioctl's entry and return; on fexit, at return only
        /// (the uffd monitor may lower it between a copy's `-EAGAIN` and then).
        mmap_changing: i32 = Dec,
        fd: i32 = Dec,
    }

    /// [`EventId::UffdCopyDone`].
    pub struct UffdCopyDone {
        dst: u64 = Hex, len: u64 = Dec,
        /// Bytes copied (>= 0) or -errno (`-EAGAIN`: refused because the mm is changing).
        ret: i64 = Dec,
        /// Kernel time the copy entered `mcopy_atomic`/`mfill_atomic_copy`
        /// while a change window was open on its context (0 otherwise).
        mfill_start_ns: u64 = Dec,
        /// `ctx->mmap_changing` at the ioctl (the larger of entry and return
        /// where the rung sees both), -1 if unknown.
        mmap_changing: i32 = Dec,
        /// `ctx->mmap_changing` at the `mfill` entry (-1 if not seen).
        mfill_changing: i32 = Dec,
        fd: i32 = Dec,
        /// [`crate::event::copy_window`] bits: what the kernel knew of the
        /// change windows of the copy's context at its start and end.
        window: u32 = Dec,
    }

    /// [`EventId::UffdChangeBegin`], [`EventId::UffdChangeEnd`].
    pub struct UffdChange {
        /// [`uffd_event`] value, 0 if unknown.
        kind: u32 = Code<uffd_event::Names>,
        /// `ctx->mmap_changing` after the change (begin) or before the decrement (end).
        mmap_changing: i32 = Dec,
        start: u64 = Hex, end: u64 = Hex,
    }

    /// [`EventId::Fork`].
    pub struct Fork {
        child_pid: u32 = Dec, child_tgid: u32 = Dec,
        /// The child's mm (differs from the parent's unless `CLONE_VM`).
        child_mm: u64 = Hex,
    }
}

/// Compile-time layout checks: sizes are part of the contract, and a struct whose
/// size is a multiple of 8 with only 8/4-byte fields in this order has no hidden
/// padding. A change here is a format change: bump [`crate::maps::WIRE_VERSION`].
const _: () = {
    assert!(size_of::<MarkVictim>() == 56);
    assert!(size_of::<Reap>() == 24);
    assert!(size_of::<Mrelease>() == 16);
    assert!(size_of::<MmState>() == 8);
    assert!(size_of::<VmaRange>() == 32);
    assert!(size_of::<Exec>() == 72);
    assert!(size_of::<ExecMmSwitch>() == 16);
    assert!(size_of::<StackMove>() == 40);
    assert!(size_of::<Migrate>() == 80);
    assert!(size_of::<Fault>() == 48);
    assert!(size_of::<UffdCopy>() == 32);
    assert!(size_of::<UffdChange>() == 24);
    assert!(size_of::<UffdCopyDone>() == 48);
    assert!(size_of::<Fork>() == 16);
    assert!(size_of::<HugeMigrationWait>() == 24);
    assert!(size_of::<crate::event::Record<Migrate>>() == 176);
};

named! {
    /// The kernel code paths the monitor observes, in the order `monitor
    /// check` prints them. How each is attached (its ladder of candidates)
    /// is `monitor/src/plan.rs`; which programs serve it is [`probes!`].
    pub enum HookId: "hook" {
        OomReap = 0 => "oom_reap",
        ExitMmap = 1 => "exit_mmap",
        UnmapPageRange = 2 => "unmap_page_range",
        RemoveMigrationPtes = 3 => "remove_migration_ptes",
        StackMove = 4 => "stack_move",
        MfillCopy = 5 => "mfill_copy",
        MarkVictim = 6 => "mark_victim",
        ReapSkip = 7 => "reap_skip",
        UnmapVmas = 8 => "unmap_vmas",
        Mmdrop = 9 => "mmdrop",
        ProcessMrelease = 10 => "process_mrelease",
        Exec = 11 => "exec",
        MigratePages = 12 => "migrate_pages",
        SetMigrationPte = 13 => "set_migration_pte",
        RemoveMigrationPte = 14 => "remove_migration_pte",
        TryToMigrateOne = 15 => "try_to_migrate_one",
        InvalidMigrationVma = 16 => "invalid_migration_vma",
        MigrationEntryWait = 17 => "migration_entry_wait",
        PmdMigrationEntryWait = 27 => "pmd_migration_entry_wait",
        MigrationEntryWaitHuge = 28 => "migration_entry_wait_huge",
        HandleMmFault = 18 => "handle_mm_fault",
        KthreadUseMm = 19 => "kthread_use_mm",
        Fork = 20 => "fork",
        UffdIoctl = 21 => "uffd_ioctl",
        UffdFork = 22 => "uffd_fork",
        UffdRemap = 23 => "uffd_remap",
        UffdUnmap = 24 => "uffd_unmap",
        UffdRemove = 25 => "uffd_remove",
        UffdEventWait = 26 => "uffd_event_wait",
        /// A userfaultfd context's file is closed: the monitor drops the
        /// window state it kept for the context.
        UffdRelease = 29 => "uffd_release",
        /// A task is freed: the monitor forgets its per-task map entries.
        TaskFree = 48 => "task_free",
    }
}

macro_rules! probes {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $id:literal => $program:ident, $hook:ident, $kind:ident, [$($event:ident),*];
    )*) => {
        /// Stable ids of the BPF programs ("probes"). Each program counts its own
        /// invocations in the [`crate::maps::HITS`] per-CPU array at this index
        /// and stamps it into every record it emits
        /// ([`crate::event::EventHeader::probe`]).
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ProbeId {
            $( $(#[$doc])* $variant = $id, )*
        }

        impl ProbeId {
            pub const ALL: &'static [ProbeId] = &[$(ProbeId::$variant,)*];

            /// The program's symbol name in the BPF object.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ProbeId::$variant => stringify!($program),)*
                }
            }

            /// Same as [`ProbeId::name`].
            pub const fn program(self) -> &'static str {
                self.name()
            }

            pub fn from_name(name: &str) -> Option<ProbeId> {
                match name {
                    $(stringify!($program) => Some(ProbeId::$variant),)*
                    _ => None,
                }
            }

            pub const fn from_u32(v: u32) -> Option<ProbeId> {
                match v {
                    $($id => Some(ProbeId::$variant),)*
                    _ => None,
                }
            }

            /// The hook this program serves.
            pub const fn hook(self) -> HookId {
                match self {
                    $(ProbeId::$variant => HookId::$hook,)*
                }
            }

            pub const fn kind(self) -> ProbeKind {
                match self {
                    $(ProbeId::$variant => ProbeKind::$kind,)*
                }
            }

            /// The event kinds this program emits (none for programs that only
            /// count, or save state for their return program).
            pub const fn events(self) -> &'static [EventId] {
                match self {
                    $(ProbeId::$variant => &[$(EventId::$event),*],)*
                }
            }
        }

        named_impls!(ProbeId, "BPF program");

        /// Every program's id under its symbol name: what the BPF entry points
        /// of `monitor-ebpf` are stamped from (a function without a row here
        /// does not compile).
        #[allow(non_upper_case_globals, reason = "named after the BPF program symbols")]
        pub mod program {
            $(pub const $program: super::ProbeId = super::ProbeId::$variant;)*
        }
    };
}

probes! {
    // Tracepoint rung (tp_btf: typed TP_PROTO arguments, no tracefs needed).
    /// `tp_btf/mark_victim` with `TP_PROTO(struct task_struct *task, uid_t uid)` (6.x).
    TpMarkVictim = 1 => tp_mark_victim, MarkVictim, TpBtf, [MarkVictim];
    TpStartReaping = 2 => tp_start_task_reaping, OomReap, TpBtf, [ReapStart];
    TpFinishReaping = 3 => tp_finish_task_reaping, OomReap, TpBtf, [ReapEnd];
    TpSkipReaping = 4 => tp_skip_task_reaping, ReapSkip, TpBtf, [ReapSkip];
    /// `tp_btf/exit_mmap` (6.1+: the tracepoint came with the maple tree).
    TpExitMmap = 5 => tp_exit_mmap, ExitMmap, TpBtf, [ExitMmapEnd];
    TpSchedExec = 6 => tp_sched_process_exec, Exec, TpBtf, [Exec];
    TpTaskRename = 7 => tp_task_rename, StackMove, TpBtf, [ExecMmSwitch];
    TpMigrateStart = 8 => tp_mm_migrate_pages_start, MigratePages, TpBtf, [MigrateStart];
    /// `mm_migrate_pages` with 7 arguments (before 6.12 added `large_folio_split`).
    TpMigrateEnd7 = 9 => tp_mm_migrate_pages_7, MigratePages, TpBtf, [MigrateEnd];
    /// `mm_migrate_pages` with 8 arguments (6.12+).
    TpMigrateEnd8 = 10 => tp_mm_migrate_pages_8, MigratePages, TpBtf, [MigrateEnd];
    TpSetMigrationPte = 11 => tp_set_migration_pte, SetMigrationPte, TpBtf, [];
    TpRemoveMigrationPte = 12 => tp_remove_migration_pte, RemoveMigrationPtes, TpBtf, [];
    TpPageFaultKernel = 13 => tp_page_fault_kernel, HandleMmFault, TpBtf, [KernelFault];
    TpSchedFork = 14 => tp_sched_process_fork, Fork, TpBtf, [Fork];
    /// Classic tracepoint `syscalls/sys_enter_ioctl` (fires for ioctl only).
    TpSysEnterIoctl = 15 => tp_sys_enter_ioctl, UffdIoctl, Tracepoint, [];
    TpSysExitIoctl = 16 => tp_sys_exit_ioctl, UffdIoctl, Tracepoint, [UffdCopyDone];
    TpSysEnterMrelease = 17 => tp_sys_enter_process_mrelease, ProcessMrelease, Tracepoint, [MreleaseEnter];
    TpSysExitMrelease = 18 => tp_sys_exit_process_mrelease, ProcessMrelease, Tracepoint, [MreleaseExit];
    /// `sched:sched_process_free` with `TP_PROTO(struct task_struct *p)`: map cleanup only.
    TpSchedProcessFree = 60 => tp_sched_process_free, TaskFree, TpBtf, [];

    // Function rung: fentry/fexit, then kprobe/kretprobe, per target.
    /// `__oom_reap_task_mm(struct mm_struct *mm)` → bool.
    FentryOomReap = 64 => fentry_oom_reap, OomReap, FEntry, [ReapStart];
    FexitOomReap = 65 => fexit_oom_reap, OomReap, FExit, [ReapEnd];
    KprobeOomReap = 66 => kprobe_oom_reap, OomReap, KProbe, [ReapStart];
    KretprobeOomReap = 67 => kretprobe_oom_reap, OomReap, KRetProbe, [ReapEnd];
    /// `exit_mmap(struct mm_struct *mm)`.
    FentryExitMmap = 68 => fentry_exit_mmap, ExitMmap, FEntry, [ExitMmapStart];
    FexitExitMmap = 69 => fexit_exit_mmap, ExitMmap, FExit, [ExitMmapEnd];
    KprobeExitMmap = 70 => kprobe_exit_mmap, ExitMmap, KProbe, [ExitMmapStart];
    KretprobeExitMmap = 71 => kretprobe_exit_mmap, ExitMmap, KRetProbe, [ExitMmapEnd];
    /// `unmap_page_range(tlb, vma, addr, end, details)`, filtered to the reaper.
    FentryUnmapPageRange = 72 => fentry_unmap_page_range, UnmapPageRange, FEntry, [ReaperUnmapStart];
    FexitUnmapPageRange = 73 => fexit_unmap_page_range, UnmapPageRange, FExit, [ReaperUnmapEnd];
    KprobeUnmapPageRange = 74 => kprobe_unmap_page_range, UnmapPageRange, KProbe, [ReaperUnmapStart];
    KretprobeUnmapPageRange = 75 => kretprobe_unmap_page_range, UnmapPageRange, KRetProbe, [ReaperUnmapEnd];
    /// `shift_arg_pages(vma, shift)` / `relocate_vma_down(vma, shift)` → int.
    FentryStackMove = 76 => fentry_stack_move, StackMove, FEntry, [StackMoveStart];
    FexitStackMove = 77 => fexit_stack_move, StackMove, FExit, [StackMoveEnd];
    KprobeStackMove = 78 => kprobe_stack_move, StackMove, KProbe, [StackMoveStart];
    KretprobeStackMove = 79 => kretprobe_stack_move, StackMove, KRetProbe, [StackMoveEnd];
    /// `mcopy_atomic(dst_mm, dst, src, len, mmap_changing, mode)` (≤ 6.3; also
    /// `mfill_atomic_copy` with that signature in 6.4–6.8) → ssize_t.
    FentryMfillMm = 80 => fentry_mfill_mm, MfillCopy, FEntry, [];
    FexitMfillMm = 81 => fexit_mfill_mm, MfillCopy, FExit, [UffdCopyDone];
    KprobeMfillMm = 82 => kprobe_mfill_mm, MfillCopy, KProbe, [];
    KretprobeMfillMm = 83 => kretprobe_mfill_mm, MfillCopy, KRetProbe, [UffdCopyDone];
    /// `mfill_atomic_copy(ctx, dst, src, len, flags)` (6.9+) → ssize_t.
    FentryMfillCtx = 84 => fentry_mfill_ctx, MfillCopy, FEntry, [];
    FexitMfillCtx = 85 => fexit_mfill_ctx, MfillCopy, FExit, [UffdCopyDone];
    KprobeMfillCtx = 86 => kprobe_mfill_ctx, MfillCopy, KProbe, [];
    KretprobeMfillCtx = 87 => kretprobe_mfill_ctx, MfillCopy, KRetProbe, [UffdCopyDone];
    /// `remove_migration_ptes(src, dst, locked|flags)`: counted (partly inlined).
    FentryRemoveMigrationPtes = 88 => fentry_remove_migration_ptes, RemoveMigrationPtes, FEntry, [];
    KprobeRemoveMigrationPtes = 89 => kprobe_remove_migration_ptes, RemoveMigrationPtes, KProbe, [];
    /// `remove_migration_pte(folio, vma, addr, arg)`: the rmap callback, with the mm.
    /// It, `try_to_migrate_one` and `invalid_migration_vma` also emit an exec
    /// stack move's `StackMoveStart` late, before their own record, when the
    /// move's entry did not (`probes/exec.rs`, `open_window_late`).
    FentryRemoveMigrationPte = 90 => fentry_remove_migration_pte, RemoveMigrationPte, FEntry, [MigrationPteRemoved, StackMoveStart];
    KprobeRemoveMigrationPte = 91 => kprobe_remove_migration_pte, RemoveMigrationPte, KProbe, [MigrationPteRemoved, StackMoveStart];
    /// `handle_mm_fault(vma, address, flags, regs)` → vm_fault_t, filtered.
    FentryFault = 92 => fentry_fault, HandleMmFault, FEntry, [];
    FexitFault = 93 => fexit_fault, HandleMmFault, FExit, [Fault];
    KprobeFault = 94 => kprobe_fault, HandleMmFault, KProbe, [];
    KretprobeFault = 95 => kretprobe_fault, HandleMmFault, KRetProbe, [Fault];
    /// `kthread_use_mm(mm)` / `kthread_unuse_mm(mm)`.
    FentryKthreadUseMm = 96 => fentry_kthread_use_mm, KthreadUseMm, FEntry, [KthreadUseMm];
    KprobeKthreadUseMm = 97 => kprobe_kthread_use_mm, KthreadUseMm, KProbe, [KthreadUseMm];
    FentryKthreadUnuseMm = 98 => fentry_kthread_unuse_mm, KthreadUseMm, FEntry, [KthreadUnuseMm];
    KprobeKthreadUnuseMm = 99 => kprobe_kthread_unuse_mm, KthreadUseMm, KProbe, [KthreadUnuseMm];
    /// `unmap_vmas(tlb, …)` inside `exit_mmap` of a tracked mm.
    FentryUnmapVmas = 100 => fentry_unmap_vmas, UnmapVmas, FEntry, [UnmapVmasStart];
    FexitUnmapVmas = 101 => fexit_unmap_vmas, UnmapVmas, FExit, [UnmapVmasEnd];
    KprobeUnmapVmas = 102 => kprobe_unmap_vmas, UnmapVmas, KProbe, [UnmapVmasStart];
    KretprobeUnmapVmas = 103 => kretprobe_unmap_vmas, UnmapVmas, KRetProbe, [UnmapVmasEnd];
    /// `__mmdrop(mm)`: the mm_struct is freed.
    FentryMmdrop = 104 => fentry_mmdrop, Mmdrop, FEntry, [MmDrop];
    KprobeMmdrop = 105 => kprobe_mmdrop, Mmdrop, KProbe, [MmDrop];
    /// `try_to_migrate_one(folio, vma, address, arg)`: flags a temporary stack.
    FentryTryToMigrateOne = 106 => fentry_try_to_migrate_one, TryToMigrateOne, FEntry, [MigrationEntryInTempStack, StackMoveStart];
    KprobeTryToMigrateOne = 107 => kprobe_try_to_migrate_one, TryToMigrateOne, KProbe, [MigrationEntryInTempStack, StackMoveStart];
    /// `invalid_migration_vma(vma, arg)` (no BTF: kprobe only).
    KprobeInvalidMigrationVma = 108 => kprobe_invalid_migration_vma, InvalidMigrationVma, KProbe, [MigrationSkipTempStack, StackMoveStart];
    /// `migration_entry_wait(mm, pmd, address)`.
    FentryMigrationEntryWait = 109 => fentry_migration_entry_wait, MigrationEntryWait, FEntry, [MigrationEntryWait];
    KprobeMigrationEntryWait = 110 => kprobe_migration_entry_wait, MigrationEntryWait, KProbe, [MigrationEntryWait];
    /// `dup_userfaultfd(vma, fcs)` → int: raises the parent ctx's mmap_changing.
    FentryDupUffd = 111 => fentry_dup_uffd, UffdFork, FEntry, [];
    FexitDupUffd = 112 => fexit_dup_uffd, UffdFork, FExit, [UffdChangeBegin];
    KprobeDupUffd = 113 => kprobe_dup_uffd, UffdFork, KProbe, [];
    KretprobeDupUffd = 114 => kretprobe_dup_uffd, UffdFork, KRetProbe, [UffdChangeBegin];
    /// `userfaultfd_event_wait_completion(ctx, ewq)`: the window closes.
    FexitUffdWait = 115 => fexit_uffd_wait, UffdEventWait, FExit, [UffdChangeEnd];
    KprobeUffdWait = 116 => kprobe_uffd_wait, UffdEventWait, KProbe, [];
    KretprobeUffdWait = 117 => kretprobe_uffd_wait, UffdEventWait, KRetProbe, [UffdChangeEnd];
    /// `mremap_userfaultfd_prep(vma, vm_ctx)`.
    FexitMremapUffdPrep = 118 => fexit_mremap_uffd_prep, UffdRemap, FExit, [UffdChangeBegin];
    KprobeMremapUffdPrep = 119 => kprobe_mremap_uffd_prep, UffdRemap, KProbe, [];
    KretprobeMremapUffdPrep = 120 => kretprobe_mremap_uffd_prep, UffdRemap, KRetProbe, [UffdChangeBegin];
    /// `userfaultfd_unmap_prep(mm|vma, start, end, unmaps)` → int.
    FexitUnmapUffdPrep = 122 => fexit_unmap_uffd_prep, UffdUnmap, FExit, [UffdChangeBegin];
    KprobeUnmapUffdPrep = 123 => kprobe_unmap_uffd_prep, UffdUnmap, KProbe, [];
    KretprobeUnmapUffdPrep = 124 => kretprobe_unmap_uffd_prep, UffdUnmap, KRetProbe, [UffdChangeBegin];
    /// `userfaultfd_remove(vma, start, end)`: MADV_DONTNEED/REMOVE on a registered range.
    FentryUffdRemove = 125 => fentry_uffd_remove, UffdRemove, FEntry, [UffdChangeBegin];
    KprobeUffdRemove = 126 => kprobe_uffd_remove, UffdRemove, KProbe, [UffdChangeBegin];
    /// `userfaultfd_ioctl(file, cmd, arg)` → long (every UFFDIO_COPY result).
    FexitUffdIoctl = 127 => fexit_uffd_ioctl, UffdIoctl, FExit, [UffdCopyDone];
    KprobeUffdIoctl = 128 => kprobe_uffd_ioctl, UffdIoctl, KProbe, [];
    KretprobeUffdIoctl = 129 => kretprobe_uffd_ioctl, UffdIoctl, KRetProbe, [UffdCopyDone];
    /// `mark_oom_victim(tsk)` (5.x: the tracepoint has no task pointer).
    FexitMarkOomVictim = 130 => fexit_mark_oom_victim, MarkVictim, FExit, [MarkVictim];
    KprobeMarkOomVictim = 131 => kprobe_mark_oom_victim, MarkVictim, KProbe, [];
    KretprobeMarkOomVictim = 132 => kretprobe_mark_oom_victim, MarkVictim, KRetProbe, [MarkVictim];
    /// `migrate_pages(…, mode, reason, …)` → int (before 6.x tracepoints).
    KprobeMigratePages = 133 => kprobe_migrate_pages, MigratePages, KProbe, [MigrateStart];
    KretprobeMigratePages = 134 => kretprobe_migrate_pages, MigratePages, KRetProbe, [MigrateEnd];
    /// `pmd_migration_entry_wait(mm, pmd)`: a fault waits on a THP migration entry.
    FentryPmdWait = 135 => fentry_pmd_wait, PmdMigrationEntryWait, FEntry, [HugeMigrationWaitStart];
    FexitPmdWait = 136 => fexit_pmd_wait, PmdMigrationEntryWait, FExit, [HugeMigrationWaitEnd];
    KprobePmdWait = 137 => kprobe_pmd_wait, PmdMigrationEntryWait, KProbe, [HugeMigrationWaitStart];
    KretprobePmdWait = 138 => kretprobe_pmd_wait, PmdMigrationEntryWait, KRetProbe, [HugeMigrationWaitEnd];
    /// `migration_entry_wait_huge(vma, ptep)` (5.19–6.9): a hugetlb migration entry.
    FentryHugeWait2 = 139 => fentry_huge_wait_2, MigrationEntryWaitHuge, FEntry, [HugeMigrationWaitStart];
    FexitHugeWait2 = 140 => fexit_huge_wait_2, MigrationEntryWaitHuge, FExit, [HugeMigrationWaitEnd];
    KprobeHugeWait2 = 141 => kprobe_huge_wait_2, MigrationEntryWaitHuge, KProbe, [HugeMigrationWaitStart];
    KretprobeHugeWait2 = 142 => kretprobe_huge_wait_2, MigrationEntryWaitHuge, KRetProbe, [HugeMigrationWaitEnd];
    /// `migration_entry_wait_huge(vma, mm, pte)` (≤ 5.18) or `(vma, addr, ptep)` (6.10+).
    FentryHugeWait3 = 143 => fentry_huge_wait_3, MigrationEntryWaitHuge, FEntry, [HugeMigrationWaitStart];
    FexitHugeWait3 = 144 => fexit_huge_wait_3, MigrationEntryWaitHuge, FExit, [HugeMigrationWaitEnd];
    KprobeHugeWait3 = 145 => kprobe_huge_wait_3, MigrationEntryWaitHuge, KProbe, [HugeMigrationWaitStart];
    KretprobeHugeWait3 = 146 => kretprobe_huge_wait_3, MigrationEntryWaitHuge, KRetProbe, [HugeMigrationWaitEnd];
    /// `userfaultfd_event_wait_completion(ctx, ewq)` entry: the event kind
    /// before the reader zeroes it.
    FentryUffdWait = 147 => fentry_uffd_wait, UffdEventWait, FEntry, [];
    /// `userfaultfd_release(inode, file)`: the context's last file reference
    /// is gone; its `UFFD_CTX` entry is removed.
    FentryUffdRelease = 148 => fentry_uffd_release, UffdRelease, FEntry, [];
    KprobeUffdRelease = 149 => kprobe_uffd_release, UffdRelease, KProbe, [];
}

impl ProbeId {
    pub const fn rung(self) -> Rung {
        self.kind().rung()
    }

    /// Whether this program emits records of kind `id`.
    pub fn emits(self, id: EventId) -> bool {
        self.events().contains(&id)
    }

    /// Whether this program writes `id` now, or wrote it before the in-kernel
    /// copy filter ([`LEGACY_EVENTS`]: the uffd_ioctl and mfill_copy
    /// programs): what a trace file may say.
    pub fn wrote(self, id: EventId) -> bool {
        self.emits(id)
            || (LEGACY_EVENTS.contains(&id)
                && matches!(self.hook(), HookId::UffdIoctl | HookId::MfillCopy))
    }
}

impl HookId {
    /// The programs that serve this hook, in id order.
    pub fn probes(self) -> impl Iterator<Item = ProbeId> {
        ProbeId::ALL
            .iter()
            .copied()
            .filter(move |p| p.hook() == self)
    }

    /// Whether a program of this hook emits `id`.
    pub fn emits(self, id: EventId) -> bool {
        self.probes().any(|p| p.emits(id))
    }
}

impl EventId {
    /// The hooks whose programs emit this event kind, in hook order.
    pub fn hooks(self) -> impl Iterator<Item = HookId> {
        HookId::ALL.iter().copied().filter(move |h| h.emits(self))
    }

    /// Records whose program opens the fault gate (`maps::state::FAULT_GATE`).
    /// They wake the reader at once rather than when a batch is pending: the
    /// fault programs may be attached only while the gate is open, and the
    /// reader attaches them.
    pub const fn opens_fault_gate(self) -> bool {
        matches!(
            self,
            EventId::MarkVictim | EventId::ReapStart | EventId::MreleaseEnter
        )
    }
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
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn ids_and_names_roundtrip_and_are_unique() {
        fn check<T: Copy + Ord + core::fmt::Debug>(
            all: &[T],
            id: impl Fn(T) -> u32,
            name: impl Fn(T) -> &'static str,
            by_id: impl Fn(u32) -> Option<T>,
            by_name: impl Fn(&str) -> Option<T>,
            max: u32,
        ) {
            let (mut ids, mut names) = (BTreeSet::new(), BTreeSet::new());
            for v in all {
                assert!(ids.insert(id(*v)), "{v:?}: duplicate id");
                assert!(names.insert(name(*v)), "{v:?}: duplicate name");
                assert_eq!(by_id(id(*v)), Some(*v));
                assert_eq!(by_name(name(*v)), Some(*v));
                assert!(id(*v) < max);
            }
            let decodable = (0..max).filter(|v| by_id(*v).is_some()).count();
            assert_eq!(decodable, all.len());
        }
        check(
            EventId::ALL,
            |v| v as u32,
            EventId::name,
            EventId::from_u32,
            EventId::from_name,
            MAX_EVENT_ID,
        );
        check(
            ProbeId::ALL,
            |v| v as u32,
            ProbeId::name,
            ProbeId::from_u32,
            ProbeId::from_name,
            MAX_PROBES,
        );
        check(
            HookId::ALL,
            |v| v as u32,
            HookId::name,
            HookId::from_u32,
            HookId::from_name,
            64,
        );
        check(
            Rule::ALL,
            |v| v as u32,
            Rule::name,
            Rule::from_u32,
            Rule::from_name,
            8,
        );
    }

    /// Every hook has a program, every event kind a program that emits it,
    /// and every program emits only kinds it is allowed to (a program of a
    /// function rung never claims a tracepoint-only kind, and vice versa, is
    /// not checkable here: the host and VM tests compare every record).
    #[test]
    fn relations_are_complete() {
        for h in HookId::ALL {
            assert!(h.probes().next().is_some(), "{h}: no program");
        }
        for e in EventId::ALL {
            assert_eq!(
                e.hooks().next().is_some(),
                !LEGACY_EVENTS.contains(e),
                "{e}: emitted by a program unless it is legacy"
            );
            assert!(!e.rules().is_empty(), "{e}: routed to no rule");
        }
        for p in ProbeId::ALL {
            let prefix = match p.kind() {
                ProbeKind::TpBtf | ProbeKind::Tracepoint => "tp_",
                ProbeKind::FEntry => "fentry_",
                ProbeKind::FExit => "fexit_",
                ProbeKind::KProbe => "kprobe_",
                ProbeKind::KRetProbe => "kretprobe_",
            };
            assert!(
                p.name().starts_with(prefix),
                "{p:?}: kind {} but named {}",
                p.kind(),
                p.name()
            );
            assert_eq!(program_by_name(p.name()), Some(*p));
        }
    }

    fn program_by_name(name: &str) -> Option<ProbeId> {
        ProbeId::from_name(name)
    }

    #[test]
    fn every_payload_field_roundtrips_through_its_trace_name() {
        use crate::event::{Token, Value};
        for id in EventId::ALL {
            let mut d = Data::zeroed(*id);
            let mut seen = Vec::new();
            d.fields()
                .for_each(&mut |name, v| seen.push((name, format!("{v:?}"))));
            for (name, _) in &seen {
                // A field set from its own rendering keeps its value.
                let mut copy = d;
                let mut tok = None;
                d.fields().for_each(&mut |n, v| {
                    if n == *name {
                        tok = Some(match v {
                            Value::Unsigned(_) | Value::Signed(_) => "0".to_owned(),
                            Value::Hex(_) => "0x0".to_owned(),
                            Value::Bool(b) => b.to_string(),
                            Value::Str(_) => String::new(),
                            Value::Name(s) => s.to_owned(),
                            Value::Null => "null".to_owned(),
                        })
                    }
                });
                let text = tok.expect("rendered");
                let token = match text.as_str() {
                    "true" => Token::Bool(true),
                    "false" => Token::Bool(false),
                    "null" => Token::Null,
                    t if t.starts_with("0x")
                        || t.is_empty()
                        || t.chars().any(char::is_alphabetic) =>
                    {
                        Token::Str(t)
                    }
                    t => Token::Num(t),
                };
                assert_eq!(copy.fields_mut().set(name, token), Ok(true), "{id}.{name}");
                assert_eq!(copy, d, "{id}.{name}");
            }
            assert_eq!(d.fields_mut().set("no_such_field", Token::Null), Ok(false));
        }
    }
}
