//! Small, checked wrappers around the syscalls the scenarios need.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// Turns a -1 return into the errno as an error.
pub fn check(rc: libc::c_long, what: &str) -> anyhow::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error()).with_context(|| what.to_owned())
    } else {
        Ok(rc)
    }
}

pub fn pipe() -> anyhow::Result<[libc::c_int; 2]> {
    let mut fds = [0; 2];
    // SAFETY: valid out array of two ints.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) }.into(), "pipe")?;
    Ok(fds)
}

/// Anonymous private mapping of `len` bytes.
pub fn mmap_anon(len: usize) -> anyhow::Result<*mut u8> {
    // SAFETY: anonymous mapping, no file, kernel chooses the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error()).context("mmap");
    }
    Ok(p.cast())
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Polls `f` every `step` until it returns Some or `timeout` passes.
pub fn wait_for<T>(
    timeout: Duration,
    step: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(step);
    }
}

/// Waits for child `pid` to end; returns the raw wait status.
pub fn wait_child(pid: libc::pid_t, timeout: Duration) -> anyhow::Result<libc::c_int> {
    let status = wait_for(timeout, Duration::from_millis(10), || {
        let mut status = 0;
        // SAFETY: valid out pointer; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        (rc == pid).then_some(status)
    });
    status.with_context(|| format!("child {pid} did not end within {timeout:?}"))
}

/// A memory cgroup with a hard limit (cgroup v2 if its memory controller is
/// available at /sys/fs/cgroup, else the v1 memory hierarchy). Removed on drop.
pub struct Memcg {
    pub path: PathBuf,
    pub v2: bool,
}

impl Memcg {
    pub fn create(name: &str, limit_bytes: u64) -> anyhow::Result<Memcg> {
        let v2_root = Path::new("/sys/fs/cgroup");
        let v2 = fs::read_to_string(v2_root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"));
        let path = if v2 {
            let ctl = v2_root.join("cgroup.subtree_control");
            let cur = fs::read_to_string(&ctl).unwrap_or_default();
            if !cur.split_whitespace().any(|w| w == "memory") {
                fs::write(&ctl, "+memory").context("enabling the memory controller")?;
            }
            v2_root.join(name)
        } else {
            let v1 = Path::new("/sys/fs/cgroup/memory");
            if !v1.join("memory.limit_in_bytes").exists() {
                bail!(
                    "no memory cgroup controller (neither cgroup v2 memory nor v1 /sys/fs/cgroup/memory)"
                );
            }
            v1.join(name)
        };
        if !path.exists() {
            fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        }
        let cg = Memcg { path, v2 };
        if v2 {
            cg.write("memory.max", &limit_bytes.to_string())?;
            // No swap: the victim must hit the limit, not swap out.
            let _ = cg.write("memory.swap.max", "0");
        } else {
            cg.write("memory.limit_in_bytes", &limit_bytes.to_string())?;
        }
        Ok(cg)
    }

    fn write(&self, file: &str, value: &str) -> anyhow::Result<()> {
        fs::write(self.path.join(file), value)
            .with_context(|| format!("writing {value} to {}", self.path.join(file).display()))
    }

    /// Moves process `pid` into the group.
    pub fn add(&self, pid: libc::pid_t) -> anyhow::Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// OOM kills in this group so far.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        fs::read_to_string(self.path.join(file))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Memcg {
    fn drop(&mut self) {
        // The group is only removable once its last task is gone.
        let _ = wait_for(Duration::from_secs(5), Duration::from_millis(20), || {
            fs::remove_dir(&self.path).ok()
        });
    }
}

/// Milliseconds since `start`, for reports.
pub fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
