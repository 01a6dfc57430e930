//! BPF object for kernels with BPF atomic fetch instructions (5.12+).
#![no_std]
#![no_main]
// Atomic read-modify-write is only reachable through intrinsics on BPF targets.
#![feature(core_intrinsics, asm_experimental_arch)]
#![expect(
    internal_features,
    reason = "atomic_xadd is the only way to emit BPF atomics"
)]

/// Per-mm sequence numbers are taken with an atomic fetch-and-add.
const ATOMIC_SEQ: bool = true;

include!("programs.rs");
