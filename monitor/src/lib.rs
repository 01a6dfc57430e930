//! Userspace of the mm race monitor: loading and attaching the BPF programs,
//! reading their records, and the commands (`trace`, `analyze`, the `run`
//! daemon).
//!
//! The pure parts (event model, trace format, detector) live in
//! `monitor-detector`; this crate does the IO around them.
//!
//! Nothing here uses `print!`/`eprintln!`: they panic on a closed stream and
//! block on a stalled one. Standard streams are written through [`output`].
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod btf;
pub mod btfcheck;
pub mod build_info;
pub mod cgroup;
pub mod cli;
pub mod compress;
pub mod daemon;
pub mod dying;
pub mod gate;
pub mod ingest;
pub mod journal;
pub mod loader;
pub mod output;
pub mod plan;
pub mod render;
pub mod report;
pub mod sanity;
pub mod secfs;
pub mod session;
pub mod sys;
pub mod tracefile;
