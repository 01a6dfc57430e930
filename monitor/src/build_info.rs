//! What this binary is: version, commit, build date and target, stamped by
//! `build.rs` (reproducible: the date is `SOURCE_DATE_EPOCH` or the commit's).
//! Shown by `monitor --version` and exported as `mmrace_build_info`.

/// The crate version (`0.1.0`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`unknown` outside a checkout).
pub const GIT_REV: &str = env!("MMRACE_GIT_REV");
/// UTC build date, `YYYY-MM-DDTHH:MM:SSZ`.
pub const BUILD_DATE: &str = env!("MMRACE_BUILD_DATE");
/// The Rust target triple (`x86_64-unknown-linux-musl` for release builds).
pub const TARGET: &str = env!("MMRACE_TARGET");
/// `monitor --version`: `0.1.0 (git 0123456789ab, built 2026-…Z, x86_64-unknown-linux-musl)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("MMRACE_GIT_REV"),
    ", built ",
    env!("MMRACE_BUILD_DATE"),
    ", ",
    env!("MMRACE_TARGET"),
    ")"
);
