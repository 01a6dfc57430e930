//! A memcg OOM whose victim really gets reaped (kernel-notes §5.2).
//!
//! Since v5.18 the oom_reaper starts 2 s after the kill and skips victims that
//! already finished `exit_mmap`; an ordinary victim dies in milliseconds. To
//! keep the victim's mm alive across the reaper delay, deterministically and
//! without modules:
//!
//! 1. This process (X, outside the memcg) registers page U with userfaultfd;
//!    its thread W calls `write(pipe, U, 4096)`: `pipe_write` takes
//!    `pipe->mutex`, faults on U and sleeps in `handle_userfault` holding it.
//! 2. The victim V (in a memcg with a small limit) has a thread T2 blocked in
//!    `write(pipe, "a", 1)` on that mutex, uninterruptibly: SIGKILL cannot
//!    wake it, so `mm_users` stays above zero. V's main thread allocates until
//!    the memcg OOM killer kills V.
//! 3. After the reaper delay the oom_reaper reaps V's mm.
//! 4. After `release_ms` X resolves the fault; W finishes, T2 gets the mutex,
//!    returns, dies; the last `mmput` runs `exit_mmap`.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use crate::{
    sys::{self, Memcg, check, ms_since, wait_child},
    uffd::{UFFD_EVENT_PAGEFAULT, Uffd},
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
}

/// The victim: join the memcg, park a thread on the pipe mutex, allocate until killed.
fn victim(memcg: &Memcg, pipe_w: libc::c_int, go_r: libc::c_int) -> ! {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if memcg.add(me).is_err() {
        // SAFETY: terminating the forked child.
        unsafe { libc::_exit(10) };
    }
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into a valid buffer.
    if unsafe { libc::read(go_r, b.as_mut_ptr().cast(), 1) } != 1 {
        unsafe { libc::_exit(11) };
    }
    thread::spawn(move || {
        // Blocks uninterruptibly on pipe->mutex held by X's faulting writer.
        // SAFETY: writing one byte from a valid buffer.
        unsafe { libc::write(pipe_w, b"a".as_ptr().cast(), 1) };
    });
    thread::sleep(Duration::from_millis(200));
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
    // Never OOM-killed: the caller reports the failure.
    unsafe { libc::_exit(12) }
}

pub fn run(args: &OomArgs) -> anyhow::Result<serde_json::Value> {
    // SAFETY: getpid has no preconditions.
    let name = format!("mmrace-oom-{}", unsafe { libc::getpid() });
    let memcg = Memcg::create(&name, args.limit_mb << 20)?;
    let pipe = sys::pipe()?;
    let go = sys::pipe()?;

    // Fork before creating any thread or the userfaultfd.
    // SAFETY: single-threaded here; the child only runs `victim`.
    let pid = check(unsafe { libc::fork() }.into(), "fork")? as libc::pid_t;
    if pid == 0 {
        victim(&memcg, pipe[1], go[0]);
    }

    let start = Instant::now();
    let page = sys::page_size();
    let uffd = Uffd::open(0)?;
    let u = sys::mmap_anon(page)?;
    uffd.register_missing(u, page)?;
    let u_addr = u as usize;
    let pipe_w = pipe[1];
    let writer = thread::spawn(move || {
        // Takes pipe->mutex, then faults on U and sleeps holding it.
        // SAFETY: U is a valid (registered) user mapping of one page.
        unsafe { libc::write(pipe_w, u_addr as *const libc::c_void, page) }
    });
    match uffd.read_msg(10_000)? {
        Some(m) if m.event == UFFD_EVENT_PAGEFAULT => {}
        other => bail!("the pipe writer did not fault on the userfaultfd page: {other:?}"),
    }

    // SAFETY: one byte from a valid buffer.
    check(
        unsafe { libc::write(go[1], b"g".as_ptr().cast(), 1) } as libc::c_long,
        "go",
    )?;
    let killed_at = sys::wait_for(Duration::from_secs(60), Duration::from_millis(5), || {
        (memcg.oom_kills() > 0).then(Instant::now)
    })
    .context("the victim was not OOM-killed within 60 s")?;
    let t_kill_ms = killed_at.duration_since(start).as_millis() as u64;

    let release_at = killed_at + Duration::from_millis(args.release_ms);
    thread::sleep(release_at.saturating_duration_since(Instant::now()));
    uffd.zeropage(u, page)?;
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;

    let status = wait_child(pid, Duration::from_secs(30))?;
    let signaled = libc::WIFSIGNALED(status);
    let signal = if signaled { libc::WTERMSIG(status) } else { 0 };
    if !(signaled && signal == libc::SIGKILL) {
        bail!(
            "victim {pid} ended with status {status:#x} instead of SIGKILL (exit code {})",
            libc::WEXITSTATUS(status)
        );
    }
    for fd in pipe.iter().chain(go.iter()) {
        // SAFETY: closing our own descriptors.
        unsafe { libc::close(*fd) };
    }
    Ok(json!({
        "scenario": "oom-reap",
        "victim_pid": pid,
        "memcg": memcg.path.display().to_string(),
        "cgroup_v2": memcg.v2,
        "oom_kills": memcg.oom_kills(),
        "t_kill_ms": t_kill_ms,
        "release_ms": args.release_ms,
        "writer_bytes": written,
        "victim_signal": signal,
        "elapsed_ms": ms_since(start),
    }))
}
