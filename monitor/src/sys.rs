//! Facts about the running system the loader needs, each failing with an
//! actionable message: privileges, kernel release, kernel symbols, tracefs,
//! the memlock limit.

use std::{
    ffi::CStr,
    fs,
    io::{BufRead as _, BufReader},
    path::Path,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SysError {
    #[error(
        "the monitor needs root (or CAP_BPF and CAP_PERFMON, plus CAP_SYS_RESOURCE before Linux \
         5.11) to load BPF programs; run it with sudo"
    )]
    NotPrivileged,
    #[error(
        "cannot mount tracefs on {path}: {err}; mount it by hand (mount -t tracefs none {path})"
    )]
    Tracefs {
        path: &'static str,
        err: std::io::Error,
    },
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability mask of this process (from `/proc/self/status`).
pub fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Fails unless the process may load tracing BPF programs.
pub fn check_privileges() -> Result<(), SysError> {
    let caps = effective_caps();
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(SysError::NotPrivileged)
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: `uname` fills the zeroed struct; the fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".to_owned();
        }
        CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// Whether a `uname -r` string names version `major.minor` or later
/// (`6.12.48+deb13-cloud-amd64` → 6.12); `None` if it does not parse.
pub fn release_at_least(release: &str, major: u32, minor: u32) -> Option<bool> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let got_major: u32 = parts.next()?.parse().ok()?;
    let got_minor: u32 = parts.next()?.parse().ok()?;
    Some((got_major, got_minor) >= (major, minor))
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Kernel text and data symbols from `/proc/kallsyms` (as root the addresses
/// are real). Only the names the planner asks about are kept.
#[derive(Debug, Default, Clone)]
pub struct Kallsyms {
    entries: Vec<(String, u64, char)>,
}

impl Kallsyms {
    /// Reads the symbols whose names satisfy `want` (module symbols included).
    pub fn load(want: impl Fn(&str) -> bool) -> Kallsyms {
        let Ok(file) = fs::File::open("/proc/kallsyms") else {
            return Kallsyms::default();
        };
        let mut entries = Vec::new();
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if !want(name) {
                continue;
            }
            let addr = u64::from_str_radix(addr, 16).unwrap_or(0);
            entries.push((name.to_owned(), addr, kind.chars().next().unwrap_or('?')));
        }
        Kallsyms { entries }
    }

    /// Address of a data or text symbol, if present and visible.
    pub fn address(&self, name: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|(n, addr, _)| n == name && *addr != 0)
            .map(|(_, a, _)| *a)
    }

    /// Text symbols named `name` or a compiler clone of it (`name.isra.0`,
    /// `name.constprop.0`, `name.part.0`), excluding `.cold` fragments.
    pub fn text_symbols(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .entries
            .iter()
            .filter(|(n, _, kind)| {
                matches!(kind, 't' | 'T')
                    && (n == name
                        || n.strip_prefix(name)
                            .and_then(|rest| rest.strip_prefix('.'))
                            .is_some_and(|suffix| {
                                !suffix.starts_with("cold")
                                    && ["isra", "constprop", "part", "llvm"]
                                        .iter()
                                        .any(|p| suffix.starts_with(p))
                            }))
            })
            .map(|(n, _, _)| n.clone())
            .collect();
        out.sort();
        out.dedup();
        // The plain name first.
        out.sort_by_key(|n| n != name);
        out
    }
}

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// The mount made by [`ensure_tracefs`]: its id in `/proc/self/mountinfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracefsMount {
    mount_id: Option<u64>,
}

/// The id of the topmost mount at `path` (the last one listed).
fn mount_id_at(path: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().rev().find_map(|l| {
        let mut f = l.split(' ');
        let id = f.next()?.parse().ok()?;
        let point = f.nth(3)?;
        (point == path).then_some(id)
    })
}

/// Makes sure tracefs is available (classic tracepoints resolve their ids
/// there). Returns the mount if this call made one: the caller unmounts it
/// with [`unmount_tracefs`] as soon as the tracepoints are attached.
pub fn ensure_tracefs() -> Result<Option<TracefsMount>, SysError> {
    if Path::new(TRACEFS).join("events").is_dir()
        || Path::new("/sys/kernel/debug/tracing/events").is_dir()
    {
        return Ok(None);
    }
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (src, target, fstype) = (c("tracefs"), c(TRACEFS), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(SysError::Tracefs {
            path: TRACEFS,
            err: std::io::Error::last_os_error(),
        });
    }
    Ok(Some(TracefsMount {
        mount_id: mount_id_at(TRACEFS),
    }))
}

/// Unmounts the tracefs mount this process made, and only it: if another
/// mount now sits on top of the path (someone mounted tracefs since), it is
/// left alone.
pub fn unmount_tracefs(ours: TracefsMount) {
    let now = mount_id_at(TRACEFS);
    if ours.mount_id.is_none() || now != ours.mount_id {
        log::info!("tracefs at {TRACEFS} is not the mount this monitor made any more: left alone");
        return;
    }
    let target = std::ffi::CString::new(TRACEFS).unwrap_or_default();
    // SAFETY: valid path; failure is harmless (left mounted).
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
}

/// Raises the soft limit on open files to `want` (at most the hard limit):
/// the daemon's 256 metrics connections and its BPF descriptors must fit
/// under the usual soft limit of 1024.
pub fn raise_fd_limit(want: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer, then the same struct back; failure leaves
    // the limit as it was.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// What [`lower_oom_score_adj`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum OomAdj {
    /// Set to the wanted value (from the value it had).
    Set { from: i32 },
    /// Already at or below the wanted value (set by systemd's
    /// `OOMScoreAdjust=` or the kubelet): left as it was.
    Kept(i32),
}

/// Sets this process's `oom_score_adj` to `want` unless it is already at or
/// below it. Lowering needs CAP_SYS_RESOURCE: call it while privileged.
pub fn lower_oom_score_adj(path: &Path, want: i32) -> std::io::Result<OomAdj> {
    let now: i32 = fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not a number"))?;
    if now <= want {
        return Ok(OomAdj::Kept(now));
    }
    fs::write(path, format!("{want}\n"))?;
    Ok(OomAdj::Set { from: now })
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it.
pub fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid struct. Failure only matters on old
    // kernels, where the map creation error that follows says what went wrong.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Kernel monotonic time in nanoseconds (the clock `bpf_ktime_get_ns` uses).
pub fn ktime_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME − CLOCK_MONOTONIC` in nanoseconds, measured once (the
/// first call; the daemon and `trace` make it at start-up): adding it to an
/// event's `t` gives the wall-clock time of the event. Later steps of the
/// wall clock and time spent suspended are not reflected.
pub fn wall_offset_ns() -> i128 {
    static OFFSET: std::sync::OnceLock<i128> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        // The realtime read bracketed by two monotonic reads; their middle
        // is the best estimate of when it was taken.
        let a = clock_ns(libc::CLOCK_MONOTONIC);
        let wall = clock_ns(libc::CLOCK_REALTIME);
        let b = clock_ns(libc::CLOCK_MONOTONIC);
        i128::from(wall) - (i128::from(a) + i128::from(b)) / 2
    })
}

/// The wall-clock time of kernel monotonic time `t` (see [`wall_offset_ns`]).
pub fn wall_time(t: u64) -> std::time::SystemTime {
    let ns = (i128::from(t) + wall_offset_ns()).max(0);
    let ns = u64::try_from(ns).unwrap_or(u64::MAX);
    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_score_adj_is_only_ever_lowered() {
        let f = std::env::temp_dir().join(format!("monitor-oomadj-{}", std::process::id()));
        fs::write(&f, "0\n").expect("write");
        assert_eq!(
            lower_oom_score_adj(&f, -900).expect("set"),
            OomAdj::Set { from: 0 }
        );
        assert_eq!(fs::read_to_string(&f).expect("read"), "-900\n");
        fs::write(&f, "-997\n").expect("write");
        assert_eq!(
            lower_oom_score_adj(&f, -900).expect("kept"),
            OomAdj::Kept(-997)
        );
        assert_eq!(fs::read_to_string(&f).expect("read"), "-997\n");
        fs::write(&f, "junk").expect("write");
        assert!(lower_oom_score_adj(&f, -900).is_err());
        let _ = fs::remove_file(&f);
        // The real file parses; nothing is above 1000, so nothing is written.
        let own = Path::new("/proc/self/oom_score_adj");
        assert!(matches!(
            lower_oom_score_adj(own, 1000),
            Ok(OomAdj::Kept(_))
        ));
    }

    #[test]
    fn releases_compare_by_major_and_minor() {
        assert_eq!(
            release_at_least("5.10.0-35-cloud-amd64", 5, 13),
            Some(false)
        );
        assert_eq!(release_at_least("5.13.0", 5, 13), Some(true));
        assert_eq!(release_at_least("6.1.0-40-cloud-amd64", 5, 13), Some(true));
        assert_eq!(
            release_at_least("6.12.48+deb13-cloud-amd64", 6, 12),
            Some(true)
        );
        assert_eq!(release_at_least("4.19.0", 5, 13), Some(false));
        assert_eq!(release_at_least("unknown", 5, 13), None);
        assert_eq!(release_at_least("6", 5, 13), None);
    }

    #[test]
    fn clone_suffixes_are_recognised() {
        let k = Kallsyms {
            entries: vec![
                ("unmap_single_vma.isra.0".into(), 1, 't'),
                ("unmap_single_vma.cold".into(), 2, 't'),
                ("exit_mmap".into(), 3, 'T'),
                ("exit_mmap_foo".into(), 4, 'T'),
                ("userfaultfd_fops".into(), 5, 'r'),
            ],
        };
        assert_eq!(
            k.text_symbols("unmap_single_vma"),
            vec!["unmap_single_vma.isra.0"]
        );
        assert_eq!(k.text_symbols("exit_mmap"), vec!["exit_mmap"]);
        assert_eq!(k.address("userfaultfd_fops"), Some(5));
        assert!(k.text_symbols("userfaultfd_fops").is_empty());
    }
}
