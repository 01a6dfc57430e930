//! Creating files where someone else might interfere: a directory held open
//! by descriptor (so renaming or replacing its path later changes nothing),
//! its owner and mode checked, files created in it with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600 (never through a planted
//! symbolic link, never over an existing file, never readable by others
//! whatever the umask), deleted with `unlinkat`, and a lock file held with
//! `flock` for the life of the process.

use std::{
    ffi::CString,
    fs::File,
    io::{self, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

/// Mode of every trace file and lock file the monitor creates (they name
/// processes, users and executables).
pub const FILE_MODE: libc::mode_t = 0o600;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An open directory.
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Who may own a directory the monitor writes into, and whether others may
/// write into it.
#[derive(Clone, Copy, Debug)]
pub struct DirPolicy<'a> {
    /// Owners accepted (root is always accepted).
    pub owners: &'a [u32],
    /// Accept a group- or world-writable directory if it is sticky (`/tmp`):
    /// others can then neither remove nor replace our files.
    pub sticky_ok: bool,
}

impl Dir {
    /// Opens the directory `path` (symbolic links in the path are followed:
    /// what is checked is the directory reached, and the descriptor keeps it).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = cstr(path)?;
        // SAFETY: valid NUL-terminated path; the result is checked.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        Ok(Dir {
            // SAFETY: a descriptor just returned by open(2), owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stat(&self) -> io::Result<libc::stat> {
        // SAFETY: zeroed out-struct filled by fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        check(unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) })?;
        Ok(st)
    }

    /// `(owner uid, mode bits)`.
    pub fn owner_mode(&self) -> io::Result<(u32, u32)> {
        let st = self.stat()?;
        Ok((st.st_uid, st.st_mode & 0o7777))
    }

    /// Refuses a directory that someone else controls. Write access for
    /// group root (gid 0) is no one else's: that is how a packaged directory
    /// owned by the daemon's user stays writable for the daemon while it is
    /// still uid 0 without CAP_DAC_OVERRIDE (before it switches user).
    pub fn check(&self, policy: DirPolicy<'_>) -> Result<(), String> {
        let st = self.stat().map_err(|e| e.to_string())?;
        let (uid, mode) = (st.st_uid, st.st_mode & 0o7777);
        let others = if st.st_gid == 0 { mode & !0o020 } else { mode };
        let p = self.path.display();
        if uid != 0 && !policy.owners.contains(&uid) {
            return Err(format!(
                "{p} is owned by uid {uid}: the monitor writes only into directories owned by \
                 root{} (chown it, or choose another directory)",
                match policy.owners.iter().find(|o| **o != 0) {
                    Some(o) => format!(" or uid {o}"),
                    None => String::new(),
                }
            ));
        }
        let sticky = mode & 0o1000 != 0;
        if others & 0o022 != 0 && !(policy.sticky_ok && sticky) {
            return Err(format!(
                "{p} is writable by {} (mode {mode:04o}): another user could plant or replace \
                 files there; make it private (chmod 0700 {p})",
                if others & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                }
            ));
        }
        Ok(())
    }

    /// Hands the directory to `uid:gid` (the daemon's user after attach).
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: plain fchown on a descriptor we own.
        check(unsafe { libc::fchown(self.fd.as_raw_fd(), uid, gid) }).map(drop)
    }

    fn openat(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        if name.contains('/') || name == "." || name == ".." || name.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a file name"),
            ));
        }
        let c = cstr(Path::new(name))?;
        // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                libc::c_uint::from(FILE_MODE),
            )
        })?;
        // SAFETY: a descriptor just returned by openat(2).
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Creates `name`, which must not exist (EEXIST otherwise), mode 0600.
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let f = self.openat(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)?;
        // The umask may have removed bits, never added any; make it exact.
        // SAFETY: fchmod on a descriptor we own.
        check(unsafe { libc::fchmod(f.as_raw_fd(), FILE_MODE) })?;
        Ok(f)
    }

    /// Removes `name` (not a directory) from this directory.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let c = cstr(Path::new(name))?;
        // SAFETY: valid descriptor and name.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// Names of the entries, through the descriptor (not the path).
    pub fn names(&self) -> io::Result<Vec<String>> {
        let via = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        let mut out = Vec::new();
        for e in std::fs::read_dir(via)? {
            if let Some(n) = e?.file_name().to_str() {
                out.push(n.to_owned());
            }
        }
        Ok(out)
    }

    /// Takes the exclusive lock `name` in this directory (created if
    /// missing), writing our pid into it. `Err` names the holder's pid when
    /// another process has it.
    pub fn lock(&self, name: &str) -> Result<File, String> {
        let p = self.path.join(name);
        let mut f = self
            .openat(name, libc::O_RDWR | libc::O_CREAT)
            .map_err(|e| format!("cannot open the lock file {}: {e}", p.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let holder = std::fs::read_to_string(&p).unwrap_or_default();
                return Err(format!(
                    "{} is in use by another monitor (pid {}, holding {}): one daemon per \
                     record directory",
                    self.path.display(),
                    holder.trim(),
                    p.display()
                ));
            }
            return Err(format!("cannot lock {}: {err}", p.display()));
        }
        // SAFETY: ftruncate on a descriptor we own.
        let _ = unsafe { libc::ftruncate(f.as_raw_fd(), 0) };
        let _ = writeln!(f, "{}", std::process::id());
        Ok(f)
    }
}

/// Reads a whole regular file of at most `max` bytes. A FIFO, a device or
/// a directory is refused at once (opened non-blocking, so a FIFO without a
/// writer cannot hang the caller), and so is a longer file.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        let ft = meta.file_type();
        use std::os::unix::fs::FileTypeExt as _;
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        ));
    }
    let mut data = Vec::with_capacity(meta.len().min(max) as usize);
    f.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is larger than {} MiB", max >> 20),
        ));
    }
    Ok(data)
}

/// Creates the file `path` for writing: mode 0600, `O_EXCL|O_NOFOLLOW`, in a
/// parent directory owned by root or the caller and not writable by others
/// (unless sticky, like `/tmp`). An existing entry is an error, unless
/// `replace`, which removes it first (never writing through it).
pub fn create_file(path: &Path, replace: bool) -> io::Result<File> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = Dir::open(parent)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    dir.check(DirPolicy {
        owners: &[me],
        sticky_ok: true,
    })
    .map_err(|m| io::Error::new(io::ErrorKind::PermissionDenied, format!("directory {m}")))?;
    match dir.create_new(name) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && replace => {
            dir.remove(name)?;
            dir.create_new(name)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(io::Error::new(
            e.kind(),
            "the file exists (the monitor never overwrites a file: remove it, or pass --force)",
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("monitor-secfs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tmp");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        d
    }

    /// S3/S4: no symlink is followed, nothing existing is truncated, files
    /// are 0600 whatever the umask.
    #[test]
    fn files_are_private_exclusive_and_never_followed() {
        let d = tmp("create");
        let victim = d.join("victim");
        std::fs::write(&victim, "precious").expect("write");
        symlink(&victim, d.join("link")).expect("symlink");
        // SAFETY: umask has no preconditions; restored below.
        let old = unsafe { libc::umask(0) };
        let made = create_file(&d.join("new.jsonl"), false);
        unsafe { libc::umask(old) };
        made.expect("created");
        let mode = std::fs::metadata(d.join("new.jsonl"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let e = create_file(&d.join("link"), false).expect_err("symlink");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        let e = create_file(&victim, false).expect_err("existing file");
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        // --force replaces the link itself, never its target.
        create_file(&d.join("link"), true).expect("replaced");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
        assert!(
            !d.join("link")
                .symlink_metadata()
                .expect("meta")
                .is_symlink()
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn directories_writable_by_others_are_refused() {
        let d = tmp("mode");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = create_file(&d.join("x"), false).expect_err("world-writable");
        assert!(e.to_string().contains("writable by everyone"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        create_file(&d.join("x"), false).expect("sticky like /tmp");
        let dir = Dir::open(&d).expect("open");
        // The owner is accepted (root always is): this test is about modes.
        // SAFETY: no arguments, no memory.
        let me = [unsafe { libc::geteuid() }];
        let strict = DirPolicy {
            owners: &me,
            sticky_ok: false,
        };
        assert!(dir.check(strict).is_err());
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        dir.check(strict).expect("private");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Group write access is refused unless the group is root (the packaged
    /// recording directory: the daemon's user, group root, 0770).
    #[test]
    #[allow(clippy::print_stderr, reason = "the test says why it did not run")]
    fn group_write_access_is_refused_unless_the_group_is_root() {
        // SAFETY: no arguments, no memory.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let d = tmp("group");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).expect("chmod");
        let dir = Dir::open(&d).expect("open");
        let policy = DirPolicy {
            owners: &[65534],
            sticky_ok: false,
        };
        std::os::unix::fs::chown(&d, Some(65534), Some(0)).expect("chown");
        dir.check(policy).expect("group root may write");
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).expect("chown");
        let e = dir.check(policy).expect_err("another group may not");
        assert!(e.contains("writable by its group"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_lock_is_held_once() {
        let d = tmp("lock");
        let dir = Dir::open(&d).expect("open");
        let held = dir.lock(".lock").expect("first");
        // flock locks belong to the open file description: a second open
        // in the same process conflicts like another process would.
        let e = Dir::open(&d)
            .expect("open")
            .lock(".lock")
            .expect_err("second");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        dir.lock(".lock").expect("free again");
        let _ = std::fs::remove_dir_all(&d);
    }
}
