//! Read-only configuration that userspace writes into the BPF object's `.rodata`
//! before loading it ([`CONFIG_SYMBOL`]).
//!
//! Rust BPF code cannot emit CO-RE relocations, so kernel struct offsets are not
//! compiled in: userspace resolves each [`Field`] from the running kernel's BTF
//! and stores it in [`Config::offsets`]. The BPF side reads kernel memory only
//! through `monitor-ebpf/src/kernel.rs`, which consults this table; a field the
//! kernel does not have is [`OFFSET_NONE`] and its accessor returns a documented
//! sentinel (0, or -1 where 0 is a real value), never an `Option`.

/// Name of the global in the BPF object that holds the [`Config`].
pub const CONFIG_SYMBOL: &str = "MONITOR_CONFIG";

/// Offset value meaning "this kernel has no such field".
pub const OFFSET_NONE: u32 = u32::MAX;

/// Kernel struct fields the BPF programs read. The table [`Field::PATHS`] names
/// each one as `struct.member[.member…]` for the BTF resolver.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    TaskFlags = 0,
    TaskMm,
    TaskPid,
    TaskTgid,
    TaskComm,
    TaskSignal,
    TaskFiles,
    SignalOomMm,
    MmFlags,
    VmaVmMm,
    VmaVmStart,
    VmaVmEnd,
    VmaVmFlags,
    VmaUffdCtx,
    MmuGatherMm,
    UffdCtxMm,
    UffdCtxMmapChanging,
    BprmMm,
    BprmFilename,
    FilesFdt,
    FdtableFd,
    FdtableMaxFds,
    FilePrivateData,
    FileFop,
    UffdWqMsgEvent,
    FopsUnlockedIoctl,
    UffdCtxFeatures,
    UnmapCtxCtx,
    UnmapCtxList,
    UnmapCtxStart,
    UnmapCtxEnd,
    ListHeadNext,
    ListHeadPrev,
    VmUffdCtxCtx,
    PmdVal,
    PteVal,
    // Which cgroups a task is in (`task_struct.cgroups`, a `struct css_set *`).
    TaskCgroups,
    CssSetDflCgrp,
    CssSetSubsys,
    CssCgroup,
    CgroupKn,
    KernfsNodeId,
}

/// Number of [`Field`] values.
pub const FIELD_COUNT: usize = 42;

impl Field {
    /// Every field with the BTF path that resolves it. Paths go through named
    /// members; anonymous unions/structs on the way are searched transparently.
    pub const PATHS: [(Field, &'static str); FIELD_COUNT] = [
        (Field::TaskFlags, "task_struct.flags"),
        (Field::TaskMm, "task_struct.mm"),
        (Field::TaskPid, "task_struct.pid"),
        (Field::TaskTgid, "task_struct.tgid"),
        (Field::TaskComm, "task_struct.comm"),
        (Field::TaskSignal, "task_struct.signal"),
        (Field::TaskFiles, "task_struct.files"),
        (Field::SignalOomMm, "signal_struct.oom_mm"),
        // 6.18 made this a `mm_flags_t` (a one-word bitmap struct); word 0 is at
        // the same place and holds the same bits on x86-64.
        (Field::MmFlags, "mm_struct.flags"),
        (Field::VmaVmMm, "vm_area_struct.vm_mm"),
        (Field::VmaVmStart, "vm_area_struct.vm_start"),
        (Field::VmaVmEnd, "vm_area_struct.vm_end"),
        // In an anonymous union with `__vm_flags` since 6.3.
        (Field::VmaVmFlags, "vm_area_struct.vm_flags"),
        (Field::VmaUffdCtx, "vm_area_struct.vm_userfaultfd_ctx.ctx"),
        (Field::MmuGatherMm, "mmu_gather.mm"),
        (Field::UffdCtxMm, "userfaultfd_ctx.mm"),
        (Field::UffdCtxMmapChanging, "userfaultfd_ctx.mmap_changing"),
        (Field::BprmMm, "linux_binprm.mm"),
        (Field::BprmFilename, "linux_binprm.filename"),
        (Field::FilesFdt, "files_struct.fdt"),
        (Field::FdtableFd, "fdtable.fd"),
        (Field::FdtableMaxFds, "fdtable.max_fds"),
        (Field::FilePrivateData, "file.private_data"),
        (Field::FileFop, "file.f_op"),
        (Field::UffdWqMsgEvent, "userfaultfd_wait_queue.msg.event"),
        (Field::FopsUnlockedIoctl, "file_operations.unlocked_ioctl"),
        (Field::UffdCtxFeatures, "userfaultfd_ctx.features"),
        (Field::UnmapCtxCtx, "userfaultfd_unmap_ctx.ctx"),
        (Field::UnmapCtxList, "userfaultfd_unmap_ctx.list"),
        (Field::UnmapCtxStart, "userfaultfd_unmap_ctx.start"),
        (Field::UnmapCtxEnd, "userfaultfd_unmap_ctx.end"),
        (Field::ListHeadNext, "list_head.next"),
        (Field::ListHeadPrev, "list_head.prev"),
        (Field::VmUffdCtxCtx, "vm_userfaultfd_ctx.ctx"),
        // The page-table entry types: `typedef struct { pmdval_t pmd; } pmd_t`.
        (Field::PmdVal, "pmd_t.pmd"),
        (Field::PteVal, "pte_t.pte"),
        // A task's cgroups: `task->cgroups` is its `css_set`; `dfl_cgrp` its
        // cgroup v2 cgroup, `subsys[memory_cgrp_id]` its memory controller
        // state (on cgroup v1 a cgroup of the memory hierarchy); a cgroup's
        // id is `cgrp->kn->id`, the kernfs inode number (64-bit kernels,
        // 5.5+: `kernfs_node.id` is a u64).
        (Field::TaskCgroups, "task_struct.cgroups"),
        (Field::CssSetDflCgrp, "css_set.dfl_cgrp"),
        (Field::CssSetSubsys, "css_set.subsys"),
        (Field::CssCgroup, "cgroup_subsys_state.cgroup"),
        (Field::CgroupKn, "cgroup.kn"),
        (Field::KernfsNodeId, "kernfs_node.id"),
    ];

    pub const fn path(self) -> &'static str {
        Field::PATHS[self as usize].1
    }

    /// Fields without which nothing works: the monitor refuses to start if BTF
    /// cannot resolve them. The others only disable the hooks that need them.
    pub const fn is_required(self) -> bool {
        matches!(
            self,
            Field::TaskFlags | Field::TaskMm | Field::MmFlags | Field::VmaVmMm
        )
    }
}

/// The whole `.rodata` configuration. Plain integers only (it is patched into
/// the object as bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Byte offsets indexed by [`Field`]; [`OFFSET_NONE`] if absent.
    pub offsets: [u32; FIELD_COUNT],
    /// `MMF_UNSTABLE` bit number in `mm->flags` word 0.
    pub mmf_unstable_bit: u32,
    pub _pad0: u32,
    /// Ring buffer bytes pending after which a submit wakes the reader; below it
    /// records are submitted without a wakeup and the reader drains on a timer.
    pub wakeup_bytes: u64,
    /// Address of the `userfaultfd_ioctl` function (from kallsyms): a file whose
    /// `f_op->unlocked_ioctl` is this is a userfaultfd (data symbols such as
    /// `userfaultfd_fops` are missing without CONFIG_KALLSYMS_ALL); 0 if unknown.
    pub userfaultfd_ioctl: u64,
    /// Reserved for future flags (0).
    pub flags: u32,
    /// `memory_cgrp_id` of `enum cgroup_subsys_id` (the memory controller's
    /// index in `css_set.subsys`), [`OFFSET_NONE`] without CONFIG_MEMCG.
    pub memory_cgrp_id: u32,
}

impl Config {
    /// A configuration with every offset absent; what the object holds before
    /// userspace patches it.
    pub const UNSET: Config = Config {
        offsets: [OFFSET_NONE; FIELD_COUNT],
        mmf_unstable_bit: crate::mmf::MMF_UNSTABLE,
        _pad0: 0,
        wakeup_bytes: 64 * 1024,
        userfaultfd_ioctl: 0,
        flags: 0,
        memory_cgrp_id: OFFSET_NONE,
    };

    pub const fn offset(&self, field: Field) -> Option<u32> {
        let v = self.offsets[field as usize];
        if v == OFFSET_NONE { None } else { Some(v) }
    }
}

const _: () = {
    assert!(size_of::<Config>() == 4 * FIELD_COUNT + 4 + 4 + 8 + 8 + 4 + 4);
    assert!(
        FIELD_COUNT.is_multiple_of(2),
        "keep the offsets table a multiple of 8 bytes (adjust _pad0)"
    );
    assert!(size_of::<Config>().is_multiple_of(8));
    assert!(Field::KernfsNodeId as usize == FIELD_COUNT - 1);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_indexed_by_field() {
        for (i, (field, path)) in Field::PATHS.iter().enumerate() {
            assert_eq!(*field as usize, i, "{path}");
            assert!(path.contains('.'));
        }
    }
}
