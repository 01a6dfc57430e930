//! `process_mrelease(2)`: userspace (lmkd, systemd-oomd) reaping a killed
//! process's memory synchronously, in its own context: the second caller of
//! `__oom_reap_task_mm`, invisible to the `oom:*` tracepoints. The victim is
//! kept from exiting by the pipe-mutex hold, so the reap always has work.

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
    /// The victim's blocked thread copies from an anonymous page of its own,
    /// reaped by the time it runs (a fault on an `MMF_UNSTABLE` mm).
    #[arg(long)]
    owner_copy: bool,
    /// After the reap, print `reaped PID` on stderr and keep the victim
    /// (killed, reaped, still alive) this long before releasing it.
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// Reap a victim whose exit_mmap has already begun, ordered by the
    /// kernel's locks (see `exit_first.rs`).
    #[arg(long)]
    exit_first: bool,
}

const SYS_PIDFD_OPEN: libc::c_long = 434;
const SYS_PIDFD_SEND_SIGNAL: libc::c_long = 424;
const SYS_PROCESS_MRELEASE: libc::c_long = 448;

pub fn run(args: &MreleaseArgs) -> anyhow::Result<serde_json::Value> {
    if args.exit_first {
        return crate::exit_first::run(args.mb);
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
