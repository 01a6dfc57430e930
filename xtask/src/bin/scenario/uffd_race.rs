//! UFFDIO_COPY racing non-cooperative events (`docs/kernel.md`, the userfaultfd race).
//!
//! A userfaultfd monitor registers a range with MISSING mode and one event
//! feature. Thread A keeps filling pages with UFFDIO_COPY. Thread B changes the
//! mm once (fork, mremap, MADV_DONTNEED or munmap of another registered range).
//! The main thread sees the event but deliberately waits `delay_ms` before
//! reading it: the kernel keeps `ctx->mmap_changing` raised until then, and
//! every UFFDIO_COPY in that window must fail with -EAGAIN.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::{
    sys::{self, check, ms_since, wait_child},
    uffd::{
        UFFD_EVENT_FORK, UFFD_EVENT_PAGEFAULT, UFFD_EVENT_REMAP, UFFD_EVENT_REMOVE,
        UFFD_EVENT_UNMAP, UFFD_FEATURE_EVENT_FORK, UFFD_FEATURE_EVENT_REMAP,
        UFFD_FEATURE_EVENT_REMOVE, UFFD_FEATURE_EVENT_UNMAP, Uffd, describe_errno,
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Change {
    Fork,
    Remap,
    Remove,
    Unmap,
    /// No change at all: the benign look-alike (copies only).
    None,
}

#[derive(Args)]
pub struct UffdArgs {
    /// The non-cooperative event thread B causes.
    #[arg(long, value_enum, default_value = "fork")]
    event: Change,
    /// How long the monitor thread sits on the event before reading it (ms).
    #[arg(long, default_value_t = 500)]
    delay_ms: u64,
    /// How long thread A keeps copying (ms).
    #[arg(long, default_value_t = 1500)]
    run_ms: u64,
    /// Report, instead of failing, when no copy was refused while the event
    /// was pending: on a kernel without the protection (`mmrace_mutant=uffd`)
    /// that is the expected outcome.
    #[arg(long)]
    allow_no_eagain: bool,
    /// Copy flat out (a UFFDIO_COPY storm) instead of one copy every 200 µs.
    #[arg(long)]
    storm: bool,
}

const COPY_PAGES: usize = 1024;
const EAGAIN: i64 = -11;

pub fn run(args: &UffdArgs) -> anyhow::Result<serde_json::Value> {
    let page = sys::page_size();
    let feature = match args.event {
        Change::Fork => UFFD_FEATURE_EVENT_FORK,
        Change::Remap => UFFD_FEATURE_EVENT_REMAP,
        Change::Remove => UFFD_FEATURE_EVENT_REMOVE,
        Change::Unmap => UFFD_FEATURE_EVENT_UNMAP,
        Change::None => 0,
    };
    let uffd = Arc::new(Uffd::open(feature)?);
    // Copies go to `dst`; the change happens on `other` (same ctx).
    let dst = sys::mmap_anon(COPY_PAGES * page)?;
    uffd.register_missing(dst, COPY_PAGES * page)?;
    let other = sys::mmap_anon(16 * page)?;
    uffd.register_missing(other, 16 * page)?;
    let src = sys::mmap_anon(page)?;
    // SAFETY: inside the source page.
    unsafe { std::ptr::write_bytes(src, 0x5a, page) };

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, eagain, other_err) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let start = Instant::now();
    let copier = {
        let (uffd, stop, ok, eagain, other_err) = (
            uffd.clone(),
            stop.clone(),
            ok.clone(),
            eagain.clone(),
            other_err.clone(),
        );
        let (dst, src) = (dst as usize, src as usize);
        let remove = args.event == Change::Remove;
        let storm = args.storm;
        thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if i == COPY_PAGES {
                    if remove {
                        // MADV_DONTNEED would itself raise REMOVE events here.
                        break;
                    }
                    // SAFETY: our own registered range; refills start over.
                    unsafe { libc::madvise(dst as *mut _, COPY_PAGES * page, libc::MADV_DONTNEED) };
                    i = 0;
                }
                let rc = uffd.copy((dst + i * page) as *mut u8, src as *const u8, page);
                if rc > 0 {
                    ok.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                } else if rc == EAGAIN {
                    eagain.fetch_add(1, Ordering::Relaxed);
                } else {
                    other_err.fetch_add(1, Ordering::Relaxed);
                }
                if !storm {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };

    let other_addr = other as usize;
    let change = args.event;
    let changer = thread::spawn(move || -> anyhow::Result<u64> {
        thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        match change {
            Change::Fork => {
                // SAFETY: the child only calls _exit.
                let pid = check(unsafe { libc::fork() }.into(), "fork")? as libc::pid_t;
                if pid == 0 {
                    unsafe { libc::_exit(0) };
                }
                wait_child(pid, Duration::from_secs(30))?;
            }
            Change::Remap => {
                // SAFETY: moving our own 16-page registered mapping.
                let p = unsafe {
                    libc::mremap(
                        other_addr as *mut _,
                        16 * page,
                        32 * page,
                        libc::MREMAP_MAYMOVE,
                    )
                };
                if p == libc::MAP_FAILED {
                    bail!("mremap: {}", std::io::Error::last_os_error());
                }
            }
            Change::Remove => {
                // SAFETY: our own registered mapping.
                unsafe { libc::madvise(other_addr as *mut _, 16 * page, libc::MADV_DONTNEED) };
            }
            Change::Unmap => {
                // SAFETY: our own mapping, not used afterwards.
                unsafe { libc::munmap(other_addr as *mut _, 16 * page) };
            }
            Change::None => {}
        }
        Ok(t.elapsed().as_millis() as u64)
    });

    // Act as the userfaultfd monitor: see the event, sit on it, then read it.
    let mut event_seen = None;
    let deadline = start + Duration::from_millis(args.run_ms);
    while Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: uffd.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 20) };
        if n <= 0 {
            continue;
        }
        let t_seen = ms_since(start);
        thread::sleep(Duration::from_millis(args.delay_ms));
        let Some(msg) = uffd.read_msg(0)? else {
            continue;
        };
        match msg.event {
            UFFD_EVENT_FORK => {
                // The child's userfaultfd: not used.
                // SAFETY: closing the fd the kernel gave us.
                unsafe { libc::close(msg.arg[0] as u32 as i32) };
            }
            UFFD_EVENT_REMAP | UFFD_EVENT_REMOVE | UFFD_EVENT_UNMAP => {}
            UFFD_EVENT_PAGEFAULT => bail!("unexpected page fault on the registered range"),
            e => bail!("unexpected userfaultfd event {e:#x}"),
        }
        event_seen.get_or_insert((msg.event, t_seen));
    }
    stop.store(true, Ordering::Relaxed);
    copier
        .join()
        .map_err(|_| anyhow::anyhow!("copier panicked"))?;
    let change_ms = changer
        .join()
        .map_err(|_| anyhow::anyhow!("changer panicked"))?
        .context("changing the mm")?;
    if args.event != Change::None && event_seen.is_none() {
        bail!("no {:?} event was delivered", args.event);
    }
    let (eagain, ok) = (eagain.load(Ordering::Relaxed), ok.load(Ordering::Relaxed));
    if args.event != Change::None && eagain == 0 && !args.allow_no_eagain {
        bail!(
            "no UFFDIO_COPY failed with EAGAIN ({}) while the event was pending",
            describe_errno(EAGAIN)
        );
    }
    Ok(json!({
        "scenario": "uffd-race",
        "event": format!("{:?}", args.event).to_lowercase(),
        "storm": args.storm,
        "pid": std::process::id(),
        "copies_ok": ok,
        "copies_eagain": eagain,
        "copies_other_error": other_err.load(Ordering::Relaxed),
        "change_ms": change_ms,
        "event_seen_ms": event_seen.map(|(_, t)| t),
        "elapsed_ms": ms_since(start),
    }))
}
