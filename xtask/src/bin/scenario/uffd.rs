//! userfaultfd(2) plumbing (uapi `linux/userfaultfd.h`).

use std::io;

use anyhow::{Context as _, bail};

use crate::sys::check;

pub const UFFD_API: u64 = 0xaa;
pub const UFFDIO_API: libc::Ioctl = 0xc018_aa3f_u32 as libc::Ioctl;
pub const UFFDIO_REGISTER: libc::Ioctl = 0xc020_aa00_u32 as libc::Ioctl;
pub const UFFDIO_COPY: libc::Ioctl = 0xc028_aa03_u32 as libc::Ioctl;
pub const UFFDIO_ZEROPAGE: libc::Ioctl = 0xc020_aa04_u32 as libc::Ioctl;
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_EVENT_REMAP: u8 = 0x14;
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
pub const UFFD_EVENT_UNMAP: u8 = 0x16;

pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioZeropage {
    range: UffdioRange,
    mode: u64,
    zeropage: i64,
}

#[repr(C)]
pub struct UffdioCopy {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    pub copy: i64,
}

/// `struct uffd_msg` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct UffdMsg {
    pub event: u8,
    pub reserved1: u8,
    pub reserved2: u16,
    pub reserved3: u32,
    pub arg: [u64; 3],
}

pub struct Uffd {
    pub fd: libc::c_int,
}

impl Uffd {
    /// Opens a userfaultfd with the given event features (needs root, or
    /// vm.unprivileged_userfaultfd=1).
    pub fn open(features: u64) -> anyhow::Result<Uffd> {
        // SAFETY: plain syscall.
        let fd =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        let fd = check(
            fd,
            "userfaultfd (needs root or vm.unprivileged_userfaultfd=1)",
        )? as libc::c_int;
        let uffd = Uffd { fd };
        let mut api = UffdioApi {
            api: UFFD_API,
            features,
            ioctls: 0,
        };
        // SAFETY: valid fd and struct.
        check(
            unsafe { libc::ioctl(fd, UFFDIO_API, &mut api) }.into(),
            "UFFDIO_API",
        )?;
        Ok(uffd)
    }

    pub fn register_missing(&self, addr: *mut u8, len: usize) -> anyhow::Result<()> {
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start: addr as u64,
                len: len as u64,
            },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: valid fd and struct.
        check(
            unsafe { libc::ioctl(self.fd, UFFDIO_REGISTER, &mut reg) }.into(),
            "UFFDIO_REGISTER",
        )?;
        Ok(())
    }

    pub fn zeropage(&self, addr: *mut u8, len: usize) -> anyhow::Result<()> {
        let mut z = UffdioZeropage {
            range: UffdioRange {
                start: addr as u64,
                len: len as u64,
            },
            mode: 0,
            zeropage: 0,
        };
        // SAFETY: valid fd and struct.
        check(
            unsafe { libc::ioctl(self.fd, UFFDIO_ZEROPAGE, &mut z) }.into(),
            "UFFDIO_ZEROPAGE",
        )?;
        Ok(())
    }

    /// UFFDIO_COPY; returns the ioctl result (0 or -errno) without failing.
    pub fn copy(&self, dst: *mut u8, src: *const u8, len: usize) -> i64 {
        let mut c = UffdioCopy {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode: 0,
            copy: 0,
        };
        // SAFETY: valid fd and struct; the kernel validates the addresses.
        let rc = unsafe { libc::ioctl(self.fd, UFFDIO_COPY, &mut c) };
        if rc < 0 {
            -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            c.copy
        }
    }

    /// Waits up to `timeout_ms` until a message is pending (not read).
    pub fn wait_msg(&self, timeout_ms: i32) -> anyhow::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: valid pollfd array of one.
        let n = check(
            unsafe { libc::poll(&mut pfd, 1, timeout_ms) }.into(),
            "poll(userfaultfd)",
        )?;
        Ok(n > 0)
    }

    /// Waits up to `timeout_ms` for a message.
    pub fn read_msg(&self, timeout_ms: i32) -> anyhow::Result<Option<UffdMsg>> {
        if !self.wait_msg(timeout_ms)? {
            return Ok(None);
        }
        let mut msg = UffdMsg::default();
        // SAFETY: reading exactly one 32-byte uffd_msg into a matching struct.
        let r = unsafe { libc::read(self.fd, (&raw mut msg).cast(), size_of::<UffdMsg>()) };
        if r != size_of::<UffdMsg>() as isize {
            bail!("short read from userfaultfd: {r}");
        }
        Ok(Some(msg))
    }
}

impl Drop for Uffd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// A change window held open on a userfaultfd with `UFFD_FEATURE_EVENT_FORK`:
/// a thread forks, the kernel raises the context's `mmap_changing` and the
/// fork waits until the event is read, which [`HeldFork::release`] does.
/// Meanwhile every UFFDIO_COPY on the context fails at once with `-EAGAIN`.
pub struct HeldFork {
    forker: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl HeldFork {
    /// Forks and waits (up to 10 s) until the fork event is pending.
    pub fn start(uffd: &Uffd) -> anyhow::Result<HeldFork> {
        let forker = std::thread::spawn(|| -> anyhow::Result<()> {
            // SAFETY: the child only calls _exit.
            let pid = check(unsafe { libc::fork() }.into(), "fork")? as libc::pid_t;
            if pid == 0 {
                // SAFETY: async-signal-safe exit of the child.
                unsafe { libc::_exit(0) };
            }
            crate::sys::wait_child(pid, std::time::Duration::from_secs(60))?;
            Ok(())
        });
        if !uffd.wait_msg(10_000)? {
            bail!("no userfaultfd fork event within 10 s");
        }
        Ok(HeldFork {
            forker: Some(forker),
        })
    }

    /// Reads the fork event (the window closes) and reaps the child.
    pub fn release(mut self, uffd: &Uffd) -> anyhow::Result<()> {
        let msg = uffd.read_msg(10_000)?.context("the fork event went away")?;
        if msg.event != UFFD_EVENT_FORK {
            bail!("expected the fork event, got {:#x}", msg.event);
        }
        // SAFETY: the child's userfaultfd, given to us by the kernel; unused.
        unsafe { libc::close(msg.arg[0] as u32 as i32) };
        self.forker
            .take()
            .context("released twice")?
            .join()
            .map_err(|_| anyhow::anyhow!("forking thread panicked"))?
    }
}

const _: () = assert!(size_of::<UffdMsg>() == 32);
const _: () = assert!(size_of::<UffdioCopy>() == 40);

/// Context for errors from the raw ioctls above.
pub fn describe_errno(rc: i64) -> String {
    io::Error::from_raw_os_error((-rc) as i32).to_string()
}
