//! The only place that reads kernel memory.
//!
//! Rust BPF cannot emit CO-RE relocations, so struct layouts are not compiled
//! in. Userspace resolves every field it needs from the running kernel's BTF
//! (`monitor/src/btf.rs`) and patches the offsets into [`MONITOR_CONFIG`] before
//! the object is loaded. Each accessor here returns `None` when the running
//! kernel lacks the field or the read faults; callers decide what an unknown
//! value means and mark the record (`hdr::READ_ERROR`).

use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, generated::bpf_get_current_task,
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

#[inline(always)]
pub fn offset(field: Field) -> Option<u64> {
    let base = (&raw const MONITOR_CONFIG.offsets).cast::<u32>();
    // SAFETY: `Field` values are all < FIELD_COUNT (checked in monitor-common).
    let v = volatile(unsafe { base.add(field as usize) });
    if v == OFFSET_NONE { None } else { Some(u64::from(v)) }
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

#[inline(always)]
pub fn config_flags() -> u32 {
    volatile(&raw const MONITOR_CONFIG.flags)
}

/// Reads the `T` at `base + offset(field)`.
#[inline(always)]
pub fn read<T: Copy>(base: u64, field: Field) -> Option<T> {
    if base == 0 {
        return None;
    }
    let off = offset(field)?;
    // SAFETY: bpf_probe_read_kernel validates the address; a bad pointer is an
    // error return, not a fault.
    unsafe { bpf_probe_read_kernel((base + off) as *const T) }.ok()
}

/// Reads a kernel pointer; `Some(0)` is a NULL pointer that was read successfully.
#[inline(always)]
pub fn read_ptr(base: u64, field: Field) -> Option<u64> {
    read::<u64>(base, field)
}

/// `current` as a kernel address.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: helper without preconditions, available to all tracing programs.
    unsafe { bpf_get_current_task() }
}

#[inline(always)]
pub fn task_flags(task: u64) -> Option<u32> {
    read::<u32>(task, Field::TaskFlags)
}

#[inline(always)]
pub fn task_mm(task: u64) -> Option<u64> {
    read_ptr(task, Field::TaskMm)
}

#[inline(always)]
pub fn task_pid(task: u64) -> Option<u32> {
    read::<u32>(task, Field::TaskPid)
}

#[inline(always)]
pub fn task_tgid(task: u64) -> Option<u32> {
    read::<u32>(task, Field::TaskTgid)
}

#[inline(always)]
pub fn task_comm(task: u64) -> Option<[u8; 16]> {
    read::<[u8; 16]>(task, Field::TaskComm)
}

/// `task->signal->oom_mm`: the mm the OOM killer marked (set by `mark_oom_victim`).
#[inline(always)]
pub fn task_oom_mm(task: u64) -> Option<u64> {
    let signal = read_ptr(task, Field::TaskSignal)?;
    read_ptr(signal, Field::SignalOomMm)
}

/// Word 0 of `mm->flags` (`unsigned long` before 6.18, `mm_flags_t` bitmap after).
#[inline(always)]
pub fn mm_flags(mm: u64) -> Option<u64> {
    read::<u64>(mm, Field::MmFlags)
}

#[inline(always)]
pub fn mm_is_unstable(flags: u64) -> bool {
    flags & (1u64 << (mmf_unstable_bit() & 63)) != 0
}

#[inline(always)]
pub fn uffd_ctx_mm(ctx: u64) -> Option<u64> {
    read_ptr(ctx, Field::UffdCtxMm)
}

#[inline(always)]
pub fn uffd_ctx_mmap_changing(ctx: u64) -> Option<i32> {
    read::<i32>(ctx, Field::UffdCtxMmapChanging)
}

#[inline(always)]
pub fn bprm_mm(bprm: u64) -> Option<u64> {
    read_ptr(bprm, Field::BprmMm)
}

/// Copies `bprm->filename` (a kernel string) into `dst`.
#[inline(always)]
pub fn bprm_filename(bprm: u64, dst: &mut [u8]) -> Option<()> {
    let name = read_ptr(bprm, Field::BprmFilename)?;
    if name == 0 {
        return None;
    }
    // SAFETY: the helper bounds the copy by `dst.len()` and validates `name`.
    unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, dst) }
        .ok()
        .map(|_| ())
}

/// The `struct file *` behind descriptor `fd` of `task`, or `None`.
#[inline(always)]
pub fn task_file(task: u64, fd: u32) -> Option<u64> {
    let files = read_ptr(task, Field::TaskFiles)?;
    let fdt = read_ptr(files, Field::FilesFdt)?;
    let max = read::<u32>(fdt, Field::FdtableMaxFds)?;
    if fd >= max {
        return None;
    }
    let fd_array = read_ptr(fdt, Field::FdtableFd)?;
    if fd_array == 0 {
        return None;
    }
    // SAFETY: bounded by max_fds above; the helper validates the address.
    let file = unsafe { bpf_probe_read_kernel((fd_array + u64::from(fd) * 8) as *const u64) }
        .ok()?;
    if file == 0 { None } else { Some(file) }
}

/// The `userfaultfd_ctx` behind `file` if it is a userfaultfd: its
/// `f_op->unlocked_ioctl` is `userfaultfd_ioctl`, whose address userspace took
/// from kallsyms.
#[inline(always)]
pub fn file_uffd_ctx(file: u64) -> Option<u64> {
    let want = userfaultfd_ioctl();
    if want == 0 {
        return None;
    }
    let f_op = read_ptr(file, Field::FileFop)?;
    if read_ptr(f_op, Field::FopsUnlockedIoctl)? != want {
        return None;
    }
    read_ptr(file, Field::FilePrivateData)
}
