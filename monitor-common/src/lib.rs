//! The event contract between the BPF programs (`monitor-ebpf`) and userspace.
//!
//! Everything that crosses the kernel/user boundary is defined here, once:
//!
//! * [`catalogue`]: every event kind, payload, hook and BPF program and how
//!   they relate (which program serves which hook and emits which events,
//!   which rules each event kind is routed to), one table row each.
//! * [`event`]: the wire records. Every record starts with an [`event::EventHeader`]
//!   followed by the payload struct named by its [`catalogue::EventId`].
//! * [`maps`]: map names and default sizes, the counter layout.
//! * [`config`]: the read-only configuration userspace writes into the BPF object
//!   before loading it (kernel struct offsets resolved from the running kernel's
//!   BTF, flag bits, filters).
//!
//! Layout rules (checked at compile time in [`event`] and [`catalogue`]):
//! every struct is `#[repr(C)]`, 8-byte aligned, and has no implicit padding
//! (explicit `_pad` fields instead); booleans are `u32`; ids are never reused.
#![cfg_attr(not(any(test, feature = "std")), no_std)]

pub mod catalogue;
pub mod config;
pub mod event;
pub mod maps;
mod named;
pub mod scan;

pub use named::Named;

/// Bits of `mm_struct::flags` the monitor reads. `MMF_OOM_SKIP` (21) and
/// `MMF_UNSTABLE` (22) have not moved since they were introduced (v4.9); the bits
/// around them were renumbered in v6.0 and v6.18 (`docs/kernel.md`, "mm->flags"),
/// so nothing else is interpreted.
pub mod mmf {
    pub const MMF_OOM_SKIP: u32 = 21;
    pub const MMF_UNSTABLE: u32 = 22;
}

/// `task_struct::flags` values (identical in 5.10, 6.1, 6.12 and 6.18).
pub mod pf {
    pub const PF_EXITING: u32 = 0x0000_0004;
    pub const PF_IO_WORKER: u32 = 0x0000_0010;
    pub const PF_WQ_WORKER: u32 = 0x0000_0020;
    /// Since v6.4; never set on older kernels.
    pub const PF_USER_WORKER: u32 = 0x0000_4000;
    pub const PF_KTHREAD: u32 = 0x0020_0000;
}

/// `vm_fault_t` bits returned by `handle_mm_fault`.
pub mod vm_fault {
    pub const OOM: u32 = 0x0001;
    pub const SIGBUS: u32 = 0x0002;
    pub const MAJOR: u32 = 0x0004;
    pub const HWPOISON: u32 = 0x0010;
    pub const HWPOISON_LARGE: u32 = 0x0020;
    pub const SIGSEGV: u32 = 0x0040;
    pub const NOPAGE: u32 = 0x0100;
    pub const RETRY: u32 = 0x0400;
    pub const FALLBACK: u32 = 0x0800;
    pub const COMPLETED: u32 = 0x4000;
    /// `VM_FAULT_ERROR` as the kernel defines it.
    pub const ERROR: u32 = OOM | SIGBUS | SIGSEGV | HWPOISON | HWPOISON_LARGE | FALLBACK;
}

/// `FAULT_FLAG_*` bits of `handle_mm_fault`'s `flags` (the same values since
/// v3.x: `include/linux/mm_types.h` `enum fault_flag`, `#define`s in
/// `include/linux/mm.h` before 5.13).
pub mod fault_flag {
    /// Set by the arch fault handler only for a fault taken in user mode
    /// (`user_mode(regs)`); absent for `copy_from_user`/`get_user` in a
    /// syscall and for GUP.
    pub const USER: u32 = 0x0040;
    /// GUP on an mm other than `current->mm`.
    pub const REMOTE: u32 = 0x0080;
}

/// `vm_area_struct::vm_flags` bits used by the migration rule.
pub mod vm_flags {
    pub const VM_GROWSDOWN: u64 = 0x0000_0100;
    pub const VM_SEQ_READ: u64 = 0x0000_8000;
    pub const VM_RAND_READ: u64 = 0x0001_0000;
    /// `VM_STACK_INCOMPLETE_SETUP` on x86-64 (`VM_STACK_EARLY` is 0 there): the
    /// otherwise impossible combination exec uses to mark its temporary stack.
    pub const VM_STACK_INCOMPLETE_SETUP: u64 = VM_RAND_READ | VM_SEQ_READ;
}

/// The `UFFDIO_COPY` ioctl command (`_IOWR(0xAA, 3, struct uffdio_copy)`).
pub const UFFDIO_COPY: u32 = 0xc028_aa03;

/// `-EAGAIN` as returned by the kernel.
pub const EAGAIN: i64 = -11;
