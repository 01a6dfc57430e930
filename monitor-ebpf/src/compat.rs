//! BPF object for kernels without BPF atomic fetch instructions (before 5.12,
//! e.g. Debian 11's 5.10): the verifier there rejects any `BPF_STX` with a
//! non-zero `imm`, even in code it would never reach, so this object contains none.
#![no_std]
#![no_main]
// Atomic read-modify-write is only reachable through intrinsics on BPF targets.
#![feature(core_intrinsics, asm_experimental_arch)]
#![expect(
    internal_features,
    reason = "atomic_xadd is the only way to emit BPF atomics"
)]

/// Read-modify-written sequence numbers: two CPUs may share one (`SEQ_NON_ATOMIC`).
const ATOMIC_SEQ: bool = false;

include!("programs.rs");
