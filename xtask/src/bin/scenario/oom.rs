//! A memcg OOM whose victim really gets reaped (`docs/kernel.md`, "Reproducing the races"), with
//! variants that open the other reaping windows:
//!
//! * default: the victim exits `release_ms` after the kill, long after the
//!   reaper (2 s delay) is done: mark_victim → reap → exit_mmap, in order;
//! * `--overlap`: the victim is released the moment the reaper starts zapping
//!   (its RSS starts to drop), with the victim on CPU 0 and the reaper on CPU 1,
//!   so `exit_mmap` runs while the reaper is still unmapping (the reaper/exit_mmap race of `docs/kernel.md`);
//! * `--vhost`: the victim owns a vhost-net device with a tap backend; after the
//!   reap its kernel thread is kicked and faults on the reaped ring
//!   (`kthread_use_mm`, 3f70dc38cec2), and this process reads the victim's memory
//!   through `/proc/TID/mem` (a remote fault after `MMF_UNSTABLE`, 6b31d5955cb2);
//! * `--owner-copy`: the victim's writer thread, blocked inside `write(2)` on
//!   the holder's pipe mutex while the reaper zaps its buffer, then copies
//!   from the reaped page (`copy_from_user` in kernel mode: accessor
//!   `owner_kernel`; since v4.13 refused, the write fails with `EFAULT`
//!   instead of writing zeroes). `victim_tid` is the writer.

use std::{
    io::{BufRead as _, BufReader},
    os::fd::FromRawFd as _,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use crate::{
    hold::{self, Hold, fork_child, pin, resident_pages, touch_anon},
    sys::{self, Memcg, check, ms_since, wait_child},
    vhost,
};

#[derive(Args)]
pub struct OomArgs {
    /// Memory limit of the victim's cgroup, in MiB.
    #[arg(long, default_value_t = 64)]
    limit_mb: u64,
    /// How long after the OOM kill the victim is allowed to exit (ms). Must
    /// exceed the reaper delay (2 s) for the reap to happen before exit_mmap.
    #[arg(long, default_value_t = 4000)]
    release_ms: u64,
    /// Release the victim as soon as the reaper starts, to overlap exit_mmap
    /// with the reaper's unmapping.
    #[arg(long)]
    overlap: bool,
    /// Give the victim a vhost-net device; kick its worker after the reap and
    /// read the victim's memory remotely.
    #[arg(long)]
    vhost: bool,
    /// The victim's blocked thread writes from an anonymous page of its own
    /// (reaped by the time it runs): the owner's copy_from_user on a reaped
    /// mm (the `write(2)` case of 6b31d5955cb2), instead of from its
    /// read-only data.
    #[arg(long)]
    owner_copy: bool,
}

/// What the victim tells the holder once it is set up.
struct VictimReport {
    tid: libc::pid_t,
    ring: u64,
    vhost: String,
}

fn victim(
    memcg: &Memcg,
    hold: &Hold,
    go_r: libc::c_int,
    status_w: libc::c_int,
    args: &OomArgs,
    kick: libc::c_int,
    call: libc::c_int,
) -> i32 {
    // SAFETY: getpid has no preconditions.
    if memcg.add(unsafe { libc::getpid() }).is_err() {
        return 10;
    }
    if args.overlap && pin(0, 0).is_err() {
        return 11;
    }
    let mut b = [0u8; 1];
    // SAFETY: one byte into a valid buffer.
    if unsafe { libc::read(go_r, b.as_mut_ptr().cast(), 1) } != 1 {
        return 12;
    }
    let Ok(ring) = touch_anon(vhost::RING_BYTES) else {
        return 13;
    };
    let vhost_state = if args.vhost {
        match vhost::setup(ring, kick, call) {
            Ok(mode) => format!("ok {mode}"),
            Err(e) => format!("error {e:#}"),
        }
    } else {
        "none".to_owned()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let fd = hold.pipe[1];
    let buf = if args.owner_copy {
        match touch_anon(sys::page_size()) {
            Ok(p) => p as usize,
            Err(_) => return 15,
        }
    } else {
        b"a".as_ptr() as usize
    };
    thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let _ = tx.send(unsafe { libc::gettid() });
        // Blocks uninterruptibly on pipe->mutex held by the holder's writer;
        // then copies one byte from `buf` (reaped meanwhile with --owner-copy).
        // SAFETY: one byte from a valid buffer.
        unsafe { libc::write(fd, buf as *const libc::c_void, 1) };
    });
    let tid = rx.recv().unwrap_or(0);
    thread::sleep(Duration::from_millis(200));
    let line = format!("{tid} {} {vhost_state}\n", ring as u64);
    // SAFETY: writing a line to the status pipe.
    unsafe { libc::write(status_w, line.as_ptr().cast(), line.len()) };
    let page = sys::page_size();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(p) = sys::mmap_anon(1 << 20) {
            for off in (0..1 << 20).step_by(page) {
                // SAFETY: inside the fresh 1 MiB mapping.
                unsafe { p.add(off).write_volatile(1) };
            }
        }
    }
    // Never OOM-killed: the holder reports the failure.
    14
}

fn eventfd() -> anyhow::Result<libc::c_int> {
    // SAFETY: plain syscall.
    Ok(check(unsafe { libc::eventfd(0, 0) }.into(), "eventfd")? as libc::c_int)
}

/// Reads 8 bytes of `tid`'s memory at `addr` through /proc; the errno on failure.
fn remote_read(tid: libc::pid_t, addr: u64) -> i32 {
    let path = std::ffi::CString::new(format!("/proc/{tid}/mem")).unwrap_or_default();
    // SAFETY: valid path; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
    }
    let mut buf = [0u8; 8];
    // SAFETY: reading into a valid 8-byte buffer.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), 8, addr as libc::off_t) };
    let err = if n == 8 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    };
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    err
}

pub fn run(args: &OomArgs) -> anyhow::Result<serde_json::Value> {
    // SAFETY: getpid has no preconditions.
    let name = format!("mmrace-oom-{}", unsafe { libc::getpid() });
    let limit = if args.overlap {
        args.limit_mb.max(192)
    } else {
        args.limit_mb
    };
    let memcg = Memcg::create(&name, limit << 20)?;
    let mut hold = Hold::new()?;
    let go = sys::pipe()?;
    let status = sys::pipe()?;
    let (kick, call) = if args.vhost {
        (eventfd()?, eventfd()?)
    } else {
        (-1, -1)
    };
    if args.overlap {
        pin(0, 0)?;
    }
    // Fork before creating any thread or the userfaultfd.
    let pid = fork_child(|| victim(&memcg, &hold, go[0], status[1], args, kick, call))?;

    // The victim's ends: closing ours lets reads see EOF if the victim dies.
    // SAFETY: our copies of descriptors only the child uses.
    unsafe {
        libc::close(go[0]);
        libc::close(status[1]);
    }
    let start = Instant::now();
    hold.engage()?;
    if args.overlap
        && let Some(reaper) = hold::oom_reaper_pid()
    {
        pin(reaper, 1)?;
    }
    // SAFETY: one byte from a valid buffer.
    check(
        unsafe { libc::write(go[1], b"g".as_ptr().cast(), 1) } as libc::c_long,
        "go",
    )?;
    // SAFETY: the read end is ours; wrapped once, closed by the File.
    let mut status_r = BufReader::new(unsafe { std::fs::File::from_raw_fd(status[0]) });
    let mut line = String::new();
    status_r
        .read_line(&mut line)
        .context("reading the victim's status")?;
    if line.is_empty() {
        let code = wait_child(pid, Duration::from_secs(5)).map_or(-1, |s| libc::WEXITSTATUS(s));
        bail!(
            "the victim exited during setup (code {code}: 10 memcg, 11 pin, 12 go, 13 ring, 15 owner buffer)"
        );
    }
    let mut parts = line.trim().splitn(3, ' ');
    let report = VictimReport {
        tid: parts
            .next()
            .and_then(|s| s.parse().ok())
            .context("victim tid")?,
        ring: parts
            .next()
            .and_then(|s| s.parse().ok())
            .context("victim ring")?,
        vhost: parts.next().unwrap_or("").to_owned(),
    };
    if args.vhost && !report.vhost.starts_with("ok") {
        bail!("vhost-net setup in the victim failed: {}", report.vhost);
    }

    let killed_at = sys::wait_for(Duration::from_secs(60), Duration::from_millis(2), || {
        (memcg.oom_kills() > 0).then(Instant::now)
    })
    .context("the victim was not OOM-killed within 60 s")?;
    let t_kill_ms = killed_at.duration_since(start).as_millis() as u64;

    let mut released_after_ms = None;
    let mut kicked = false;
    let mut remote_errno = None;
    if args.overlap {
        // Release the moment the reaper's zap shows in the victim's RSS.
        let peak = resident_pages(report.tid);
        let seen = sys::wait_for(Duration::from_secs(10), Duration::from_micros(200), || {
            let rss = resident_pages(report.tid);
            (rss > 0 && rss * 100 < peak * 97).then_some(rss)
        });
        if seen.is_none() {
            bail!("the reaper never started on the victim (RSS stayed at {peak} pages)");
        }
        released_after_ms = Some(killed_at.elapsed().as_millis() as u64);
        hold.release()?;
    } else {
        if args.vhost {
            // Wait until the reaper has zapped the victim, then make the vhost
            // worker touch the reaped ring, and read it remotely.
            let peak = resident_pages(report.tid);
            sys::wait_for(Duration::from_secs(10), Duration::from_millis(5), || {
                (resident_pages(report.tid) * 4 < peak).then_some(())
            })
            .context("the victim was not reaped within 10 s")?;
            thread::sleep(Duration::from_millis(100));
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to our eventfd.
            kicked = unsafe { libc::write(kick, (&raw const one).cast(), 8) } == 8;
            thread::sleep(Duration::from_millis(500));
            remote_errno = Some(remote_read(report.tid, report.ring + 0x1000));
        }
        let release_at = killed_at + Duration::from_millis(args.release_ms);
        thread::sleep(release_at.saturating_duration_since(Instant::now()));
        hold.release()?;
    }

    let wstatus = wait_child(pid, Duration::from_secs(30))?;
    let signaled = libc::WIFSIGNALED(wstatus);
    let signal = if signaled { libc::WTERMSIG(wstatus) } else { 0 };
    if !(signaled && signal == libc::SIGKILL) {
        bail!(
            "victim {pid} ended with status {wstatus:#x} instead of SIGKILL (exit code {})",
            libc::WEXITSTATUS(wstatus)
        );
    }
    drop(status_r);
    for fd in [go[1], kick, call] {
        if fd >= 0 {
            // SAFETY: closing our own descriptors.
            unsafe { libc::close(fd) };
        }
    }
    Ok(json!({
        "scenario": "oom-reap",
        "victim_pid": pid,
        "victim_tid": report.tid,
        "ring": format!("{:#x}", report.ring),
        "memcg": memcg.path.display().to_string(),
        "cgroup_v2": memcg.v2,
        "oom_kills": memcg.oom_kills(),
        "t_kill_ms": t_kill_ms,
        "release_ms": args.release_ms,
        "overlap_released_after_ms": released_after_ms,
        "vhost": report.vhost,
        "vhost_kicked": kicked,
        "remote_read_errno": remote_errno,
        "victim_signal": signal,
        "elapsed_ms": ms_since(start),
    }))
}
