//! This library target exists so that `monitor` can list the BPF crate as a build
//! dependency (cargo then rebuilds the objects when it changes). The programs live
//! in the two binary targets: `monitor-ebpf` (5.12+ kernels, atomic per-mm
//! sequence numbers) and `monitor-ebpf-compat` (older kernels, no BPF atomic
//! fetch instructions). Both compile the same sources, see `programs.rs`.
#![no_std]
