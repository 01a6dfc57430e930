//! The pure core of the monitor: the decoded event model, the trace file format
//! and the race detector.
//!
//! **Architecture invariant:** this crate does no IO, reads no clock, spawns
//! nothing and depends on neither aya nor tokio (the crate graph enforces it:
//! see `Cargo.toml`; `clippy.toml` forbids the std clock and IO entry points).
//! Every function here is deterministic in its inputs.
//!
//! **Architecture invariant:** nothing here fails or panics on odd input.
//! Malformed records and lines are errors returned to the caller; events in an
//! unexpected order are evidence, not bugs.

pub mod event;
pub mod finding;
pub mod tracefile;

pub use event::{Data, Event};
pub use finding::{Finding, FindingKind, Severity};
