//! A minimal vhost-net device with a tap backend (`docs/kernel.md`): the
//! in-tree way to get a kernel thread that reads a process's memory through
//! `kthread_use_mm` (6.1, and 6.12 in kthread mode) without hardware.
//!
//! Only the TX queue (index 1) is set up, with its rings inside `ring`; a kick
//! on the kick eventfd makes the worker read the avail ring.

use std::ffi::CString;

use anyhow::{Context as _, bail};

use crate::sys::check;

/// Size of the area holding the rings (must stay resident until the reap).
pub const RING_BYTES: usize = 64 * 1024;

const VHOST_VIRTIO: u64 = 0xaf;

/// `_IOC(dir, type, nr, size)`.
const fn ioc(dir: u64, nr: u64, size: u64) -> u64 {
    (dir << 30) | (size << 16) | (VHOST_VIRTIO << 8) | nr
}
const W: u64 = 1;
const VHOST_SET_OWNER: u64 = ioc(0, 0x01, 0);
const VHOST_SET_MEM_TABLE: u64 = ioc(W, 0x03, 8);
const VHOST_SET_VRING_NUM: u64 = ioc(W, 0x10, 8);
const VHOST_SET_VRING_ADDR: u64 = ioc(W, 0x11, 40);
const VHOST_SET_VRING_BASE: u64 = ioc(W, 0x12, 8);
const VHOST_SET_VRING_KICK: u64 = ioc(W, 0x20, 8);
const VHOST_SET_VRING_CALL: u64 = ioc(W, 0x21, 8);
const VHOST_NET_SET_BACKEND: u64 = ioc(W, 0x30, 8);
/// Debian 6.12 (backported "vhost: Reintroduce kthread API and add mode
/// selection"): 0 selects the kthread worker; must precede SET_OWNER.
const VHOST_SET_FORK_FROM_OWNER: u64 = ioc(W, 0x84, 1);
const TUNSETIFF: u64 = 0x4004_54ca;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;

const TX: u32 = 1;
const NUM: u32 = 256;

#[repr(C)]
struct MemTable {
    nregions: u32,
    padding: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
    flags_padding: u64,
}

#[repr(C)]
struct VringState {
    index: u32,
    num: u32,
}

#[repr(C)]
struct VringAddr {
    index: u32,
    flags: u32,
    desc_user_addr: u64,
    used_user_addr: u64,
    avail_user_addr: u64,
    log_guest_addr: u64,
}

#[repr(C)]
struct VringFile {
    index: u32,
    fd: i32,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    pad: [u8; 22],
}

fn ioctl<T>(fd: i32, req: u64, arg: &T, what: &str) -> anyhow::Result<()> {
    // SAFETY: `arg` is a valid struct of the size encoded in `req`.
    check(
        unsafe { libc::ioctl(fd, req as _, arg as *const T) }.into(),
        what,
    )
    .map(|_| ())
}

fn open(path: &str) -> anyhow::Result<i32> {
    let c = CString::new(path).unwrap_or_default();
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("open {path} (modules tun, tap, vhost_net loaded?)"));
    }
    Ok(fd)
}

/// Sets up vhost-net on the current process; returns the worker mode.
pub fn setup(ring: *mut u8, kick: i32, call: i32) -> anyhow::Result<&'static str> {
    let vhost = open("/dev/vhost-net")?;
    // Ask for a kernel thread worker where the kernel offers the choice.
    let zero: u8 = 0;
    // SAFETY: one byte, the size encoded in the request.
    let selected =
        unsafe { libc::ioctl(vhost, VHOST_SET_FORK_FROM_OWNER as _, &raw const zero) } == 0;
    // SAFETY: no argument.
    check(
        unsafe { libc::ioctl(vhost, VHOST_SET_OWNER as _) }.into(),
        "VHOST_SET_OWNER",
    )?;
    let base = ring as u64;
    let mem = MemTable {
        nregions: 1,
        padding: 0,
        guest_phys_addr: base,
        memory_size: RING_BYTES as u64,
        userspace_addr: base,
        flags_padding: 0,
    };
    ioctl(vhost, VHOST_SET_MEM_TABLE, &mem, "VHOST_SET_MEM_TABLE")?;
    ioctl(
        vhost,
        VHOST_SET_VRING_NUM,
        &VringState {
            index: TX,
            num: NUM,
        },
        "VHOST_SET_VRING_NUM",
    )?;
    ioctl(
        vhost,
        VHOST_SET_VRING_BASE,
        &VringState { index: TX, num: 0 },
        "VHOST_SET_VRING_BASE",
    )?;
    let addr = VringAddr {
        index: TX,
        flags: 0,
        desc_user_addr: base,
        avail_user_addr: base + 0x1000,
        used_user_addr: base + 0x2000,
        log_guest_addr: 0,
    };
    ioctl(vhost, VHOST_SET_VRING_ADDR, &addr, "VHOST_SET_VRING_ADDR")?;
    ioctl(
        vhost,
        VHOST_SET_VRING_KICK,
        &VringFile {
            index: TX,
            fd: kick,
        },
        "VHOST_SET_VRING_KICK",
    )?;
    ioctl(
        vhost,
        VHOST_SET_VRING_CALL,
        &VringFile {
            index: TX,
            fd: call,
        },
        "VHOST_SET_VRING_CALL",
    )?;
    let tun = open("/dev/net/tun")?;
    let mut ifr = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI,
        pad: [0; 22],
    };
    ifr.name[..10].copy_from_slice(b"mmracetap%");
    ifr.name[10] = b'd';
    ioctl(tun, TUNSETIFF, &ifr, "TUNSETIFF")?;
    ioctl(
        vhost,
        VHOST_NET_SET_BACKEND,
        &VringFile { index: TX, fd: tun },
        "VHOST_NET_SET_BACKEND",
    )?;
    if kick < 0 || call < 0 {
        bail!("no eventfds for the vring");
    }
    Ok(if selected {
        "kthread (selected)"
    } else {
        "default"
    })
}

const _: () = assert!(size_of::<MemTable>() == 40);
const _: () = assert!(size_of::<VringAddr>() == 40);
const _: () = assert!(size_of::<IfReq>() == 40);
const _: () = assert!(VHOST_SET_VRING_ADDR == 0x4028_af11);
const _: () = assert!(VHOST_NET_SET_BACKEND == 0x4008_af30);
