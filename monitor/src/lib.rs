//! Userspace of the mm race monitor: loading and attaching the BPF programs,
//! reading their records, and the commands (`trace`, `analyze`, the `run`
//! daemon).
//!
//! The pure parts (event model, trace format, detector) live in
//! `monitor-detector`; this crate does the IO around them.

pub mod btf;
pub mod build_info;
pub mod cli;
pub mod daemon;
pub mod gate;
pub mod ingest;
pub mod journal;
pub mod loader;
pub mod plan;
pub mod render;
pub mod report;
pub mod session;
pub mod sys;
pub mod tracefile;
