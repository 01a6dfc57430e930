//! `process_mrelease(2)`: userspace (lmkd, systemd-oomd) reaping a killed
//! process's memory synchronously, in its own context: the second caller of
//! `__oom_reap_task_mm`, invisible to the `oom:*` tracepoints. The victim is
//! kept from exiting by the pipe-mutex hold, so the reap always has work.
//!
//! `--exit-first`: the reap starts while the victim's own `exit_mmap` is
//! already in `unmap_vmas` (an mm the monitor did not track: no OOM kill).
//! The victim (CPU 0) loops `mprotect` over a large populated mapping, so it
//! mostly holds `mmap_lock` for write; this process, on CPU 0 too under
//! `SCHED_IDLE`, kills it and calls `process_mrelease`, which finds the
//! victim's mm and then waits for the read lock. When the `mprotect` ends,
//! the victim (a normal task) runs first: it dies and its `exit_mmap` zaps
//! the mapping under the read lock while the reaper, granted the read lock
//! too, gets the CPU later: `__oom_reap_task_mm` starts inside
//! `unmap_vmas`. Timing, not a hold, so a caller retries.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::json;

use crate::{
    hold::{Hold, fork_child, resident_pages, touch_anon},
    sys::{ms_since, wait_child},
};

#[derive(Args)]
pub struct MreleaseArgs {
    /// Anonymous memory the victim touches, in MiB.
    #[arg(long, default_value_t = 32)]
    mb: usize,
    /// Reap a victim whose exit_mmap has already begun (see the module doc).
    #[arg(long)]
    exit_first: bool,
    /// The victim's blocked thread copies from an anonymous page of its own,
    /// reaped by the time it runs (a fault on an `MMF_UNSTABLE` mm).
    #[arg(long)]
    owner_copy: bool,
    /// After the reap, print `reaped PID` on stderr and keep the victim
    /// (killed, reaped, still alive) this long before releasing it.
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
}

const SYS_PIDFD_OPEN: libc::c_long = 434;
const SYS_PIDFD_SEND_SIGNAL: libc::c_long = 424;
const SYS_PROCESS_MRELEASE: libc::c_long = 448;

pub fn run(args: &MreleaseArgs) -> anyhow::Result<serde_json::Value> {
    if args.exit_first {
        return exit_first(args.mb.max(128));
    }
    let mut hold = Hold::new()?;
    let ready = crate::sys::pipe()?;
    let (mb, owner_copy) = (args.mb, args.owner_copy);
    let pid = fork_child(|| {
        if touch_anon(mb << 20).is_err() {
            return 10;
        }
        if owner_copy {
            match touch_anon(crate::sys::page_size()) {
                Ok(p) => hold.block_victim_thread_copying(p as usize),
                Err(_) => return 15,
            }
        } else {
            hold.block_victim_thread();
        }
        // SAFETY: one byte to the ready pipe.
        unsafe { libc::write(ready[1], b"r".as_ptr().cast(), 1) };
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    })?;
    // SAFETY: the child's end; closing ours lets the read see EOF if it dies.
    unsafe { libc::close(ready[1]) };
    let start = Instant::now();
    hold.engage()?;
    let mut b = [0u8; 1];
    // SAFETY: one byte into a valid buffer.
    if unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) } != 1 {
        bail!("the victim did not get ready");
    }
    // SAFETY: plain syscalls on our own child.
    let pidfd = unsafe { libc::syscall(SYS_PIDFD_OPEN, pid, 0) };
    if pidfd < 0 {
        bail!("pidfd_open: {}", std::io::Error::last_os_error());
    }
    let before = resident_pages(pid);
    // SAFETY: as above.
    let sent = unsafe { libc::syscall(SYS_PIDFD_SEND_SIGNAL, pidfd, libc::SIGKILL, 0, 0) };
    if sent < 0 {
        bail!("pidfd_send_signal: {}", std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(SYS_PROCESS_MRELEASE, pidfd, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let supported = !(rc < 0 && errno == libc::ENOSYS);
    if args.linger_ms > 0 {
        eprintln!("reaped {pid}");
        std::thread::sleep(Duration::from_millis(args.linger_ms));
    }
    hold.release()?;
    wait_child(pid, Duration::from_secs(30))?;
    // SAFETY: our own descriptors.
    unsafe {
        libc::close(pidfd as i32);
        libc::close(ready[0]);
    }
    if supported && rc < 0 {
        bail!(
            "process_mrelease failed: {}",
            std::io::Error::from_raw_os_error(errno)
        );
    }
    Ok(report("caller_reaps", pid, rc, errno, before, start))
}

/// The scenario's report: the victim, whether the syscall exists, its result.
fn report(
    variant: &str,
    pid: libc::pid_t,
    rc: libc::c_long,
    errno: i32,
    before: u64,
    start: Instant,
) -> serde_json::Value {
    json!({
        "scenario": "mrelease",
        "variant": variant,
        "victim_pid": pid,
        "supported": !(rc < 0 && errno == libc::ENOSYS),
        "ret": rc,
        "errno": if rc < 0 { errno } else { 0 },
        "rss_pages_before": before,
        "elapsed_ms": ms_since(start),
    })
}

/// The `--exit-first` variant.
fn exit_first(mb: usize) -> anyhow::Result<serde_json::Value> {
    let ready = crate::sys::pipe()?;
    let len = mb << 20;
    let pid = fork_child(|| {
        if crate::hold::pin(0, 0).is_err() {
            return 11;
        }
        let Ok(p) = crate::sys::mmap_anon(len) else {
            return 10;
        };
        // 4 KiB pages: a long zap in unmap_vmas and a long mprotect.
        // SAFETY: advice on our own fresh mapping.
        unsafe { libc::madvise(p.cast(), len, libc::MADV_NOHUGEPAGE) };
        for off in (0..len).step_by(crate::sys::page_size()) {
            // SAFETY: inside the fresh mapping.
            unsafe { p.add(off).write_volatile(1) };
        }
        // SAFETY: one byte to the ready pipe.
        unsafe { libc::write(ready[1], b"r".as_ptr().cast(), 1) };
        let prots = [libc::PROT_READ, libc::PROT_READ | libc::PROT_WRITE];
        for i in 0usize.. {
            // SAFETY: our own mapping; only its protection changes.
            unsafe { libc::mprotect(p.cast(), len, prots[i & 1]) };
        }
        0
    })?;
    // SAFETY: the child's end.
    unsafe { libc::close(ready[1]) };
    let out = exit_first_reap(pid, ready[0]);
    if out.is_err() {
        // Never leave the mprotect loop behind (it holds our stdout).
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    out
}

/// `sched_setscheduler(2)` by number: musl's wrapper always fails (ENOSYS).
fn set_policy(policy: libc::c_int) -> anyhow::Result<()> {
    // SAFETY: all-zero is a valid sched_param (priority 0; musl has more fields).
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: our own thread's policy; `param` outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setscheduler, 0, policy, &raw const param) };
    crate::sys::check(rc, "sched_setscheduler")?;
    Ok(())
}

fn exit_first_reap(pid: libc::pid_t, ready: libc::c_int) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let mut b = [0u8; 1];
    // SAFETY: one byte into a valid buffer.
    if unsafe { libc::read(ready, b.as_mut_ptr().cast(), 1) } != 1 {
        bail!("the victim did not get ready");
    }
    // SAFETY: plain syscall on our own child.
    let pidfd = unsafe { libc::syscall(SYS_PIDFD_OPEN, pid, 0) };
    if pidfd < 0 {
        bail!("pidfd_open: {}", std::io::Error::last_os_error());
    }
    // Let the victim settle into its mprotect loop, then share its CPU at
    // the lowest priority.
    std::thread::sleep(Duration::from_millis(200));
    crate::hold::pin(0, 0)?;
    set_policy(libc::SCHED_IDLE)?;
    let before = resident_pages(pid);
    // SAFETY: as above.
    let sent = unsafe { libc::syscall(SYS_PIDFD_SEND_SIGNAL, pidfd, libc::SIGKILL, 0, 0) };
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(SYS_PROCESS_MRELEASE, pidfd, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    set_policy(libc::SCHED_OTHER)?;
    if sent < 0 {
        bail!("pidfd_send_signal failed");
    }
    wait_child(pid, Duration::from_secs(60))?;
    // SAFETY: our own descriptors.
    unsafe {
        libc::close(pidfd as i32);
        libc::close(ready);
    }
    Ok(report("exit_first", pid, rc, errno, before, start))
}
