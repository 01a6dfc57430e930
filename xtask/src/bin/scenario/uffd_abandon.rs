//! A userfaultfd context closed while a change window is pending on it, with
//! `-EAGAIN` copies behind it and no success after them: the state a
//! monitor's per-context copy filter must not outlive.
//!
//! ```text
//! fork of a process with UFFD_FEATURE_EVENT_FORK: dup_userfaultfd raises
//!   ctx->mmap_changing; the fork waits in userfaultfd_event_wait_completion
//!   until the event is read, or until the context is released
//! UFFDIO_COPY meanwhile: -EAGAIN (mmap_changing is raised)
//! close(uffd) without reading the event: userfaultfd_release() marks the
//!   context released and wakes the fork, which lowers mmap_changing
//! ```
//!
//! With `--held-file`/`--go-file` a test starts the monitor after the window
//! opened and before the copies: the monitor then sees `-EAGAIN` outside any
//! window it saw begin (an "observed" window, closed by the next success on
//! the context, which never comes).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use crate::{
    sys::{self, ms_since},
    uffd::{HeldFork, UFFD_FEATURE_EVENT_FORK, Uffd},
};

#[derive(Args)]
pub struct UffdAbandonArgs {
    /// Written once the fork window is held, before any copy.
    #[arg(long)]
    held_file: Option<PathBuf>,
    /// Waited for (up to 60 s) before the copies.
    #[arg(long)]
    go_file: Option<PathBuf>,
    /// Copies made while the window is held (each must fail with -EAGAIN).
    #[arg(long, default_value_t = 3)]
    copies: u32,
}

const EAGAIN: i64 = -11;

pub fn run(args: &UffdAbandonArgs) -> anyhow::Result<serde_json::Value> {
    let page = sys::page_size();
    let uffd = Uffd::open(UFFD_FEATURE_EVENT_FORK)?;
    let dst = sys::mmap_anon(page)?;
    uffd.register_missing(dst, page)?;
    let src = sys::mmap_anon(page)?;
    let start = Instant::now();
    let held = HeldFork::start(&uffd)?;
    if let Some(f) = &args.held_file {
        std::fs::write(f, "held\n").with_context(|| format!("writing {}", f.display()))?;
    }
    if let Some(f) = &args.go_file {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f.exists() {
            if Instant::now() > deadline {
                bail!("{} did not appear within 60 s", f.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut eagain = 0u32;
    for _ in 0..args.copies {
        match uffd.copy(dst, src, page) {
            EAGAIN => eagain += 1,
            rc => bail!("UFFDIO_COPY returned {rc} while the fork window was held"),
        }
    }
    // Closing the context without reading the fork event releases it.
    held.abandon(uffd)?;
    Ok(json!({
        "scenario": "uffd-abandon",
        "pid": std::process::id(),
        "copies_eagain": eagain,
        "elapsed_ms": ms_since(start),
    }))
}
