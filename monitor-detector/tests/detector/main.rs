//! The detector's single integration test binary.
//!
//! * `fixtures`: the data-driven tests: every `tests/data/*.jsonl` trace is
//!   analysed and compared with its snapshot; verdicts are pinned in a table.
//! * `scenarios`: the builders the fixture traces are generated from.
//! * `properties`: property tests: benign interleavings never fire, injected
//!   races are always found, reordering within the window changes nothing.
//! * `api`: the analysis API (errors, rendering, exit status) and the
//!   streaming detector's contract (determinism, once per window, bounds).
//! * `support`: the trace recorder shared by all of the above.

mod api;
mod fixtures;
mod properties;
mod scenarios;
mod support;
