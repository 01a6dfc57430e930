//! The detector's resource bounds and counters (a leaf module: the rules and
//! the detector both use them).

use serde::{Deserialize, Serialize};

use crate::finding::{FindingKind, Severity};

/// Resource bounds. Every limit that forces the detector to forget something
/// is counted in [`DetectorStats`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// How many records (of any mm) an out-of-order event is held while the
    /// missing sequence numbers of its mm may still arrive.
    pub reorder_window: u64,
    /// Mm generations with rule state (and sequence streams) kept at once; the
    /// least recently used one is forgotten beyond that.
    pub max_mms: usize,
    /// Evidence events kept per finding (first and last halves).
    pub max_evidence: usize,
    /// Ended generations remembered to recognise a reaper after `exit_mmap`.
    pub max_tombstones: usize,
    /// Concurrent migration batches tracked.
    pub max_open_batches: usize,
    /// Waits by one task on one page, with no batch in flight, before the
    /// migration rule reports a possible left-behind entry.
    pub wait_repeat_threshold: u32,
    /// How many released records before an exec window a migration PTE
    /// removal may be and still count as "just before" it.
    pub near_window_records: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reorder_window: 256,
            max_mms: 65_536,
            max_evidence: 32,
            max_tombstones: 4096,
            max_open_batches: 1024,
            wait_repeat_threshold: 3,
            near_window_records: 4096,
        }
    }
}

/// Counters about what the detector saw and what it had to give up on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorStats {
    /// Event records pushed.
    pub events: u64,
    /// `Loss` lines pushed, and the records they reported lost.
    pub loss_lines: u64,
    pub lost_records: u64,
    /// Per-mm sequence gaps declared (after the reorder window), and the
    /// number of records missing in them.
    pub gaps: u64,
    pub records_missing: u64,
    /// Events held back because they arrived ahead of their sequence number.
    pub held: u64,
    /// Events released after their place had passed (late after a declared
    /// gap, or duplicates not explained by non-atomic sequencing).
    pub late_records: u64,
    /// Events of a generation that had already ended (dropped).
    pub late_after_end: u64,
    /// Streams whose first records were never seen (joined mid-stream).
    pub streams_joined: u64,
    /// Events about an mm but without a sequence number (`SEQ_MAP_FULL`).
    pub unsequenced: u64,
    /// Events that need an mm but carry none (attribution failed in the kernel).
    pub unattributed: u64,
    /// Generations that ended without their end record (a new generation
    /// appeared at the same address).
    pub generations_end_lost: u64,
    /// Mm generations forgotten because of `Limits::max_mms`, and the open
    /// windows dropped with them.
    pub mms_evicted: u64,
    pub streams_evicted: u64,
    pub windows_dropped: u64,
    /// Evidence events left out of findings (`Limits::max_evidence`).
    pub evidence_omitted: u64,
    /// Migration batches not tracked because of `Limits::max_open_batches`.
    pub batches_dropped: u64,
    /// Tracepoint-rung batches whose migration PTE set/removed counts differ
    /// (not provable as a violation; see `docs/detection.md`).
    pub unbalanced_migrate_batches: u64,
    /// Migration PTE removals that could not be placed in an exec window.
    pub unplaced_pte_removals: u64,
    /// Windows that closed with nothing to report (e.g. only retried faults).
    pub windows_without_verdict: u64,
    /// Largest number of mm generations tracked at once.
    pub peak_mms: u64,
    /// Findings emitted, by kind and severity (written as `kind/severity`).
    pub findings: FindingCounts,
}

impl DetectorStats {
    pub(crate) fn count_finding(&mut self, kind: FindingKind, severity: Severity) {
        self.findings.add(kind, severity);
    }
}

/// Findings counted by (kind, severity): a fixed table, no key strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FindingCounts([[u64; Severity::ALL.len()]; FindingKind::ALL.len()]);

impl FindingCounts {
    fn add(&mut self, kind: FindingKind, severity: Severity) {
        self.0[kind as usize][severity as usize] += 1;
    }

    pub fn get(&self, kind: FindingKind, severity: Severity) -> u64 {
        self.0[kind as usize][severity as usize]
    }

    /// The non-zero counts, in (kind, severity) order.
    pub fn iter(&self) -> impl Iterator<Item = (FindingKind, Severity, u64)> + '_ {
        FindingKind::ALL.iter().flat_map(move |k| {
            Severity::ALL
                .iter()
                .map(move |s| (*k, *s, self.get(*k, *s)))
                .filter(|(_, _, n)| *n > 0)
        })
    }

    pub fn total(&self) -> u64 {
        self.0.iter().flatten().sum()
    }
}

impl Serialize for FindingCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.iter()
                .map(|(k, sev, n)| (format!("{}/{}", k.name(), sev.name()), n)),
        )
    }
}

impl<'de> Deserialize<'de> for FindingCounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = std::collections::BTreeMap::<String, u64>::deserialize(d)?;
        let mut out = FindingCounts::default();
        for (key, n) in raw {
            let parsed = key
                .split_once('/')
                .and_then(|(k, s)| Some((FindingKind::from_name(k)?, Severity::from_name(s)?)));
            if let Some((k, s)) = parsed {
                out.0[k as usize][s as usize] = n;
            }
        }
        Ok(out)
    }
}
