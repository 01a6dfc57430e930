//! Benign churn: everything the hooks see on a healthy machine, none of it a
//! race. Processes that exit normally, munmap and MADV_DONTNEED, execs,
//! compaction, UFFDIO_COPY with no concurrent change, a fork of a
//! userfaultfd user whose event is read promptly.

use std::{process::Command, time::Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use crate::{
    hold::{fork_child, touch_anon},
    sys::{self, ms_since, wait_child},
    uffd::Uffd,
};

#[derive(Args)]
pub struct ChurnArgs {
    /// Rounds of the mix.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
}

pub fn run(args: &ChurnArgs) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let page = sys::page_size();
    let (mut exits, mut execs, mut copies) = (0u32, 0u32, 0u32);
    let uffd = Uffd::open(0)?;
    let area = sys::mmap_anon(64 * page)?;
    uffd.register_missing(area, 64 * page)?;
    let src = touch_anon(page)?;
    for round in 0..args.rounds {
        // A child that maps, touches, unmaps and exits normally.
        let pid = fork_child(|| match touch_anon(4 << 20) {
            Ok(p) => {
                // SAFETY: our own mapping.
                unsafe {
                    libc::madvise(p.cast(), 1 << 20, libc::MADV_DONTNEED);
                    libc::munmap(p.cast(), 4 << 20);
                }
                0
            }
            Err(_) => 1,
        })?;
        wait_child(pid, std::time::Duration::from_secs(10))?;
        exits += 1;
        let ok = Command::new("/bin/true")
            .status()
            .context("exec /bin/true")?
            .success();
        execs += u32::from(ok);
        // UFFDIO_COPY with nothing changing the mm.
        let dst = (area as usize + (round as usize % 64) * page) as *mut u8;
        // SAFETY: our own registered range.
        unsafe { libc::madvise(dst.cast(), page, libc::MADV_DONTNEED) };
        if uffd.copy(dst, src, page) > 0 {
            copies += 1;
        }
        if round % 5 == 0 {
            let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
        }
    }
    Ok(json!({
        "scenario": "churn",
        "exits": exits,
        "execs": execs,
        "uffd_copies": copies,
        "elapsed_ms": ms_since(start),
    }))
}
