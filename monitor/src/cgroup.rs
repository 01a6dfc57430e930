//! Resolving the cgroup ids records carry to paths (and so to containers
//! and pods: `monitor_detector::workload`).
//!
//! A cgroup's id is its kernfs node id, which on 64-bit kernels (5.5+) is
//! the inode number of its directory in the cgroup file system: what
//! `readdir` returns as `d_ino`. So an id is resolved by walking the
//! hierarchy's mount once and indexing every directory by inode number, with
//! no privilege and without a `stat` per directory.
//!
//! * Which hierarchy: the header's `cgroup_id` is always a cgroup v2 id (the
//!   default hierarchy exists even where nothing mounts it; on such hosts
//!   every task is in its root). `memcg_id` is a cgroup of the memory
//!   controller's hierarchy: v1 where `/proc/cgroups` gives the controller a
//!   hierarchy number, else v2.
//! * Cache: an id once resolved stays named (bounded, [`SEEN_MAX`], oldest
//!   forgotten first), also after its cgroup is removed, so every record of
//!   a workload is attributed alike.
//! * Miss: a rescan of that hierarchy, at most once per [`RESCAN_EVERY`];
//!   between rescans a miss answers "unresolved" at once. The walk is
//!   bounded ([`SCAN_MAX`] directories).
//! * A cgroup removed before its id was first looked up cannot be named any
//!   more (ids are not reused, and nothing maps a dead id to a path): it
//!   stays "unresolved", with its id. Records are resolved as they are
//!   drained (every 0.1–1 s), so only cgroups that live shorter than that
//!   are missed.
//! * What the monitor sees is its own mount and cgroup namespace's view. In
//!   a container, run it in the host's cgroup namespace (`podman run
//!   --cgroupns=host`, docs/deployment.md) so paths are the host's; ids of
//!   cgroups outside its view stay unresolved ids.

use std::{
    collections::{HashMap, VecDeque},
    os::unix::fs::{DirEntryExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use monitor_detector::{
    Data, Event,
    workload::{CgroupInfo, Hierarchy},
};

/// Resolved ids kept.
pub const SEEN_MAX: usize = 8192;
/// Directories one walk visits at most.
pub const SCAN_MAX: usize = 100_000;
/// Rescans of one hierarchy are at least this far apart.
pub const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// Where the hierarchies are mounted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    pub cgroup2: Option<PathBuf>,
    pub memory_v1: Option<PathBuf>,
    /// The memory controller is on a v1 hierarchy (`/proc/cgroups`).
    pub memcg_v1: bool,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        if b[i] == b'\\'
            && let Some(v) = octal
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Mounts {
    /// From `/proc/self/mountinfo` and `/proc/cgroups` texts. Mounts of a
    /// hierarchy's root are preferred over bind mounts of a subtree.
    pub fn parse(mountinfo: &str, cgroups: &str) -> Mounts {
        let mut m = Mounts::default();
        let mut roots = (false, false);
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(point), Some(fstype)) = (l.get(3), l.get(4), r.first()) else {
                continue;
            };
            let is_root = *root == "/";
            let point = PathBuf::from(unescape(point));
            match *fstype {
                "cgroup2" if m.cgroup2.is_none() || (is_root && !roots.0) => {
                    m.cgroup2 = Some(point);
                    roots.0 = is_root;
                }
                "cgroup"
                    if r.get(2)
                        .is_some_and(|o| o.split(',').any(|o| o == "memory"))
                        && (m.memory_v1.is_none() || (is_root && !roots.1)) =>
                {
                    m.memory_v1 = Some(point);
                    roots.1 = is_root;
                }
                _ => {}
            }
        }
        m.memcg_v1 = cgroups.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"memory") && f.get(1).is_some_and(|h| *h != "0")
        });
        m
    }

    pub fn discover() -> Mounts {
        let read = |p| std::fs::read_to_string(p).unwrap_or_default();
        Mounts::parse(&read("/proc/self/mountinfo"), &read("/proc/cgroups"))
    }

    /// The hierarchy of memory cgroup ids (`EventHeader::memcg_id`).
    pub fn memcg_hierarchy(&self) -> Hierarchy {
        if self.memcg_v1 {
            Hierarchy::Memory
        } else {
            Hierarchy::Cgroup2
        }
    }

    pub fn root(&self, h: Hierarchy) -> Option<&Path> {
        match h {
            Hierarchy::Cgroup2 => self.cgroup2.as_deref(),
            Hierarchy::Memory => self.memory_v1.as_deref(),
        }
    }

    /// The current thread's memory cgroup directory, from
    /// `/proc/thread-self/cgroup` (for the attach-time sanity read). On
    /// cgroup v2 a cgroup without the memory controller is charged to its
    /// nearest ancestor that has it (or the root).
    pub fn own_memcg_dir(&self) -> Option<PathBuf> {
        let text = std::fs::read_to_string("/proc/thread-self/cgroup").ok()?;
        if self.memcg_v1 {
            let root = self.memory_v1.as_ref()?;
            let path = text.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
                ctrl.split(',').any(|c| c == "memory").then_some(path)
            })?;
            return Some(root.join(path.trim_start_matches('/')));
        }
        let root = self.cgroup2.as_ref()?;
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        let mut dir = root.join(path.trim_start_matches('/'));
        while dir != *root {
            let parent = dir.parent()?.to_path_buf();
            let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
            if enabled {
                break;
            }
            dir = parent;
        }
        Some(dir)
    }
}

/// Walks `root` (at most `max` directories): inode number → path below it.
pub fn scan(root: &Path, max: usize) -> (HashMap<u64, String>, bool) {
    let mut index = HashMap::new();
    let Ok(meta) = std::fs::metadata(root) else {
        return (index, false);
    };
    index.insert(meta.ino(), "/".to_owned());
    let mut todo = vec![(root.to_path_buf(), String::new())];
    let mut truncated = false;
    while let Some((dir, rel)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if index.len() >= max {
                truncated = true;
                break;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let path = format!("{rel}/{name}");
            index.insert(e.ino(), path.clone());
            todo.push((e.path(), path));
        }
    }
    (index, truncated)
}

/// Ids → [`CgroupInfo`], cached (see the module documentation).
pub struct Resolver {
    mounts: Mounts,
    seen: HashMap<(Hierarchy, u64), Arc<CgroupInfo>>,
    order: VecDeque<(Hierarchy, u64)>,
    index: HashMap<Hierarchy, HashMap<u64, String>>,
    scanned: HashMap<Hierarchy, Instant>,
    warned_truncated: bool,
}

impl Resolver {
    pub fn new(mounts: Mounts) -> Resolver {
        Resolver {
            mounts,
            seen: HashMap::new(),
            order: VecDeque::new(),
            index: HashMap::new(),
            scanned: HashMap::new(),
            warned_truncated: false,
        }
    }

    pub fn discover() -> Resolver {
        Resolver::new(Mounts::discover())
    }

    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    fn rescan(&mut self, h: Hierarchy) {
        if self
            .scanned
            .get(&h)
            .is_some_and(|t| t.elapsed() < RESCAN_EVERY)
        {
            return;
        }
        self.scanned.insert(h, Instant::now());
        let Some(root) = self.mounts.root(h) else {
            return;
        };
        let (index, truncated) = scan(root, SCAN_MAX);
        if truncated && !self.warned_truncated {
            self.warned_truncated = true;
            log::warn!(
                "{}: more than {SCAN_MAX} cgroups; ids beyond are reported unresolved",
                root.display()
            );
        }
        self.index.insert(h, index);
    }

    /// The cgroup `id` of hierarchy `h` (its path `None` when unresolved).
    pub fn lookup(&mut self, h: Hierarchy, id: u64) -> Arc<CgroupInfo> {
        if let Some(info) = self.seen.get(&(h, id))
            && (info.path.is_some()
                || self
                    .scanned
                    .get(&h)
                    .is_some_and(|t| t.elapsed() < RESCAN_EVERY))
        {
            return Arc::clone(info);
        }
        let mut path = self.index.get(&h).and_then(|i| i.get(&id)).cloned();
        if path.is_none() {
            self.rescan(h);
            path = self.index.get(&h).and_then(|i| i.get(&id)).cloned();
        }
        let info = Arc::new(CgroupInfo::new(h, id, path));
        if self.seen.insert((h, id), Arc::clone(&info)).is_none() {
            self.order.push_back((h, id));
            if self.order.len() > SEEN_MAX
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
        info
    }

    /// The cgroups an event names: its task's two, and an OOM victim's.
    pub fn for_event(&mut self, ev: &Event) -> Vec<Arc<CgroupInfo>> {
        let mem = self.mounts.memcg_hierarchy();
        let mut ids = vec![(Hierarchy::Cgroup2, ev.cgroup_id), (mem, ev.memcg_id)];
        if let Data::MarkVictim(v) = &ev.data {
            ids.push((Hierarchy::Cgroup2, v.victim_cgroup_id));
            ids.push((mem, v.victim_memcg_id));
        }
        ids.into_iter()
            .filter(|(_, id)| *id != 0)
            .map(|(h, id)| self.lookup(h, id))
            .collect()
    }

    /// Fills the tasks' cgroup paths and workloads of a finding.
    pub fn annotate(&mut self, finding: &mut monitor_detector::Finding) {
        let mem = self.mounts.memcg_hierarchy();
        let mut infos = Vec::new();
        for t in &finding.tasks {
            for (h, id) in [(Hierarchy::Cgroup2, t.cgroup_id), (mem, t.memcg_id)] {
                if id != 0 {
                    infos.push(self.lookup(h, id));
                }
            }
        }
        monitor_detector::workload::annotate(&mut finding.tasks, |h, id| {
            infos
                .iter()
                .find(|i| i.hierarchy == h && i.id == id)
                .map(|i| &**i)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_of_a_hybrid_and_a_unified_host() {
        let hybrid = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";
        let cgroups =
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t3\t1\t1\nmemory\t4\t20\t1\n";
        let m = Mounts::parse(hybrid, cgroups);
        assert_eq!(
            m.cgroup2.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            m.memory_v1.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(m.memcg_hierarchy(), Hierarchy::Memory);
        // A bind mount of a subtree does not replace the hierarchy's root;
        // escapes are undone.
        let unified = "\
30 1 0:26 /kubepods /var/lib/x rw - cgroup2 cgroup2 rw
31 1 0:26 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw
32 1 0:26 /other /elsewhere rw - cgroup2 cgroup2 rw
";
        let m = Mounts::parse(unified, "memory\t0\t80\t1\n");
        assert_eq!(m.cgroup2.as_deref(), Some(Path::new("/sys/fs/my cgroup")));
        assert_eq!(m.memory_v1, None);
        assert_eq!(m.memcg_hierarchy(), Hierarchy::Cgroup2);
    }

    /// The walk's inode numbers are the kernel's cgroup ids: the id
    /// `/proc/self` would report for the host's own cgroup directories.
    #[test]
    fn scanning_a_real_hierarchy_indexes_directories_by_inode() {
        let m = Mounts::discover();
        let Some(root) = m.root(m.memcg_hierarchy()).map(Path::to_path_buf) else {
            return;
        };
        let (index, _) = scan(&root, SCAN_MAX);
        let root_ino = std::fs::metadata(&root).expect("root").ino();
        assert_eq!(index.get(&root_ino).map(String::as_str), Some("/"));
        for (ino, path) in index.iter().take(50) {
            let meta = std::fs::metadata(root.join(path.trim_start_matches('/')));
            // Cgroups may go away meanwhile; those that remain match.
            if let Ok(meta) = meta {
                assert_eq!(meta.ino(), *ino, "{path}");
            }
        }
        let mut r = Resolver::new(m.clone());
        let info = r.lookup(m.memcg_hierarchy(), root_ino);
        assert_eq!(info.path.as_deref(), Some("/"));
        let unknown = r.lookup(m.memcg_hierarchy(), u64::MAX - 1);
        assert_eq!(unknown.path, None);
    }
}
