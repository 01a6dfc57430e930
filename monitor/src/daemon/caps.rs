//! Dropping capabilities once the programs are attached.
//!
//! Loading and attaching needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN before
//! 5.8), CAP_SYS_ADMIN to mount tracefs when it is not mounted and for
//! BPF_ENABLE_STATS, CAP_SYS_RESOURCE for the memlock limit before 5.11, and
//! CAP_SYSLOG to read kernel addresses from `/proc/kallsyms`. After attach the
//! daemon only reads the ring buffer (mmap + epoll) and the maps through file
//! descriptors it already holds. On kernels before 6.5 with
//! `kernel.unprivileged_bpf_disabled` set, every `bpf(2)` command (map
//! lookups included) still needs CAP_BPF; from 6.5 on, no capability is
//! needed. Which case applies is found out by trying, with CAP_BPF lowered
//! from the effective set only (still permitted, so it can be raised again).
//!
//! Capabilities are per thread: this must run while the process has a single
//! thread, which the daemon checks.

use std::io;

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_BPF: u32 = 39;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// A thread's capability sets, as 64-bit masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

pub fn get() -> io::Result<CapSets> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as capget(2) requires for v3.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

pub fn set(c: CapSets) -> io::Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(c.effective);
    let (p0, p1) = split(c.permitted);
    let (i0, i1) = split(c.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: as in `get`; the kernel only reads `data`.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub const fn bit(cap: u32) -> u64 {
    1u64 << cap
}

/// Names for log lines (the capabilities the monitor may hold).
pub fn names(mask: u64) -> String {
    const KNOWN: [(u32, &str); 7] = [
        (8, "cap_setpcap"),
        (21, "cap_sys_admin"),
        (24, "cap_sys_resource"),
        (34, "cap_syslog"),
        (38, "cap_perfmon"),
        (39, "cap_bpf"),
        (12, "cap_net_admin"),
    ];
    if mask == 0 {
        return "none".to_owned();
    }
    let mut out: Vec<String> = KNOWN
        .iter()
        .filter(|(c, _)| mask & bit(*c) != 0)
        .map(|(_, n)| (*n).to_owned())
        .collect();
    let rest = KNOWN.iter().fold(mask, |m, (c, _)| m & !bit(*c));
    if rest != 0 {
        out.push(format!("{rest:#x}"));
    }
    out.join(",")
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// What [`drop_after_attach`] did.
#[derive(Debug)]
pub struct Dropped {
    pub before: CapSets,
    pub after: CapSets,
    /// CAP_BPF had to be kept (reading maps failed without it).
    pub kept_bpf: bool,
    /// The bounding set could not be reduced (no CAP_SETPCAP): already
    /// reduced by whoever started the daemon, e.g. systemd.
    pub bounding_kept: bool,
}

/// Drops every capability except CAP_BPF when `works_without` says it is
/// needed. `works_without` performs the post-attach operations (map reads)
/// and returns whether they succeeded.
pub fn drop_after_attach(works_without: impl Fn() -> bool) -> io::Result<Dropped> {
    let threads = thread_count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot drop capabilities: the process has {threads} threads \
             (capabilities are per thread)"
        )));
    }
    let before = get()?;
    let keep_bpf =
        if before.effective & bit(CAP_BPF) == 0 && before.effective & bit(CAP_SYS_ADMIN) == 0 {
            false
        } else {
            set(CapSets {
                effective: 0,
                ..before
            })?;
            let ok = works_without();
            set(before)?;
            !ok
        };
    let keep = if keep_bpf {
        // Kernels without CAP_BPF (before 5.8) need CAP_SYS_ADMIN instead.
        if before.permitted & bit(CAP_BPF) != 0 {
            bit(CAP_BPF)
        } else {
            bit(CAP_SYS_ADMIN)
        }
    } else {
        0
    };

    // SAFETY: prctl with integer arguments only; failures are reported.
    unsafe {
        // No privileges can be regained through execve from here on.
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Ambient capabilities (4.3+): EINVAL on older kernels, nothing to clear.
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    let mut bounding_kept = false;
    if before.effective & bit(CAP_SETPCAP) != 0 {
        for cap in 0..=last_cap() {
            if keep & bit(cap) == 0 {
                // SAFETY: as above.
                let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
                if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                    return Err(io::Error::last_os_error());
                }
            }
        }
    } else {
        bounding_kept = true;
    }
    let after = CapSets {
        effective: keep & before.permitted,
        permitted: keep & before.permitted,
        inheritable: 0,
    };
    set(after)?;
    Ok(Dropped {
        before,
        after: get()?,
        kept_bpf: keep != 0,
        bounding_kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable() {
        assert_eq!(names(0), "none");
        assert_eq!(names(bit(CAP_BPF)), "cap_bpf");
        assert_eq!(names(bit(CAP_BPF) | bit(38) | 1), "cap_perfmon,cap_bpf,0x1");
    }

    #[test]
    fn capget_reads_this_thread() {
        let c = get().expect("capget");
        assert_eq!(c.effective & !c.permitted, 0, "effective ⊆ permitted");
    }
}
