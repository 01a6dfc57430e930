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
//!
//! # Using the detector
//!
//! **Live** (the daemon): build a [`Detector`] from the running kernel's
//! release and the hook plan, feed every decoded record in ring-buffer order,
//! report loss as it is noticed, and call `finish` at shutdown:
//!
//! ```
//! use monitor_detector::{Detector, DetectorConfig};
//! # let hooks = Vec::new();
//! let mut det = Detector::new(DetectorConfig::new("6.12.117+deb12-cloud-amd64", hooks));
//! for cov in det.coverage() {
//!     // metrics / `monitor check`: cov.rule.name(), cov.state.name(), cov.reason()
//! #   let _ = cov;
//! }
//! # let events: Vec<monitor_detector::Event> = Vec::new();
//! for ev in events {
//!     for finding in det.push_event(ev) {
//!         // export finding.kind.name(), finding.severity.name(), …
//! #       let _ = finding;
//!     }
//! }
//! // det.push_loss(&loss) whenever the ring buffer dropped records.
//! let remaining = det.finish();
//! # assert!(remaining.is_empty());
//! ```
//!
//! **Coverage** without a detector: [`rules::coverage()`], given the hook plan.
//!
//! **Offline** (`monitor analyze FILE...`): see [`analyze`]: a
//! [`analyze::FileAnalyzer`] per file fed line by line, a [`analyze::Report`]
//! over all files rendering a table or JSON Lines, and the exit status.
//!
//! What each rule watches, and why a finding is a near miss, a violation or
//! uncertain, is documented in `docs/detection.md`.

pub mod analyze;
mod bounded;
pub mod detector;
pub mod era;
pub mod event;
pub mod finding;
pub mod json;
pub mod limits;
pub mod rules;
pub mod sequencer;
mod slots;
pub mod tracefile;
pub mod windows;
pub mod workload;

pub use analyze::{AnalysisError, ExitStatus, FileAnalyzer, FileReport, Report, analyze_texts};
pub use detector::{Detector, DetectorConfig, DetectorStats, Limits};
pub use event::{Data, Event, ProbeRef};
pub use finding::{Finding, FindingKind, Severity};
pub use rules::{
    Accessor, CoverageState, KernelPath, MissingPath, Needs, RuleCoverage, coverage, paths,
};
pub use windows::Window;
