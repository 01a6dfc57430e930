//! A storm of records: UFFDIO_COPY onto a page that is already filled fails
//! at once with -EEXIST, and every call is one record on every rung (the
//! `uffd_ioctl` hook reports each UFFDIO_COPY's result). The tests use it
//! wherever they need many records fast (ring-buffer loss, file rotation).

use std::time::Instant;

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::{hold::touch_anon, sys, sys::ms_since, uffd::Uffd};

#[derive(Args)]
pub struct UffdStormArgs {
    /// UFFDIO_COPY calls per thread.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Threads, each with its own userfaultfd.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn storm(count: u64) -> anyhow::Result<u64> {
    let page = sys::page_size();
    let uffd = Uffd::open(0)?;
    let area = sys::mmap_anon(page)?;
    uffd.register_missing(area, page)?;
    let src = touch_anon(page)?;
    if uffd.copy(area, src, page) <= 0 {
        bail!("the first UFFDIO_COPY failed");
    }
    let mut eexist = 0;
    for _ in 0..count {
        if uffd.copy(area, src, page) == -i64::from(libc::EEXIST) {
            eexist += 1;
        }
    }
    Ok(eexist)
}

pub fn run(args: &UffdStormArgs) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let workers: Vec<_> = (0..args.threads.max(1))
        .map(|_| {
            let count = args.count;
            std::thread::spawn(move || storm(count))
        })
        .collect();
    let mut eexist = 0;
    for w in workers {
        eexist += w
            .join()
            .map_err(|_| anyhow::anyhow!("storm thread panicked"))??;
    }
    let ms = ms_since(start);
    let calls = args.count * args.threads.max(1) as u64;
    Ok(json!({
        "scenario": "uffd-storm",
        "copies": calls,
        "eexist": eexist,
        "elapsed_ms": ms,
        "per_s": if ms > 0 { calls as f64 * 1000.0 / ms as f64 } else { 0.0 },
    }))
}
