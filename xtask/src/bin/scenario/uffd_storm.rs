//! A storm of UFFDIO_COPY calls that fail at once.
//!
//! * `--result eagain` (default): each thread holds a change window open on
//!   its userfaultfd (a fork with `UFFD_FEATURE_EVENT_FORK` whose event is
//!   not read until the end), so every copy fails with `-EAGAIN`, and every
//!   one is a record on every rung (an `-EAGAIN` is a near miss's proof).
//!   The tests use it wherever they need many records fast (ring-buffer
//!   loss, file rotation).
//! * `--result eexist`: copies onto a page that is already filled fail with
//!   `-EEXIST` and no window exists: the monitor counts them in the kernel
//!   without a record (the cost of the filter's fast path).

use std::time::Instant;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{
    hold::touch_anon,
    sys,
    sys::ms_since,
    uffd::{HeldFork, UFFD_FEATURE_EVENT_FORK, Uffd},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StormResult {
    /// Inside a held fork window: every copy is `-EAGAIN` and recorded.
    Eagain,
    /// Onto a filled page, no window: every copy is `-EEXIST` and only counted.
    Eexist,
}

#[derive(Args)]
pub struct UffdStormArgs {
    /// UFFDIO_COPY calls per thread.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Threads, each with its own userfaultfd.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// What the copies return.
    #[arg(long, value_enum, default_value = "eagain")]
    result: StormResult,
}

/// `count` copies that fail at once (paced to `rate` per second if non-zero);
/// returns how many failed as `result` says.
pub fn storm(count: u64, rate: u64, result: StormResult) -> anyhow::Result<u64> {
    let page = sys::page_size();
    let features = match result {
        StormResult::Eagain => UFFD_FEATURE_EVENT_FORK,
        StormResult::Eexist => 0,
    };
    let uffd = Uffd::open(features)?;
    let area = sys::mmap_anon(page)?;
    uffd.register_missing(area, page)?;
    let src = touch_anon(page)?;
    let (want, held) = match result {
        StormResult::Eexist => {
            if uffd.copy(area, src, page) <= 0 {
                bail!("the first UFFDIO_COPY failed");
            }
            (-i64::from(libc::EEXIST), None)
        }
        StormResult::Eagain => (-i64::from(libc::EAGAIN), Some(HeldFork::start(&uffd)?)),
    };
    let mut matching = 0;
    let start = Instant::now();
    for i in 0..count {
        if uffd.copy(area, src, page) == want {
            matching += 1;
        }
        if rate > 0 && i % 1000 == 0 {
            let due = std::time::Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    if let Some(h) = held {
        h.release(&uffd)?;
    }
    Ok(matching)
}

pub fn run(args: &UffdStormArgs) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let result = args.result;
    let workers: Vec<_> = (0..args.threads.max(1))
        .map(|_| {
            let count = args.count;
            std::thread::spawn(move || storm(count, 0, result))
        })
        .collect();
    let mut matching = 0;
    for w in workers {
        matching += w
            .join()
            .map_err(|_| anyhow::anyhow!("storm thread panicked"))??;
    }
    let ms = ms_since(start);
    let calls = args.count * args.threads.max(1) as u64;
    let name = match result {
        StormResult::Eagain => "eagain",
        StormResult::Eexist => "eexist",
    };
    Ok(json!({
        "scenario": "uffd-storm",
        "result": name,
        "copies": calls,
        name: matching,
        "elapsed_ms": ms,
        "per_s": if ms > 0 { calls as f64 * 1000.0 / ms as f64 } else { 0.0 },
    }))
}
