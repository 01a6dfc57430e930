//! Least privilege once the programs are attached: capabilities dropped, and
//! (the daemon) an unprivileged user.
//!
//! Loading and attaching needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN before
//! 5.8), CAP_SYS_ADMIN to mount tracefs when it is not mounted and for
//! BPF_ENABLE_STATS, CAP_SYS_RESOURCE for the memlock limit before 5.11, and
//! CAP_SYSLOG to read kernel addresses from `/proc/kallsyms`. After attach the
//! monitor only reads the ring buffer (mmap + epoll) and the maps through file
//! descriptors it already holds. On kernels before 6.5 with
//! `kernel.unprivileged_bpf_disabled` set, every `bpf(2)` command (map
//! lookups included) still needs CAP_BPF; from 6.5 on, no capability is
//! needed. Which case applies is found out by trying, with CAP_BPF lowered
//! from the effective set only (still permitted, so it can be raised again).
//!
//! The order matters: the bounding set is reduced and `no_new_privs` set
//! while CAP_SETPCAP is still effective; then groups, gid and uid are
//! switched (CAP_SETGID, CAP_SETUID; with `PR_SET_KEEPCAPS` only when CAP_BPF
//! must survive the switch); last the capability sets are cut to what is
//! kept. File descriptors (programs, links, maps, ring buffer, listener,
//! record directory) are unaffected by all of it.
//!
//! Capabilities and credentials are per thread: this must run while the
//! process has a single thread, which is checked. Threads started later
//! (the output writers) inherit the reduced credentials.

use std::{io, path::Path};

use caps::{CapSet, Capability, CapsHashSet};

/// A thread's capability sets, as 64-bit masks (bit N = capability N).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

fn to_set(mask: u64) -> CapsHashSet {
    caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .collect()
}

fn caps_err(what: &str, e: caps::errors::CapsError) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// The calling thread's capability sets.
pub fn get() -> io::Result<CapSets> {
    let read = |set| caps::read(None, set).map_err(|e| caps_err("capget", e));
    Ok(CapSets {
        effective: mask(&read(CapSet::Effective)?),
        permitted: mask(&read(CapSet::Permitted)?),
        inheritable: mask(&read(CapSet::Inheritable)?),
    })
}

/// Sets the calling thread's sets; the effective set first, so that it never
/// exceeds the permitted one on the way.
pub fn set(c: CapSets) -> io::Result<()> {
    let put = |set, m| caps::set(None, set, &to_set(m)).map_err(|e| caps_err("capset", e));
    put(CapSet::Effective, c.effective & c.permitted)?;
    put(CapSet::Permitted, c.permitted)?;
    put(CapSet::Effective, c.effective)?;
    put(CapSet::Inheritable, c.inheritable)
}

pub fn bit(cap: Capability) -> u64 {
    cap.bitmask()
}

/// Names for log lines, e.g. `cap_bpf,cap_perfmon` (`none` for an empty set).
pub fn names(mask: u64) -> String {
    if mask == 0 {
        return "none".to_owned();
    }
    let mut known = 0u64;
    let mut out: Vec<String> = caps::all()
        .into_iter()
        .filter(|c| mask & c.bitmask() != 0)
        .map(|c| {
            known |= c.bitmask();
            c.to_string().to_lowercase()
        })
        .collect();
    out.sort();
    if mask & !known != 0 {
        out.push(format!("{:#x}", mask & !known));
    }
    out.join(",")
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// The user the daemon runs as after attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The name, or the numeric spec when there is none.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The default user: a dedicated system user when the package created one.
pub const DEFAULT_USER: &str = "mm-race-monitor";
/// `nobody`'s ids on Debian, Fedora and in most containers, used when the
/// system has no `/etc/passwd` entry for either name (a `FROM scratch` image).
pub const NOBODY: u32 = 65534;

/// One `name:password:uid:gid:…` line of a passwd-format file.
fn passwd_entry<'a>(text: &'a str, name: &str) -> Option<(&'a str, u32, u32)> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let n = f.next()?;
        if n != name {
            return None;
        }
        let _ = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some((n, uid, gid))
    })
}

/// Resolves the `security.user` setting (`--user`): `None` = stay root.
///
/// Accepted: a user name (looked up in `/etc/passwd`, no NSS: system users
/// are local, and a static binary must not load NSS modules), `UID` or
/// `UID:GID` (numeric, for images without `/etc/passwd`), and `root`/`0`
/// (no switch). Unset: `mm-race-monitor` if that user exists, else
/// `nobody`, else 65534:65534.
pub fn resolve_user(spec: Option<&str>, passwd: &Path) -> Result<Option<User>, String> {
    let text = std::fs::read_to_string(passwd).unwrap_or_default();
    let Some(spec) = spec.map(str::trim) else {
        for name in [DEFAULT_USER, "nobody"] {
            if let Some((n, uid, gid)) = passwd_entry(&text, name) {
                return Ok(Some(User {
                    name: n.to_owned(),
                    uid,
                    gid,
                }));
            }
        }
        return Ok(Some(User {
            name: format!("{NOBODY}:{NOBODY}"),
            uid: NOBODY,
            gid: NOBODY,
        }));
    };
    if spec == "root" || spec == "0" || spec == "0:0" {
        return Ok(None);
    }
    let numeric = |s: &str| s.parse::<u32>().ok();
    let user = if let Some((u, g)) = spec.split_once(':') {
        match (numeric(u), numeric(g)) {
            (Some(uid), Some(gid)) => User {
                name: spec.to_owned(),
                uid,
                gid,
            },
            _ => return Err(format!("{spec:?} is not UID:GID (two numbers)")),
        }
    } else if let Some(uid) = numeric(spec) {
        // A bare uid: its passwd group if known, else the same number.
        let gid = text
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 3 && f[2].parse() == Ok(uid)).then(|| f[3].parse().ok())?
            })
            .unwrap_or(uid);
        User {
            name: spec.to_owned(),
            uid,
            gid,
        }
    } else {
        let (n, uid, gid) = passwd_entry(&text, spec).ok_or_else(|| {
            format!(
                "no user {spec:?} in {} (give a numeric UID:GID, or create the user)",
                passwd.display()
            )
        })?;
        User {
            name: n.to_owned(),
            uid,
            gid,
        }
    };
    if user.uid == 0 || user.gid == 0 {
        return Err(format!(
            "{spec:?} has uid or gid 0: that is root (use \"root\" to stay root)"
        ));
    }
    Ok(Some(user))
}

/// The user to switch to, given what the process may do: without CAP_SETUID
/// and CAP_SETGID (a narrowed capability set, a container granted only what
/// loading needs) the default user cannot be had, and the daemon stays uid 0
/// without capabilities, saying so; a user asked for explicitly must be had.
pub fn usable_user(user: Option<&User>, explicit: bool) -> Result<Option<&User>, String> {
    let Some(u) = user else { return Ok(None) };
    let need = bit(Capability::CAP_SETUID) | bit(Capability::CAP_SETGID);
    if get().is_ok_and(|c| c.effective & need == need) {
        return Ok(Some(u));
    }
    if explicit {
        return Err(format!(
            "security.user is {} but the process lacks CAP_SETUID and CAP_SETGID to switch to it \
             (grant them, or set security.user = \"root\")",
            u.name
        ));
    }
    log::warn!(
        "staying uid 0 (without capabilities) after attach: switching to {} needs CAP_SETUID and \
         CAP_SETGID; grant them, or set security.user = \"root\" to accept this",
        u.name
    );
    Ok(None)
}

/// What [`drop_after_attach`] did.
#[derive(Debug)]
pub struct Dropped {
    pub before: CapSets,
    pub after: CapSets,
    /// CAP_BPF had to be kept (reading maps failed without it).
    pub kept_bpf: bool,
    /// The bounding set could not be reduced (no CAP_SETPCAP): already
    /// reduced by whoever started the monitor, e.g. systemd.
    pub bounding_kept: bool,
    /// The user switched to.
    pub user: Option<User>,
}

fn prctl(option: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(option, arg, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Switches groups, gid and uid (all three ids each, so nothing can switch
/// back).
fn switch_user(user: &User) -> io::Result<()> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "{what} for user {} (uid {}, gid {}): {e}",
                user.name, user.uid, user.gid
            ),
        )
    };
    // SAFETY: plain credential system calls; the process is single-threaded,
    // so the C library's all-threads broadcast has nothing to do.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(ctx("setgroups", io::Error::last_os_error()));
        }
        if libc::setresgid(user.gid, user.gid, user.gid) != 0 {
            return Err(ctx("setresgid", io::Error::last_os_error()));
        }
        if libc::setresuid(user.uid, user.uid, user.uid) != 0 {
            return Err(ctx("setresuid", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Real, effective and saved uid and gid.
pub fn ids() -> ([u32; 3], [u32; 3]) {
    let (mut u, mut g) = ([0u32; 3], [0u32; 3]);
    // SAFETY: valid out pointers.
    unsafe {
        libc::getresuid(&mut u[0], &mut u[1], &mut u[2]);
        libc::getresgid(&mut g[0], &mut g[1], &mut g[2]);
    }
    (u, g)
}

/// Drops every capability (except CAP_BPF when `works_without` says it is
/// needed) and, with `user`, switches to that user. `works_without` performs
/// the post-attach operations (map reads) and returns whether they succeeded.
pub fn drop_after_attach(
    works_without: impl Fn() -> bool,
    user: Option<&User>,
) -> io::Result<Dropped> {
    let threads = thread_count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot drop capabilities: the process has {threads} threads \
             (capabilities are per thread)"
        )));
    }
    let before = get()?;
    let (cap_bpf, cap_sys_admin) = (bit(Capability::CAP_BPF), bit(Capability::CAP_SYS_ADMIN));
    let keep_bpf = if before.effective & (cap_bpf | cap_sys_admin) == 0 {
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
        if before.permitted & cap_bpf != 0 {
            cap_bpf
        } else {
            cap_sys_admin
        }
    } else {
        0
    };

    // No privileges can be regained through execve from here on.
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    // Ambient capabilities (4.3+): EINVAL on older kernels, nothing to clear.
    let _ = caps::clear(None, CapSet::Ambient);
    let mut bounding_kept = false;
    if before.effective & bit(Capability::CAP_SETPCAP) != 0 {
        for cap in caps::all() {
            if keep & cap.bitmask() == 0
                && let Err(e) = caps::drop(None, CapSet::Bounding, cap)
            {
                // A capability newer than the running kernel.
                if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                    return Err(caps_err("dropping from the bounding set", e));
                }
            }
        }
    } else {
        bounding_kept = true;
    }
    if let Some(user) = user {
        if keep != 0 {
            caps::securebits::set_keepcaps(true).map_err(|e| caps_err("keepcaps", e))?;
        }
        switch_user(user)?;
        if keep != 0 {
            caps::securebits::set_keepcaps(false).map_err(|e| caps_err("keepcaps", e))?;
        }
        let (u, g) = ids();
        if u != [user.uid; 3] || g != [user.gid; 3] {
            return Err(io::Error::other(format!(
                "after switching to {}: uids {u:?}, gids {g:?}",
                user.name
            )));
        }
    }
    set(CapSets {
        effective: keep & before.permitted,
        permitted: keep & before.permitted,
        inheritable: 0,
    })?;
    Ok(Dropped {
        before,
        after: get()?,
        kept_bpf: keep != 0,
        bounding_kept,
        user: user.cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable() {
        assert_eq!(names(0), "none");
        assert_eq!(names(bit(Capability::CAP_BPF)), "cap_bpf");
        assert_eq!(
            names(bit(Capability::CAP_BPF) | bit(Capability::CAP_PERFMON) | (1 << 63)),
            "cap_bpf,cap_perfmon,0x8000000000000000"
        );
    }

    #[test]
    fn capget_reads_this_thread() {
        let c = get().expect("capget");
        assert_eq!(c.effective & !c.permitted, 0, "effective ⊆ permitted");
    }

    #[test]
    fn users_resolve_by_name_number_or_default() {
        let dir = std::env::temp_dir().join(format!("monitor-passwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let passwd = dir.join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/usr/sbin/nologin\n\
             svc:x:990:985::/:/usr/sbin/nologin\n",
        )
        .expect("write");
        let user = |spec| resolve_user(spec, &passwd);
        let u = |name: &str, uid, gid| {
            Ok(Some(User {
                name: name.to_owned(),
                uid,
                gid,
            }))
        };
        assert_eq!(user(None), u("nobody", 65534, 65534));
        assert_eq!(user(Some("svc")), u("svc", 990, 985));
        assert_eq!(user(Some("990")), u("990", 990, 985));
        assert_eq!(user(Some("4000")), u("4000", 4000, 4000));
        assert_eq!(user(Some("4000:5000")), u("4000:5000", 4000, 5000));
        assert_eq!(user(Some("root")), Ok(None));
        assert_eq!(user(Some("0")), Ok(None));
        assert!(user(Some("nosuch")).is_err());
        assert!(user(Some("1:x")).is_err());
        assert!(user(Some("5:0")).is_err());
        std::fs::write(
            &passwd,
            "mm-race-monitor:x:991:986::/:/usr/sbin/nologin\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .expect("write");
        assert_eq!(user(None), u("mm-race-monitor", 991, 986));
        // No passwd at all (a FROM scratch image).
        let none = dir.join("absent");
        assert_eq!(resolve_user(None, &none), u("65534:65534", NOBODY, NOBODY));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
