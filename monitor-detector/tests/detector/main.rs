//! The detector's single integration test binary.
//!
//! * `fixtures`: the data-driven tests: every compact trace in
//!   `tests/fixtures/` and every pre-catalogue trace in `tests/data/legacy/`
//!   is analysed and compared with its snapshot; verdicts are pinned in a table.
//! * `properties`: property tests: benign interleavings never fire, injected
//!   races are always found, reordering within the window changes nothing.
//! * `api`: the analysis API (errors, rendering, exit status) and the
//!   streaming detector's contract (determinism, once per window, bounds).
//! * `support`: the trace recorder and the compact-text parser.

mod api;
mod fixtures;
mod properties;
mod support;
