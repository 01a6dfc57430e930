//! `mrelease --exit-first`: `process_mrelease(2)` reaps an mm whose
//! `exit_mmap` has already begun, an mm nothing had the monitor track (no
//! OOM kill), ordered by the kernel's own locks, not by luck.
//!
//! Kernel facts it relies on (6.1 and 6.12, `mm/oom_kill.c`, `kernel/exit.c`,
//! `fs/proc/task_mmu.c`, `mm/mmap.c`):
//! - `process_mrelease` takes the mm from a thread that still has it
//!   (`find_lock_task_mm`), pins it with `mmgrab` and only then waits in
//!   `mmap_read_lock_killable`; it reaps unless `MMF_OOM_SKIP` is set.
//! - The victim's `exit_mm` takes `mmap_read_lock` before it drops
//!   `current->mm`; the last `mmput` runs `exit_mmap`, which zaps the
//!   address space in `unmap_vmas` under `mmap_read_lock` and sets
//!   `MMF_OOM_SKIP` only after it (bf3980c85212).
//! - A write to `/proc/PID/clear_refs` holds `mmap_write_lock` on the
//!   target's mm for a walk of all its page tables, with an `mm_users`
//!   reference it drops right after the unlock (29a951dfb3c3).
//!
//! The choreography (victim and writer on CPU 0, reaper and this thread on
//! CPU 1, RT throttling off for the few seconds it takes):
//! 1. the writer (`SCHED_FIFO`) writes `clear_refs`: the victim's mm is
//!    write-locked for the walk;
//! 2. the victim is SIGKILLed (it cannot run: the FIFO writer holds CPU 0)
//!    and the reaper thread calls `process_mrelease`, which finds the mm
//!    and blocks on the lock (seen as state `D`);
//! 3. this thread turns `SCHED_FIFO` on CPU 1: the reaper, granted the read
//!    lock at the writer's unlock, cannot run;
//! 4. the writer unlocks and drops its reference; the victim runs its exit
//!    and, holding the last reference, enters `exit_mmap`, whose
//!    `unmap_vmas` starts freeing the mapping (`MemFree` rises);
//! 5. this thread steps back: the reaper runs `__oom_reap_task_mm` while
//!    `unmap_vmas` is still zapping the rest.
//!
//! The victim's memory is one page per page table (a sparse mapping far
//! larger than memory), so the walk and the zap each scan 512 entries per
//! 8 KiB of memory: long windows for little memory.
//!
//! The report says whether each step was seen (`ordered`); a step that did
//! not happen (e.g. the victim exited before the reaper found its mm,
//! `ESRCH`) is reported, never papered over: the caller tries again.

use std::{
    fs,
    io::{Read as _, Seek as _, SeekFrom},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::{
    hold::{fork_child, pin},
    sys::{ms_since, page_size, wait_child},
};

const SYS_PIDFD_OPEN: libc::c_long = 434;
const SYS_PIDFD_SEND_SIGNAL: libc::c_long = 424;
const SYS_PROCESS_MRELEASE: libc::c_long = 448;
const RT_RUNTIME: &str = "/proc/sys/kernel/sched_rt_runtime_us";

/// RT throttling off while the scenario runs (restored on drop): a FIFO
/// thread must keep its CPU for the whole step, not 95 % of each second.
struct NoRtThrottle(String);

impl NoRtThrottle {
    fn new() -> anyhow::Result<Self> {
        let old = fs::read_to_string(RT_RUNTIME).context(RT_RUNTIME)?;
        fs::write(RT_RUNTIME, "-1").context(RT_RUNTIME)?;
        Ok(Self(old.trim().to_owned()))
    }
}

impl Drop for NoRtThrottle {
    fn drop(&mut self) {
        let _ = fs::write(RT_RUNTIME, &self.0);
    }
}

/// The calling thread's scheduling class: FIFO at `prio`, or normal.
fn set_fifo(prio: i32) -> anyhow::Result<()> {
    let policy = if prio > 0 {
        libc::SCHED_FIFO
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: sched_param is plain data (musl has more fields than glibc).
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = prio;
    // The raw syscall: musl's wrapper returns ENOSYS by design (the call
    // applies to one thread, not the process). pid 0 is the calling thread.
    // SAFETY: valid parameter struct (the kernel reads `sched_priority`).
    if unsafe { libc::syscall(libc::SYS_sched_setscheduler, 0, policy, &raw const param) } != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_setscheduler");
    }
    Ok(())
}

/// `MemFree` in KiB from an open `/proc/meminfo`.
fn mem_free_kib(f: &mut fs::File, buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    if f.seek(SeekFrom::Start(0)).is_err() || f.read_to_end(buf).is_err() {
        return 0;
    }
    let text = String::from_utf8_lossy(buf);
    text.lines()
        .find_map(|l| l.strip_prefix("MemFree:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The state letter of thread `tid` of this process (`/proc/self/task/TID/stat`).
fn thread_state(tid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The virtual span of one page table (x86-64: 512 PTEs of 4 KiB).
const PMD_SPAN: usize = 2 << 20;

/// An anonymous mapping of `tables` page-table spans, aligned to one, that
/// is never backed beyond what is touched (`MAP_NORESERVE`: it is far larger
/// than memory) and never uses huge pages.
fn sparse_mapping(tables: usize) -> anyhow::Result<*mut u8> {
    let len = (tables + 1) * PMD_SPAN;
    // SAFETY: anonymous mapping, no file, kernel chooses the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error()).context("mmap");
    }
    let aligned = (p as usize).next_multiple_of(PMD_SPAN) as *mut u8;
    // SAFETY: advice on our own fresh mapping.
    unsafe { libc::madvise(aligned.cast(), tables * PMD_SPAN, libc::MADV_NOHUGEPAGE) };
    Ok(aligned)
}

/// One `clear_refs` write on CPU 0 from a FIFO thread; its duration.
/// `writing` is raised just before the write.
fn clear_refs(fd: i32, writing: &AtomicBool) -> anyhow::Result<Duration> {
    pin(0, 0)?;
    set_fifo(1)?;
    writing.store(true, Ordering::SeqCst);
    let t = Instant::now();
    // SAFETY: one byte from a valid buffer to our own descriptor.
    let rc = unsafe { libc::pwrite(fd, b"1".as_ptr().cast(), 1, 0) };
    let took = t.elapsed();
    if rc != 1 {
        return Err(std::io::Error::last_os_error()).context("write clear_refs");
    }
    Ok(took)
}

pub fn run(mb: usize) -> anyhow::Result<serde_json::Value> {
    // SAFETY: sysconf has no preconditions.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        bail!("--exit-first needs two CPUs");
    }
    let start = Instant::now();
    // `mb` MiB of memory: half data pages, half page tables.
    let tables = (mb << 20) / (2 * page_size());
    let ready = crate::sys::pipe()?;
    let victim = fork_child(|| {
        if pin(0, 0).is_err() {
            return 11;
        }
        let Ok(p) = sparse_mapping(tables) else {
            return 10;
        };
        // One page per page table: every table costs the walk and the zap
        // a scan of 512 entries, for 8 KiB of memory.
        for t in 0..tables {
            // SAFETY: inside the fresh mapping.
            unsafe { p.add(t * PMD_SPAN).write_volatile(1) };
        }
        // SAFETY: one byte to the ready pipe, then sleep until killed.
        unsafe {
            libc::write(ready[1], b"r".as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    })?;
    // SAFETY: the child's end.
    unsafe { libc::close(ready[1]) };
    let out = choreograph(victim, ready[0], mb, tables);
    // SAFETY: signalling and reaping our own child (a no-op if it is gone).
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let _ = wait_child(victim, Duration::from_secs(60));
    // SAFETY: our own descriptor.
    unsafe { libc::close(ready[0]) };
    let mut report = out?;
    report["victim_pid"] = json!(victim);
    report["elapsed_ms"] = json!(ms_since(start));
    Ok(report)
}

fn choreograph(
    victim: libc::pid_t,
    ready: i32,
    mb: usize,
    tables: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut b = [0u8; 1];
    // SAFETY: one byte into a valid buffer.
    if unsafe { libc::read(ready, b.as_mut_ptr().cast(), 1) } != 1 {
        bail!("the victim did not get ready");
    }
    // SAFETY: plain syscall on our own child.
    let pidfd = unsafe { libc::syscall(SYS_PIDFD_OPEN, victim, 0) } as i32;
    if pidfd < 0 {
        bail!("pidfd_open: {}", std::io::Error::last_os_error());
    }
    let path = format!("/proc/{victim}/clear_refs");
    let refs = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| path.clone())?;
    let refs_fd = std::os::fd::AsRawFd::as_raw_fd(&refs);
    let _rt = NoRtThrottle::new()?;
    pin(0, 1)?;
    // How long the writer holds the lock on this machine.
    let walk = std::thread::spawn(move || clear_refs(refs_fd, &AtomicBool::new(false)))
        .join()
        .map_err(|_| anyhow::anyhow!("clear_refs thread panicked"))??;

    let reaper_tid = Arc::new(AtomicI32::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let reaper = {
        let (tid, go, done) = (reaper_tid.clone(), go.clone(), done.clone());
        std::thread::spawn(move || -> anyhow::Result<(libc::c_long, i32)> {
            pin(0, 1)?;
            // SAFETY: gettid has no preconditions.
            tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
            while !go.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            // SAFETY: plain syscall on our own child's pidfd.
            let rc = unsafe { libc::syscall(SYS_PROCESS_MRELEASE, pidfd, 0) };
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            done.store(true, Ordering::SeqCst);
            Ok((rc, errno))
        })
    };
    while reaper_tid.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let tid = reaper_tid.load(Ordering::SeqCst);
    let writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let writing = writing.clone();
        std::thread::spawn(move || clear_refs(refs_fd, &writing))
    };
    while !writing.load(Ordering::SeqCst) {
        std::hint::spin_loop();
    }
    // Let the writer take the lock (it holds it for about `walk`).
    std::thread::sleep((walk / 8).max(Duration::from_millis(1)));
    // SAFETY: plain syscall on our own child's pidfd.
    let sent = unsafe { libc::syscall(SYS_PIDFD_SEND_SIGNAL, pidfd, libc::SIGKILL, 0, 0) };
    if sent < 0 {
        go.store(true, Ordering::SeqCst);
        bail!("pidfd_send_signal: {}", std::io::Error::last_os_error());
    }
    go.store(true, Ordering::SeqCst);
    // Step 2: the reaper waits for the lock.
    let mut blocked = false;
    let t = Instant::now();
    while !done.load(Ordering::SeqCst) && !writer.is_finished() && t.elapsed() < walk * 4 {
        if thread_state(tid) == Some('D') {
            blocked = true;
            break;
        }
        std::hint::spin_loop();
    }
    // Steps 3–4: hold CPU 1 until the victim's exit_mmap frees memory.
    let mut meminfo = fs::File::open("/proc/meminfo")?;
    let mut buf = Vec::with_capacity(4096);
    let (mut rise_kib, mut exit_seen) = (0, false);
    if blocked {
        set_fifo(2)?;
        let base = mem_free_kib(&mut meminfo, &mut buf);
        let want = ((mb as u64) << 10) / 16;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            rise_kib = mem_free_kib(&mut meminfo, &mut buf).saturating_sub(base);
            if rise_kib >= want {
                exit_seen = true;
                break;
            }
        }
        set_fifo(0)?;
    }
    // Step 5: the reaper runs.
    let (rc, errno) = reaper
        .join()
        .map_err(|_| anyhow::anyhow!("reaper thread panicked"))??;
    let held = writer
        .join()
        .map_err(|_| anyhow::anyhow!("clear_refs thread panicked"))??;
    // SAFETY: our own descriptor.
    unsafe { libc::close(pidfd) };
    Ok(json!({
        "scenario": "mrelease",
        "variant": "exit_first",
        "supported": !(rc < 0 && errno == libc::ENOSYS),
        "ret": rc,
        "errno": if rc < 0 { errno } else { 0 },
        "page_tables": tables,
        "walk_ms": walk.as_secs_f64() * 1e3,
        "write_locked_ms": held.as_secs_f64() * 1e3,
        "reaper_blocked": blocked,
        "exit_seen": exit_seen,
        "mem_free_rise_kib": rise_kib,
        "ordered": blocked && exit_seen && rc == 0,
    }))
}
