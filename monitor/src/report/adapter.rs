//! The only place in `report` that reads `monitor_detector`'s types.
//!
//! Everything the pictures need from an event, a finding or a trace header is
//! copied here into the report's own small view types ([`Ev`], [`FindingView`],
//! [`FileView`]). When the detector's public types change (typed ids, an
//! inline `comm`, typed probe ids, a `Rule` trait), this file is what follows;
//! the renderers do not.

use std::collections::BTreeMap;

use monitor_common::{mmf, pf};
use monitor_detector::{
    FileReport, Finding,
    event::{Data, Event, FaultExt, ReapSource, UffdEventKind, c_str as text},
    tracefile::{Header, Loss, Summary},
};

/// One event as the report draws it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ev {
    pub t: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub kthread: bool,
    pub mm: u64,
    pub mm_gen: u64,
    pub seq: u64,
    /// Stable snake_case kind (`reap_start`, `uffd_copy`, …).
    pub kind: &'static str,
    /// BPF program that produced it, and its rung.
    pub probe: String,
    pub rung: &'static str,
    /// Whether this event opens or closes a bracket, or is a point.
    pub shape: Shape,
    /// What the event says about the race (a fault's or a copy's result).
    pub outcome: Outcome,
    /// `MMF_UNSTABLE` is visible in the event's `mm_flags`.
    pub unstable: bool,
    /// A fault by a task whose `current->mm` is another mm (GUP, /proc/PID/mem).
    pub remote: bool,
    /// The OOM victim a `mark_victim` names: (pid, tgid, comm).
    pub victim: Option<(u32, u32, String)>,
    /// The payload, one line of `key=value`.
    pub detail: String,
}

/// Bracket membership of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Point,
    Open(Bracket),
    Close(Bracket),
}

/// The brackets the hooks record (entry/return pairs of one task).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bracket {
    Reap,
    ReaperUnmap,
    ExitMmap,
    UnmapVmas,
    Mrelease,
    StackMove,
    Exec,
    Migrate,
    KthreadUseMm,
    Mfill,
    UffdChange,
    HugeMigrationWait,
}

impl Bracket {
    /// The kernel function (or stretch) the bracket stands for.
    pub const fn label(self) -> &'static str {
        match self {
            Bracket::Reap => "__oom_reap_task_mm",
            Bracket::ReaperUnmap => "unmap_page_range",
            Bracket::ExitMmap => "exit_mmap",
            Bracket::UnmapVmas => "unmap_vmas",
            Bracket::Mrelease => "process_mrelease",
            Bracket::StackMove => "exec stack move",
            Bracket::Exec => "exec (mm switch to exec)",
            Bracket::Migrate => "migrate_pages batch",
            Bracket::KthreadUseMm => "kthread_use_mm",
            Bracket::Mfill => "UFFDIO_COPY (mfill)",
            Bracket::UffdChange => "mmap_changing raised",
            Bracket::HugeMigrationWait => "migration entry wait (PMD/hugetlb)",
        }
    }
}

/// What an event says about the outcome of the racing operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    None,
    /// UFFDIO_COPY refused with -EAGAIN.
    Eagain,
    /// UFFDIO_COPY copied bytes.
    Copied,
    /// A fault refused with VM_FAULT_SIGBUS.
    Sigbus,
    /// A fault failed with another VM_FAULT_ERROR bit.
    FaultError,
    /// A fault handled without error.
    Handled,
    /// A fault whose result the hook cannot see.
    Unknown,
}

const VM_FAULT_SIGBUS: u32 = 0x2;
/// OOM | SIGBUS | SIGSEGV | HWPOISON | HWPOISON_LARGE | SIGSEGV… (`VM_FAULT_ERROR`).
const VM_FAULT_ERROR: u32 = 0x1 | 0x2 | 0x40 | 0x10 | 0x20 | 0x800;
const VM_FAULT_RETRY_NOPAGE: u32 = 0x400 | 0x100;

fn unstable(flags: u64) -> bool {
    flags & (1 << mmf::MMF_UNSTABLE) != 0
}

/// Copies one detector event into the report's view.
pub fn ev(e: &Event) -> Ev {
    use Bracket as B;
    use Shape::{Close, Open, Point};
    let (shape, outcome, flags, detail): (Shape, Outcome, Option<u64>, String) = match &e.data {
        Data::MarkVictim(v) => (
            Point,
            Outcome::None,
            Some(v.mm_flags),
            format!(
                "victim={}/{} uid={} mm_flags={:#x}",
                v.victim_pid,
                text(&v.victim_comm),
                v.uid,
                v.mm_flags
            ),
        ),
        Data::ReapStart(r) | Data::ReapEnd(r) | Data::ReapSkip(r) => {
            let shape = match &e.data {
                Data::ReapStart(_) => Open(B::Reap),
                Data::ReapEnd(_) => Close(B::Reap),
                _ => Point,
            };
            let source = ReapSource::of(r).name();
            (
                shape,
                Outcome::None,
                Some(r.mm_flags),
                format!(
                    "victim={} via={source} ret={} mm_flags={:#x}",
                    r.victim_pid, r.ret, r.mm_flags
                ),
            )
        }
        Data::ReaperUnmapStart(v)
        | Data::ReaperUnmapEnd(v)
        | Data::UnmapVmasStart(v)
        | Data::UnmapVmasEnd(v)
        | Data::MigrationSkipTempStack(v)
        | Data::MigrationEntryInTempStack(v)
        | Data::MigrationPteRemoved(v)
        | Data::MigrationEntryWait(v) => {
            let shape = match &e.data {
                Data::ReaperUnmapStart(_) => Open(B::ReaperUnmap),
                Data::ReaperUnmapEnd(_) => Close(B::ReaperUnmap),
                Data::UnmapVmasStart(_) => Open(B::UnmapVmas),
                Data::UnmapVmasEnd(_) => Close(B::UnmapVmas),
                _ => Point,
            };
            (
                shape,
                Outcome::None,
                None,
                format!(
                    "vma={:#x}-{:#x} vm_flags={:#x} address={:#x}",
                    v.vm_start, v.vm_end, v.vm_flags, v.address
                ),
            )
        }
        Data::MreleaseEnter(m) | Data::MreleaseExit(m) => (
            if matches!(e.data, Data::MreleaseEnter(_)) {
                Open(B::Mrelease)
            } else {
                Close(B::Mrelease)
            },
            Outcome::None,
            None,
            format!("pidfd={} flags={:#x} ret={}", m.pidfd, m.flags, m.ret),
        ),
        Data::ExitMmapStart(s)
        | Data::ExitMmapEnd(s)
        | Data::MmDrop(s)
        | Data::KthreadUseMm(s)
        | Data::KthreadUnuseMm(s) => {
            let shape = match &e.data {
                Data::ExitMmapStart(_) => Open(B::ExitMmap),
                Data::ExitMmapEnd(_) => Close(B::ExitMmap),
                Data::KthreadUseMm(_) => Open(B::KthreadUseMm),
                Data::KthreadUnuseMm(_) => Close(B::KthreadUseMm),
                _ => Point,
            };
            (
                shape,
                Outcome::None,
                Some(s.mm_flags),
                format!("mm_flags={:#x}", s.mm_flags),
            )
        }
        Data::Exec(x) => (
            Close(B::Exec),
            Outcome::None,
            None,
            format!("old_pid={} filename={}", x.old_pid, text(&x.filename)),
        ),
        Data::ExecMmSwitch(x) => (
            Open(B::Exec),
            Outcome::None,
            None,
            format!("new_comm={}", text(&x.new_comm)),
        ),
        Data::StackMoveStart(s) | Data::StackMoveEnd(s) => (
            if matches!(e.data, Data::StackMoveStart(_)) {
                Open(B::StackMove)
            } else {
                Close(B::StackMove)
            },
            Outcome::None,
            None,
            format!(
                "vma={:#x}-{:#x} vm_flags={:#x} shift={:#x} ret={}",
                s.vm_start, s.vm_end, s.vm_flags, s.shift, s.ret
            ),
        ),
        Data::MigrateStart(m) | Data::MigrateEnd(m) => (
            if matches!(e.data, Data::MigrateStart(_)) {
                Open(B::Migrate)
            } else {
                Close(B::Migrate)
            },
            Outcome::None,
            None,
            format!(
                "succeeded={} failed={} reason={} ptes_set={} ptes_removed={}",
                m.succeeded, m.failed, m.reason, m.ptes_set, m.ptes_removed
            ),
        ),
        Data::Fault(f) | Data::KernelFault(f) => {
            let outcome = match f.result() {
                None => Outcome::Unknown,
                Some(r) if r & VM_FAULT_SIGBUS != 0 => Outcome::Sigbus,
                Some(r) if r & VM_FAULT_ERROR != 0 => Outcome::FaultError,
                Some(r) if r & VM_FAULT_RETRY_NOPAGE != 0 => Outcome::None,
                Some(_) => Outcome::Handled,
            };
            let ret = f
                .result()
                .map_or_else(|| "unknown".to_owned(), |r| format!("{r:#x}"));
            (
                Point,
                outcome,
                Some(f.mm_flags),
                format!(
                    "address={:#x} ret={ret} current_mm={:#x} fault_flags={:#x} mm_flags={:#x}",
                    f.address, f.current_mm, f.fault_flags, f.mm_flags
                ),
            )
        }
        Data::UffdCopy(c) | Data::MfillStart(c) | Data::MfillEnd(c) => {
            let shape = match &e.data {
                Data::MfillStart(_) => Open(B::Mfill),
                Data::MfillEnd(_) => Close(B::Mfill),
                _ => Point,
            };
            let outcome = match (&e.data, c.ret) {
                (Data::MfillStart(_), _) => Outcome::None,
                (_, -11) => Outcome::Eagain,
                (_, r) if r > 0 => Outcome::Copied,
                _ => Outcome::None,
            };
            (
                shape,
                outcome,
                None,
                format!(
                    "dst={:#x} len={} ret={} mmap_changing={} fd={}",
                    c.dst, c.len, c.ret, c.mmap_changing, c.fd
                ),
            )
        }
        Data::UffdCopyDone(c) => (
            Point,
            match c.ret {
                -11 => Outcome::Eagain,
                r if r >= 0 => Outcome::Copied,
                _ => Outcome::None,
            },
            None,
            format!(
                "dst={:#x} len={} ret={} mmap_changing={} mfill_changing={} window={:#x} fd={}",
                c.dst, c.len, c.ret, c.mmap_changing, c.mfill_changing, c.window, c.fd
            ),
        ),
        Data::UffdChangeBegin(c) | Data::UffdChangeEnd(c) => (
            if matches!(e.data, Data::UffdChangeBegin(_)) {
                Open(B::UffdChange)
            } else {
                Close(B::UffdChange)
            },
            Outcome::None,
            None,
            format!(
                "kind={} mmap_changing={} range={:#x}-{:#x}",
                UffdEventKind::of(c).name(),
                c.mmap_changing,
                c.start,
                c.end
            ),
        ),
        Data::HugeMigrationWaitStart(w) | Data::HugeMigrationWaitEnd(w) => (
            if matches!(e.data, Data::HugeMigrationWaitStart(_)) {
                Open(B::HugeMigrationWait)
            } else {
                Close(B::HugeMigrationWait)
            },
            Outcome::None,
            None,
            format!(
                "entry={:#x} vm_start={:#x} level={}",
                w.entry, w.vm_start, w.level
            ),
        ),
        Data::Fork(f) => (
            Point,
            Outcome::None,
            None,
            format!(
                "child={}/{} child_mm={:#x}",
                f.child_pid, f.child_tgid, f.child_mm
            ),
        ),
    };
    let remote = match &e.data {
        Data::Fault(f) | Data::KernelFault(f) => f.current_mm != 0 && f.current_mm != e.mm,
        _ => false,
    };
    let victim = match &e.data {
        Data::MarkVictim(v) => Some((
            v.victim_pid,
            v.victim_tgid,
            text(&v.victim_comm).into_owned(),
        )),
        _ => None,
    };
    Ev {
        t: e.t,
        cpu: e.cpu,
        pid: e.pid,
        tgid: e.tgid,
        comm: e.comm().into_owned(),
        kthread: e.task_flags & pf::PF_KTHREAD != 0,
        mm: e.mm,
        mm_gen: e.mm_gen,
        seq: e.seq,
        kind: e.kind(),
        rung: e.probe.get().map_or("?", |p| p.rung().name()),
        probe: e.probe.name().into_owned(),
        shape,
        outcome,
        unstable: flags.is_some_and(unstable),
        remote,
        victim,
        detail,
    }
}

/// A task of a finding (its `tasks` list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub kthread: bool,
}

/// One finding as the report draws it.
#[derive(Clone, Debug)]
pub struct FindingView {
    /// Stable rule name (`reaper_exit_overlap`, …).
    pub rule: &'static str,
    /// Stable severity name (`violation`, `near_miss`, `uncertain`).
    pub severity: &'static str,
    pub mm: u64,
    pub mm_gen: u64,
    pub tasks: Vec<Task>,
    pub start_t: u64,
    pub end_t: u64,
    pub explanation: String,
    pub details: BTreeMap<String, serde_json::Value>,
    pub evidence: Vec<Ev>,
}

impl FindingView {
    /// A string detail (`pattern`, `window`, `fault_result`, …).
    pub fn detail_str(&self, key: &str) -> Option<&str> {
        self.details.get(key).and_then(|v| v.as_str())
    }

    pub fn detail_bool(&self, key: &str) -> bool {
        self.details
            .get(key)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    pub fn detail_u64(&self, key: &str) -> Option<u64> {
        self.details.get(key).and_then(serde_json::Value::as_u64)
    }
}

pub fn finding(f: &Finding) -> FindingView {
    FindingView {
        rule: f.kind.name(),
        severity: f.severity.name(),
        mm: f.mm,
        mm_gen: f.mm_gen,
        tasks: f
            .tasks
            .iter()
            .map(|t| Task {
                pid: t.pid,
                tgid: t.tgid,
                comm: t.comm.clone(),
                kthread: t.kthread,
            })
            .collect(),
        start_t: f.start_t,
        end_t: f.end_t,
        explanation: f.explanation.clone(),
        details: f.details.clone(),
        evidence: f.evidence.iter().map(ev).collect(),
    }
}

/// How one hook attached.
#[derive(Clone, Debug)]
pub struct HookView {
    pub hook: String,
    pub rung: String,
    pub target: Option<String>,
    /// `rung target: reason` of every better rung refused.
    pub refused: Vec<String>,
}

/// A rule's coverage in one file.
#[derive(Clone, Debug)]
pub struct CoverageView {
    pub rule: &'static str,
    pub state: &'static str,
    pub reason: String,
}

/// Everything the report shows about one analysed file.
#[derive(Clone, Debug, Default)]
pub struct FileView {
    pub file: String,
    pub kernel_release: Option<String>,
    /// `6.12 (6.0+: …)`: the era the verdicts were judged by.
    pub era: Option<String>,
    pub hostname: Option<String>,
    pub monitor_version: Option<String>,
    pub bpf_object: Option<String>,
    /// Clock pair of the header: kernel monotonic ns and Unix ms at one moment.
    pub clock: Option<(u64, u64)>,
    pub filters: Vec<(String, String)>,
    pub hooks: Vec<HookView>,
    pub coverage: Vec<CoverageView>,
    pub findings: Vec<FindingView>,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// Records: (produced, delivered, lost) from the summary line, if any.
    pub records: Option<(u64, u64, u64)>,
    pub duration_ms: Option<u64>,
    /// Loss lines: (time, records lost).
    pub losses: Vec<(u64, u64)>,
    /// Every event of the file (only kept for the Perfetto export).
    pub events: Vec<Ev>,
}

/// Builds the view of one file from what `monitor analyze` read: the
/// analysis, the header and summary lines, loss lines and (optionally) every
/// event.
pub fn file(
    report: &FileReport,
    header: Option<&Header>,
    summary: Option<&Summary>,
    losses: &[Loss],
    events: &[Event],
) -> FileView {
    FileView {
        file: report.file.clone(),
        kernel_release: report.kernel_release.clone(),
        era: report.era.as_ref().map(monitor_detector::era::Era::label),
        hostname: header.map(|h| h.hostname.clone()),
        monitor_version: header.map(|h| h.monitor_version.clone()),
        bpf_object: header.map(|h| h.bpf_object.clone()),
        clock: header.map(|h| (h.start_ktime_ns, h.start_unix_ms)),
        filters: header
            .map(|h| {
                h.filters
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        hooks: header
            .map(|h| {
                h.hooks
                    .iter()
                    .map(|s| HookView {
                        hook: s.hook.name().to_owned(),
                        rung: s.rung.name().to_owned(),
                        target: s.target.clone(),
                        refused: s
                            .refused
                            .iter()
                            .map(|r| format!("{} {}: {}", r.rung, r.target, r.reason))
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        coverage: report
            .coverage
            .iter()
            .map(|c| CoverageView {
                rule: c.rule.name(),
                state: c.state.name(),
                reason: c.reason(),
            })
            .collect(),
        findings: report.findings.iter().map(finding).collect(),
        notes: report.notes.clone(),
        warnings: report.warnings.clone(),
        error: report.error.as_ref().map(ToString::to_string),
        records: summary.map(|s| (s.produced, s.delivered, s.lost)),
        duration_ms: summary.map(|s| s.duration_ms),
        losses: losses.iter().map(|l| (l.t, l.total())).collect(),
        events: events.iter().map(ev).collect(),
    }
}
