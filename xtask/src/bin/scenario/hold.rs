//! Keeping a killed process's mm alive, deterministically (`docs/kernel.md`, "Reproducing the races").
//!
//! This process (the holder, X) registers one page U with userfaultfd; its
//! thread W calls `write(pipe, U, 4096)`: `pipe_write` takes `pipe->mutex`,
//! faults on U and sleeps in `handle_userfault` holding the mutex. The victim's
//! thread T2 then blocks in `write(pipe, "a", 1)` on that mutex,
//! uninterruptibly: SIGKILL cannot wake it, so `mm_users` stays above zero and
//! `exit_mmap` cannot start until the holder resolves the fault.

use std::{thread, time::Duration};

use anyhow::{Context as _, bail};

use crate::{
    sys::{self, check},
    uffd::{UFFD_EVENT_PAGEFAULT, Uffd},
};

/// The pipe the victim's thread blocks on, and the fault that blocks it.
pub struct Hold {
    pub pipe: [libc::c_int; 2],
    uffd: Option<Uffd>,
    page: *mut u8,
    writer: Option<thread::JoinHandle<isize>>,
}

impl Hold {
    /// Creates the pipe. Call before forking the victim (it inherits the pipe).
    pub fn new() -> anyhow::Result<Hold> {
        Ok(Hold {
            pipe: sys::pipe()?,
            uffd: None,
            page: std::ptr::null_mut(),
            writer: None,
        })
    }

    /// In the holder, after forking: park a writer thread on the pipe mutex
    /// (it faults on a userfaultfd page while holding it).
    pub fn engage(&mut self) -> anyhow::Result<()> {
        let page_size = sys::page_size();
        let uffd = Uffd::open(0)?;
        let page = sys::mmap_anon(page_size)?;
        uffd.register_missing(page, page_size)?;
        let (addr, fd) = (page as usize, self.pipe[1]);
        self.writer = Some(thread::spawn(move || {
            // SAFETY: a valid (registered) user mapping of one page.
            unsafe { libc::write(fd, addr as *const libc::c_void, page_size) }
        }));
        match uffd.read_msg(10_000)? {
            Some(m) if m.event == UFFD_EVENT_PAGEFAULT => {}
            other => bail!("the pipe writer did not fault on the userfaultfd page: {other:?}"),
        }
        self.uffd = Some(uffd);
        self.page = page;
        Ok(())
    }

    /// In the victim: a thread that blocks uninterruptibly on the pipe mutex.
    pub fn block_victim_thread(&self) {
        self.block_victim_thread_copying(b"a".as_ptr() as usize);
    }

    /// [`Self::block_victim_thread`], the thread then copying one byte from
    /// `buf` (the owner's `copy_from_user`).
    pub fn block_victim_thread_copying(&self, buf: usize) {
        let fd = self.pipe[1];
        thread::spawn(move || {
            // SAFETY: one byte from a buffer valid in this process.
            unsafe { libc::write(fd, buf as *const libc::c_void, 1) };
        });
        // Let it reach the mutex.
        thread::sleep(Duration::from_millis(200));
    }

    /// Resolves the fault: the writer finishes, the victim's thread gets the
    /// mutex, returns, and dies; its `mmput` runs `exit_mmap`.
    pub fn release(&mut self) -> anyhow::Result<()> {
        let uffd = self.uffd.take().context("release before engage")?;
        uffd.zeropage(self.page, sys::page_size())?;
        if let Some(w) = self.writer.take() {
            w.join()
                .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
        }
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        for fd in self.pipe {
            // SAFETY: closing our own descriptors.
            unsafe { libc::close(fd) };
        }
    }
}

/// Runs `body` in a forked child and never returns there.
pub fn fork_child(body: impl FnOnce() -> i32) -> anyhow::Result<libc::pid_t> {
    // SAFETY: the caller is single-threaded at this point; the child only
    // runs `body` and exits without unwinding into the parent's state.
    let pid = check(unsafe { libc::fork() }.into(), "fork")? as libc::pid_t;
    if pid == 0 {
        let code = body();
        // SAFETY: terminating the forked child.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Pins the calling thread (0) or `pid` to one CPU.
pub fn pin(pid: libc::pid_t, cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays in bounds.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        check(
            libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), &set).into(),
            "sched_setaffinity",
        )?;
    }
    Ok(())
}

/// The pid of the `oom_reaper` kernel thread.
pub fn oom_reaper_pid() -> Option<libc::pid_t> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            let pid: libc::pid_t = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (comm.trim() == "oom_reaper").then_some(pid)
        })
}

/// Resident pages of `pid` (`/proc/PID/statm`), 0 if gone.
pub fn resident_pages(pid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Touches `len` bytes of a fresh anonymous mapping; returns it.
pub fn touch_anon(len: usize) -> anyhow::Result<*mut u8> {
    let p = sys::mmap_anon(len)?;
    for off in (0..len).step_by(sys::page_size()) {
        // SAFETY: inside the fresh mapping.
        unsafe { p.add(off).write_volatile(1) };
    }
    Ok(p)
}
