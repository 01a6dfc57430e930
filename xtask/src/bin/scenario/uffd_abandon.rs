//! A userfaultfd context closed while a change window is pending on it, with
//! `-EAGAIN` copies behind it and no success after them: the state a
//! monitor's per-context copy filter must not outlive.
//!
//! ```text
//! MADV_DONTNEED on a range registered with UFFD_FEATURE_EVENT_REMOVE:
//!   userfaultfd_remove() raises ctx->mmap_changing, drops mmap_lock and
//!   waits in userfaultfd_event_wait_completion until the event is read, or
//!   until the context is released
//! UFFDIO_COPY meanwhile: -EAGAIN (mmap_changing is raised)
//! close(uffd) without reading the event: the last reference, so
//!   userfaultfd_release() marks the context released and wakes the
//!   madvise, which lowers mmap_changing
//! ```
//!
//! (Not a fork window: the held fork's child already has a copy of the
//! parent's file table, so closing the parent's descriptor is not the last
//! reference, nothing releases the context, and the fork waits for ever.)
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
    uffd::{UFFD_FEATURE_EVENT_REMOVE, Uffd},
};

#[derive(Args)]
pub struct UffdAbandonArgs {
    /// Written once the remove window is held, before any copy.
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
    let uffd = Uffd::open(UFFD_FEATURE_EVENT_REMOVE)?;
    let dst = sys::mmap_anon(page)?;
    uffd.register_missing(dst, page)?;
    let other = sys::mmap_anon(4 * page)?;
    uffd.register_missing(other, 4 * page)?;
    let src = sys::mmap_anon(page)?;
    let start = Instant::now();
    let other_addr = other as usize;
    let remover = std::thread::spawn(move || {
        // SAFETY: our own registered mapping; the call waits in the kernel
        // until the REMOVE event is read or the context is released.
        let rc = unsafe { libc::madvise(other_addr as *mut _, 4 * page, libc::MADV_DONTNEED) };
        // errno is per thread: read it here.
        (rc == 0)
            .then_some(())
            .ok_or_else(std::io::Error::last_os_error)
    });
    if !uffd.wait_msg(10_000)? {
        bail!("no userfaultfd remove event within 10 s");
    }
    if let Some(f) = &args.held_file {
        std::fs::write(f, "held\n").with_context(|| format!("writing {}", f.display()))?;
    }
    if let Some(f) = &args.go_file
        && sys::wait_for(Duration::from_secs(60), Duration::from_millis(20), || {
            f.exists().then_some(())
        })
        .is_none()
    {
        bail!("{} did not appear within 60 s", f.display());
    }
    let mut eagain = 0u32;
    for _ in 0..args.copies {
        match uffd.copy(dst, src, page) {
            EAGAIN => eagain += 1,
            rc => bail!("UFFDIO_COPY returned {rc} while the remove window was held"),
        }
    }
    // Closing the only descriptor without reading the event releases the
    // context, which lets the madvise return.
    drop(uffd);
    remover
        .join()
        .map_err(|_| anyhow::anyhow!("madvise thread panicked"))?
        .context("madvise(MADV_DONTNEED)")?;
    Ok(json!({
        "scenario": "uffd-abandon",
        "pid": std::process::id(),
        "copies_eagain": eagain,
        "elapsed_ms": ms_since(start),
    }))
}
