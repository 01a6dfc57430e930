//! Threads parked inside `handle_mm_fault`: each touches its own page of a
//! userfaultfd-registered (missing mode) mapping and sleeps in
//! `handle_userfault` until the main thread fills the range with
//! UFFDIO_ZEROPAGE. A kretprobe on `handle_mm_fault` needs one instance per
//! call in flight and has `maxactive` of them (the kernel's default,
//! `max(10, 2 * num_possible_cpus())`, for perf-event kprobes), so more
//! parked threads than that make the kernel miss returns and count them
//! (`nmissed`): what the monitor's `mmrace_kprobe_missed_total` reports.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use clap::Args;
use serde_json::json;

use crate::{
    sys,
    sys::ms_since,
    uffd::{UFFD_EVENT_PAGEFAULT, Uffd},
};

#[derive(Args)]
pub struct UffdParkArgs {
    /// Threads parked in a userfaultfd fault at the same time.
    #[arg(long, default_value_t = 48)]
    threads: usize,
    /// Longest wait for every thread's fault to be reported, in ms.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

pub fn run(args: &UffdParkArgs) -> anyhow::Result<serde_json::Value> {
    let page = sys::page_size();
    let len = page * args.threads.max(1);
    let uffd = Uffd::open(0)?;
    let area = sys::mmap_anon(len)?;
    uffd.register_missing(area, len)?;
    let base = area as usize;
    let done = AtomicUsize::new(0);
    let start = Instant::now();
    let mut parked = 0usize;
    std::thread::scope(|s| -> anyhow::Result<()> {
        for i in 0..args.threads {
            let done = &done;
            s.spawn(move || {
                let p = (base + i * page) as *mut u8;
                // SAFETY: inside our mapping; the fault parks until the
                // main thread fills the page.
                unsafe { p.write_volatile(1) };
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        // Every parked thread sends one fault message; read them all, so
        // every thread is asleep in the kernel before any is woken.
        let deadline = start + Duration::from_millis(args.timeout_ms);
        while parked < args.threads && Instant::now() < deadline {
            if let Some(m) = uffd.read_msg(100)?
                && m.event == UFFD_EVENT_PAGEFAULT
            {
                parked += 1;
            }
        }
        // Filling the range wakes every waiter.
        uffd.zeropage(area, len)?;
        Ok(())
    })?;
    Ok(json!({
        "scenario": "uffd-park",
        "threads": args.threads,
        "parked": parked,
        "returned": done.load(Ordering::Relaxed),
        "ms": ms_since(start),
    }))
}
