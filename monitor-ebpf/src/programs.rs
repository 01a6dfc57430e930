// Shared crate body of both BPF objects (included by `main.rs` and `compat.rs`,
// which only differ in `ATOMIC_SEQ`).

mod emit;
mod kernel;
mod maps;
mod probes;
mod sanity;
mod stamp;
mod stash;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: every path that could panic is rejected
    // by the verifier or avoided by construction (no indexing without bounds).
    loop {}
}

/// GPL-compatible license, needed for `bpf_probe_read_kernel` and friends.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
