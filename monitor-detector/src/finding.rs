//! What the detector reports. Kind and severity names are stable: they are
//! metric label values and trace-file values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// The four rules, named like their findings (declared in the catalogue,
/// which routes every event kind to the rules it matters to).
pub use monitor_common::catalogue::Rule as FindingKind;

/// How bad it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The dangerous interleaving happened and the kernel's protection held.
    NearMiss,
    /// An interleaving that must be impossible on this kernel.
    Violation,
    /// Records were lost inside the window: the interleaving may have happened,
    /// but the monitor cannot prove which way it went.
    Uncertain,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::NearMiss, Severity::Violation, Severity::Uncertain];

    pub const fn name(self) -> &'static str {
        match self {
            Severity::NearMiss => "near_miss",
            Severity::Violation => "violation",
            Severity::Uncertain => "uncertain",
        }
    }

    pub fn from_name(name: &str) -> Option<Severity> {
        Severity::ALL.iter().copied().find(|s| s.name() == name)
    }
}

/// A task involved in a finding, and the workload it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskRef {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub kthread: bool,
    /// The task's cgroup v2 id and memory cgroup id as its records carried
    /// them (absent: 0, unknown: traces of older builds).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cgroup_id: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memcg_id: u64,
    /// Their paths, when resolved (`crate::workload::annotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memcg: Option<String>,
    /// The container and pod those paths name.
    #[serde(flatten)]
    pub workload: crate::workload::Workload,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One verdict about one mm generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    #[serde(with = "crate::event::hex_u64")]
    pub mm: u64,
    pub mm_gen: u64,
    /// Tasks involved, in order of first appearance.
    pub tasks: Vec<TaskRef>,
    /// Kernel time of the first and last evidence event.
    pub start_t: u64,
    pub end_t: u64,
    /// One sentence: what happened and why it is classified this way.
    pub explanation: String,
    /// Structured details (e.g. `fault_result`, `eagain_count`).
    pub details: BTreeMap<String, serde_json::Value>,
    /// The evidence events, in per-mm sequence order.
    pub evidence: Vec<Event>,
}
