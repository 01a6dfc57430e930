//! The kernel's own per-program statistics (`kernel.bpf_stats_enabled`):
//! run count and run time of every loaded BPF program, read through the
//! `bpf(2)` system call (BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID,
//! BPF_OBJ_GET_INFO_BY_FD). Used by `scenario bench` to measure what the
//! monitor's programs cost per call, without timing noise.

use std::{collections::BTreeMap, fs, io};

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// Prefix of `struct bpf_prog_info` (include/uapi/linux/bpf.h) up to
/// `run_cnt` (5.1+).
#[repr(C)]
#[derive(Clone, Copy)]
struct ProgInfo {
    type_: u32,
    id: u32,
    head: [u8; 56],
    name: [u8; 16],
    middle: [u8; 112],
    run_time_ns: u64,
    run_cnt: u64,
}

const _: () = {
    assert!(std::mem::offset_of!(ProgInfo, name) == 64);
    assert!(std::mem::offset_of!(ProgInfo, run_time_ns) == 192);
};

#[repr(C)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable attribute of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// One program's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgStats {
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

/// Every loaded program: id → (name, counters).
pub fn snapshot() -> io::Result<BTreeMap<u32, (String, ProgStats)>> {
    let mut out = BTreeMap::new();
    let mut id = 0u32;
    loop {
        let mut a = IdAttr {
            id,
            next_id: 0,
            open_flags: 0,
        };
        match bpf(BPF_PROG_GET_NEXT_ID, &mut a) {
            Ok(_) => id = a.next_id,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
        let mut f = IdAttr {
            id,
            next_id: 0,
            open_flags: 0,
        };
        // The program may have gone away meanwhile.
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut f) else {
            continue;
        };
        // SAFETY: all-zero is a valid ProgInfo (plain integers).
        let mut info: ProgInfo = unsafe { std::mem::zeroed() };
        let mut attr = InfoAttr {
            bpf_fd: fd as u32,
            info_len: size_of::<ProgInfo>() as u32,
            info: (&raw mut info) as u64,
        };
        let ok = bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).is_ok();
        // SAFETY: closing the descriptor the kernel just gave us.
        unsafe { libc::close(fd as i32) };
        if !ok || (attr.info_len as usize) < size_of::<ProgInfo>() {
            continue;
        }
        let name = String::from_utf8_lossy(&info.name)
            .trim_end_matches('\0')
            .to_owned();
        out.insert(
            id,
            (
                name,
                ProgStats {
                    run_cnt: info.run_cnt,
                    run_time_ns: info.run_time_ns,
                },
            ),
        );
    }
}

/// Turns `kernel.bpf_stats_enabled` on for as long as the guard lives (the
/// kernel counts only while it is on; the sysctl costs two clock reads per
/// program run, so measured runs leave it off).
pub struct StatsEnabled(String);

impl StatsEnabled {
    pub fn on() -> io::Result<StatsEnabled> {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let old = fs::read_to_string(path)?.trim().to_owned();
        fs::write(path, "1")?;
        Ok(StatsEnabled(old))
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}
