//! Which workload a task belongs to: cgroup ids → paths → container ids and
//! pod UIDs.
//!
//! Every record carries two cgroup ids of the task that ran the hook (its
//! cgroup v2 cgroup and its memory cgroup, see
//! `monitor_common::event::EventHeader`), and `mark_victim` the victim's.
//! Userspace resolves an id to a path once (`monitor/src/cgroup.rs`) and a
//! trace file keeps the answer in a `cgroup` line ([`CgroupInfo`]) before
//! the first event that uses it, so a trace analysed on another machine, or
//! after the workload is gone, still names it. The path names the
//! container and the pod in the shapes the common runtimes give them
//! ([`parse_path`]); findings name them per task ([`annotate`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::finding::TaskRef;

/// The cgroup hierarchy an id belongs to. Ids of different hierarchies are
/// numbered independently (each is a kernfs inode number of its own mount).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Hierarchy {
    /// The unified (v2) hierarchy: the header's `cgroup_id`, and its
    /// `memcg_id` where the memory controller is on v2.
    #[default]
    Cgroup2,
    /// The cgroup v1 hierarchy of the memory controller: the header's
    /// `memcg_id` where the memory controller is mounted as v1.
    Memory,
}

/// One cgroup, as a trace file's `cgroup` line states it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupInfo {
    pub hierarchy: Hierarchy,
    pub id: u64,
    /// Path below the hierarchy's root (`/` is the root); `None` when the id
    /// could not be resolved (the cgroup was removed before it was looked
    /// up, or the hierarchy is not visible to the monitor).
    pub path: Option<String>,
    #[serde(flatten)]
    pub workload: Workload,
}

/// What a cgroup path says about the workload in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Workload {
    /// The container id (64 hex digits) of the innermost container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// `docker`, `containerd`, `cri-o` or `podman`, when the path says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// The Kubernetes pod UID (dashed UUID, or the 32 hex digits of a
    /// static pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

impl Workload {
    pub fn is_empty(&self) -> bool {
        self.container_id.is_none() && self.pod_uid.is_none()
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn container_id(s: &str) -> Option<&str> {
    is_hex(s, 64).then_some(s)
}

/// A pod UID: `8-4-4-4-12` lowercase hex, or 32 hex digits (static pods).
fn pod_uid(s: &str) -> Option<String> {
    let dashed = s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
            }
        });
    (dashed || is_hex(s, 32)).then(|| s.to_owned())
}

/// `<prefix><64 hex><suffix>` → the id.
fn wrapped<'a>(c: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    container_id(c.strip_prefix(prefix)?.strip_suffix(suffix)?)
}

/// The container and pod a cgroup path names, for the shapes the common
/// runtimes and the kubelet create (innermost wins):
///
/// | shape | example component |
/// |---|---|
/// | systemd cgroup driver | `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope` |
/// | cgroupfs driver | `/docker/<id>`, `/libpod_parent/libpod-<id>`, `crio-<id>` |
/// | kubelet, systemd driver | `kubepods-burstable-pod<uid with _>.slice`, `kubepods-pod<uid>.slice` |
/// | kubelet, cgroupfs driver | `/kubepods/besteffort/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>` |
///
/// Runtime helper scopes (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`)
/// are not containers.
pub fn parse_path(path: &str) -> Workload {
    let mut w = Workload::default();
    let mut parent = "";
    let mut under_kubepods = false;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        under_kubepods |=
            c == "kubepods" || c.starts_with("kubepods.") || c.starts_with("kubepods-");
        let runtime_id = [
            ("docker-", ".scope", "docker"),
            ("cri-containerd-", ".scope", "containerd"),
            ("crio-", ".scope", "cri-o"),
            ("libpod-", ".scope", "podman"),
            ("crio-", "", "cri-o"),
            ("libpod-", "", "podman"),
        ]
        .iter()
        .find_map(|(p, s, rt)| wrapped(c, p, s).map(|id| (id, Some(*rt))));
        let plain = container_id(c).and_then(|id| match parent {
            "docker" => Some((id, Some("docker"))),
            _ if under_kubepods && w.pod_uid.is_some() => Some((id, None)),
            _ => None,
        });
        if let Some((id, rt)) = runtime_id.or(plain) {
            w.container_id = Some(id.to_owned());
            w.container_runtime = rt.map(str::to_owned);
        }
        if under_kubepods {
            let uid = if let Some(slice) = c.strip_suffix(".slice") {
                // kubepods-<qos>-pod<uid, '-' written '_'>.slice
                slice
                    .rsplit_once("-pod")
                    .and_then(|(_, u)| pod_uid(&u.replace('_', "-")))
            } else {
                c.strip_prefix("pod").and_then(pod_uid)
            };
            if let Some(uid) = uid {
                w.pod_uid = Some(uid);
                // A new pod: a container id outside it is not this pod's.
                w.container_id = None;
                w.container_runtime = None;
            }
        }
        parent = c;
    }
    w
}

impl CgroupInfo {
    /// The line for `id` in `hierarchy` at `path` (parsed for its workload).
    pub fn new(hierarchy: Hierarchy, id: u64, path: Option<String>) -> CgroupInfo {
        let workload = path.as_deref().map(parse_path).unwrap_or_default();
        CgroupInfo {
            hierarchy,
            id,
            path,
            workload,
        }
    }
}

/// The cgroups a trace file named, by (hierarchy, id). A later line for the
/// same id replaces an earlier one unless it knows less (no path).
#[derive(Clone, Debug, Default)]
pub struct CgroupTable {
    map: HashMap<(Hierarchy, u64), CgroupInfo>,
}

/// More cgroups than any host has; a file naming more is damaged.
const TABLE_MAX: usize = 1 << 20;

impl CgroupTable {
    pub fn insert(&mut self, info: CgroupInfo) {
        let key = (info.hierarchy, info.id);
        if self.map.len() >= TABLE_MAX && !self.map.contains_key(&key) {
            return;
        }
        match self.map.get(&key) {
            Some(old) if old.path.is_some() && info.path.is_none() => {}
            _ => {
                self.map.insert(key, info);
            }
        }
    }

    pub fn get(&self, hierarchy: Hierarchy, id: u64) -> Option<&CgroupInfo> {
        self.map.get(&(hierarchy, id))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Fills each task's cgroup paths and workload from `lookup` (by hierarchy
/// and id). A memory cgroup id is looked up in the v1 memory hierarchy first:
/// a writer on a v1 host names every memory cgroup id it used there, so a
/// fall back to cgroup v2 only happens for ids written on a v2 host.
pub fn annotate<'a>(
    tasks: &mut [TaskRef],
    lookup: impl Fn(Hierarchy, u64) -> Option<&'a CgroupInfo>,
) {
    for t in tasks {
        let v2 = (t.cgroup_id != 0)
            .then(|| lookup(Hierarchy::Cgroup2, t.cgroup_id))
            .flatten();
        let mem = (t.memcg_id != 0)
            .then(|| {
                lookup(Hierarchy::Memory, t.memcg_id)
                    .or_else(|| lookup(Hierarchy::Cgroup2, t.memcg_id))
            })
            .flatten();
        t.cgroup = v2.and_then(|c| c.path.clone());
        t.memcg = mem.and_then(|c| c.path.clone());
        // The memory cgroup is the one that matters to mm races (memcg OOM);
        // the v2 cgroup names the workload where it is a container's.
        let w = [mem, v2]
            .into_iter()
            .flatten()
            .map(|c| &c.workload)
            .find(|w| !w.is_empty());
        t.workload = w.cloned().unwrap_or_default();
    }
}

/// One line about a task's workload for tables (`None` when nothing is
/// known beyond its ids): `comm[pid] container docker:0123456789ab pod <uid>
/// memcg /docker/… cgroup /…`.
pub fn describe(t: &TaskRef) -> Option<String> {
    let mut out = Vec::new();
    if let Some(id) = &t.workload.container_id {
        let short = id.get(..12).unwrap_or(id);
        out.push(match &t.workload.container_runtime {
            Some(rt) => format!("container {rt}:{short}"),
            None => format!("container {short}"),
        });
    }
    if let Some(uid) = &t.workload.pod_uid {
        out.push(format!("pod {uid}"));
    }
    if let Some(p) = &t.memcg {
        out.push(format!("memcg {p}"));
    } else if t.memcg_id != 0 {
        out.push(format!("memcg id {}", t.memcg_id));
    }
    if let Some(p) = &t.cgroup {
        out.push(format!("cgroup {p}"));
    } else if t.cgroup_id != 0 {
        out.push(format!("cgroup id {}", t.cgroup_id));
    }
    (!out.is_empty()).then(|| format!("{}[{}] {}", t.comm, t.pid, out.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9";

    fn w(id: Option<&str>, rt: Option<&str>, pod: Option<&str>) -> Workload {
        Workload {
            container_id: id.map(str::to_owned),
            container_runtime: rt.map(str::to_owned),
            pod_uid: pod.map(str::to_owned),
        }
    }

    #[test]
    fn runtimes_and_kubelets_path_shapes() {
        let u = UID.replace('-', "_");
        let cases = [
            (
                format!("/system.slice/docker-{ID}.scope"),
                w(Some(ID), Some("docker"), None),
            ),
            (format!("/docker/{ID}"), w(Some(ID), Some("docker"), None)),
            (
                format!("/system.slice/crio-{ID}.scope"),
                w(Some(ID), Some("cri-o"), None),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                w(Some(ID), Some("podman"), None),
            ),
            (
                format!("/libpod_parent/libpod-{ID}"),
                w(Some(ID), Some("podman"), None),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope"
                ),
                w(Some(ID), Some("containerd"), Some(UID)),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{u}.slice/crio-{ID}.scope"),
                w(Some(ID), Some("cri-o"), Some(UID)),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice"
                ),
                w(None, None, Some(UID)),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                w(Some(ID), None, Some(UID)),
            ),
            (
                format!("/kubepods/pod{UID}/{ID}"),
                w(Some(ID), None, Some(UID)),
            ),
            // A static pod's UID is a hash without dashes.
            (
                format!("/kubepods/besteffort/pod0123456789abcdef0123456789abcdef/{ID}"),
                w(Some(ID), None, Some("0123456789abcdef0123456789abcdef")),
            ),
            // Docker in docker: the innermost container.
            (
                format!("/docker/{}/docker/{ID}", "f".repeat(64)),
                w(Some(ID), Some("docker"), None),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse_path(&path), want, "{path}");
        }
    }

    #[test]
    fn lookalikes_are_not_workloads() {
        for path in [
            "/",
            "/system.slice/ssh.service",
            "/user.slice/user-0.slice/session-3.scope",
            &format!("/system.slice/crio-conmon-{ID}.scope"),
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            &format!("/system.slice/docker-{}.scope", &ID[..63]),
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            // A bare id outside docker/ and outside a pod.
            &format!("/mine/{ID}"),
            // pod<uid> outside kubepods.
            &format!("/pod{UID}/{ID}"),
            "/kubepods/burstable/podnot-a-uid",
        ] {
            assert_eq!(parse_path(path), Workload::default(), "{path}");
        }
    }

    #[test]
    fn annotation_prefers_the_memory_cgroup_and_keeps_what_it_knows() {
        let mut table = CgroupTable::default();
        table.insert(CgroupInfo::new(Hierarchy::Cgroup2, 1, Some("/".into())));
        table.insert(CgroupInfo::new(
            Hierarchy::Memory,
            7,
            Some(format!("/docker/{ID}")),
        ));
        // Same number in the other hierarchy: another cgroup.
        table.insert(CgroupInfo::new(
            Hierarchy::Cgroup2,
            7,
            Some("/other".into()),
        ));
        // An unresolved line does not replace a resolved one.
        table.insert(CgroupInfo::new(Hierarchy::Memory, 7, None));
        let mut tasks = vec![
            TaskRef {
                pid: 1,
                tgid: 1,
                comm: "a".into(),
                kthread: false,
                cgroup_id: 1,
                memcg_id: 7,
                ..TaskRef::default()
            },
            TaskRef {
                pid: 2,
                cgroup_id: 99,
                ..TaskRef::default()
            },
        ];
        annotate(&mut tasks, |h, id| table.get(h, id));
        assert_eq!(tasks[0].cgroup.as_deref(), Some("/"));
        assert_eq!(tasks[0].memcg, Some(format!("/docker/{ID}")));
        assert_eq!(tasks[0].workload, w(Some(ID), Some("docker"), None));
        assert_eq!(
            (tasks[1].cgroup.as_deref(), tasks[1].memcg.as_deref()),
            (None, None)
        );
        let json = serde_json::to_value(&tasks[0]).expect("json");
        assert_eq!(json["container_id"], ID);
        assert_eq!(json["memcg_id"], 7);
        // A task without ids serialises as before.
        let old = serde_json::to_string(&TaskRef {
            pid: 3,
            ..TaskRef::default()
        })
        .expect("json");
        assert_eq!(old, r#"{"pid":3,"tgid":0,"comm":"","kthread":false}"#);
    }

    #[test]
    fn cgroup_lines_roundtrip() {
        let info = CgroupInfo::new(
            Hierarchy::Memory,
            42,
            Some(format!("/kubepods/pod{UID}/{ID}")),
        );
        let text = serde_json::to_string(&info).expect("json");
        assert!(text.contains(r#""hierarchy":"memory""#), "{text}");
        assert!(text.contains(&format!(r#""pod_uid":"{UID}""#)), "{text}");
        assert_eq!(
            serde_json::from_str::<CgroupInfo>(&text).expect("parses"),
            info
        );
        let unresolved: CgroupInfo =
            serde_json::from_str(r#"{"hierarchy":"cgroup2","id":5,"path":null}"#).expect("parses");
        assert_eq!(unresolved, CgroupInfo::new(Hierarchy::Cgroup2, 5, None));
    }
}
