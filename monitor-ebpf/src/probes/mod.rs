//! One file per hook family. Each file starts with the kernel code path or the
//! tracepoint prototype it relies on. Every program is a thin entry point that
//! counts its hit and calls a `try_*` function; nothing here can panic.

pub mod exec;
pub mod fault;
pub mod migrate;
pub mod mm;
pub mod oom;
pub mod task;
pub mod uffd;
