//! The only place that reads kernel memory.
//!
//! Rust BPF cannot emit CO-RE relocations, so struct layouts are not compiled
//! in. Userspace resolves every field it needs from the running kernel's BTF
//! (`monitor/src/btf.rs`) and patches the offsets into [`MONITOR_CONFIG`] before
//! the object is loaded.
//!
//! Accessors return plain values with a documented sentinel when the kernel
//! lacks the field or the read faults: 0 for pointers, flag words, pids and
//! addresses (none of which is 0 for a live object), -1 where 0 is a real
//! value. Not `Option`: the compiler loads an `Option`'s payload before testing
//! it, and for `None` that payload is uninitialised stack, which verifiers
//! before 6.3 (5.10, 6.1) reject. Every path here writes what it returns.

use core::mem::MaybeUninit;

use aya_ebpf::helpers::{
    bpf_probe_read_kernel_str_bytes,
    generated::{
        bpf_get_current_task, bpf_probe_read_kernel as raw_read_kernel,
        bpf_probe_read_user as raw_read_user,
    },
};
use monitor_common::config::{Config, Field, OFFSET_NONE};

/// Patched by userspace through `EbpfLoader::override_global` (read-only to the
/// programs, so the verifier treats the values as constants).
#[unsafe(no_mangle)]
static MONITOR_CONFIG: Config = Config::UNSET;

/// The configuration value behind `p`, read so that the compiler cannot fold
/// the build-time placeholder into the code.
#[inline(always)]
fn volatile<T: Copy>(p: *const T) -> T {
    // SAFETY: `p` points into the MONITOR_CONFIG static.
    unsafe { core::ptr::read_volatile(p) }
}

/// Offset of `field` in the running kernel, or `u64::MAX` if it has none.
#[inline(always)]
pub fn offset(field: Field) -> u64 {
    let base = (&raw const MONITOR_CONFIG.offsets).cast::<u32>();
    // SAFETY: `Field` values are all < FIELD_COUNT (checked in monitor-common).
    let v = volatile(unsafe { base.add(field as usize) });
    if v == OFFSET_NONE { u64::MAX } else { u64::from(v) }
}

#[inline(always)]
pub fn mmf_unstable_bit() -> u32 {
    volatile(&raw const MONITOR_CONFIG.mmf_unstable_bit)
}

#[inline(always)]
pub fn wakeup_bytes() -> u64 {
    volatile(&raw const MONITOR_CONFIG.wakeup_bytes)
}

#[inline(always)]
pub fn userfaultfd_ioctl() -> u64 {
    volatile(&raw const MONITOR_CONFIG.userfaultfd_ioctl)
}

/// Reads a `T` of kernel memory at `addr` into a zero-initialised slot;
/// returns (value, ok). On failure the value is all zeroes.
#[inline(always)]
pub fn probe_kernel<T: Copy>(addr: u64) -> (T, bool) {
    let mut v = MaybeUninit::<T>::zeroed();
    // SAFETY: the helper validates `addr` and writes at most size_of::<T>()
    // bytes into `v`, which is already initialised (zeroed).
    let rc = unsafe {
        raw_read_kernel(v.as_mut_ptr().cast(), size_of::<T>() as u32, addr as *const _)
    };
    // SAFETY: zeroed above; T is a plain integer type everywhere we use this.
    (unsafe { v.assume_init() }, rc == 0)
}

/// Like [`probe_kernel`] for user memory.
#[inline(always)]
pub fn probe_user<T: Copy>(addr: u64) -> (T, bool) {
    let mut v = MaybeUninit::<T>::zeroed();
    // SAFETY: as for probe_kernel; the helper validates the user address.
    let rc =
        unsafe { raw_read_user(v.as_mut_ptr().cast(), size_of::<T>() as u32, addr as *const _) };
    // SAFETY: zeroed above.
    (unsafe { v.assume_init() }, rc == 0)
}

/// Reads the `T` at `base + offset(field)`; (zeroes, false) if `base` is
/// NULL, the kernel has no such field, or the read faults.
#[inline(always)]
pub fn read<T: Copy>(base: u64, field: Field) -> (T, bool) {
    let off = offset(field);
    if base == 0 || off == u64::MAX {
        // SAFETY: T is a plain integer type; all-zero is a valid value.
        return (unsafe { MaybeUninit::<T>::zeroed().assume_init() }, false);
    }
    probe_kernel::<T>(base + off)
}

/// A pointer or word field; 0 if unavailable.
#[inline(always)]
pub fn read_u64(base: u64, field: Field) -> u64 {
    read::<u64>(base, field).0
}

#[inline(always)]
pub fn read_u32(base: u64, field: Field) -> u32 {
    read::<u32>(base, field).0
}

/// `current` as a kernel address.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: helper without preconditions, available to all tracing programs.
    unsafe { bpf_get_current_task() }
}

#[inline(always)]
pub fn task_flags(task: u64) -> u32 {
    read_u32(task, Field::TaskFlags)
}

#[inline(always)]
pub fn task_mm(task: u64) -> u64 {
    read_u64(task, Field::TaskMm)
}

#[inline(always)]
pub fn task_pid(task: u64) -> u32 {
    read_u32(task, Field::TaskPid)
}

#[inline(always)]
pub fn task_tgid(task: u64) -> u32 {
    read_u32(task, Field::TaskTgid)
}

#[inline(always)]
pub fn task_comm(task: u64) -> [u8; 16] {
    read::<[u8; 16]>(task, Field::TaskComm).0
}

/// `task->signal->oom_mm`: the mm the OOM killer marked (set by `mark_oom_victim`).
#[inline(always)]
pub fn task_oom_mm(task: u64) -> u64 {
    read_u64(read_u64(task, Field::TaskSignal), Field::SignalOomMm)
}

/// Word 0 of `mm->flags` (`unsigned long` before 6.18, `mm_flags_t` bitmap
/// after); 0 if unreadable (a live mm always has dumpable bits set).
#[inline(always)]
pub fn mm_flags(mm: u64) -> u64 {
    read_u64(mm, Field::MmFlags)
}

#[inline(always)]
pub fn mm_is_unstable(flags: u64) -> bool {
    flags & (1u64 << (mmf_unstable_bit() & 63)) != 0
}

#[inline(always)]
pub fn vma_mm(vma: u64) -> u64 {
    read_u64(vma, Field::VmaVmMm)
}

#[inline(always)]
pub fn vma_start(vma: u64) -> u64 {
    read_u64(vma, Field::VmaVmStart)
}

#[inline(always)]
pub fn vma_end(vma: u64) -> u64 {
    read_u64(vma, Field::VmaVmEnd)
}

/// `vma->vm_flags` (a union with `__vm_flags` since 6.3).
#[inline(always)]
pub fn vma_flags(vma: u64) -> u64 {
    read_u64(vma, Field::VmaVmFlags)
}

/// The value of the `pmd_t` at `pmd` (for a migration entry, the swap entry
/// naming the folio being migrated); 0 if unreadable.
#[inline(always)]
pub fn pmd_val(pmd: u64) -> u64 {
    read_u64(pmd, Field::PmdVal)
}

/// The value of the (hugetlb) `pte_t` at `pte`; 0 if unreadable.
#[inline(always)]
pub fn pte_val(pte: u64) -> u64 {
    read_u64(pte, Field::PteVal)
}

/// `vma->vm_userfaultfd_ctx.ctx` (0 when the VMA is not registered).
#[inline(always)]
pub fn vma_uffd_ctx(vma: u64) -> u64 {
    read_u64(vma, Field::VmaUffdCtx)
}

/// `vm_ctx->ctx` of a `struct vm_userfaultfd_ctx *`.
#[inline(always)]
pub fn vm_uffd_ctx(vm_ctx: u64) -> u64 {
    read_u64(vm_ctx, Field::VmUffdCtxCtx)
}

/// `tlb->mm` of a `struct mmu_gather *`.
#[inline(always)]
pub fn tlb_mm(tlb: u64) -> u64 {
    read_u64(tlb, Field::MmuGatherMm)
}

/// Whether a VMA is exec's temporary stack: `vma_is_temporary_stack()` —
/// a stack VMA carrying the otherwise impossible `VM_STACK_INCOMPLETE_SETUP`.
#[inline(always)]
pub fn is_temporary_stack(vm_flags: u64) -> bool {
    use monitor_common::vm_flags::{VM_GROWSDOWN, VM_STACK_INCOMPLETE_SETUP};
    vm_flags & VM_GROWSDOWN != 0
        && vm_flags & VM_STACK_INCOMPLETE_SETUP == VM_STACK_INCOMPLETE_SETUP
}

#[inline(always)]
pub fn uffd_ctx_features(ctx: u64) -> u32 {
    read_u32(ctx, Field::UffdCtxFeatures)
}

#[inline(always)]
pub fn uffd_ctx_mm(ctx: u64) -> u64 {
    read_u64(ctx, Field::UffdCtxMm)
}

/// `ctx->mmap_changing`, or -1 if unreadable.
#[inline(always)]
pub fn uffd_ctx_mmap_changing(ctx: u64) -> i32 {
    match read::<i32>(ctx, Field::UffdCtxMmapChanging) {
        (v, true) => v,
        _ => -1,
    }
}

/// `ewq->msg.event` of a `struct userfaultfd_wait_queue` (0 if unknown).
#[inline(always)]
pub fn uffd_wq_event(ewq: u64) -> u32 {
    u32::from(read::<u8>(ewq, Field::UffdWqMsgEvent).0)
}

#[inline(always)]
pub fn list_next(head: u64) -> u64 {
    read_u64(head, Field::ListHeadNext)
}

#[inline(always)]
pub fn list_prev(head: u64) -> u64 {
    read_u64(head, Field::ListHeadPrev)
}

/// The `struct userfaultfd_unmap_ctx` whose `list` member is at `node`
/// (`container_of`): (ctx, start, end), zeroes if unreadable.
#[inline(always)]
pub fn unmap_ctx_at(node: u64) -> (u64, u64, u64) {
    let off = offset(Field::UnmapCtxList);
    if node == 0 || off == u64::MAX || node < off {
        return (0, 0, 0);
    }
    let base = node - off;
    (
        read_u64(base, Field::UnmapCtxCtx),
        read_u64(base, Field::UnmapCtxStart),
        read_u64(base, Field::UnmapCtxEnd),
    )
}

#[inline(always)]
pub fn bprm_mm(bprm: u64) -> u64 {
    read_u64(bprm, Field::BprmMm)
}

/// Copies `bprm->filename` (a kernel string) into `dst`; false on failure.
#[inline(always)]
pub fn bprm_filename(bprm: u64, dst: &mut [u8]) -> bool {
    let name = read_u64(bprm, Field::BprmFilename);
    if name == 0 {
        return false;
    }
    // SAFETY: the helper bounds the copy by `dst.len()` and validates `name`.
    unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, dst) }.is_ok()
}

/// The `struct file *` behind descriptor `fd` of `task`, or 0.
#[inline(always)]
pub fn task_file(task: u64, fd: u32) -> u64 {
    let fdt = read_u64(read_u64(task, Field::TaskFiles), Field::FilesFdt);
    let max = read_u32(fdt, Field::FdtableMaxFds);
    if fd >= max {
        return 0;
    }
    let fd_array = read_u64(fdt, Field::FdtableFd);
    if fd_array == 0 {
        return 0;
    }
    probe_kernel::<u64>(fd_array + u64::from(fd) * 8).0
}

/// The `userfaultfd_ctx` behind `file` if it is a userfaultfd (its
/// `f_op->unlocked_ioctl` is `userfaultfd_ioctl`, whose address userspace took
/// from kallsyms), else 0.
#[inline(always)]
pub fn file_uffd_ctx(file: u64) -> u64 {
    let want = userfaultfd_ioctl();
    if want == 0 || file == 0 {
        return 0;
    }
    let f_op = read_u64(file, Field::FileFop);
    if read_u64(f_op, Field::FopsUnlockedIoctl) != want {
        return 0;
    }
    read_u64(file, Field::FilePrivateData)
}

#[inline(always)]
fn memory_cgrp_id() -> u32 {
    volatile(&raw const MONITOR_CONFIG.memory_cgrp_id)
}

/// `cgrp->kn->id` of a `struct cgroup *`: the cgroup's id, its kernfs inode
/// number (what `bpf_get_current_cgroup_id()` returns for the v2 one); 0 if
/// unreadable.
#[inline(always)]
fn cgroup_kn_id(cgrp: u64) -> u64 {
    read_u64(read_u64(cgrp, Field::CgroupKn), Field::KernfsNodeId)
}

/// The cgroup v2 id of `task` (`task->cgroups->dfl_cgrp`), 0 if unreadable.
/// `task->cgroups` is RCU-protected: a task moved meanwhile reads its old
/// or new css_set, both valid while the program runs.
#[inline(always)]
pub fn task_cgroup_id(task: u64) -> u64 {
    cgroup_kn_id(read_u64(read_u64(task, Field::TaskCgroups), Field::CssSetDflCgrp))
}

/// The id of `task`'s memory cgroup
/// (`task->cgroups->subsys[memory_cgrp_id]->cgroup`), 0 without the
/// memory controller or if unreadable.
#[inline(always)]
pub fn task_memcg_id(task: u64) -> u64 {
    let idx = memory_cgrp_id();
    let off = offset(Field::CssSetSubsys);
    let cset = read_u64(task, Field::TaskCgroups);
    // `CGROUP_SUBSYS_COUNT` is below 16 on every kernel; userspace checks
    // the index against the array's length.
    if cset == 0 || off == u64::MAX || idx >= 64 {
        return 0;
    }
    let css = probe_kernel::<u64>(cset + off + 8 * u64::from(idx)).0;
    cgroup_kn_id(read_u64(css, Field::CssCgroup))
}
