//! Fragment anonymous memory, then trigger compaction, which migrates pages
//! (migrate_pages with reason=compaction).

use std::{fs, time::Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use crate::sys::{self, ms_since};

#[derive(Args)]
pub struct CompactArgs {
    /// Anonymous memory to fragment, in MiB.
    #[arg(long, default_value_t = 128)]
    mb: usize,
    /// Rounds of fragment-then-compact.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

fn vmstat(key: &str) -> u64 {
    fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn run(args: &CompactArgs) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let page = sys::page_size();
    let len = args.mb << 20;
    let p = sys::mmap_anon(len)?;
    // Small pages only: in a transparent huge page, freeing every other
    // small page leaves no hole (the huge page stays allocated until it is
    // split), so compaction would find nothing of ours to move whenever
    // memory is compact enough to hand out huge pages.
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_NOHUGEPAGE) };
    for off in (0..len).step_by(page) {
        // SAFETY: inside the mapping.
        unsafe { p.add(off).write_volatile(1) };
    }
    // Free every other page: the survivors are what compaction moves.
    for off in (0..len).step_by(2 * page) {
        // SAFETY: a page-aligned range inside the mapping.
        unsafe { libc::madvise(p.add(off).cast(), page, libc::MADV_DONTNEED) };
    }
    let before = vmstat("pgmigrate_success");
    for _ in 0..args.rounds {
        fs::write("/proc/sys/vm/compact_memory", "1")
            .context("writing /proc/sys/vm/compact_memory")?;
    }
    let migrated = vmstat("pgmigrate_success").saturating_sub(before);
    // SAFETY: unmapping our own mapping.
    unsafe { libc::munmap(p.cast(), len) };
    Ok(json!({
        "scenario": "compact",
        "mb": args.mb,
        "rounds": args.rounds,
        "pgmigrate_success": migrated,
        "elapsed_ms": ms_since(start),
    }))
}
