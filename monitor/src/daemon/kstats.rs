//! Slow-changing kernel-side facts, read on a timer (`metrics.map_fill_interval`):
//! how full the BPF hash maps are, and what the kernel itself counts about
//! each program (`bpf_prog_info`: run time and runs while statistics are
//! enabled, and recursion misses, 5.12+), and what it counts about each
//! kprobe-rung attachment (`bpf_link_info`: the kprobe's `nmissed`, 6.7+).
//!
//! It works on duplicates of the loader's file descriptors, taken right after
//! attach, so it needs no capability later and does not borrow the session.
//! Holding a program fd keeps the program loaded (not attached), holding a
//! link fd keeps it attached: the daemon drops this collector before it
//! detaches and verifies that nothing is left.

use std::{
    collections::HashSet,
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd, RawFd},
    time::Duration,
};

use aya::{
    maps::{HashMap, Map, MapData},
    programs::ProgramFd,
};
use monitor_common::{
    catalogue::{ProbeId, ProbeKind},
    maps::{self as names, ExitState, MmSeq, Stash, StashKey, TaskScratch, UffdCtxState},
};

/// Map values as plain bytes: only keys are read, and the wire structs do not
/// implement `aya::Pod` (monitor-common does not depend on aya).
type MmSeqBytes = [u8; size_of::<MmSeq>()];
type TaskBytes = [u8; size_of::<TaskScratch>()];
type StashKeyBytes = [u8; size_of::<StashKey>()];
type StashBytes = [u8; size_of::<Stash>()];
type ExitBytes = [u8; size_of::<ExitState>()];
type UffdCtxBytes = [u8; size_of::<UffdCtxState>()];

use super::metrics::Metrics;
use crate::loader::Loaded;

/// Prefix of the kernel's `struct bpf_prog_info` (include/uapi/linux/bpf.h),
/// up to the last field the daemon reads. The kernel copies
/// `min(our size, its size)` bytes and reports how many in `info_len`, so a
/// field is valid only if `info_len` covers it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProgInfo {
    type_: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    flags: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    /// 5.1+.
    run_time_ns: u64,
    run_cnt: u64,
    /// 5.12+.
    recursion_misses: u64,
}

const _: () = {
    assert!(std::mem::offset_of!(ProgInfo, run_time_ns) == 192);
    assert!(std::mem::offset_of!(ProgInfo, recursion_misses) == 208);
    assert!(size_of::<ProgInfo>() == 216);
};

/// Prefix of the kernel's `struct bpf_link_info` for a perf-event link
/// (include/uapi/linux/bpf.h), up to `perf_event.kprobe.missed`. The kernel
/// fills `perf_event` since 6.6 ("bpf: Support ->fill_link_info for
/// perf_event") and `kprobe.missed` since 6.7 ("bpf: Add missed value to
/// kprobe perf link info", kernel/bpf/syscall.c `bpf_perf_link_fill_kprobe`):
/// `trace_kprobe_missed()`, the kprobe's `nmissed` (it fired while another
/// kprobe ran on that CPU) plus, for a return probe, the kretprobe's (no free
/// instance: more calls in flight than `maxactive`). Before 6.7 the kernel's
/// struct ends before `missed` (`info_len` says so): not readable.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct LinkInfo {
    type_: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    /// `enum bpf_perf_event_type`.
    perf_event_type: u32,
    _pad2: u32,
    func_name: u64,
    name_len: u32,
    offset: u32,
    addr: u64,
    missed: u64,
}

const _: () = {
    assert!(std::mem::offset_of!(LinkInfo, perf_event_type) == 16);
    assert!(std::mem::offset_of!(LinkInfo, missed) == 48);
    assert!(size_of::<LinkInfo>() == 56);
};

/// `BPF_LINK_TYPE_PERF_EVENT`, `BPF_PERF_EVENT_KPROBE`, `BPF_PERF_EVENT_KRETPROBE`.
const LINK_TYPE_PERF_EVENT: u32 = 7;
const PERF_EVENT_KPROBE: u32 = 3;
const PERF_EVENT_KRETPROBE: u32 = 4;

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The program's info and how many bytes of it the kernel filled in.
fn prog_info(fd: &ProgramFd) -> io::Result<(ProgInfo, usize)> {
    obj_info(fd.as_fd())
}

/// A link's info and how many bytes of it the kernel filled in.
fn link_info(fd: BorrowedFd<'_>) -> io::Result<(LinkInfo, usize)> {
    obj_info(fd)
}

/// `BPF_OBJ_GET_INFO_BY_FD` into a zeroed `T` (one of the info prefixes above).
fn obj_info<T: Default>(fd: BorrowedFd<'_>) -> io::Result<(T, usize)> {
    let mut info = T::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<T>() as u32,
        info: (&raw mut info) as u64,
    };
    // SAFETY: `attr` points at a writable buffer of `info_len` bytes that
    // outlives the call; the kernel writes at most that many.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw mut attr,
            size_of::<InfoAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((info, attr.info_len as usize))
}

enum FillMap {
    MmSeq(HashMap<MapData, u64, MmSeqBytes>),
    Tasks(HashMap<MapData, u32, TaskBytes>),
    Victims(HashMap<MapData, u32, u64>),
    Stash(HashMap<MapData, StashKeyBytes, StashBytes>),
    Exiting(HashMap<MapData, u64, ExitBytes>),
    UffdCtx(HashMap<MapData, u64, UffdCtxBytes>),
}

/// A program of this daemon, for `bpf_prog_info`.
struct Prog {
    probe: ProbeId,
    id: u32,
    fd: ProgramFd,
    seen_run_ns: u64,
    seen_runs: u64,
    seen_misses: u64,
}

/// A kprobe-rung attachment of this daemon whose miss count the kernel reports.
struct KprobeLink {
    probe: ProbeId,
    fd: OwnedFd,
    seen_missed: u64,
}

/// Duplicates of this process's perf-event link fds that attach one of
/// `progs` (kernel program id → probe) as a kprobe or kretprobe and report
/// `missed`. The loader's links are found in `/proc/self/fd` (aya keeps them
/// inside the programs); each candidate is confirmed by its own link info.
fn kprobe_links(progs: &[(u32, ProbeId)]) -> io::Result<Vec<KprobeLink>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Ok(raw) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        if std::fs::read_link(entry.path()).ok().as_deref()
            != Some(std::path::Path::new("anon_inode:bpf_link"))
        {
            continue;
        }
        // SAFETY: `raw` is open in this process (just listed); it is only
        // borrowed for the duplication below, which fails cleanly if it was
        // closed meanwhile, and the duplicate is checked by its link info.
        let Ok(fd) = unsafe { BorrowedFd::borrow_raw(raw) }.try_clone_to_owned() else {
            continue;
        };
        let Ok((info, len)) = link_info(fd.as_fd()) else {
            continue;
        };
        let Some(probe) = progs
            .iter()
            .find(|(id, _)| *id == info.prog_id)
            .map(|(_, p)| *p)
        else {
            continue;
        };
        if info.type_ == LINK_TYPE_PERF_EVENT
            && matches!(
                info.perf_event_type,
                PERF_EVENT_KPROBE | PERF_EVENT_KRETPROBE
            )
            && len >= size_of::<LinkInfo>()
        {
            out.push(KprobeLink {
                probe,
                fd,
                seen_missed: info.missed,
            });
        }
    }
    Ok(out)
}

pub struct KernelStats {
    maps: Vec<(&'static str, u32, FillMap)>,
    progs: Vec<Prog>,
    links: Vec<KprobeLink>,
    /// Attached kprobe/kretprobe programs whose miss count the kernel does
    /// not report (before 6.7, or attached without a BPF link, before 5.15).
    pub kprobe_missed_unreadable: usize,
    /// The kernel's `bpf_prog_info` has `recursion_misses` (5.12+).
    pub recursion_misses: bool,
    /// Hooks that ever held a `STASH` slot (their gauge then stays, at 0
    /// when empty).
    stash_hooks: std::collections::BTreeSet<u32>,
}

/// Duplicates the map's fd and opens it as a typed hash map.
fn dup_map(loaded: &Loaded, name: &str) -> anyhow::Result<(u32, Map)> {
    let data = match loaded.ebpf.map(name) {
        Some(Map::HashMap(d) | Map::LruHashMap(d)) => d,
        Some(_) => anyhow::bail!("map {name} is not a hash map"),
        None => anyhow::bail!("map {name} is missing from the BPF object"),
    };
    let fd = data.fd().as_fd().try_clone_to_owned()?;
    let dup = MapData::from_fd(fd)?;
    let max = dup.info()?.max_entries();
    let map = match loaded.ebpf.map(name) {
        Some(Map::LruHashMap(_)) => Map::LruHashMap(dup),
        _ => Map::HashMap(dup),
    };
    Ok((max, map))
}

impl KernelStats {
    /// Takes what it needs from the freshly attached object.
    pub fn new(loaded: &Loaded) -> anyhow::Result<KernelStats> {
        let mut maps = Vec::new();
        let (max, m) = dup_map(loaded, names::MM_SEQ)?;
        maps.push((names::MM_SEQ, max, FillMap::MmSeq(HashMap::try_from(m)?)));
        let (max, m) = dup_map(loaded, names::TASKS)?;
        maps.push((names::TASKS, max, FillMap::Tasks(HashMap::try_from(m)?)));
        let (max, m) = dup_map(loaded, names::VICTIMS)?;
        maps.push((names::VICTIMS, max, FillMap::Victims(HashMap::try_from(m)?)));
        let (max, m) = dup_map(loaded, names::STASH)?;
        maps.push((names::STASH, max, FillMap::Stash(HashMap::try_from(m)?)));
        let (max, m) = dup_map(loaded, names::EXITING)?;
        maps.push((names::EXITING, max, FillMap::Exiting(HashMap::try_from(m)?)));
        let (max, m) = dup_map(loaded, names::UFFD_CTX)?;
        maps.push((
            names::UFFD_CTX,
            max,
            FillMap::UffdCtx(HashMap::try_from(m)?),
        ));

        let mut progs = Vec::new();
        let mut recursion_misses = false;
        for (name, prog) in loaded.ebpf.programs() {
            let Some(probe) = ProbeId::from_name(name) else {
                continue;
            };
            // Unloaded programs (refused candidates) have no fd.
            let Ok(fd) = prog.fd() else { continue };
            let fd = fd.try_clone()?;
            let (info, len) = prog_info(&fd)?;
            recursion_misses |= len >= size_of::<ProgInfo>();
            progs.push(Prog {
                probe,
                id: info.id,
                fd,
                seen_run_ns: info.run_time_ns,
                seen_runs: info.run_cnt,
                seen_misses: info.recursion_misses,
            });
        }
        let kprobes: Vec<(u32, ProbeId)> = progs
            .iter()
            .filter(|p| matches!(p.probe.kind(), ProbeKind::KProbe | ProbeKind::KRetProbe))
            .map(|p| (p.id, p.probe))
            .collect();
        let links = if kprobes.is_empty() {
            Vec::new()
        } else {
            kprobe_links(&kprobes)?
        };
        let kprobe_missed_unreadable = kprobes
            .iter()
            .filter(|(_, probe)| !links.iter().any(|l| l.probe == *probe))
            .count();
        Ok(KernelStats {
            maps,
            progs,
            links,
            kprobe_missed_unreadable,
            recursion_misses,
            stash_hooks: std::collections::BTreeSet::new(),
        })
    }

    /// Map names and capacities.
    pub fn map_capacities(&self) -> Vec<(&'static str, u32)> {
        self.maps.iter().map(|(n, max, _)| (*n, *max)).collect()
    }

    /// Kernel ids of the attached programs.
    pub fn program_ids(&self) -> Vec<u32> {
        self.progs.iter().map(|p| p.id).collect()
    }

    /// Counts a map's entries. Keys are deduplicated because a key deleted
    /// during the walk makes `BPF_MAP_GET_NEXT_KEY` restart from the first
    /// one; the walk is bounded by the map's capacity, so its cost is too.
    /// `STASH` slots are also counted by hook into `stash_by_hook` (the slot
    /// key's `hook` field): which hook leaves slots behind.
    fn count(
        map: &FillMap,
        max: u32,
        stash_by_hook: &mut std::collections::BTreeMap<u32, usize>,
    ) -> Result<usize, aya::maps::MapError> {
        fn walk<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(
            m: &HashMap<MapData, K, V>,
            max: u32,
        ) -> Result<HashSet<K>, aya::maps::MapError> {
            let mut seen = HashSet::new();
            for key in m.keys().take(2 * max as usize) {
                seen.insert(key?);
            }
            Ok(seen)
        }
        Ok(match map {
            FillMap::MmSeq(m) => walk(m, max)?.len(),
            FillMap::Tasks(m) => walk(m, max)?.len(),
            FillMap::Victims(m) => walk(m, max)?.len(),
            FillMap::Stash(m) => {
                let keys = walk(m, max)?;
                for k in &keys {
                    // SAFETY: `StashKeyBytes` is the bytes of a `StashKey`,
                    // plain integers.
                    let key: StashKey = unsafe { std::ptr::read_unaligned(k.as_ptr().cast()) };
                    *stash_by_hook.entry(key.hook).or_default() += 1;
                }
                keys.len()
            }
            FillMap::Exiting(m) => walk(m, max)?.len(),
            FillMap::UffdCtx(m) => walk(m, max)?.len(),
        })
    }

    /// Reads everything once and updates the metrics. Returns the number of
    /// reads that failed (logged).
    pub fn refresh(&mut self, metrics: &Metrics) -> usize {
        let mut failed = 0;
        let mut stash_by_hook = std::collections::BTreeMap::new();
        for (name, max, map) in &self.maps {
            match Self::count(map, *max, &mut stash_by_hook) {
                Ok(n) => metrics.map_entries.with_label_values(&[name]).set(n as i64),
                Err(e) => {
                    failed += 1;
                    log::warn!("reading the fill of BPF map {name}: {e}");
                }
            }
        }
        self.stash_hooks.extend(stash_by_hook.keys().copied());
        for hook in &self.stash_hooks {
            let name =
                monitor_common::catalogue::HookId::from_u32(*hook).map_or("unknown", |h| h.name());
            let n = stash_by_hook.get(hook).copied().unwrap_or(0);
            metrics.stash_slots.with_label_values(&[name]).set(n as i64);
        }
        for p in &mut self.progs {
            let (info, len) = match prog_info(&p.fd) {
                Ok(v) => v,
                Err(e) => {
                    failed += 1;
                    log::warn!("reading bpf_prog_info of {}: {e}", p.probe.program());
                    continue;
                }
            };
            let hook = p.probe.hook().name();
            let labels = [hook, p.probe.program()];
            if len >= std::mem::offset_of!(ProgInfo, recursion_misses) {
                let run_ns = info.run_time_ns.saturating_sub(p.seen_run_ns);
                metrics
                    .program_run_seconds
                    .with_label_values(&labels)
                    .inc_by(Duration::from_nanos(run_ns).as_secs_f64());
                metrics
                    .program_runs
                    .with_label_values(&labels)
                    .inc_by(info.run_cnt.saturating_sub(p.seen_runs));
                p.seen_run_ns = p.seen_run_ns.max(info.run_time_ns);
                p.seen_runs = p.seen_runs.max(info.run_cnt);
            }
            if let Some(m) = &metrics.program_recursion_misses
                && len >= size_of::<ProgInfo>()
            {
                m.with_label_values(&labels)
                    .inc_by(info.recursion_misses.saturating_sub(p.seen_misses));
                p.seen_misses = p.seen_misses.max(info.recursion_misses);
            }
        }
        for l in &mut self.links {
            let info = match link_info(l.fd.as_fd()) {
                Ok((info, _)) => info,
                Err(e) => {
                    failed += 1;
                    log::warn!("reading bpf_link_info of {}: {e}", l.probe.program());
                    continue;
                }
            };
            metrics
                .kprobe_missed
                .with_label_values(&[l.probe.hook().name(), l.probe.program()])
                .inc_by(info.missed.saturating_sub(l.seen_missed));
            l.seen_missed = l.seen_missed.max(info.missed);
        }
        metrics
            .kprobe_missed_unreadable
            .set(self.kprobe_missed_unreadable as i64);
        failed
    }

    /// Whether the reads the daemon does after attach work with the current
    /// effective capabilities (used to decide whether CAP_BPF must be kept).
    pub fn reads_work(&self) -> bool {
        let maps_ok = self
            .maps
            .iter()
            .all(|(_, max, m)| Self::count(m, (*max).min(16), &mut Default::default()).is_ok());
        let progs_ok = self.progs.iter().all(|p| prog_info(&p.fd).is_ok());
        let links_ok = self.links.iter().all(|l| link_info(l.fd.as_fd()).is_ok());
        maps_ok && progs_ok && links_ok
    }
}

/// Whether the kernel counts BPF run time globally (`kernel.bpf_stats_enabled`).
pub fn sysctl_run_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}
